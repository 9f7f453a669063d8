"""Trusted addresses (Kamailio permissions' ``address`` table).

Table (Kamailio's columns, without the ``id`` surrogate)::

    address(grp, ip_addr, mask, port, tag)   PRIMARY KEY (grp, ip_addr, mask, port)

``ip_addr`` is an IPv4 or IPv6 literal (stored normalized: the network address of the subnet),
``mask`` the prefix length (32 / 128 for one host), ``port`` 0 for any port, ``tag`` free text
(``$avp(peer_tag)`` in Kamailio) or None. The permissions module loads the whole table into
memory (:meth:`AddressStore.list`) at start and on reload; the command line writes it.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple, Protocol

from .sqldb import DuplicateError, SqlConnection

__all__ = [
    "AddressRow",
    "AddressStore",
    "MemoryAddressStore",
    "SqlAddressStore",
    "open_address_store",
    "parse_address",
]

TABLE = "address"


class AddressRow(NamedTuple):
    grp: int
    ip_addr: str
    mask: int
    port: int = 0
    tag: str | None = None


def parse_address(text: str, mask: int | None = None) -> tuple[str, int]:
    """``"10.0.0.0/8"`` / ``"192.0.2.7"`` / ``"2001:db8::/32"`` -> (network address, prefix).

    ValueError for a bad address or mask, and for host bits set under the mask
    ("10.0.0.1/8"), which usually means a typo.
    """
    addr, sep, m = text.strip().partition("/")
    if sep:
        if mask is not None:
            raise ValueError(f"bad address {text!r}: mask given twice")
        if not m.isdigit():
            raise ValueError(f"bad address {text!r}: the mask must be a prefix length")
        mask = int(m)
    try:
        ip = ipaddress.ip_address(addr.strip("[]"))
    except ValueError:
        raise ValueError(f"bad IP address {addr!r}") from None
    if mask is None:
        mask = ip.max_prefixlen
    if not 0 <= mask <= ip.max_prefixlen:
        raise ValueError(f"bad mask /{mask} for {ip} (0..{ip.max_prefixlen})")
    try:
        net = ipaddress.ip_network(f"{ip}/{mask}", strict=True)
    except ValueError:
        raise ValueError(f"bad subnet {text!r}: host bits set under the mask /{mask}") from None
    return str(net.network_address), mask


class AddressStore(Protocol):
    def list(self) -> list[AddressRow]: ...
    def add(self, row: AddressRow) -> None: ...
    def remove(self, grp: int, ip_addr: str, mask: int, port: int | None = None) -> int: ...
    def close(self) -> None: ...


def _check(row: AddressRow) -> AddressRow:
    ip, mask = parse_address(row.ip_addr, row.mask)
    if not 0 <= row.port <= 65535:
        raise ValueError(f"bad port {row.port} (0..65535, 0 = any)")
    if row.grp < 0:
        raise ValueError(f"bad group {row.grp} (a number >= 0)")
    return AddressRow(row.grp, ip, mask, row.port, row.tag)


class MemoryAddressStore:
    def __init__(self) -> None:
        self._rows: dict[tuple[int, str, int, int], AddressRow] = {}

    def list(self) -> list[AddressRow]:
        return sorted(self._rows.values(), key=lambda r: (r.grp, r.ip_addr, r.mask, r.port))

    def add(self, row: AddressRow) -> None:
        row = _check(row)
        key = (row.grp, row.ip_addr, row.mask, row.port)
        if key in self._rows:
            raise DuplicateError(f"group {row.grp} already has {row.ip_addr}/{row.mask} "
                                 f"port {row.port}")
        self._rows[key] = row

    def remove(self, grp: int, ip_addr: str, mask: int, port: int | None = None) -> int:
        ip, mask = parse_address(ip_addr, mask)
        gone = [k for k in self._rows
                if k[:3] == (grp, ip, mask) and (port is None or k[3] == port)]
        for k in gone:
            del self._rows[k]
        return len(gone)

    def close(self) -> None:
        pass


_DDL = """CREATE TABLE IF NOT EXISTS {t} (
    grp     INTEGER      NOT NULL DEFAULT 1,
    ip_addr VARCHAR(50)  NOT NULL,
    mask    INTEGER      NOT NULL DEFAULT 32,
    port    INTEGER      NOT NULL DEFAULT 0,
    tag     VARCHAR(64),
    PRIMARY KEY (grp, ip_addr, mask, port)
)"""


class SqlAddressStore:
    def __init__(self, conn: SqlConnection, table: str = TABLE) -> None:
        self.conn = conn
        t = conn.table(table)
        self._t = t
        self._ready = False

    def _ensure(self) -> str:
        if not self._ready:
            self.conn.ensure(_DDL.format(t=self._t))
            self._ready = True
        return self._t

    def list(self) -> list[AddressRow]:
        t = self._ensure()
        rows = self.conn.query(
            f"SELECT grp, ip_addr, mask, port, tag FROM {t} ORDER BY grp, ip_addr, mask, port")
        return [AddressRow(int(g), str(ip), int(m), int(p), tag) for g, ip, m, p, tag in rows]

    def add(self, row: AddressRow) -> None:
        row = _check(row)
        t = self._ensure()
        try:
            self.conn.execute(f"INSERT INTO {t} (grp, ip_addr, mask, port, tag) "
                              "VALUES (?, ?, ?, ?, ?)", tuple(row))
        except DuplicateError:
            raise DuplicateError(f"group {row.grp} already has {row.ip_addr}/{row.mask} "
                                 f"port {row.port}") from None

    def remove(self, grp: int, ip_addr: str, mask: int, port: int | None = None) -> int:
        ip, mask = parse_address(ip_addr, mask)
        t = self._ensure()
        if port is None:
            return self.conn.execute(
                f"DELETE FROM {t} WHERE grp = ? AND ip_addr = ? AND mask = ?", (grp, ip, mask))
        return self.conn.execute(
            f"DELETE FROM {t} WHERE grp = ? AND ip_addr = ? AND mask = ? AND port = ?",
            (grp, ip, mask, port))

    def close(self) -> None:
        self.conn.close()


def open_address_store(url: str, *, schema: str | None = None, table: str = TABLE
                       ) -> AddressStore:
    """The address backend a database URL names (memory://, sqlite:///..., postgresql://...)."""
    if url.lower().startswith("memory://"):
        return MemoryAddressStore()
    return SqlAddressStore(SqlConnection(url, schema=schema), table)
