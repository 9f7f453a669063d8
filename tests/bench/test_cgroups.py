"""bench/cgroups.py on fake cgroup trees (tmp_path): detection, the files written, release."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cgroups import PERIOD_US, CgroupError, CpuCaps, find_controller, quota_us


def _v1(tmp_path: Path) -> Path:
    root = tmp_path / "cpu"
    root.mkdir()
    (root / "cpu.cfs_quota_us").write_text("-1\n")
    (root / "tasks").write_text("")
    return root


def _v2(tmp_path: Path, controllers: str = "cpu memory") -> Path:
    root = tmp_path / "unified"
    root.mkdir(parents=True)
    (root / "cgroup.subtree_control").write_text(controllers + "\n")
    (root / "cgroup.procs").write_text("")
    return root


def test_quota_is_the_share_of_one_period() -> None:
    assert quota_us(0.25) == PERIOD_US // 4
    assert quota_us(2) == 2 * PERIOD_US
    assert quota_us(0.001) == 1000  # the kernel's minimum
    for bad in (0, -0.5, 65, float("nan")):
        with pytest.raises(ValueError):
            quota_us(bad)


def test_quota_for_another_period() -> None:
    assert quota_us(0.2, 10_000) == 2000
    assert quota_us(0.05, 10_000) == 1000  # the kernel's minimum again
    for bad in (999, 1_000_001):
        with pytest.raises(ValueError, match="period"):
            quota_us(0.2, bad)


def test_v1_is_preferred_and_v2_needs_the_cpu_controller(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    assert find_controller(_v1(tmp_path), missing) == ("v1", tmp_path / "cpu")
    assert find_controller(missing, _v2(tmp_path)) == ("v2", tmp_path / "unified")
    with pytest.raises(CgroupError, match="does not enable the cpu controller"):
        find_controller(missing, _v2(tmp_path / "x", controllers="memory pids"))
    with pytest.raises(CgroupError, match="no writable cgroup CPU controller"):
        find_controller(missing, missing)


def test_v1_group_per_process_with_its_quota(tmp_path: Path) -> None:
    root = _v1(tmp_path)
    caps = CpuCaps(0.3, v1=root, v2=tmp_path / "none")
    g1, g2 = caps.add(101), caps.add(102)
    assert g1 != g2 and g1.parent == root == g2.parent
    assert (g1 / "cpu.cfs_quota_us").read_text() == "30000\n"
    assert (g1 / "cpu.cfs_period_us").read_text() == f"{PERIOD_US}\n"
    assert (g1 / "tasks").read_text() == "101\n"
    assert (g2 / "tasks").read_text() == "102\n"


def test_v2_group_writes_cpu_max(tmp_path: Path) -> None:
    root = _v2(tmp_path)
    caps = CpuCaps(0.5, v1=tmp_path / "none", v2=root)
    g = caps.add(7)
    assert (g / "cpu.max").read_text() == f"50000 {PERIOD_US}\n"
    assert (g / "cgroup.procs").read_text() == "7\n"


def test_groups_with_a_shorter_period(tmp_path: Path) -> None:
    g = CpuCaps(0.2, period_us=10_000, v1=_v1(tmp_path), v2=tmp_path / "none").add(5)
    assert (g / "cpu.cfs_period_us").read_text() == "10000\n"
    assert (g / "cpu.cfs_quota_us").read_text() == "2000\n"
    g2 = CpuCaps(0.2, period_us=10_000, v1=tmp_path / "none", v2=_v2(tmp_path)).add(6)
    assert (g2 / "cpu.max").read_text() == "2000 10000\n"


def test_release_moves_processes_back_and_reports_what_stays(tmp_path: Path) -> None:
    root = _v1(tmp_path)
    caps = CpuCaps(0.25, v1=root, v2=tmp_path / "none")
    g = caps.add(4242)
    # a real cgroup directory can be removed with its control files in it, a plain one cannot:
    # the group stays, is reported, and its process was moved back to the root first
    left = caps.release(timeout=0.1)
    assert left == [g]
    assert (root / "tasks").read_text() == "4242\n"
    assert caps.groups == []
    empty = CpuCaps(0.25, v1=root, v2=tmp_path / "none")
    empty.groups.append(root / "gone")  # a group already gone is no error
    assert empty.release(timeout=0.1) == []
