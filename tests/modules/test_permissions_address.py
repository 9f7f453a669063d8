"""permissions: the in-memory address table, longest-prefix matching, reload and KSR exports."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from siprouter.modules.exports import declared
from siprouter.modules.modparam import ModparamError
from siprouter.modules.permissions import AddressTable, Permissions, PermissionsSettings
from siprouter.sip.types import Endpoint
from siprouter.storage.addresses import AddressRow, MemoryAddressStore
from siprouter.storage.location_store import StoreError

ROWS = [
    AddressRow(1, "192.0.2.10", 32, 0, "gw-host"),
    AddressRow(1, "10.0.0.0", 8, 0, "net8"),
    AddressRow(2, "10.1.0.0", 16, 5060, "net16-5060"),
    AddressRow(3, "10.1.2.0", 24, 0, "net24"),
    AddressRow(4, "2001:db8::", 32, 0, "v6"),
    AddressRow(5, "198.51.100.7", 32, 5070, "port-only"),
]


def test_match_host_subnet_port_and_group() -> None:
    t = AddressTable(ROWS)
    assert t.match("192.0.2.10", 1234, 1) == (1, "gw-host")
    assert t.match("192.0.2.11", 1234, 1) is None
    assert t.match("10.9.9.9", 5060, 1) == (1, "net8")
    assert t.match("10.1.0.1", 5060, 2) == (2, "net16-5060")
    assert t.match("10.1.0.1", 5061, 2) is None
    assert t.match("198.51.100.7", 5070) == (5, "port-only")
    assert t.match("198.51.100.7", 5071) is None
    assert t.match("2001:DB8:0:0::1", 5060) == (4, "v6")
    assert t.match("[2001:db8::5]", 1) == (4, "v6")
    assert t.match("2001:db9::1", 1) is None
    assert t.match("not-an-ip", 1) is None
    assert t.match("10.0.0.1", 1, 7) is None


def test_longest_prefix_wins_for_group_lookup() -> None:
    t = AddressTable(ROWS)
    assert t.match("10.1.2.3", 5060) == (3, "net24")   # /24 before /16 and /8
    assert t.match("10.1.3.3", 5060) == (2, "net16-5060")
    assert t.match("10.1.3.3", 5000) == (1, "net8")    # /16 entry is for port 5060 only
    assert t.match("10.1.2.3", 5060, 1) == (1, "net8")  # within a group, its own entries


def _ctx(perms: Permissions, host: str, port: int) -> Any:
    core = SimpleNamespace(modules={"permissions": perms})
    return SimpleNamespace(core=core, source=Endpoint("udp", host, port), vars={},
                           is_request=True)


def _fn(name: str) -> Any:
    e = declared()["permissions"].get(name)
    assert e is not None
    return e.func


def test_ksr_exports_and_peer_tag() -> None:
    store = MemoryAddressStore()
    for r in ROWS:
        store.add(r)
    p = Permissions(store, PermissionsSettings.from_table({"peer_tag_avp": "$avp(peer_tag)"}))
    assert p.reload() == len(ROWS)
    ctx = _ctx(p, "192.0.2.10", 5060)
    assert _fn("allow_source_address")(ctx, 1) == 1
    assert ctx.vars["avp:peer_tag"] == "gw-host"
    assert _fn("allow_source_address")(ctx, 2) == -1
    assert _fn("allow_source_address_group")(ctx) == 1
    assert _fn("allow_source_address_group")(_ctx(p, "203.0.113.1", 5060)) == -1
    assert _fn("allow_address")(ctx, 3, "10.1.2.200", 9) == 1
    assert _fn("allow_address")(ctx, 3, "garbage", 9) == -1
    assert _fn("allow_address_group")(ctx, "10.1.2.200", 9) == 3


def test_reload_sees_changes_and_keeps_old_table_on_error() -> None:
    class Flaky(MemoryAddressStore):
        down = False

        def list(self) -> list[AddressRow]:
            if self.down:
                raise StoreError("database gone")
            return super().list()

    store = Flaky()
    p = Permissions(store)
    p.reload()
    ctx = _ctx(p, "192.0.2.10", 5060)
    assert _fn("allow_source_address")(ctx, 1) == -1
    store.add(ROWS[0])
    assert _fn("allow_source_address")(ctx, 1) == -1  # not until reloaded
    assert _fn("address_reload")(ctx) == 1
    assert _fn("allow_source_address")(ctx, 1) == 1
    store.down = True
    assert _fn("address_reload")(ctx) == -1
    assert _fn("allow_source_address")(ctx, 1) == 1  # old table kept
    with pytest.raises(StoreError):
        p.reload()


@pytest.mark.parametrize(("table", "match"), [
    ({"db_mode": 0}, "db_mode: only 1"),
    ({"db_mode": "1"}, "db_mode: expected an integer"),
    ({"address_table": "a b"}, "address_table: bad table name"),
    ({"peer_tag_avp": "peer_tag"}, "peer_tag_avp: expected"),
    ({"db_urll": "x"}, "db_urll: unknown setting"),
])
def test_settings_errors_name_the_key(table: dict[str, Any], match: str) -> None:
    with pytest.raises(ModparamError, match=match):
        PermissionsSettings.from_table(table)


def test_many_subnets_lookup_stays_correct() -> None:
    rows = [AddressRow(g, f"10.{g}.0.0", 16, 0, None) for g in range(1, 200)]
    t = AddressTable(rows)
    for g in (1, 77, 199):
        assert t.match(f"10.{g}.3.4", 1) == (g, None)
    assert t.match("10.200.0.1", 1) is None
