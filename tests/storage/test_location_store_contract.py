"""Contract suite for every LocationStore backend (memory, SQLite file, SQLite in memory)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from siprouter.storage.db import open_location_store, parse_db_url
from siprouter.storage.location_store import Binding, LocationStore, StoreError
from siprouter.storage.memory import MemoryLocationStore
from siprouter.storage.sqlite import SqliteLocationStore

T0 = 1_700_000_000.0

Factory = Callable[[], LocationStore]


def _memory(tmp_path: Path) -> Factory:
    store = MemoryLocationStore()
    return lambda: store  # a memory store "reopens" as itself


def _sqlite_file(tmp_path: Path) -> Factory:
    path = str(tmp_path / "loc.db")
    return lambda: SqliteLocationStore(path)


def _sqlite_url(tmp_path: Path) -> Factory:
    url = f"sqlite:///{tmp_path / 'url.db'}"
    return lambda: open_location_store(url)


@pytest.fixture(params=[_memory, _sqlite_file, _sqlite_url], ids=["memory", "sqlite", "sqlite-url"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[LocationStore] = []
    make: Factory = request.param(tmp_path)

    def factory() -> LocationStore:
        s = make()
        opened.append(s)
        return s

    yield factory
    for s in opened:
        s.close()


def full_binding(**kw: object) -> Binding:
    b = Binding(
        "alice@example.com", "sip:alice@192.0.2.10:5060;transport=tcp", T0 + 3600,
        q=0.5, call_id="c1@host", cseq=7, received="udp:198.51.100.7:40000",
        path=["<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr;received=\"x,y\">"],
        user_agent="Phone/1.0", socket="udp:203.0.113.1:5060", flags=3, cflags=64,
        instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", reg_id=1,
        last_modified=T0,
    )
    return b.copy(**kw) if kw else b


def test_round_trip_keeps_every_field(reopen: Factory) -> None:
    s = reopen()
    b = full_binding()
    s.apply([b], [])
    loaded = reopen().load_all(T0)
    assert loaded == [b]
    got = loaded[0]
    assert got is not b
    assert got.path == b.path and got.instance == b.instance and got.reg_id == 1
    assert got.received == "udp:198.51.100.7:40000" and got.socket == "udp:203.0.113.1:5060"


def test_none_fields_round_trip(reopen: Factory) -> None:
    s = reopen()
    b = Binding("bob", "sip:bob@10.0.0.1", T0 + 60, q=None)
    s.apply([b], [])
    [got] = reopen().load_all(T0)
    assert got.received is None and got.socket is None and got.instance is None
    assert got.path == [] and got.q == 1.0


def test_upsert_replaces_same_aor_and_contact(reopen: Factory) -> None:
    s = reopen()
    s.apply([full_binding()], [])
    s.apply([full_binding(cseq=8, expires=T0 + 100)], [])
    [got] = reopen().load_all(T0)
    assert got.cseq == 8 and got.expires == T0 + 100


def test_delete_and_insert_in_one_apply(reopen: Factory) -> None:
    s = reopen()
    old = full_binding()
    s.apply([old], [])
    new = full_binding(contact="sip:alice@192.0.2.99:5060")
    s.apply([new], [old])
    assert [b.contact for b in reopen().load_all(T0)] == ["sip:alice@192.0.2.99:5060"]


def test_delete_missing_row_is_harmless(reopen: Factory) -> None:
    s = reopen()
    s.apply([], [full_binding()])
    assert reopen().load_all(T0) == []


def test_load_all_drops_expired_rows(reopen: Factory) -> None:
    s = reopen()
    live = full_binding(contact="sip:a@1.1.1.1", expires=T0 + 10)
    dead = full_binding(contact="sip:a@2.2.2.2", expires=T0 - 1)
    edge = full_binding(contact="sip:a@3.3.3.3", expires=T0)  # expires == now: expired
    s.apply([live, dead, edge], [])
    assert [b.contact for b in reopen().load_all(T0)] == ["sip:a@1.1.1.1"]
    # the expired rows are gone for good, even when loading with an earlier clock
    assert [b.contact for b in reopen().load_all(T0 - 100)] == ["sip:a@1.1.1.1"]


def test_many_aors(reopen: Factory) -> None:
    s = reopen()
    s.apply([full_binding(aor=f"u{i}@example.com") for i in range(500)], [])
    loaded = reopen().load_all(T0)
    assert len(loaded) == 500
    assert {b.aor for b in loaded} == {f"u{i}@example.com" for i in range(500)}


def test_is_a_location_store(reopen: Factory) -> None:
    assert isinstance(reopen(), LocationStore)


# -- backend specifics -----------------------------------------------------------------------------


def test_sqlite_uses_wal_and_normal_sync(tmp_path: Path) -> None:
    s = SqliteLocationStore(str(tmp_path / "w.db"))
    try:
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        s.close()


def test_sqlite_commit_visible_to_other_connection_without_close(tmp_path: Path) -> None:
    # What a crash leaves behind: the writer never closes, another process opens the file.
    path = tmp_path / "crash.db"
    s = SqliteLocationStore(str(path))
    s.apply([full_binding()], [])
    other = sqlite3.connect(path)
    try:
        rows = other.execute("SELECT aor, contact, cseq FROM location").fetchall()
    finally:
        other.close()
    assert rows == [("alice@example.com", "sip:alice@192.0.2.10:5060;transport=tcp", 7)]
    s.close()


def test_sqlite_failed_apply_changes_nothing(tmp_path: Path) -> None:
    s = SqliteLocationStore(str(tmp_path / "f.db"))
    s.apply([full_binding(contact="sip:keep@1.1.1.1")], [])
    bad = full_binding(contact="sip:bad@1.1.1.1")
    s._db.execute("CREATE TRIGGER t BEFORE INSERT ON location "
                  "WHEN NEW.contact = 'sip:bad@1.1.1.1' BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(StoreError):
        s.apply([full_binding(contact="sip:new@1.1.1.1"), bad],
                [full_binding(contact="sip:keep@1.1.1.1")])
    assert [b.contact for b in s.load_all(T0)] == ["sip:keep@1.1.1.1"]
    s.close()


def test_sqlite_bad_synchronous_mode() -> None:
    with pytest.raises(ValueError):
        SqliteLocationStore(":memory:", synchronous="sometimes")


def test_sqlite_unopenable_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SqliteLocationStore(str(tmp_path / "no" / "such" / "dir" / "x.db"))


def test_memory_store_closed() -> None:
    s = MemoryLocationStore()
    s.close()
    with pytest.raises(ValueError):
        s.load_all(T0)


def test_from_row_rejects_bad_rows() -> None:
    with pytest.raises(ValueError):
        Binding.from_row(("a", "b"))
    row = list(full_binding().to_row())
    row[5] = "seven"
    with pytest.raises(ValueError):
        Binding.from_row(row)


# -- URLs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "path"),
    [
        ("sqlite:///loc.db", "sqlite", "loc.db"),
        ("sqlite:////var/lib/siprouter/loc.db", "sqlite", "/var/lib/siprouter/loc.db"),
        ("sqlite:///:memory:", "sqlite", ":memory:"),
        ("memory://", "memory", ""),
        ("SQLITE:///a%20b.db", "sqlite", "a b.db"),
    ],
)
def test_parse_db_url(url: str, scheme: str, path: str) -> None:
    u = parse_db_url(url)
    assert (u.scheme, u.path) == (scheme, path)


def test_parse_postgres_url() -> None:
    u = parse_db_url("postgresql://sip:s%40cret@db.example.com:5433/siprouter")
    assert u == ("postgresql", "siprouter", "db.example.com", 5433, "sip", "s@cret")
    assert parse_db_url("postgres://h/x").scheme == "postgresql"


@pytest.mark.parametrize(
    "url", ["", "sqlite:", "sqlite://", "mysql://h/db", "postgresql:///nohost", "redis://h:x/0",
            "file.db"],
)
def test_bad_db_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_db_url(url)


def test_open_memory_and_unsupported() -> None:
    assert isinstance(open_location_store("memory://"), MemoryLocationStore)
    s = open_location_store("sqlite:///:memory:")
    assert isinstance(s, SqliteLocationStore)
    s.close()
    with pytest.raises(ValueError):
        open_location_store("postgresql://h/db")
