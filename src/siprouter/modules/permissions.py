"""Trusted source addresses (Kamailio's ``permissions`` module, address table part).

The ``address`` table (see :mod:`siprouter.storage.addresses`) is held in memory
(Kamailio ``db_mode = 1``) as an :class:`AddressTable`: single hosts in a dict keyed by address,
subnets in a list ordered longest prefix first, so a lookup is one dict probe plus a scan of the
subnets only when the host is not listed, and the most specific entry wins (its tag is the one
reported). :meth:`Permissions.reload` reads the table again and swaps it in at once; a reload that
fails keeps the old table.

KSR (return codes as Kamailio's): ``allow_source_address(group)`` and
``allow_address(group, ip, port)`` 1 / -1; ``allow_source_address_group()`` and
``allow_address_group(ip, port)`` the group or -1. An entry with port 0 matches any port. With
``peer_tag_avp`` set, the matching entry's tag is stored in that AVP.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from ..storage.addresses import TABLE, AddressRow, AddressStore, open_address_store
from ..storage.location_store import StoreError
from .exports import INT, STR, Export, declare
from .modparam import ModparamError, load_modparams

__all__ = [
    "AddressTable", "Permissions", "PermissionsSettings", "build_permissions", "permissions_for",
]

log = logging.getLogger("siprouter.permissions")

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class PermissionsSettings:
    # database of the address table (Kamailio `db_url`; default: [database] url)
    db_url: str | None = None
    # 1 = the table is cached in memory and reloaded on demand (Kamailio `db_mode`; only 1 here)
    db_mode: int = 1
    # table name (Kamailio `address_table`, "address")
    address_table: str = TABLE
    # AVP receiving the tag of the matching entry, e.g. "$avp(peer_tag)" (Kamailio
    # `peer_tag_avp`, none)
    peer_tag_avp: str | None = None

    @classmethod
    def from_table(cls, table: dict[str, Any] | None) -> PermissionsSettings:
        s = load_modparams(cls, "permissions", table)
        if s.db_mode != 1:
            raise ModparamError(f"[modules.permissions] db_mode: only 1 (cached) is supported, "
                                f"got {s.db_mode}")
        if not s.address_table.isidentifier():
            raise ModparamError(f'[modules.permissions] address_table: bad table name '
                                f'"{s.address_table}"')
        if s.peer_tag_avp is not None and not (
                s.peer_tag_avp.startswith("$avp(") and s.peer_tag_avp.endswith(")")):
            raise ModparamError(f'[modules.permissions] peer_tag_avp: expected "$avp(name)", '
                                f'got "{s.peer_tag_avp}"')
        return s


def _norm(ip: str) -> str | None:
    try:
        return ipaddress.ip_address(ip.strip("[]")).compressed
    except ValueError:
        return None


class AddressTable:
    """The address rows of every group, ready for lookups (immutable once built)."""

    __slots__ = ("_hosts", "_subnets", "groups", "rows")

    def __init__(self, rows: list[AddressRow]) -> None:
        self.rows = list(rows)
        self._hosts: dict[str, list[tuple[int, int, str | None]]] = {}
        subnets: list[tuple[int, IPNet, int, int, str | None]] = []
        for r in rows:
            net = ipaddress.ip_network(f"{r.ip_addr}/{r.mask}", strict=False)
            if r.mask == net.max_prefixlen:
                self._hosts.setdefault(net.network_address.compressed, []).append(
                    (r.grp, r.port, r.tag))
            else:
                subnets.append((r.mask, net, r.grp, r.port, r.tag))
        subnets.sort(key=lambda x: -x[0])  # longest prefix first
        self._subnets = [(net, grp, port, tag) for _m, net, grp, port, tag in subnets]
        self.groups = frozenset(r.grp for r in rows)

    def __len__(self) -> int:
        return len(self.rows)

    def match(self, ip: str, port: int, group: int | None = None) -> tuple[int, str | None] | None:
        """(group, tag) of the most specific entry for ``ip``:``port`` (in ``group`` if given)."""
        key = _norm(ip)
        if key is None:
            return None
        for grp, p, tag in self._hosts.get(key, ()):
            if (group is None or grp == group) and (p == 0 or p == port):
                return grp, tag
        if self._subnets:
            addr = ipaddress.ip_address(key)
            for net, grp, p, tag in self._subnets:
                if ((group is None or grp == group) and (p == 0 or p == port)
                        and addr.version == net.version and addr in net):
                    return grp, tag
        return None


class Permissions:
    """The in-memory address table and its store."""

    def __init__(self, store: AddressStore | None, settings: PermissionsSettings | None = None,
                 ) -> None:
        self.store = store
        self.settings = settings or PermissionsSettings()
        self.table = AddressTable([])

    def reload(self) -> int:
        """Read the address table again; returns the number of rows (StoreError keeps the old)."""
        if self.store is None:
            return len(self.table)
        rows = self.store.list()
        self.table = AddressTable(rows)
        log.info("permissions: %d address rows loaded", len(rows))
        return len(rows)

    def allow_address(self, req: Any, group: int, ip: str, port: int) -> int:
        m = self.table.match(ip, port, group)
        if m is None:
            return -1
        self._tag(req, m[1])
        return 1

    def allow_address_group(self, req: Any, ip: str, port: int) -> int:
        m = self.table.match(ip, port)
        if m is None:
            return -1
        self._tag(req, m[1])
        return m[0]

    def _tag(self, req: Any, tag: str | None) -> None:
        avp = self.settings.peer_tag_avp
        if avp and tag is not None and req is not None:
            req.vars[f"avp:{avp[5:-1]}"] = tag


def build_permissions(tables: dict[str, Any], db_url: str) -> Permissions:
    """A :class:`Permissions` from ``[modules.permissions]`` with its table loaded (a database
    that cannot be read is logged and leaves the table empty until a reload)."""
    ps = PermissionsSettings.from_table(tables.get("permissions"))
    p = Permissions(open_address_store(ps.db_url or db_url or "sqlite:///siprouter.sqlite",
                                       table=ps.address_table), ps)
    try:
        p.reload()
    except StoreError as exc:
        log.error("permissions: cannot load the address table: %s", exc)
    return p


def permissions_for(core: Any) -> Permissions:
    """``core.modules["permissions"]``; built at first use when the runtime did not."""
    mods: dict[str, Any] | None = getattr(core, "modules", None)
    if mods is None:
        mods = {}
        core.modules = mods
    p = mods.get("permissions")
    if p is None:
        settings = getattr(core, "settings", None)
        url = getattr(getattr(settings, "database", None), "url", None)
        p = mods["permissions"] = build_permissions(
            getattr(settings, "modules", {}) or {}, url or "")
    return p


# -- KSR exports ---------------------------------------------------------------------------------
def _allow_source_address(msg: Any, group: int) -> int:
    src = msg.source
    if src is None:
        return -1
    return permissions_for(msg.core).allow_address(msg, int(group), src.host, src.port)


def _allow_source_address_group(msg: Any) -> int:
    src = msg.source
    if src is None:
        return -1
    return permissions_for(msg.core).allow_address_group(msg, src.host, src.port)


def _allow_address(msg: Any, group: int, ip: str, port: int) -> int:
    return permissions_for(msg.core).allow_address(msg, int(group), str(ip), int(port))


def _allow_address_group(msg: Any, ip: str, port: int) -> int:
    return permissions_for(msg.core).allow_address_group(msg, str(ip), int(port))


def _reload(msg: Any) -> int:
    try:
        permissions_for(msg.core).reload()
    except StoreError as exc:
        log.error("permissions: reload failed: %s", exc)
        return -1
    return 1


declare("permissions", (
    Export("allow_source_address", _allow_source_address, (INT,), INT,
           "1 if the source IP and port match an entry of the address group, else -1."),
    Export("allow_source_address_group", _allow_source_address_group, (), INT,
           "The group of the most specific entry matching the source IP and port, or -1."),
    Export("allow_address", _allow_address, (INT, STR, INT), INT,
           "1 if ip:port match an entry of the address group, else -1."),
    Export("allow_address_group", _allow_address_group, (STR, INT), INT,
           "The group of the most specific entry matching ip:port, or -1."),
    Export("address_reload", _reload, (), INT,
           "Read the address table again (1; -1 if the database cannot be read)."),
), doc="Trusted source addresses from the address table (permissions).")
