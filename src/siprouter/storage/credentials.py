"""Subscriber credentials (Kamailio's ``subscriber`` table) for digest authentication.

Table (Kamailio's columns, without the ``id`` surrogate)::

    subscriber(username, domain, password, ha1, ha1b)   PRIMARY KEY (username, domain)

``ha1`` is MD5(username:domain:password) and ``ha1b`` MD5(username@domain:domain:password), as
``kamctl add`` writes them; ``password`` is the plain password (needed by ``calculate_ha1`` and by
algorithms other than MD5). :meth:`CredentialStore.get` is one primary-key read, made on every
authentication: nothing is cached, so a ``siprouter subscriber passwd`` takes effect at the next
request. ``get(user, None)`` finds the user in any domain (auth_db ``use_domain`` off).

Backends: memory (tests), SQLite, PostgreSQL -- the last two through
:class:`~siprouter.storage.sqldb.SqlConnection`. Errors of the database are
:class:`~siprouter.storage.location_store.StoreError`; adding a subscriber that exists is a
:class:`~siprouter.storage.sqldb.DuplicateError` (a ValueError).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ..sip.digest import ha1 as digest_ha1
from .sqldb import DuplicateError, SqlConnection, check_identifier

__all__ = [
    "CredentialStore",
    "MemoryCredentialStore",
    "SqlCredentialStore",
    "Subscriber",
    "make_subscriber",
    "open_credential_store",
]

DEFAULT_TABLE = "subscriber"


class Subscriber(NamedTuple):
    username: str
    domain: str
    password: str
    ha1: str
    ha1b: str


def make_subscriber(username: str, domain: str, password: str) -> Subscriber:
    """A row with ``ha1`` / ``ha1b`` computed as ``kamctl add`` does (MD5)."""
    return Subscriber(
        username, domain, password,
        digest_ha1(username, domain, password),
        digest_ha1(f"{username}@{domain}", domain, password),
    )


class CredentialStore(Protocol):
    def get(self, username: str, domain: str | None, table: str = DEFAULT_TABLE
            ) -> Subscriber | None: ...
    def add(self, sub: Subscriber, table: str = DEFAULT_TABLE) -> None: ...
    def update(self, sub: Subscriber, table: str = DEFAULT_TABLE) -> bool: ...
    def remove(self, username: str, domain: str, table: str = DEFAULT_TABLE) -> bool: ...
    def list(self, table: str = DEFAULT_TABLE) -> list[Subscriber]: ...
    def close(self) -> None: ...


class MemoryCredentialStore:
    """In process memory (tests, examples)."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[tuple[str, str], Subscriber]] = {}

    def _t(self, table: str) -> dict[tuple[str, str], Subscriber]:
        return self._tables.setdefault(check_identifier(table), {})

    def get(self, username: str, domain: str | None, table: str = DEFAULT_TABLE
            ) -> Subscriber | None:
        t = self._t(table)
        if domain is not None:
            return t.get((username, domain))
        for (u, _d), sub in sorted(t.items()):
            if u == username:
                return sub
        return None

    def add(self, sub: Subscriber, table: str = DEFAULT_TABLE) -> None:
        t = self._t(table)
        key = (sub.username, sub.domain)
        if key in t:
            raise DuplicateError(f"{sub.username}@{sub.domain} exists")
        t[key] = sub

    def update(self, sub: Subscriber, table: str = DEFAULT_TABLE) -> bool:
        t = self._t(table)
        key = (sub.username, sub.domain)
        if key not in t:
            return False
        t[key] = sub
        return True

    def remove(self, username: str, domain: str, table: str = DEFAULT_TABLE) -> bool:
        return self._t(table).pop((username, domain), None) is not None

    def list(self, table: str = DEFAULT_TABLE) -> list[Subscriber]:
        return sorted(self._t(table).values(), key=lambda s: (s.domain, s.username))

    def close(self) -> None:
        pass


_DDL = """CREATE TABLE IF NOT EXISTS {t} (
    username VARCHAR(64)  NOT NULL,
    domain   VARCHAR(190) NOT NULL DEFAULT '',
    password VARCHAR(64)  NOT NULL DEFAULT '',
    ha1      VARCHAR(128) NOT NULL DEFAULT '',
    ha1b     VARCHAR(128) NOT NULL DEFAULT '',
    PRIMARY KEY (username, domain)
)"""

_COLS = "username, domain, password, ha1, ha1b"


class SqlCredentialStore:
    """The subscriber table in SQLite or PostgreSQL (tables are created when first used)."""

    def __init__(self, conn: SqlConnection) -> None:
        self.conn = conn
        self._sql: dict[tuple[str, str], str] = {}

    def _q(self, kind: str, table: str) -> str:
        key = (kind, table)
        sql = self._sql.get(key)
        if sql is None:
            t = self.conn.table(table)
            self.conn.ensure(_DDL.format(t=t))
            sql = {
                "get": f"SELECT {_COLS} FROM {t} WHERE username = ? AND domain = ?",
                "get_any": f"SELECT {_COLS} FROM {t} WHERE username = ? "
                           "ORDER BY domain LIMIT 1",
                "add": f"INSERT INTO {t} ({_COLS}) VALUES (?, ?, ?, ?, ?)",
                "update": f"UPDATE {t} SET password = ?, ha1 = ?, ha1b = ? "
                          "WHERE username = ? AND domain = ?",
                "remove": f"DELETE FROM {t} WHERE username = ? AND domain = ?",
                "list": f"SELECT {_COLS} FROM {t} ORDER BY domain, username",
            }[kind]
            self._sql[key] = sql
        return sql

    def get(self, username: str, domain: str | None, table: str = DEFAULT_TABLE
            ) -> Subscriber | None:
        if domain is None:
            rows = self.conn.query(self._q("get_any", table), (username,))
        else:
            rows = self.conn.query(self._q("get", table), (username, domain))
        return Subscriber(*rows[0]) if rows else None

    def add(self, sub: Subscriber, table: str = DEFAULT_TABLE) -> None:
        try:
            self.conn.execute(self._q("add", table), tuple(sub))
        except DuplicateError:
            raise DuplicateError(f"{sub.username}@{sub.domain} exists") from None

    def update(self, sub: Subscriber, table: str = DEFAULT_TABLE) -> bool:
        n = self.conn.execute(self._q("update", table),
                              (sub.password, sub.ha1, sub.ha1b, sub.username, sub.domain))
        return n > 0

    def remove(self, username: str, domain: str, table: str = DEFAULT_TABLE) -> bool:
        return self.conn.execute(self._q("remove", table), (username, domain)) > 0

    def list(self, table: str = DEFAULT_TABLE) -> list[Subscriber]:
        return [Subscriber(*r) for r in self.conn.query(self._q("list", table))]

    def close(self) -> None:
        self.conn.close()


def open_credential_store(url: str, *, schema: str | None = None) -> CredentialStore:
    """The credential backend a database URL names (memory://, sqlite:///..., postgresql://...)."""
    if url.lower().startswith("memory://"):
        return MemoryCredentialStore()
    return SqlCredentialStore(SqlConnection(url, schema=schema))
