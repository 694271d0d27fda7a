"""Hardware detection: parsers against recorded tool outputs, soft failures, this machine."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from dms.resources import DetectionError, HardwareSpec, SystemHardware
from dms.resources.gpu import (
    GPUReading,
    NvidiaSmiSource,
    NvmlSource,
    RocmSmiSource,
    XpuSmiSource,
    parse_nvidia_smi,
    parse_rocm_smi,
    parse_xpu_device,
    parse_xpu_discovery,
    read_nvml,
    run_tool,
)
from dms.resources.hardware import CPUInfo, detect_cpu, idle_usage, parse_cpuinfo, read_gpus
from dms.types import GPUVendor

FIXTURES = Path(__file__).parent / "fixtures"
MiB = 1024**2


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def runner(outputs: dict[str, str]) -> Any:
    """A tool runner answering from fixtures, keyed by the joined command line."""

    def run(argv: Sequence[str]) -> str:
        key = " ".join(argv)
        if key not in outputs:
            raise DetectionError(argv[0], f"unexpected command {key!r}")
        return fixture(outputs[key])

    return run


class FakeNVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(FakeNVMLError):
    pass


def fake_nvml(devices: list[dict[str, Any]], *, fail_init: Exception | None = None) -> Any:
    """A stand-in for the pynvml module that answers from recorded NVML fields."""
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if fail_init is not None:
            raise fail_init

    return SimpleNamespace(
        NVMLError=FakeNVMLError,
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda i: devices[i],
        nvmlDeviceGetName=lambda h: h["name"].encode(),  # older bindings return bytes
        nvmlDeviceGetUUID=lambda h: h["uuid"],
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(**h["memory"]),
        nvmlDeviceGetPciInfo=lambda h: SimpleNamespace(busId=h["pci_bus_id"].encode()),
    )


class TestCPU:
    """CPU model and clock come from psutil, else /proc/cpuinfo; a missing clock is reported."""

    @pytest.mark.parametrize(
        ("name", "model", "clock_hz"),
        [
            pytest.param(
                "cpuinfo-x86_64.txt", "AMD EPYC 7B13 64-Core Processor", 3_500_000_000, id="x86_64"
            ),
            pytest.param("cpuinfo-aarch64.txt", "", 0, id="aarch64-no-clock"),
            pytest.param("", "", 0, id="empty"),
        ],
    )
    def test_cpuinfo_parser(self, name: str, model: str, clock_hz: int) -> None:
        assert parse_cpuinfo(fixture(name) if name else "") == (model, clock_hz)

    def test_a_zero_psutil_clock_falls_back_to_cpuinfo(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(
            psutil, "cpu_freq", lambda: SimpleNamespace(current=1000.0, min=0.0, max=0.0)
        )
        cpu, problems = detect_cpu(FIXTURES / "cpuinfo-x86_64.txt")
        assert cpu.clock_hz == 3_500_000_000 and problems == []

    def test_no_clock_anywhere_is_a_problem_not_a_failure(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(psutil, "cpu_freq", lambda: None)
        cpu, problems = detect_cpu(FIXTURES / "cpuinfo-aarch64.txt")
        assert cpu.clock_hz == 0 and cpu.threads >= 1
        assert [p.source for p in problems] == ["cpu_freq"]

    def test_an_unreadable_cpuinfo_is_a_problem(self, tmp_path: Path) -> None:
        cpu, problems = detect_cpu(tmp_path / "missing")
        assert cpu.threads >= 1
        assert any(p.source == "cpuinfo" and "cannot read" in p.reason for p in problems)


class TestNvidia:
    """NVML fields and nvidia-smi's CSV become the same readings."""

    def test_nvidia_smi_csv(self) -> None:
        first, second = parse_nvidia_smi(fixture("nvidia-smi-h100x2.csv"))
        assert first == GPUReading(
            vendor=GPUVendor.NVIDIA,
            index=0,
            model="NVIDIA H100 80GB HBM3",
            uuid="GPU-5a0b4c2e-8f1d-3c67-9e2a-7b4d1f0c9e31",
            pci_address="00000000:18:00.0",
            vram_total=81559 * MiB,
            vram_used=4 * MiB,
        )
        assert second.index == 1 and second.vram_free == (81559 - 71234) * MiB

    def test_unsupported_memory_usage_is_unknown_not_zero(self) -> None:
        [gpu] = parse_nvidia_smi(fixture("nvidia-smi-not-supported.csv"))
        assert gpu.vram_used is None and gpu.vram_total == 97871 * MiB

    def test_driver_failure_text_is_a_detection_error_naming_the_line(self) -> None:
        with pytest.raises(DetectionError, match="line 1: expected 6"):
            parse_nvidia_smi(fixture("nvidia-smi-garbled.csv"))

    def test_nvml_fields(self) -> None:
        devices = json.loads(fixture("nvml-a100x2.json"))["devices"]
        nvml = fake_nvml(devices)
        readings = read_nvml(nvml)
        assert [r.model for r in readings] == ["NVIDIA A100-SXM4-40GB"] * 2
        assert readings[1].pci_address == "00000000:0F:00.0"
        assert readings[1].vram_free == 21474836480
        assert nvml.calls == ["init", "shutdown"]

    def test_a_missing_nvml_library_is_absent_and_falls_back_to_nvidia_smi(self) -> None:
        nvml = fake_nvml([], fail_init=NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
        smi = NvidiaSmiSource(runner({" ".join(NVIDIA_ARGS): "nvidia-smi-h100x2.csv"}))
        assert len(NvmlSource(nvml, fallback=smi).read()) == 2

    def test_both_failing_give_one_error_with_both_reasons(self) -> None:
        nvml = fake_nvml([], fail_init=NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
        with pytest.raises(DetectionError, match="NVML Shared Library.*nvidia-smi") as raised:
            NvmlSource(nvml, fallback=NvidiaSmiSource(runner({}))).read()
        assert not raised.value.absent  # the runner's error is not an 'absent' one

    def test_the_real_nvml_fails_cleanly_without_a_driver(self) -> None:
        try:
            readings = NvmlSource().read()
        except DetectionError as exc:
            assert exc.source == "nvml"
            return
        assert all(r.vendor is GPUVendor.NVIDIA for r in readings)  # a machine with a GPU


NVIDIA_ARGS = (
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total,memory.used,pci.bus_id",
    "--format=csv,noheader,nounits",
)


class TestAMD:
    """rocm-smi JSON from ROCm 5 and 6 (key spellings differ, warnings precede the JSON)."""

    def test_rocm_5_two_cards(self) -> None:
        readings = parse_rocm_smi(fixture("rocm-smi-5.7-mi250x.json"))
        assert [r.index for r in readings] == [0, 1]
        assert readings[0].model == "Aldebaran/MI200 [Instinct MI250X/MI250]"
        assert (
            readings[0].uuid == "0x6e4b1a2f9c3d5e01" and readings[0].pci_address == "0000:C1:00.0"
        )
        assert readings[1].vram_total == 68702699520 and readings[1].vram_used == 34359738368

    def test_rocm_6_with_a_warning_line_and_a_system_entry(self) -> None:
        [card] = RocmSmiSource(runner({ROCM: "rocm-smi-6.2-mi300x.txt"})).read()
        assert card.model == "AMD Instinct MI300X" and card.vendor is GPUVendor.AMD
        assert card.vram_total == 205822885888

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            pytest.param("no json here", "no JSON", id="no-json"),
            pytest.param("{broken", "not valid JSON", id="broken"),
            pytest.param('{"card0": {"Card series": "X"}}', "VRAM Total Memory", id="no-vram"),
            pytest.param(
                '{"card0": {"VRAM Total Memory (B)": "lots"}}', "is not a number", id="not-a-number"
            ),
            pytest.param("[1, 2]", "expected a JSON object", id="array"),
        ],
    )
    def test_bad_output_is_a_detection_error(self, text: str, message: str) -> None:
        with pytest.raises(DetectionError, match=message):
            parse_rocm_smi(text)


