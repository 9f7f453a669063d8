"""SQLite storage backends (stdlib ``sqlite3``): the embedded default.

Location table (Kamailio's usrloc ``location`` table, trimmed to what siprouter stores)::

    location(aor, contact, expires, q, call_id, cseq, received, path, user_agent, socket,
             flags, cflags, instance, reg_id, last_modified)   PRIMARY KEY (aor, contact)

The primary key is the index on ``aor``: its b-tree is ordered by ``aor`` first, so every
"rows of this AoR" query uses it, and a second index on ``aor`` alone would only double the cost of
each write. The table is ``WITHOUT ROWID`` so that key *is* the table (one b-tree, not two).

Writes: one transaction per :meth:`SqliteLocationStore.apply` (one per REGISTER); the SQL texts
are constants, so ``sqlite3``'s statement cache keeps them prepared and each write only binds
values.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from siprouter.storage.db import connect_sqlite
from siprouter.storage.location_store import Binding, StoreError

__all__ = ["SqliteLocationStore"]

_COLUMNS = (
    "aor, contact, expires, q, call_id, cseq, received, path, user_agent, socket, "
    "flags, cflags, instance, reg_id, last_modified"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS location (
    aor           TEXT    NOT NULL,
    contact       TEXT    NOT NULL,
    expires       REAL    NOT NULL,
    q             REAL    NOT NULL DEFAULT 1.0,
    call_id       TEXT    NOT NULL DEFAULT '',
    cseq          INTEGER NOT NULL DEFAULT 0,
    received      TEXT,
    path          TEXT    NOT NULL DEFAULT '',
    user_agent    TEXT    NOT NULL DEFAULT '',
    socket        TEXT,
    flags         INTEGER NOT NULL DEFAULT 0,
    cflags        INTEGER NOT NULL DEFAULT 0,
    instance      TEXT,
    reg_id        INTEGER NOT NULL DEFAULT 0,
    last_modified REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (aor, contact)
) WITHOUT ROWID
"""

_UPSERT = f"INSERT OR REPLACE INTO location ({_COLUMNS}) VALUES ({', '.join('?' * 15)})"
_DELETE = "DELETE FROM location WHERE aor = ? AND contact = ?"
_DELETE_EXPIRED = "DELETE FROM location WHERE expires <= ?"
_SELECT_ALL = f"SELECT {_COLUMNS} FROM location"

_SYNCHRONOUS_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})


class SqliteLocationStore:
    """A :class:`~siprouter.storage.location_store.LocationStore` in an SQLite file.

    ``path`` is a file name or ``":memory:"``. ``synchronous`` is SQLite's ``PRAGMA synchronous``;
    the default ``NORMAL`` is explained below. Use the store from one thread (the event loop's).
    """

    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000):
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS_MODES:
            raise ValueError(f"bad SQLite synchronous mode {synchronous!r}")
        self.path = path
        try:
            # isolation_level=None: no implicit transactions; apply() opens its own, so one
            # REGISTER is exactly one BEGIN ... COMMIT.
            # WAL (see connect_sqlite): a commit appends to the -wal file instead of rewriting
            # pages in place, and a crash in the middle of a commit leaves the database at the
            # previous commit.
            # synchronous=NORMAL in WAL mode: COMMIT returns once the transaction's frames have
            # been write()n to the -wal file -- they are in the operating system's page cache,
            # which the kernel flushes to disk even if this process is killed or crashes the
            # very next instant. So a binding acknowledged with 200 survives a process crash or a
            # restart. fsync happens only at checkpoints; what NORMAL gives up is the last
            # transactions before an OS crash or power loss (never consistency). FULL would fsync
            # on every REGISTER; choose it where power-loss durability is worth that cost.
            self._db = connect_sqlite(path, busy_timeout_ms=busy_timeout_ms, synchronous=mode)
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite location store {path!r}: {exc}") from exc

    def load_all(self, now: float) -> list[Binding]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(_DELETE_EXPIRED, (now,))
                rows = db.execute(_SELECT_ALL).fetchall()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot load location table: {exc}") from exc
        return [Binding.from_row(row) for row in rows]

    def apply(self, upserts: Sequence[Binding], deletes: Sequence[Binding]) -> None:
        if not upserts and not deletes:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if deletes:
                    db.executemany(_DELETE, [(b.aor, b.contact) for b in deletes])
                if upserts:
                    db.executemany(_UPSERT, [b.to_row() for b in upserts])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write location table: {exc}") from exc

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot close SQLite location store: {exc}") from exc
