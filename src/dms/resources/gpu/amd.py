"""AMD GPUs: the JSON of ``rocm-smi --showproductname --showmeminfo vram --showbus --showuniqueid``.

The JSON maps ``cardN`` to a flat object of strings. Key spellings vary between ROCm releases
(``Card series`` in 5.x, ``Card Series`` in 6.x), so keys are matched without regard to case;
objects that are not cards (``system``) are skipped.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from dms.resources.errors import DetectionError
from dms.resources.gpu.base import GPUReading, ToolRunner, run_tool, to_int
from dms.types import GPUVendor

ROCM_SMI_ARGS = (
    "rocm-smi",
    "--showproductname",
    "--showmeminfo",
    "vram",
    "--showbus",
    "--showuniqueid",
    "--json",
)

_CARD = re.compile(r"^card(\d+)$", re.IGNORECASE)


def json_payload(source: str, text: str) -> Any:
    """The JSON document in a tool's output (tools print warnings before it)."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise DetectionError(source, "no JSON in the output")
    try:
        return msgspec.json.decode(text[start:].strip().encode())
    except msgspec.DecodeError as exc:
        raise DetectionError(source, f"output is not valid JSON: {exc}") from exc


def parse_rocm_smi(text: str) -> tuple[GPUReading, ...]:
    data = json_payload("rocm-smi", text)
    if not isinstance(data, dict):
        raise DetectionError("rocm-smi", f"expected a JSON object, got {type(data).__name__}")
    readings = []
    for key, card in data.items():
        match = _CARD.match(key)
        if match is None or not isinstance(card, dict):
            continue
        fields = {str(k).strip().lower(): v for k, v in card.items()}
        total = fields.get("vram total memory (b)")
        if total is None:
            raise DetectionError("rocm-smi", f"{key}: no 'VRAM Total Memory (B)'")
        used = fields.get("vram total used memory (b)")
        unique = str(fields.get("unique id", "")).strip()
        readings.append(
            GPUReading(
                vendor=GPUVendor.AMD,
                index=int(match.group(1)),
                model=str(fields.get("card series") or fields.get("card model") or "").strip(),
                uuid="" if unique.upper() in {"", "N/A"} else unique,
                pci_address=str(fields.get("pci bus", "")).strip(),
                vram_total=to_int("rocm-smi", f"{key}.VRAM Total Memory (B)", total),
                vram_used=None
                if used is None
                else to_int("rocm-smi", f"{key}.VRAM Total Used Memory (B)", used),
            )
        )
    return tuple(sorted(readings, key=lambda r: r.index))


class RocmSmiSource:
    name = "rocm-smi"

    def __init__(self, run: ToolRunner = run_tool) -> None:
        self._run = run

    def read(self) -> tuple[GPUReading, ...]:
        return parse_rocm_smi(self._run(ROCM_SMI_ARGS))