ROCM = "rocm-smi --showproductname --showmeminfo vram --showbus --showuniqueid --json"
XPU = {
    "xpu-smi discovery --json": "xpu-smi-discovery.json",
    "xpu-smi discovery -d 0 --json": "xpu-smi-discovery-d0.json",
    "xpu-smi discovery -d 1 --json": "xpu-smi-discovery-d1.json",
}


class TestIntel:
    """xpu-smi lists devices, then answers per device with its memory."""

    def test_discovery_then_details(self) -> None:
        readings = XpuSmiSource(runner(XPU)).read()
        assert [r.index for r in readings] == [0, 1]
        assert readings[1].pci_address == "0000:3a:00.0"
        assert readings[1].vram_total == 68719476736
        assert readings[1].vram_used == 68719476736 - 34359738368

    def test_the_list_alone_has_no_memory(self) -> None:
        listed = parse_xpu_discovery(fixture("xpu-smi-discovery.json"))
        assert [d.device_id for d in listed] == [0, 1]
        with pytest.raises(DetectionError, match="no memory_physical_size_byte"):
            parse_xpu_device(json.dumps({"device_id": 0}))

    def test_a_list_without_device_ids_is_a_detection_error(self) -> None:
        with pytest.raises(DetectionError, match=r"device_list\[0\] has no device_id"):
            parse_xpu_discovery('{"device_list": [{"device_name": "x"}]}')


