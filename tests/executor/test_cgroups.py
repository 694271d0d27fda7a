"""cgroups: detection (v2, else v1, else none), limits written, kill and removal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dms.executor import proc
from dms.executor.cgroups import Cgroup, CgroupLimits, CgroupMode, Cgroups

MIB = 1024**2


def fake_host(
    root: Path, *, v2_controllers: str = "", v1: bool = True, own_v2: str = "/node"
) -> tuple[Path, Path]:
    """A fake cgroupfs of plain files, and the /proc/self files that point into it."""
    mounts = [f"cgroup2 {root}/unified cgroup2 rw,nosuid 0 0"]
    lines = [f"0::{own_v2}"]
    base = root / "unified" / own_v2.lstrip("/")
    base.mkdir(parents=True)
    (base / "cgroup.controllers").write_text(v2_controllers)
    (base / "cgroup.subtree_control").write_text("")
    if v1:
        mounts += [
            f"cgroup {root}/memory cgroup rw,nosuid,memory 0 0",
            f"cgroup {root}/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0",
            f"cgroup {root}/pids cgroup rw,nosuid,pids 0 0",
        ]
        lines += ["4:memory:/user/7", "3:cpu,cpuacct:/", "2:pids:/"]
        (root / "memory" / "user" / "7").mkdir(parents=True)
        (root / "cpu,cpuacct").mkdir()
        (root / "pids").mkdir()
    (root / "mounts").write_text("\n".join(["proc /proc proc rw 0 0", *mounts]) + "\n")
    (root / "self-cgroup").write_text("\n".join(lines) + "\n")
    return root / "self-cgroup", root / "mounts"


class TestDetection:
    """v2 is preferred when it can delegate memory and pids; else v1; else none, saying why."""

    def test_uses_v2_when_it_has_the_controllers(self, tmp_path: Path) -> None:
        proc_cgroup, mounts = fake_host(tmp_path, v2_controllers="cpu memory pids io")
        found = Cgroups.detect(proc_cgroup=proc_cgroup, mounts=mounts)
        assert found.mode is CgroupMode.V2
        assert found.bases == {"": tmp_path / "unified" / "node"}
        assert found.controllers == {"cpu", "memory", "pids"}

    def test_falls_back_to_v1_on_a_hybrid_host(self, tmp_path: Path) -> None:
        proc_cgroup, mounts = fake_host(tmp_path, v2_controllers="")
        found = Cgroups.detect(proc_cgroup=proc_cgroup, mounts=mounts)
        assert found.mode is CgroupMode.V1
        assert found.bases == {
            "memory": tmp_path / "memory" / "user" / "7",
            "cpu": tmp_path / "cpu,cpuacct",
            "cpuacct": tmp_path / "cpu,cpuacct",
            "pids": tmp_path / "pids",
        }

    def test_says_why_when_nothing_is_usable(self, tmp_path: Path) -> None:
        proc_cgroup, mounts = fake_host(tmp_path, v2_controllers="io", v1=False)
        found = Cgroups.detect(proc_cgroup=proc_cgroup, mounts=mounts)
        assert found.mode is CgroupMode.NONE
        assert "memory, pids not available" in found.reason

    def test_creating_without_cgroups_fails_with_the_reason(self) -> None:
        with pytest.raises(Exception, match="no usable cgroups"):
            Cgroups.none("turned off").create("dms-x", CgroupLimits())


class TestLimitsWritten:
    """Limits land in the right files for each version."""

    def test_v2_limits(self, tmp_path: Path) -> None:
        proc_cgroup, mounts = fake_host(tmp_path, v2_controllers="cpu memory pids")
        cgroups = Cgroups.detect(proc_cgroup=proc_cgroup, mounts=mounts)
        cgroup = cgroups.create("dms-a", CgroupLimits(memory=64 * MIB, cores=1.5, pids=32))
        folder = tmp_path / "unified" / "node" / "dms-a"
        assert (folder / "memory.max").read_text() == str(64 * MIB)
        assert (folder / "cpu.max").read_text() == "150000 100000"
        assert (folder / "pids.max").read_text() == "32"
        assert cgroup.procs_files == (str(folder / "cgroup.procs"),)

    def test_v1_limits(self, tmp_path: Path) -> None:
        proc_cgroup, mounts = fake_host(tmp_path)
        cgroups = Cgroups.detect(proc_cgroup=proc_cgroup, mounts=mounts)
        cgroup = cgroups.create("dms-a", CgroupLimits(memory=64 * MIB, cores=0.25, pids=8))
        assert (tmp_path / "memory/user/7/dms-a/memory.limit_in_bytes").read_text() == str(64 * MIB)
        assert (tmp_path / "cpu,cpuacct/dms-a/cpu.cfs_quota_us").read_text() == "25000"
        assert (tmp_path / "pids/dms-a/pids.max").read_text() == "8"
        assert len(cgroup.procs_files) == 3

    def test_recorded_paths_find_the_same_cgroup(self, tmp_path: Path) -> None:
        proc_cgroup, mounts = fake_host(tmp_path)
        cgroup = Cgroups.detect(proc_cgroup=proc_cgroup, mounts=mounts).create(
            "dms-a", CgroupLimits()
        )
        again = Cgroup.from_paths(cgroup.paths)
        assert again.mode is CgroupMode.V1
        assert again.by_controller == cgroup.by_controller


class TestRealCgroups:
    """On this machine's cgroups (skipped where none can be written)."""

    def test_kill_empties_a_cgroup_and_remove_deletes_it(self) -> None:
        cgroups = Cgroups.detect()
        if cgroups.mode is CgroupMode.NONE:
            pytest.skip(f"no writable cgroups here: {cgroups.reason}")
        cgroup = cgroups.create(f"dms-test-{id(self)}", CgroupLimits(pids=16))
        try:
            child = subprocess.Popen(
                [
                    "/bin/sh",
                    "-c",
                    'for f; do echo $$ > "$f"; done; exec sleep 300',
                    "sh",
                    *cgroup.procs_files,
                ]
            )
            while child.pid not in cgroup.pids():
                assert child.poll() is None
            assert cgroup.kill()
            assert child.wait(timeout=10) == -9
            assert cgroup.pids() == set()
        finally:
            cgroup.remove()
        assert not any(path.exists() for path in cgroup.by_controller.values())
        assert proc.stat(child.pid) is None or proc.stat(child.pid).state == "Z"  # type: ignore[union-attr]
