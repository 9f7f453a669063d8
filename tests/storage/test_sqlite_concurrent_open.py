"""Worker processes open one SQLite file at the same moment at start: none may fail with
"database is locked" (switching to WAL takes a write lock; the busy timeout must already apply)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from siprouter.storage.sqlite import SqliteLocationStore


def _open_and_load(path: str, start: mp.synchronize.Event, q: mp.Queue[str]) -> None:
    start.wait(10)
    try:
        store = SqliteLocationStore(path)
        store.load_all(0.0)
        store.close()
        q.put("ok")
    except Exception as e:  # reported to the test
        q.put(f"{type(e).__name__}: {e}")


def test_many_processes_open_the_same_file_at_once(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    path = str(tmp_path / "loc.sqlite")
    start = ctx.Event()
    q: mp.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_open_and_load, args=(path, start, q)) for _ in range(8)]
    for p in procs:
        p.start()
    start.set()
    results = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    assert results == ["ok"] * 8