class TestSoftFailure:
    """One broken source never stops detection; GPUs are numbered across vendors."""

    def test_tools_that_are_missing_or_failing(self) -> None:
        with pytest.raises(DetectionError, match="not found on PATH") as missing:
            run_tool(["no-such-tool-here"])
        assert missing.value.absent
        with pytest.raises(DetectionError, match="exit status 3: broken") as failing:
            run_tool(["sh", "-c", "echo broken >&2; exit 3"])
        assert not failing.value.absent
        assert run_tool(["sh", "-c", "echo ok"]) == "ok\n"

    def test_indices_run_across_vendors_and_problems_are_collected(self) -> None:
        class Exploding:
            name = "exploding"

            def read(self) -> tuple[GPUReading, ...]:
                raise OSError("device vanished")

        sources = [
            NvidiaSmiSource(runner({" ".join(NVIDIA_ARGS): "nvidia-smi-h100x2.csv"})),
            Exploding(),
            RocmSmiSource(runner({})),
            XpuSmiSource(runner(XPU)),
        ]
        found, problems = read_gpus(sources)
        assert [(g.index, g.vendor) for g, _ in found] == [
            (0, GPUVendor.NVIDIA),
            (1, GPUVendor.NVIDIA),
            (2, GPUVendor.INTEL),
            (3, GPUVendor.INTEL),
        ]
        assert [p.source for p in problems] == ["exploding", "rocm-smi"]
        assert "device vanished" in problems[0].reason

    def test_a_device_without_uuid_or_pci_address_still_gets_an_identity(self) -> None:
        class Bare:
            name = "bare"

            def read(self) -> tuple[GPUReading, ...]:
                return (GPUReading(vendor=GPUVendor.AMD, index=0, vram_total=MiB),)

        [(gpu, _)] = read_gpus([Bare()])[0]
        assert gpu.is_device() and gpu.uuid == "amd-0"


class TestThisMachine:
    """Detection on the machine running the tests works, and absent GPU tools are reported."""

    async def test_spec_and_usage(self, tmp_path: Path) -> None:
        hardware = SystemHardware(tmp_path / "work" / "not-created-yet", cpu_sample_s=0.01)
        spec = await hardware.spec()
        assert spec.cpu.threads >= spec.cpu.cores >= 1
        assert spec.ram > 0 and spec.disk > 0 and spec.cpu.architecture
        assert spec.disk_path == str(tmp_path)
        assert spec.cpu.clock_hz > 0 or any(p.source == "cpu_freq" for p in spec.problems)
        sources = {p.source for p in spec.problems}
        for vendor_source in ("nvidia", "rocm-smi", "xpu-smi"):
            assert vendor_source in sources or spec.gpus  # either reported absent or found
        usage = await hardware.usage()
        assert 0 <= usage.cpu_percent <= 100
        assert 0 < usage.ram_available <= spec.ram and usage.disk_free <= spec.disk
        free = usage.free(spec)
        assert 0 <= free.cpu.cores <= spec.cpu.threads

    async def test_usage_reports_free_vram_per_device(self, tmp_path: Path) -> None:
        hardware = SystemHardware(
            tmp_path, [RocmSmiSource(runner({ROCM: "rocm-smi-5.7-mi250x.json"}))]
        )
        spec, usage = await hardware.spec(), await hardware.usage()
        free = usage.free(spec)
        assert [g.vram for g in free.gpus] == [68702699520 - 11071488, 68702699520 - 34359738368]
        assert [g.uuid for g in free.gpus] == [g.uuid for g in spec.gpus]

    def test_the_spec_is_cached_until_asked_fresh(self, tmp_path: Path) -> None:
        calls: list[int] = []

        class Counting:
            name = "counting"

            def read(self) -> tuple[GPUReading, ...]:
                calls.append(1)
                return ()

        hardware = SystemHardware(tmp_path, [Counting()])
        assert hardware.spec_sync() == hardware.spec_sync()
        hardware.spec_sync(fresh=True)
        assert len(calls) == 2

    def test_idle_usage_frees_everything(self) -> None:
        spec = HardwareSpec(cpu=CPUInfo(cores=2, threads=4), ram=8 * MiB, disk=100 * MiB)
        free = idle_usage(spec, disk_free=40 * MiB).free(spec)
        assert (free.cpu.cores, free.ram, free.disk) == (4, 8 * MiB, 40 * MiB)
