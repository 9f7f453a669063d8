"""Contract suite for the subscriber and address stores: memory, SQLite and PostgreSQL.

PostgreSQL is the machine's server (``SIPROUTER_TEST_PG``, default
postgresql://root@127.0.0.1:5432/test); each test uses a fresh schema, dropped afterwards.
Unreachable PostgreSQL is a skip outside CI and a failure under CI=true.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from siprouter.storage.addresses import (
    AddressRow,
    AddressStore,
    MemoryAddressStore,
    SqlAddressStore,
    parse_address,
)
from siprouter.storage.credentials import (
    CredentialStore,
    MemoryCredentialStore,
    SqlCredentialStore,
    make_subscriber,
)
from siprouter.storage.location_store import StoreError
from siprouter.storage.sqldb import DuplicateError, SqlConnection

PG_URL = os.environ.get("SIPROUTER_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _pg_conn() -> SqlConnection:
    conn = SqlConnection(PG_URL, schema=f"t_{uuid.uuid4().hex[:12]}")
    try:
        conn.query("SELECT 1")
    except StoreError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable under CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    return conn


Reopen = Callable[[], SqlConnection | None]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Reopen]:
    """A factory of connections to the same database (None for the memory backend)."""
    kind = request.param
    opened: list[SqlConnection] = []
    if kind == "memory":
        yield lambda: None
        return
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'auth.db'}"

        def make() -> SqlConnection:
            c = SqlConnection(url)
            opened.append(c)
            return c
        yield make
    else:
        first = _pg_conn()
        opened.append(first)
        schema = first.schema

        def make_pg() -> SqlConnection:
            c = SqlConnection(PG_URL, schema=schema)
            opened.append(c)
            return c
        yield make_pg
        first.drop_schema()
    for c in opened:
        c.close()


def _creds(backend: Reopen, memory: list[MemoryCredentialStore]) -> CredentialStore:
    conn = backend()
    if conn is None:
        if not memory:
            memory.append(MemoryCredentialStore())
        return memory[0]
    return SqlCredentialStore(conn)


def _addrs(backend: Reopen, memory: list[MemoryAddressStore]) -> AddressStore:
    conn = backend()
    if conn is None:
        if not memory:
            memory.append(MemoryAddressStore())
        return memory[0]
    return SqlAddressStore(conn)


# -- subscribers ----------------------------------------------------------------------------------
def test_subscriber_add_get_list_and_persist(backend: Reopen) -> None:
    mem: list[MemoryCredentialStore] = []
    s = _creds(backend, mem)
    alice = make_subscriber("alice", "example.com", "s3cret")
    s.add(alice)
    s.add(make_subscriber("alice", "other.org", "x"))
    s.add(make_subscriber("bob", "example.com", "pw"))
    assert s.get("alice", "example.com") == alice
    assert s.get("carol", "example.com") is None
    assert s.get("alice", "nowhere.net") is None
    # use_domain off: any domain (the first in order)
    got = s.get("alice", None)
    assert got is not None and got.domain == "example.com"
    again = _creds(backend, mem)  # a second connection sees the rows
    assert [(x.username, x.domain) for x in again.list()] == [
        ("alice", "example.com"), ("bob", "example.com"), ("alice", "other.org")]


def test_subscriber_ha1_as_kamctl_writes_it(backend: Reopen) -> None:
    s = _creds(backend, [])
    s.add(make_subscriber("alice", "example.com", "s3cret"))
    row = s.get("alice", "example.com")
    assert row is not None
    # md5("alice:example.com:s3cret") computed independently with hashlib
    import hashlib

    assert row.ha1 == hashlib.md5(b"alice:example.com:s3cret").hexdigest()
    assert row.ha1b == hashlib.md5(b"alice@example.com:example.com:s3cret").hexdigest()


def test_subscriber_duplicate_is_refused(backend: Reopen) -> None:
    s = _creds(backend, [])
    s.add(make_subscriber("alice", "example.com", "a"))
    with pytest.raises(DuplicateError, match=r"alice@example\.com exists"):
        s.add(make_subscriber("alice", "example.com", "b"))
    row = s.get("alice", "example.com")
    assert row is not None and row.password == "a"


def test_subscriber_passwd_visible_at_once_and_rm(backend: Reopen) -> None:
    mem: list[MemoryCredentialStore] = []
    reader = _creds(backend, mem)
    writer = _creds(backend, mem)
    writer.add(make_subscriber("alice", "example.com", "old"))
    assert reader.get("alice", "example.com") is not None
    assert writer.update(make_subscriber("alice", "example.com", "new"))
    row = reader.get("alice", "example.com")
    assert row is not None and row.password == "new"
    assert not writer.update(make_subscriber("nobody", "example.com", "x"))
    assert writer.remove("alice", "example.com")
    assert not writer.remove("alice", "example.com")
    assert reader.get("alice", "example.com") is None


def test_subscriber_other_table(backend: Reopen) -> None:
    s = _creds(backend, [])
    s.add(make_subscriber("alice", "example.com", "a"), table="subscriber2")
    assert s.get("alice", "example.com") is None
    assert s.get("alice", "example.com", table="subscriber2") is not None
    with pytest.raises(ValueError, match="bad table name"):
        s.get("alice", None, table="x; DROP TABLE subscriber")


def test_subscriber_strange_values_are_data(backend: Reopen) -> None:
    s = _creds(backend, [])
    name = "o'brien\"; --"
    s.add(make_subscriber(name, "example.com", "p'w"))
    row = s.get(name, "example.com")
    assert row is not None and row.password == "p'w"


# -- addresses ------------------------------------------------------------------------------------
def test_address_add_list_remove(backend: Reopen) -> None:
    mem: list[MemoryAddressStore] = []
    s = _addrs(backend, mem)
    s.add(AddressRow(1, "192.0.2.10", 32, 0, "gw1"))
    s.add(AddressRow(1, "10.0.0.0", 8, 5060, None))
    s.add(AddressRow(2, "2001:db8::", 32, 0, "v6"))
    again = _addrs(backend, mem)
    assert again.list() == [
        AddressRow(1, "10.0.0.0", 8, 5060, None),
        AddressRow(1, "192.0.2.10", 32, 0, "gw1"),
        AddressRow(2, "2001:db8::", 32, 0, "v6"),
    ]
    with pytest.raises(DuplicateError):
        s.add(AddressRow(1, "192.0.2.10", 32, 0, "other"))
    assert s.remove(1, "10.0.0.0", 8) == 1
    assert s.remove(1, "10.0.0.0", 8) == 0
    assert s.remove(2, "2001:0db8:0::", 32, port=0) == 1
    assert [r.ip_addr for r in again.list()] == ["192.0.2.10"]


def test_address_bad_rows_refused(backend: Reopen) -> None:
    s = _addrs(backend, [])
    with pytest.raises(ValueError, match="bad IP address"):
        s.add(AddressRow(1, "300.1.1.1", 32))
    with pytest.raises(ValueError, match="host bits"):
        s.add(AddressRow(1, "10.0.0.1", 8))
    with pytest.raises(ValueError, match="bad mask"):
        s.add(AddressRow(1, "10.0.0.0", 33))
    with pytest.raises(ValueError, match="bad port"):
        s.add(AddressRow(1, "10.0.0.1", 32, 70000))
    assert s.list() == []


def test_parse_address() -> None:
    assert parse_address("192.0.2.1") == ("192.0.2.1", 32)
    assert parse_address("10.1.0.0/16") == ("10.1.0.0", 16)
    assert parse_address("[::1]") == ("::1", 128)
    assert parse_address("2001:DB8::/32") == ("2001:db8::", 32)
    for bad in ("", "abc", "1.2.3.4/x", "1.2.3.4/40", "1.2.3.4/24"):
        with pytest.raises(ValueError):
            parse_address(bad)


# -- database down ---------------------------------------------------------------------------------
def test_pg_down_is_store_error_then_recovers() -> None:
    t = [100.0]
    conn = SqlConnection("postgresql://root@127.0.0.1:1/test", clock=lambda: t[0])
    with pytest.raises(StoreError, match="cannot connect"):
        conn.query("SELECT 1")
    # within the retry interval: fails at once, no new connection attempt
    with pytest.raises(StoreError, match="retrying shortly"):
        conn.query("SELECT 1")
    # the database comes back (here: the URL points at the real one) after the interval
    conn.db = SqlConnection(PG_URL).db
    t[0] += 1.5
    try:
        assert conn.query("SELECT 1") == [(1,)]
    except StoreError as exc:
        if IN_CI:
            raise
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    finally:
        conn.close()
