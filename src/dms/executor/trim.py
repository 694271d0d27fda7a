"""Give freed heap memory back to the system after a run.

A WASM run allocates and frees tens of MB (module instances, WASI buffers); glibc keeps freed
heap pages mapped for reuse, so a node that ran one workload would stay that much larger while
idle. ``malloc_trim(0)`` returns them. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Return freed heap memory to the system; False where the C library cannot."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
