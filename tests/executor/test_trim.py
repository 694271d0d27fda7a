"""Freed heap memory goes back to the system after a run (where the C library can)."""

from __future__ import annotations

import ctypes.util

from dms.executor.trim import release_freed_memory


def test_release_reports_whether_the_c_library_can() -> None:
    libc = ctypes.util.find_library("c")
    has_trim = libc is not None and hasattr(ctypes.CDLL(libc), "malloc_trim")
    assert release_freed_memory() is has_trim
