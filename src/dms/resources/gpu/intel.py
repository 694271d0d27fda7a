"""Intel GPUs: ``xpu-smi discovery --json`` lists the devices, ``-d N`` gives each one's memory.

The list carries ids, names, PCI addresses and UUIDs; sizes (``memory_physical_size_byte``,
``memory_free_size_byte``, strings of bytes) are only in the per-device answer.
"""

from __future__ import annotations

import msgspec

from dms.resources.errors import DetectionError
from dms.resources.gpu.amd import json_payload
from dms.resources.gpu.base import GPUReading, ToolRunner, run_tool, to_int
from dms.types import GPUVendor

XPU_SMI_LIST_ARGS = ("xpu-smi", "discovery", "--json")


def xpu_smi_device_args(device_id: int) -> tuple[str, ...]:
    return ("xpu-smi", "discovery", "-d", str(device_id), "--json")


class XpuDevice(msgspec.Struct, frozen=True):
    device_id: int
    device_name: str = ""
    uuid: str = ""
    pci_bdf_address: str = ""


def parse_xpu_discovery(text: str) -> tuple[XpuDevice, ...]:
    data = json_payload("xpu-smi", text)
    items = data.get("device_list") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise DetectionError("xpu-smi", "discovery: no 'device_list' array")
    devices = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or "device_id" not in item:
            raise DetectionError("xpu-smi", f"discovery: device_list[{position}] has no device_id")
        devices.append(
            XpuDevice(
                device_id=to_int(
                    "xpu-smi", f"device_list[{position}].device_id", item["device_id"]
                ),
                device_name=str(item.get("device_name", "")),
                uuid=str(item.get("uuid", "")),
                pci_bdf_address=str(item.get("pci_bdf_address", "")),
            )
        )
    return tuple(devices)


def parse_xpu_device(text: str, listed: XpuDevice | None = None) -> GPUReading:
    """One device's details (``xpu-smi discovery -d N --json``)."""
    data = json_payload("xpu-smi", text)
    if not isinstance(data, dict):
        raise DetectionError("xpu-smi", "device: expected a JSON object")
    device_id = to_int(
        "xpu-smi", "device_id", data.get("device_id", listed.device_id if listed else None)
    )
    total = data.get("memory_physical_size_byte")
    if total is None:
        raise DetectionError("xpu-smi", f"device {device_id}: no memory_physical_size_byte")
    free = data.get("memory_free_size_byte")
    vram_total = to_int("xpu-smi", "memory_physical_size_byte", total)
    vram_used = (
        None
        if free is None
        else max(0, vram_total - to_int("xpu-smi", "memory_free_size_byte", free))
    )
    return GPUReading(
        vendor=GPUVendor.INTEL,
        index=device_id,
        model=str(data.get("device_name") or (listed.device_name if listed else "")),
        uuid=str(data.get("uuid") or (listed.uuid if listed else "")),
        pci_address=str(data.get("pci_bdf_address") or (listed.pci_bdf_address if listed else "")),
        vram_total=vram_total,
        vram_used=vram_used,
    )


class XpuSmiSource:
    name = "xpu-smi"

    def __init__(self, run: ToolRunner = run_tool) -> None:
        self._run = run

    def read(self) -> tuple[GPUReading, ...]:
        listed = parse_xpu_discovery(self._run(XPU_SMI_LIST_ARGS))
        return tuple(
            parse_xpu_device(self._run(xpu_smi_device_args(d.device_id)), d) for d in listed
        )
