"""A small synchronous SQL connection shared by the table stores (SQLite and PostgreSQL).

The credential and address stores write their SQL once, with ``?`` placeholders; a
:class:`SqlConnection` runs it on SQLite (stdlib ``sqlite3``) or PostgreSQL (``psycopg`` 3,
imported only when a ``postgresql://`` URL is opened) and turns every driver error into
:class:`~siprouter.storage.location_store.StoreError`.

Reads happen on the event loop's thread, so they must be short: lookups use the primary key,
and a PostgreSQL server that does not answer is given ``connect_timeout`` seconds, once per
``retry_interval``. Between a failure and the next attempt calls fail at once (no blocked loop,
no connection storm), and the first call after ``retry_interval`` reconnects: requests flow again
as soon as the database is back, without a restart.

PostgreSQL tables may live in a ``schema`` (created when missing): the contract tests use a
fresh schema per run and drop it afterwards.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from .db import DbUrl, connect_sqlite, parse_db_url
from .location_store import StoreError

__all__ = ["DuplicateError", "SqlConnection", "check_identifier", "open_sql"]

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")

#: seconds to wait for a PostgreSQL connection (libpq ``connect_timeout``; siprouter default:
#: short, because the event loop waits with it)
CONNECT_TIMEOUT = 2
#: seconds between reconnection attempts after a failure (siprouter default)
RETRY_INTERVAL = 1.0


def check_identifier(name: str, what: str = "table") -> str:
    """``name`` if it is a plain SQL identifier (it is written into SQL text), else ValueError."""
    if not _IDENT_RE.match(name):
        raise ValueError(f"bad {what} name {name!r}: letters, digits and '_' only")
    return name


class SqlConnection:
    """One connection; ``query`` / ``execute`` take SQL with ``?`` placeholders."""

    def __init__(
        self, url: str, *, schema: str | None = None, clock: Callable[[], float] = time.monotonic,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self.url = url
        self.db: DbUrl = parse_db_url(url)
        if self.db.scheme not in ("sqlite", "postgresql"):
            raise ValueError(f"no SQL backend for {url!r} (use sqlite:///FILE or postgresql://...)")
        self.schema = check_identifier(schema, "schema") if schema else None
        self.is_pg = self.db.scheme == "postgresql"
        self._clock = clock
        self._retry_interval = retry_interval
        self._retry_at = 0.0
        self._conn: Any = None
        self._ddl: list[str] = []
        self._sql_cache: dict[str, str] = {}

    # -- names ----------------------------------------------------------------------------------
    def table(self, name: str) -> str:
        """The (schema-qualified) table reference for SQL text."""
        check_identifier(name)
        return f"{self.schema}.{name}" if self.schema else name

    def ensure(self, ddl: str) -> None:
        """Run ``ddl`` (CREATE ... IF NOT EXISTS) now and after every reconnection."""
        if ddl not in self._ddl:
            self._ddl.append(ddl)
            if self._conn is not None:
                self._run_ddl(self._conn, [ddl])
            else:
                self._connect()

    # -- connection -----------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        now = self._clock()
        if now < self._retry_at:
            raise StoreError(f"database {self._safe_url()} unavailable (retrying shortly)")
        try:
            conn = self._open()
            self._run_ddl(conn, self._ddl)
        except StoreError:
            self._retry_at = now + self._retry_interval
            raise
        self._conn = conn
        return conn

    def _open(self) -> Any:
        if not self.is_pg:
            try:
                conn = connect_sqlite(self.db.path)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite database {self.db.path!r}: {exc}") from exc
            return conn
        import psycopg

        d = self.db
        kw: dict[str, Any] = {"host": d.host, "dbname": d.path or "postgres",
                              "connect_timeout": CONNECT_TIMEOUT, "autocommit": True}
        if d.port:
            kw["port"] = d.port
        if d.user:
            kw["user"] = d.user
        if d.password:
            kw["password"] = d.password
        try:
            pg: Any = psycopg.connect(**kw)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self._safe_url()}: {_first_line(exc)}") from exc
        return pg

    def _run_ddl(self, conn: Any, ddls: Sequence[str]) -> None:
        try:
            if self.is_pg and self.schema:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            for ddl in ddls:
                conn.execute(ddl)
        except Exception as exc:
            self._drop(conn)
            raise StoreError(f"cannot create tables in {self._safe_url()}: "
                             f"{_first_line(exc)}") from exc

    def _drop(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # closing a broken connection may fail too
            pass
        if conn is self._conn:
            self._conn = None

    def _sql(self, sql: str) -> str:
        if not self.is_pg:
            return sql
        out = self._sql_cache.get(sql)
        if out is None:
            out = self._sql_cache[sql] = sql.replace("?", "%s")
        return out

    def _safe_url(self) -> str:
        d = self.db
        if not self.is_pg:
            return f"sqlite:///{d.path}"
        return f"postgresql://{d.host}{':' + str(d.port) if d.port else ''}/{d.path}"

    # -- statements -----------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            cur = conn.execute(self._sql(sql), params)
            return list(cur.fetchall())
        except Exception as exc:
            self._failed(conn, exc)
            raise StoreError(f"database {self._safe_url()}: {_first_line(exc)}") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (autocommit); returns the number of rows it changed."""
        conn = self._connect()
        try:
            cur = conn.execute(self._sql(sql), params)
            return int(cur.rowcount)
        except Exception as exc:
            if _is_unique_violation(exc):
                raise DuplicateError(_first_line(exc)) from exc
            self._failed(conn, exc)
            raise StoreError(f"database {self._safe_url()}: {_first_line(exc)}") from exc

    def _failed(self, conn: Any, exc: Exception) -> None:
        # a lost PostgreSQL connection is dropped and reopened by a later call
        if (self.is_pg and getattr(conn, "closed", False)) or _is_connection_error(exc):
            self._drop(conn)
            self._retry_at = self._clock() + self._retry_interval

    def close(self) -> None:
        if self._conn is not None:
            self._drop(self._conn)

    def drop_schema(self) -> None:
        """DROP the schema with everything in it (PostgreSQL; used by tests)."""
        if self.is_pg and self.schema:
            self.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


class DuplicateError(ValueError):
    """A unique / primary key constraint refused a row (the row exists already)."""


def _is_unique_violation(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc)
    return getattr(exc, "sqlstate", None) == "23505"


def _is_connection_error(exc: Exception) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_sql(url: str, *, schema: str | None = None) -> SqlConnection:
    """A :class:`SqlConnection` for ``url`` (``ValueError`` for URLs without an SQL backend)."""
    return SqlConnection(url, schema=schema)

