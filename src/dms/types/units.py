"""Parsing and formatting of quantities. One internal unit per quantity.

=========  ===============  ============================================
quantity   internal unit    accepted input
=========  ===============  ============================================
size       bytes (int)      ``512MiB``, ``4GiB``, ``2GB``, ``1.5TB``, ``1048576``
clock      Hz (int)         ``2.4GHz``, ``800MHz``, ``3000000000``
bandwidth  bit/s (int)      ``100Mbps``, ``1Gbps``, ``5000``
duration   ns (int)         ``30s``, ``5m``, ``2h``, ``1h30m``, ``250ms``, ``1d``
cores      cores (float)    ``2``, ``0.5``, ``1.25``
price      micro-units      ``0.25``, ``1.5NTX`` (an amount, optionally a currency)
=========  ===============  ============================================

Decimal units (kB, MB, GB, TB, PB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB, PiB)
powers of 1024, exactly as written: ``2GB`` is 2,000,000,000 bytes. Units are case-sensitive
apart from the ``B``/``b`` of a bare byte count, so ``4 gigs`` or ``4gb`` are refused rather
than guessed.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from dms.errors import UnitError

SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "PB": 1000**5,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "PiB": 1024**5,
}
CLOCK_UNITS: dict[str, int] = {"Hz": 1, "kHz": 10**3, "MHz": 10**6, "GHz": 10**9}
BANDWIDTH_UNITS: dict[str, int] = {"bps": 1, "kbps": 10**3, "Mbps": 10**6, "Gbps": 10**9}
DURATION_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
}
PRICE_SCALE = 1_000_000
"""Prices are held as integers of one millionth of a currency unit."""

SIZE_EXAMPLES = "a size (e.g. 512MiB, 4GiB, 2GB or a number of bytes)"
BANDWIDTH_EXAMPLES = "a bandwidth (e.g. 100Mbps, 1Gbps or a number of bits per second)"
CLOCK_EXAMPLES = "a clock rate (e.g. 2.4GHz, 800MHz or a number of Hz)"
DURATION_EXAMPLES = "a duration (e.g. 30s, 5m, 2h, 1h30m, 250ms)"
CORES_EXAMPLES = "a number of cores (e.g. 1, 0.5, 2.25), greater than 0"
PRICE_EXAMPLES = "a price (e.g. 0.25 or 1.5NTX), at least 0"

_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]*)\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d)")
_PRICE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z][A-Za-z0-9_-]{0,15})?\s*$")


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(text) from exc


def _scaled(value: object, units: dict[str, int], default: str, field: str, accepted: str) -> int:
    """Parse ``<number><unit>`` into an integer of the base unit, refusing fractions of it."""
    if isinstance(value, bool):
        raise UnitError(field, value, accepted)
    if isinstance(value, int):
        if value < 0:
            raise UnitError(field, value, accepted, detail=f"is negative; expected {accepted}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0 or value != int(value):
            raise UnitError(field, value, accepted)
        return int(value)
    if not isinstance(value, str):
        raise UnitError(field, value, accepted)
    match = _QUANTITY.match(value)
    if match is None:
        raise UnitError(field, value, accepted)
    number, unit = match.group(1), match.group(2) or default
    if unit not in units:
        raise UnitError(field, value, accepted)
    amount = _decimal(number) * units[unit]
    if amount != amount.to_integral_value():
        raise UnitError(
            field,
            value,
            accepted,
            detail=f"is not a whole number of {default}; expected {accepted}",
        )
    return int(amount)


def parse_size(value: object, field: str = "size") -> int:
    """Parse a size into bytes."""
    return _scaled(value, SIZE_UNITS, "B", field, SIZE_EXAMPLES)


def parse_clock(value: object, field: str = "clock") -> int:
    """Parse a clock rate into Hz."""
    return _scaled(value, CLOCK_UNITS, "Hz", field, CLOCK_EXAMPLES)


def parse_bandwidth(value: object, field: str = "bandwidth") -> int:
    """Parse a bandwidth into bits per second."""
    return _scaled(value, BANDWIDTH_UNITS, "bps", field, BANDWIDTH_EXAMPLES)


def format_bandwidth(bps: int) -> str:
    """Format bits per second exactly: ``parse_bandwidth(format_bandwidth(n)) == n``."""
    for name, factor in (("Gbps", 10**9), ("Mbps", 10**6), ("kbps", 10**3)):
        if bps >= factor and bps % factor == 0:
            return f"{bps // factor}{name}"
    return f"{bps}bps"


def parse_duration(value: object, field: str = "duration") -> int:
    """Parse a duration into nanoseconds. A bare integer is taken as nanoseconds."""
    if isinstance(value, bool):
        raise UnitError(field, value, DURATION_EXAMPLES)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _scaled(value, DURATION_UNITS, "ns", field, DURATION_EXAMPLES)
    if not isinstance(value, str):
        raise UnitError(field, value, DURATION_EXAMPLES)
    text = value.strip()
    if not text:
        raise UnitError(field, value, DURATION_EXAMPLES)
    if text.isdigit():
        return int(text)
    pos = 0
    total = Decimal(0)
    for part in _DURATION_PART.finditer(text):
        if part.start() != pos:
            break
        total += _decimal(part.group(1)) * DURATION_UNITS[part.group(2)]
        pos = part.end()
    if pos != len(text) or pos == 0:
        raise UnitError(field, value, DURATION_EXAMPLES)
    return int(total)


def parse_cores(value: object, field: str = "cpu") -> float:
    """Parse a number of CPU cores (fractions allowed, more than zero)."""
    if isinstance(value, bool):
        raise UnitError(field, value, CORES_EXAMPLES)
    number: float
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise UnitError(field, value, CORES_EXAMPLES) from None
    else:
        raise UnitError(field, value, CORES_EXAMPLES)
    if not math.isfinite(number) or number <= 0:
        raise UnitError(field, value, CORES_EXAMPLES)
    return round(number, 6)


def parse_price(value: object, field: str = "price") -> tuple[int, str]:
    """Parse a price into (micro-units, currency). The currency is ``""`` when not written."""
    if isinstance(value, bool):
        raise UnitError(field, value, PRICE_EXAMPLES)
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise UnitError(field, value, PRICE_EXAMPLES)
        return round(Decimal(str(value)) * PRICE_SCALE), ""
    if not isinstance(value, str):
        raise UnitError(field, value, PRICE_EXAMPLES)
    match = _PRICE.match(value)
    if match is None:
        raise UnitError(field, value, PRICE_EXAMPLES)
    micro = _decimal(match.group(1)) * PRICE_SCALE
    if micro != micro.to_integral_value():
        raise UnitError(field, value, PRICE_EXAMPLES, detail="has more than 6 decimal places")
    return int(micro), match.group(2) or ""


_BINARY = [("PiB", 1024**5), ("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)]
_DECIMAL = [("PB", 1000**5), ("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)]


def format_size(size: int) -> str:
    """Format bytes readably and exactly: ``parse_size(format_size(n)) == n``."""
    if size < 0:
        return "-" + format_size(-size)
    for table in (_BINARY, _DECIMAL):
        for name, factor in table:
            if size >= factor and size % factor == 0:
                return f"{size // factor}{name}"
    for name, factor in _BINARY:
        if size >= factor:
            scaled = Decimal(size) / factor
            if scaled == scaled.quantize(Decimal("0.01")):
                return f"{format(scaled.normalize(), 'f')}{name}"
    return f"{size}B"


def human_size(size: int) -> str:
    """Format bytes for people: exact when short (``4GiB``), else two decimals (``11.77GiB``)."""
    exact = format_size(size)
    if sum(c.isdigit() for c in exact) <= 5:
        return exact
    for name, factor in _BINARY:
        if abs(size) >= factor:
            return f"{size / factor:.2f}{name}"
    return exact


def format_clock(hz: int) -> str:
    """Format Hz exactly: ``parse_clock(format_clock(n)) == n``."""
    for name, factor in (("GHz", 10**9), ("MHz", 10**6), ("kHz", 10**3)):
        if hz >= factor:
            scaled = Decimal(hz) / factor
            return f"{format(scaled.normalize(), 'f')}{name}"
    return f"{hz}Hz"


def format_duration(ns: int) -> str:
    """Format nanoseconds exactly: ``parse_duration(format_duration(n)) == n``."""
    if ns == 0:
        return "0s"
    if ns < 0:
        return "-" + format_duration(-ns)
    parts: list[str] = []
    rest = ns
    for name in ("d", "h", "m", "s", "ms", "us", "ns"):
        factor = DURATION_UNITS[name]
        if rest >= factor:
            parts.append(f"{rest // factor}{name}")
            rest %= factor
    return "".join(parts)


def format_price(micro: int, currency: str = "") -> str:
    """Format a price in micro-units: ``parse_price(format_price(n, c)) == (n, c)``."""
    amount = format(Decimal(micro).scaleb(-6).normalize(), "f")
    return f"{amount}{currency}" if currency else amount


def seconds(ns: int) -> float:
    """Nanoseconds as float seconds, for clocks and timeouts."""
    return ns / 1e9
