"""Value types used everywhere: units, Resources, Capability and its parts, job types, ids.

Nothing in here does I/O; everything is an immutable msgspec Struct or an enum, so the same
types serve the wire, the store, the config and the REST API.
"""

from dms.types.capability import (
    DIMENSIONS,
    Capability,
    Check,
    Connectivity,
    PriceInformation,
    TimeInformation,
    TimeUnit,
    Verdict,
)
from dms.types.ids import new_id
from dms.types.jobs import ExecutorType, JobType
from dms.types.location import Location
from dms.types.resources import CPU, GPU, Comparison, GPUVendor, Resources
from dms.types.units import (
    format_clock,
    format_duration,
    format_price,
    format_size,
    parse_clock,
    parse_cores,
    parse_duration,
    parse_price,
    parse_size,
)

__all__ = [
    "CPU",
    "DIMENSIONS",
    "GPU",
    "Capability",
    "Check",
    "Comparison",
    "Connectivity",
    "ExecutorType",
    "GPUVendor",
    "JobType",
    "Location",
    "PriceInformation",
    "Resources",
    "TimeInformation",
    "TimeUnit",
    "Verdict",
    "format_clock",
    "format_duration",
    "format_price",
    "format_size",
    "new_id",
    "parse_clock",
    "parse_cores",
    "parse_duration",
    "parse_price",
    "parse_size",
]
