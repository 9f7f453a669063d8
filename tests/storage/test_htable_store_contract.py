"""Contract of the htable stores, run against every backend (memory, SQLite, PostgreSQL).

PostgreSQL: the machine's server at 127.0.0.1:5432, database ``test`` (trust authentication);
its cases are skipped when it cannot be reached (and fail under CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from siprouter.storage.htable_store import (
    HtableStore,
    MemoryHtableStore,
    PostgresHtableStore,
    SqliteHtableStore,
    check_table_name,
    open_htable_store,
)
from siprouter.storage.location_store import StoreError

PG_URL = os.environ.get("SIPROUTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HtableStore]:
    kind = request.param
    s: HtableStore
    if kind == "memory":
        s = MemoryHtableStore()
    elif kind == "sqlite":
        s = SqliteHtableStore(str(tmp_path / "ht.sqlite"))
    else:
        try:
            s = PostgresHtableStore(PG_URL)
        except StoreError as e:
            if IN_CI:
                pytest.fail(f"PostgreSQL required under CI: {e}")
            pytest.skip(f"PostgreSQL not reachable: {e}")
    try:
        yield s
    finally:
        if isinstance(s, PostgresHtableStore):
            for t in _made:
                s.conn.execute(f"DROP TABLE IF EXISTS {t}")
            _made.clear()
        s.close()


_made: list[str] = []


def table() -> str:
    name = f"ht_{uuid.uuid4().hex[:12]}"
    _made.append(name)
    return name


def test_absent_table_is_empty(store: HtableStore) -> None:
    assert store.load(table(), 100.0) == []


def test_replace_then_load_round_trips_types(store: HtableStore) -> None:
    t = table()
    store.replace(t, [("a", 1, 0.0), ("b", "text;with,chars", 0.0), ("n", -5, 500.0)])
    got = sorted(store.load(t, 100.0))
    assert got == [("a", 1, 0.0), ("b", "text;with,chars", 0.0), ("n", -5, 500.0)]
    assert isinstance(dict((k, v) for k, v, _ in got)["a"], int)


def test_replace_is_whole_and_expired_rows_are_not_loaded(store: HtableStore) -> None:
    t = table()
    store.replace(t, [("a", 1, 0.0), ("b", 2, 150.0)])
    store.replace(t, [("c", "x", 0.0), ("d", "y", 120.0)])
    assert sorted(k for k, _, _ in store.load(t, 100.0)) == ["c", "d"]
    assert [k for k, _, _ in store.load(t, 130.0)] == ["c"]
    store.replace(t, [])
    assert store.load(t, 100.0) == []


def test_tables_are_separate(store: HtableStore) -> None:
    t1, t2 = table(), table()
    store.replace(t1, [("k", 1, 0.0)])
    store.replace(t2, [("k", 2, 0.0)])
    assert store.load(t1, 0.0) == [("k", 1, 0.0)]
    assert store.load(t2, 0.0) == [("k", 2, 0.0)]


def test_bad_table_names_and_urls() -> None:
    with pytest.raises(ValueError):
        check_table_name("x; DROP TABLE y")
    with pytest.raises(ValueError):
        open_htable_store("redis://127.0.0.1/0")
    assert isinstance(open_htable_store("memory://"), MemoryHtableStore)


def test_sqlite_store_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "ht.sqlite")
    s = SqliteHtableStore(path)
    s.replace("ipban", [("1.2.3.4", 1, 0.0)])
    s.close()
    s2 = open_htable_store(f"sqlite:///{path}")
    assert s2.load("ipban", 0.0) == [("1.2.3.4", 1, 0.0)]
    s2.close()


def test_unreachable_postgres_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        PostgresHtableStore("postgresql://postgres@127.0.0.1:1/test")
