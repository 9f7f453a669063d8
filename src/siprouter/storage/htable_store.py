"""Persistence of htable tables: an item list per table, loaded at start, written back at stop.

Kamailio's htable loads a table from its ``dbtable`` when the server starts and, with
``dbmode=1``, writes the whole table back when the server stops. The rows follow Kamailio's
``htable`` schema (``key_name``, ``key_type``, ``value_type``, ``key_value``, ``expires``) so
an operator recognises them; ``value_type`` 0 is a string, 1 an integer; ``expires`` is the
absolute Unix time an item expires, 0 for never.

Backends: :class:`MemoryHtableStore`, :class:`SqliteHtableStore` (stdlib ``sqlite3``) and
:class:`PostgresHtableStore` (psycopg 3). ``open_htable_store(url)`` picks one from a database
URL (see :mod:`siprouter.storage.db`). Every backend method raises :class:`StoreError` when the
database fails.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from typing import Any, Protocol

from .db import connect_sqlite, parse_db_url
from .location_store import StoreError

__all__ = [
    "HtableItem",
    "HtableStore",
    "MemoryHtableStore",
    "PostgresHtableStore",
    "SqliteHtableStore",
    "open_htable_store",
]

#: (key, value, expires): value str or int; expires absolute Unix seconds, 0 = never
HtableItem = tuple[str, "str | int", float]

# Table names come from the configuration and are written into SQL: keep them identifiers.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_table_name(name: str) -> str:
    """``name`` if it is a plain SQL identifier, else ValueError."""
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(f"bad database table name {name!r} (letters, digits, _)")
    return name


class HtableStore(Protocol):
    def load(self, table: str, now: float) -> list[HtableItem]:
        """The unexpired items of ``table`` (an absent table has none)."""

    def replace(self, table: str, items: Iterable[HtableItem]) -> None:
        """Make ``table`` hold exactly ``items`` (one transaction)."""

    def close(self) -> None: ...


def _row(item: HtableItem) -> tuple[str, int, int, str, int]:
    key, value, expires = item
    if isinstance(value, int):
        return key, 0, 1, str(value), int(expires)
    return key, 0, 0, value, int(expires)


def _item(key: str, value_type: int, value: str, expires: float) -> HtableItem | None:
    if int(value_type) == 1:
        try:
            return key, int(value), float(expires)
        except ValueError:
            return None
    return key, value, float(expires)


class MemoryHtableStore:
    """Process memory only (tests; lost at exit)."""

    def __init__(self) -> None:
        self.tables: dict[str, list[HtableItem]] = {}

    def load(self, table: str, now: float) -> list[HtableItem]:
        return [it for it in self.tables.get(table, []) if not it[2] or it[2] > now]

    def replace(self, table: str, items: Iterable[HtableItem]) -> None:
        self.tables[table] = list(items)

    def close(self) -> None:
        pass


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (
    key_name   TEXT    NOT NULL PRIMARY KEY,
    key_type   INTEGER NOT NULL DEFAULT 0,
    value_type INTEGER NOT NULL DEFAULT 0,
    key_value  TEXT    NOT NULL DEFAULT '',
    expires    INTEGER NOT NULL DEFAULT 0
)
"""


class SqliteHtableStore:
    """SQLite file (the embedded default); one SQL table per htable."""

    def __init__(self, path: str) -> None:
        try:
            self.conn = connect_sqlite(path)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open SQLite database {path!r}: {e}") from e
        self._made: set[str] = set()

    def _ensure(self, table: str) -> None:
        if table not in self._made:
            self.conn.execute(_SQLITE_SCHEMA.format(t=check_table_name(table)))
            self._made.add(table)

    def load(self, table: str, now: float) -> list[HtableItem]:
        try:
            self._ensure(table)
            rows = self.conn.execute(
                f"SELECT key_name, value_type, key_value, expires FROM {table}"
            ).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"cannot load htable {table!r}: {e}") from e
        out: list[HtableItem] = []
        for key, vtype, value, expires in rows:
            if expires and expires <= now:
                continue
            it = _item(str(key), int(vtype), str(value), float(expires))
            if it is not None:
                out.append(it)
        return out

    def replace(self, table: str, items: Iterable[HtableItem]) -> None:
        rows = [_row(it) for it in items]
        try:
            self._ensure(table)
            self.conn.execute("BEGIN")
            try:
                self.conn.execute(f"DELETE FROM {table}")
                self.conn.executemany(
                    f"INSERT INTO {table} (key_name, key_type, value_type, key_value, expires)"
                    " VALUES (?, ?, ?, ?, ?)", rows)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreError(f"cannot write htable {table!r}: {e}") from e

    def close(self) -> None:
        self.conn.close()


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (
    key_name   TEXT    NOT NULL PRIMARY KEY,
    key_type   INTEGER NOT NULL DEFAULT 0,
    value_type INTEGER NOT NULL DEFAULT 0,
    key_value  TEXT    NOT NULL DEFAULT '',
    expires    BIGINT  NOT NULL DEFAULT 0
)
"""


class PostgresHtableStore:
    """PostgreSQL through psycopg 3 (a connection string or a ``postgresql://`` URL)."""

    def __init__(self, conninfo: str) -> None:
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - the dependency is installed
            raise StoreError("PostgreSQL needs the psycopg package") from e
        self._psycopg: Any = psycopg
        try:
            self.conn: Any = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL: {e}") from e
        self._made: set[str] = set()

    def _ensure(self, table: str) -> None:
        if table not in self._made:
            self.conn.execute(_PG_SCHEMA.format(t=check_table_name(table)))
            self._made.add(table)

    def load(self, table: str, now: float) -> list[HtableItem]:
        try:
            self._ensure(table)
            rows = self.conn.execute(
                f"SELECT key_name, value_type, key_value, expires FROM {table}"
            ).fetchall()
        except self._psycopg.Error as e:
            raise StoreError(f"cannot load htable {table!r}: {e}") from e
        out: list[HtableItem] = []
        for key, vtype, value, expires in rows:
            if expires and expires <= now:
                continue
            it = _item(str(key), int(vtype), str(value), float(expires))
            if it is not None:
                out.append(it)
        return out

    def replace(self, table: str, items: Iterable[HtableItem]) -> None:
        rows = [_row(it) for it in items]
        try:
            self._ensure(table)
            with self.conn.transaction():
                self.conn.execute(f"DELETE FROM {table}")
                with self.conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {table} (key_name, key_type, value_type, key_value,"
                        " expires) VALUES (%s, %s, %s, %s, %s)", rows)
        except self._psycopg.Error as e:
            raise StoreError(f"cannot write htable {table!r}: {e}") from e

    def close(self) -> None:
        self.conn.close()


def open_htable_store(url: str) -> HtableStore:
    """The htable backend a database URL names (ValueError for an unusable URL)."""
    db = parse_db_url(url)
    if db.scheme == "memory":
        return MemoryHtableStore()
    if db.scheme == "sqlite":
        return SqliteHtableStore(db.path)
    if db.scheme == "postgresql":
        return PostgresHtableStore(url)
    raise ValueError(f"no {db.scheme} htable backend (URL {url!r})")
