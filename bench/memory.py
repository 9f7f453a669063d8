"""Memory benchmark: resident memory per binding and lookup time of siprouter's Location.

Each count runs in a fresh Python process (``python -m bench memory-one COUNT``) so that one
count's heap does not flatter the next. The process builds COUNT bindings the way a REGISTER
would leave them (distinct AoR, contact, Call-ID, received address, User-Agent and socket
strings per binding; no Path), stores them through ``Location.change`` in batches, and reports

- resident memory per binding: (VmRSS after - VmRSS before) / COUNT, after ``gc.collect()``;
- lookup time: mean of ``Location.lookup`` over random registered AoRs (hits) and over AoRs
  that were never registered (misses).

The store under Location is a no-op ``LocationStore``: the memory measured is Location's own
(production persists to SQLite, whose page cache is bounded and not per binding).
"""

from __future__ import annotations

import gc
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from siprouter.modules.location import Binding, Location

BATCH = 1000


class DiscardStore:
    """A LocationStore that keeps nothing (the benchmark measures Location's memory)."""

    def load_all(self, now: float) -> list[Binding]:
        return []

    def apply(self, upserts: Sequence[Binding], deletes: Sequence[Binding]) -> None:
        return None

    def close(self) -> None:
        return None


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _binding(i: int, now: float, ua: str) -> Binding:
    a, b = divmod(i, 65000)
    host = f"10.{a // 250}.{a % 250}.{b % 250 + 1}"
    port = 5060 + b % 1000
    user = f"user{i:07d}"
    return Binding(
        user,
        f"sip:{user}@{host}:{port};transport=udp",
        now + 3600.0,
        q=None,
        call_id=f"{random.getrandbits(64):016x}-{i}@{host}",
        cseq=1 + i % 100,
        received=f"udp:{host}:{port}",
        user_agent=ua + str(i % 7),
        socket="udp:127.0.0.1:" + str(5060),
        last_modified=now,
    )


def measure(count: int, lookups: int = 100_000) -> dict[str, Any]:
    """Load ``count`` bindings into a Location in this process; return the figures."""
    random.seed(count)
    now = time.time()
    ua = "SIPp/3.6.1 bench "
    gc.collect()
    before = rss_bytes()
    loc = Location(DiscardStore())
    t0 = time.perf_counter()
    for start in range(0, count, BATCH):
        batch = [_binding(i, now, ua) for i in range(start, min(count, start + BATCH))]
        loc.change(batch, ())
    load_s = time.perf_counter() - t0
    del batch
    gc.collect()
    after = rss_bytes()
    assert loc.count() == count, (loc.count(), count)

    keys = [f"user{random.randrange(count):07d}" for _ in range(lookups)]
    t0 = time.perf_counter()
    found = 0
    for k in keys:
        if loc.lookup(k, now):
            found += 1
    hit_s = time.perf_counter() - t0
    assert found == lookups, (found, lookups)
    misses = [f"nobody{i:07d}" for i in range(lookups)]
    t0 = time.perf_counter()
    for k in misses:
        loc.lookup(k, now)
    miss_s = time.perf_counter() - t0
    return {
        "bindings": count,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "bytes_per_binding": round((after - before) / count, 1),
        "load_seconds": round(load_s, 2),
        "lookup_hit_us": round(hit_s * 1e6 / lookups, 3),
        "lookup_miss_us": round(miss_s * 1e6 / lookups, 3),
        "lookups": lookups,
    }


def run(counts: Sequence[int], lookups: int = 100_000) -> list[dict[str, Any]]:
    """Each count in its own interpreter (bounded by a timeout)."""
    out: list[dict[str, Any]] = []
    for n in counts:
        done = subprocess.run(
            [sys.executable, "-m", "bench", "memory-one", str(n), "--lookups", str(lookups)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"memory benchmark for {n} failed: {done.stderr[-2000:]}")
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| bindings | RSS before MB | RSS after MB | bytes/binding | load s | lookup hit µs "
        "| lookup miss µs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bindings']:,} | {r['rss_before_mb']} | {r['rss_after_mb']} "
            f"| {r['bytes_per_binding']:.0f} | {r['load_seconds']} | {r['lookup_hit_us']} "
            f"| {r['lookup_miss_us']} |"
        )
    return "\n".join(lines)
