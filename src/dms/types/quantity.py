"""Quantities that are written as text (``4GiB``, ``30s``) and held as numbers.

Each is a subclass of ``int`` or ``float`` so that code uses it as a plain number, while
msgspec decodes it from text through :func:`dec_hook`, encodes it back to its canonical text
through :func:`enc_hook` and describes it in JSON Schema through :func:`schema_hook`. A value
that does not parse becomes a msgspec ``ValidationError`` whose message is
``"<value>" is not <accepted>`` and whose path locates it in the document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dms.errors import UnitError
from dms.types import units


class Size(int):
    """Bytes, written ``512MiB``, ``4GiB``, ``2GB`` or a number of bytes."""


class Duration(int):
    """Nanoseconds, written ``30s``, ``5m``, ``2h``, ``1h30m``, ``250ms``."""


class Clock(int):
    """Hz, written ``2.4GHz`` or a number of Hz."""


class Bandwidth(int):
    """Bits per second, written ``100Mbps``, ``1Gbps`` or a number."""


class Cores(float):
    """CPU cores, fractions allowed, more than zero."""


class Amount(int):
    """Money in millionths of a currency unit, written as a decimal (``1.5``)."""


def _amount(value: object, field: str) -> int:
    micro, currency = units.parse_price(value, field)
    if currency:
        raise UnitError(field, value, "an amount without currency (set the currency separately)")
    return micro


_PARSERS: dict[type, tuple[Callable[[object, str], Any], Callable[[Any], Any], str]] = {
    Size: (units.parse_size, units.format_size, units.SIZE_EXAMPLES),
    Duration: (units.parse_duration, units.format_duration, units.DURATION_EXAMPLES),
    Clock: (units.parse_clock, units.format_clock, units.CLOCK_EXAMPLES),
    Bandwidth: (units.parse_bandwidth, units.format_bandwidth, units.BANDWIDTH_EXAMPLES),
    Cores: (units.parse_cores, float, units.CORES_EXAMPLES),
    Amount: (_amount, lambda micro: units.format_price(int(micro)), units.PRICE_EXAMPLES),
}


def dec_hook(kind: type, value: Any) -> Any:
    """msgspec decode hook: parse quantity text into the quantity type."""
    entry = _PARSERS.get(kind)
    if entry is None:
        raise NotImplementedError(f"no decoder for {kind!r}")
    parse = entry[0]
    try:
        return kind(parse(value, ""))
    except UnitError as exc:
        # Only the reason ("is not a size (...)"): msgspec appends " - at `$.path`" and the
        # caller puts the path and the value in front.
        raise ValueError(exc.detail or f"is not {exc.accepted}") from None


def enc_hook(value: Any) -> Any:
    """msgspec encode hook: the canonical text of a quantity."""
    for kind, (_, fmt, _) in _PARSERS.items():
        if type(value) is kind:
            return fmt(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def schema_hook(kind: type) -> dict[str, Any]:
    """msgspec JSON Schema hook: a quantity is a string in its unit syntax, or a number."""
    entry = _PARSERS.get(kind)
    if entry is None:
        raise NotImplementedError(f"no schema for {kind!r}")
    number = "number" if issubclass(kind, float) else "integer"
    return {
        "anyOf": [{"type": "string"}, {"type": number, "minimum": 0}],
        "description": f"{(kind.__doc__ or '').strip()} Accepted: {entry[2]}.",
    }
