"""Database URLs: one string in the configuration names a backend and where it lives.

Accepted forms (the SQLite ones follow SQLAlchemy's convention, which operators already know)::

    memory://                         in-process only, lost at exit (tests)
    sqlite:///relative/file.db        three slashes: a path relative to the working directory
    sqlite:////var/lib/siprouter.db   four slashes: an absolute path
    sqlite:///:memory:                an SQLite database in memory
    postgresql://user:pass@host:5432/dbname    (parsed; no backend yet)
    redis://host:6379/0                        (parsed; no backend yet)
"""

from __future__ import annotations

import sqlite3
import time
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from siprouter.storage.location_store import LocationStore

__all__ = ["DbUrl", "connect_sqlite", "open_location_store", "parse_db_url"]

_SCHEMES = frozenset({"memory", "sqlite", "postgresql", "postgres", "redis"})


class DbUrl(NamedTuple):
    scheme: str            # 'memory' | 'sqlite' | 'postgresql' | 'redis'
    path: str              # sqlite: file name or ':memory:'; others: database name / number
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None


def parse_db_url(url: str) -> DbUrl:
    """Split a database URL; ``ValueError`` for an unknown scheme or a malformed URL."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _SCHEMES:
        raise ValueError(f"unsupported database URL {url!r} (expected memory://, sqlite:///..., "
                         "postgresql://..., redis://...)")
    if scheme == "memory":
        return DbUrl("memory", "")
    if scheme == "sqlite":
        # 'sqlite://' + '/' + path: the third slash ends the (empty) host part.
        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError(f"bad SQLite URL {url!r}: use sqlite:///file.db or sqlite:///:memory:")
        return DbUrl("sqlite", unquote(rest[1:]))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad database URL {url!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"bad database URL {url!r}: no host")
    return DbUrl(
        "postgresql" if scheme == "postgres" else scheme,
        unquote(parts.path.lstrip("/")),
        parts.hostname,
        port,
        unquote(parts.username) if parts.username is not None else None,
        unquote(parts.password) if parts.password is not None else None,
    )


def open_location_store(url: str) -> LocationStore:
    """Open the location backend a URL names (``ValueError`` if there is none for it)."""
    db = parse_db_url(url)
    if db.scheme == "memory":
        from siprouter.storage.memory import MemoryLocationStore

        return MemoryLocationStore()
    if db.scheme == "sqlite":
        from siprouter.storage.sqlite import SqliteLocationStore

        return SqliteLocationStore(db.path)
    raise ValueError(f"no {db.scheme} location backend yet (URL {url!r})")


def connect_sqlite(
    path: str, *, busy_timeout_ms: int = 5000, synchronous: str | None = None,
) -> sqlite3.Connection:
    """One SQLite connection the way every siprouter store wants it (raises sqlite3.Error).

    The busy timeout is in force from the first statement: several worker processes open the
    same file at start, and switching it to WAL takes a write lock, so without the timeout set
    first one of them fails with "database is locked". WAL lets readers (another worker, the
    CLI) work while one process writes. ``isolation_level=None``: callers open their own
    transactions.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    if path != ":memory:":
        # Switching a new file to WAL while other processes do the same can fail at once with
        # "database is locked" (SQLite does not call the busy handler for that lock), so it is
        # retried within the busy timeout. Once one process has switched, the file stays WAL.
        deadline = time.monotonic() + busy_timeout_ms / 1000
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn

