"""A CPU quota per process, so that the server, not the machine, is what a ladder runs out of.

On a 2-core machine SIPp's caller and callee need most of both cores before either server is
saturated, so the highest passing rate of N workers says little about N. With ``--cpu-cap C``
every process of the server under test is put in a cgroup of its own whose CPU quota is C of
one core: each worker then behaves as if it had a core of its own of C the speed, N workers have
N times the CPU of one, and SIPp keeps the rest of the machine.

cgroup v1 (a ``cpu`` controller hierarchy, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) and
cgroup v2 (``cpu.max``, where the ``cpu`` controller is enabled for children of the root) are
both supported. Every group made here is removed again by :meth:`CpuCaps.release`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # the kernel's default CFS period
MIN_US = 1000  # the kernel refuses quotas and periods under 1 ms


class CgroupError(RuntimeError):
    """No usable cgroup CPU controller (the message says why)."""


def quota_us(cap: float, period_us: int = PERIOD_US) -> int:
    """The quota per period for ``cap`` of one core (0 < cap <= 64; a period of 1 ms to 1 s).

    A group that used its quota waits for the next period: with the default 100 ms period
    and a cap of 0.2, a busy process runs 20 ms and then stands still for 80 ms. A shorter
    period makes that finer grained (a process on a slow core of its own never stalls)."""
    if not 0.0 < cap <= 64.0:
        raise ValueError(f"a CPU cap is a share of one core in (0, 64], got {cap!r}")
    if not MIN_US <= period_us <= 1_000_000:
        raise ValueError(f"a CFS period is 1000 to 1000000 us, got {period_us!r}")
    return max(MIN_US, round(cap * period_us))


def find_controller(v1: Path = V1_ROOT, v2: Path = V2_ROOT) -> tuple[str, Path]:
    """("v1" | "v2", the directory to make groups in), or CgroupError."""
    if (v1 / "cpu.cfs_quota_us").exists() and os.access(v1, os.W_OK):
        return "v1", v1
    controls = v2 / "cgroup.subtree_control"
    if controls.exists() and os.access(v2, os.W_OK):
        if "cpu" in controls.read_text().split():
            return "v2", v2
        raise CgroupError(f"cgroup v2 at {v2} does not enable the cpu controller for children")
    raise CgroupError(
        f"no writable cgroup CPU controller ({v1}/cpu.cfs_quota_us or {controls}); "
        "--cpu-cap needs root and a cgroup v1 cpu or v2 cpu controller"
    )


class CpuCaps:
    """One cgroup with a CPU quota per process added; all removed by :meth:`release`."""

    def __init__(self, cap: float, *, period_us: int = PERIOD_US, prefix: str = "siprouter-bench",
                 v1: Path = V1_ROOT, v2: Path = V2_ROOT) -> None:  # fmt: skip
        self.period_us = period_us
        self.quota = quota_us(cap, period_us)
        self.kind, self.root = find_controller(v1, v2)
        self.prefix = f"{prefix}-{os.getpid()}"
        self.groups: list[Path] = []

    def add(self, pid: int) -> Path:
        """Move ``pid`` into a new group of its own with the quota."""
        group = self.root / f"{self.prefix}-{len(self.groups)}"
        group.mkdir()
        self.groups.append(group)
        if self.kind == "v1":
            (group / "cpu.cfs_period_us").write_text(f"{self.period_us}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{self.quota}\n")
            (group / "tasks").write_text(f"{pid}\n")
        else:
            (group / "cpu.max").write_text(f"{self.quota} {self.period_us}\n")
            (group / "cgroup.procs").write_text(f"{pid}\n")
        return group

    def release(self, timeout: float = 5.0) -> list[Path]:
        """Move what is left in the groups back to the root and remove them (bounded); returns
        the groups that could not be removed."""
        procs = "tasks" if self.kind == "v1" else "cgroup.procs"
        left: list[Path] = []
        for group in self.groups:
            deadline = time.monotonic() + timeout
            while group.exists():
                try:
                    for pid in (group / procs).read_text().split():
                        try:
                            (self.root / procs).write_text(f"{pid}\n")
                        except OSError:
                            pass  # it ended meanwhile
                    group.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        left.append(group)
                        break
                    time.sleep(0.05)
        self.groups = []
        return left
