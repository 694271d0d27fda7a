"""Process groups through /proc: identity (start time), membership, and killing orphans.

Every process execution leads its own session and process group (pgid = sid = its pid). After
the node dies, ``kill_orphan_group`` finds the members of such a group and kills them, unless the
pid has been reused by an unrelated process (its start time no longer matches).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import msgspec

PROC = Path("/proc")


class ProcStat(msgspec.Struct, frozen=True):
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    start: int
    """Start time in clock ticks since boot."""


def stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """The fields of ``/proc/<pid>/stat`` that identify a process, or None if it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may contain anything: split after it.
    rest = text[text.rfind(")") + 2 :].split()
    try:
        return ProcStat(
            pid=pid,
            state=rest[0],
            ppid=int(rest[1]),
            pgrp=int(rest[2]),
            session=int(rest[3]),
            start=int(rest[19]),
        )
    except (IndexError, ValueError):
        return None


def group_members(pgid: int, proc: Path = PROC) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid`` of session ``pgid``."""
    members: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        found = stat(int(entry.name), proc)
        if found and found.pgrp == pgid and found.session == pgid and found.state != "Z":
            members.append(found.pid)
    return members


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill_orphan_group(pgid: int, leader_start: int, proc: Path = PROC) -> bool:
    """Kill what is left of a group an earlier node started; True if anything was alive.

    If a process now holds the leader's pid with another start time, the pid was reused and
    the group is not ours: nothing is killed.
    """
    leader = stat(pgid, proc)
    if leader is not None and leader_start and leader.start != leader_start:
        return False
    if not group_members(pgid, proc):
        return False
    kill_group(pgid)
    return True
