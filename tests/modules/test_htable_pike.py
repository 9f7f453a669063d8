"""htable (tables, expiry, KSR return codes, $sht, settings) and pike (rate detection)."""

from __future__ import annotations

from typing import Any

import pytest

from siprouter.modules import htable as ht
from siprouter.modules import pike as pk
from siprouter.modules.htable import HTable, Htables, TableSpec, parse_table_definition
from siprouter.modules.modparam import ModparamError
from siprouter.modules.pike import BLOCKED, NEW_BLOCKED, OK, Pike, PikeParams
from siprouter.scripting.api import Request
from siprouter.sip.message import parse_message
from siprouter.sip.types import Endpoint
from siprouter.testing.harness import Harness, script_from

OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKa\r\n"
    b"From: <sip:a@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def make_req(h: Harness, src: tuple[str, str, int] = ("udp", "10.1.1.1", 5070)) -> Request:
    return Request(h.core, parse_message(OPTIONS), Endpoint(*src), h.listener())


@pytest.fixture
def h() -> Harness:
    hh = Harness(script_from(lambda req: None))
    hh.core.modules["htable"] = Htables.from_settings(
        {"htable": ["ipban=>size=8;autoexpire=300;", "cnt=>initval=0;"]})
    return hh


def test_table_definition_parsing() -> None:
    s = parse_table_definition("ipban=>size=8;autoexpire=300;")
    assert (s.name, s.size, s.autoexpire, s.initval) == ("ipban", 8, 300, None)
    s = parse_table_definition("c=>size=4;autoexpire=7200;initval=1;dbtable=htable_c;dbmode=1")
    assert (s.initval, s.dbtable, s.dbmode) == (1, "htable_c", 1)
    for bad, word in (("noarrow", "NAME=>"), ("t=>size=99", "size"), ("t=>foo=1", "foo"),
                      ("t=>autoexpire=x", "autoexpire"), ("t=>dbtable=a b", "dbtable")):
        with pytest.raises(ModparamError, match=word):
            parse_table_definition(bad)


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(ModparamError, match=r"\[modules.htable\] htabel: unknown setting"):
        Htables.from_settings({"htabel": []})
    with pytest.raises(ModparamError, match=r"\[modules.htable.tables.x\].*size"):
        Htables.from_settings({"tables": {"x": {"size": "big"}}})
    with pytest.raises(ModparamError, match="declared twice"):
        Htables.from_settings({"htable": ["a=>size=4"], "tables": {"a": {}}})
    t = Htables.from_settings({"tables": {"counters": {"initval": 5, "autoexpire": 10}}})
    assert t.tables["counters"].spec.initval == 5


def test_expiry_initval_and_updateexpire() -> None:
    t = HTable(TableSpec("t", autoexpire=10))
    t.set("k", "v", 100.0)
    assert t.get("k", 109.9) == "v"
    assert t.get("k", 110.0) is None  # expired: invisible at once
    t.set("a", 1, 100.0)
    t.set("a", 2, 105.0)  # an update restarts the expiry
    assert t.get("a", 114.0) == 2
    t2 = HTable(TableSpec("t2", autoexpire=10, updateexpire=False))
    t2.set("a", 1, 100.0)
    t2.set("a", 2, 105.0)
    assert t2.get("a", 111.0) is None
    t.set("b", 1, 100.0)
    assert t.sweep(200.0) == 2 and len(t) == 0


def test_ksr_functions_and_codes(h: Harness) -> None:
    req = make_req(h)
    assert ht.sht_get(req, "ipban", "1.2.3.4") is None
    assert ht.sht_gete(req, "ipban", "1.2.3.4") == ""
    assert ht.sht_seti(req, "ipban", "1.2.3.4", 1) == 1
    assert ht.sht_get(req, "ipban", "1.2.3.4") == 1
    assert ht.sht_sets(req, "ipban", "name", "alice") == 1
    assert ht.sht_match_name(req, "ipban", "eq", "1.2.3.4") == 1
    assert ht.sht_match_name(req, "ipban", "eq", "9.9.9.9") == -1
    assert ht.sht_match_name(req, "ipban", "sw", "1.2.") == 1
    assert ht.sht_match_name(req, "ipban", "re", r"^\d+\.") == 1
    assert ht.sht_match_name(req, "ipban", "ne", "1.2.3.4") == 1
    assert ht.sht_match_name(req, "ipban", "xx", "a") == -1
    assert ht.sht_inc(req, "ipban", "name") == -255  # a string item
    assert ht.sht_inc(req, "ipban", "missing") == -255  # no initval
    assert ht.sht_inc(req, "cnt", "k") == 1 and ht.sht_inc(req, "cnt", "k") == 2
    assert ht.sht_dec(req, "cnt", "k") == 1
    assert ht.sht_get(req, "cnt", "other") == 0  # initval for a missing key
    assert ht.sht_is_null(req, "cnt", "other") == -1
    assert ht.sht_is_null(req, "ipban", "nothing") == 1
    assert ht.sht_is_null(req, "ipban", "name") == -2
    assert ht.sht_is_null(req, "nosuch", "x") == 2
    assert ht.sht_rm(req, "ipban", "name") == 1 and ht.sht_get(req, "ipban", "name") is None
    ht.sht_seti(req, "ipban", "1.2.3.5", 1)
    assert ht.sht_rm_name_re(req, "ipban", r"^1\.2\.3\.") == 1
    assert ht.sht_match_name(req, "ipban", "sw", "1.2.") == -1
    assert ht.sht_rm_name_re(req, "ipban", "(") == -1
    ht.sht_seti(req, "cnt", "x", 3)
    assert ht.sht_reset(req, "cnt") == 1 and ht.sht_get(req, "cnt", "x") == 0
    for fn in (ht.sht_sets, ht.sht_seti):
        assert fn(req, "nosuch", "k", 1) == -1  # type: ignore[operator]
    assert ht.sht_reset(req, "nosuch") == -1
    # autoexpire=300 on the wall clock of the runtime
    ht.sht_seti(req, "ipban", "5.5.5.5", 1)
    h.wall.t += 301
    assert ht.sht_match_name(req, "ipban", "eq", "5.5.5.5") == -1


def test_sht_pseudo_variable(h: Harness) -> None:
    from siprouter.modules.pv import pv_get, pv_set

    req = make_req(h)
    pv_set(req, "$sht(ipban=>k)", 7)
    assert pv_get(req, "$sht(ipban=>k)") == 7
    assert ht.sht_get(req, "ipban", "k") == 7
    pv_set(req, "$sht(ipban=>k)", None)
    assert pv_get(req, "$sht(ipban=>k)") is None
    assert pv_get(req, "$sht(cnt=>zz)") == 0
    get, set_ = ht.sht_pv("nosuch=>k")
    assert get(req) is None
    with pytest.raises(ValueError):
        set_(req, 1)
    with pytest.raises(ValueError):
        ht.sht_pv("nokey")


def test_persistence_load_and_write_back() -> None:
    from siprouter.storage.htable_store import MemoryHtableStore

    store = MemoryHtableStore()
    store.tables["htable_c"] = [("a", 1, 0.0), ("b", "x", 50.0), ("c", "y", 500.0)]
    t = Htables([parse_table_definition("c=>dbtable=htable_c;dbmode=1"),
                 parse_table_definition("tmp=>size=4")], store)
    assert t.load(100.0) == 2  # "b" expired
    t.tables["c"].set("d", 4, 100.0)
    t.tables["tmp"].set("z", 1, 100.0)
    assert t.save(100.0) == 3
    assert sorted(store.tables["htable_c"]) == [("a", 1, 0.0), ("c", "y", 500.0), ("d", 4, 0.0)]
    assert "tmp" not in store.tables


# -- pike ---------------------------------------------------------------------------------------
def test_pike_blocks_at_the_density_and_unblocks_after_a_quiet_unit() -> None:
    p = Pike(PikeParams(sampling_time_unit=2, reqs_density_per_unit=16, remove_latency=4))
    now = 1000.0
    codes = [p.check("10.0.0.1", now + i * 0.01) for i in range(20)]
    assert codes[:15] == [OK] * 15
    assert codes[15] == NEW_BLOCKED  # the 16th request in the unit
    assert codes[16:] == [BLOCKED] * 4
    assert p.check("10.0.0.2", now) == OK  # other IPs are independent
    assert p.is_blocked("10.0.0.1", now + 1.9)
    # the next unit carries the previous count: still blocked
    assert p.check("10.0.0.1", 1002.1) == BLOCKED
    # the unit after that had one hit: below the limit, unblocked at the boundary
    assert p.check("10.0.0.1", 1004.5) == OK
    assert not p.is_blocked("10.0.0.1", 1004.6)


def test_pike_forgets_after_remove_latency_and_sweeps() -> None:
    p = Pike(PikeParams(sampling_time_unit=1, reqs_density_per_unit=3, remove_latency=4))
    for i in range(3):
        p.check("10.0.0.1", 10.0 + i * 0.1)
    assert p.check("10.0.0.1", 10.5) == BLOCKED
    assert p.check("10.0.0.1", 15.0) == OK  # not seen for > remove_latency: forgotten
    assert p.sweep(30.0) == 1 and p.nodes == {}


def test_pike_mean_of_two_units() -> None:
    p = Pike(PikeParams(sampling_time_unit=1, reqs_density_per_unit=10, remove_latency=60))
    for i in range(9):
        assert p.check("1.1.1.1", 5.0 + i * 0.05) == OK
    codes = [p.check("1.1.1.1", 6.0 + i * 0.05) for i in range(10)]
    assert NEW_BLOCKED in codes and codes.index(NEW_BLOCKED) == 9


def test_pike_settings_and_ksr(h: Harness) -> None:
    with pytest.raises(ModparamError, match=r"\[modules.pike\] sampling_time_unit"):
        Pike.from_settings({"sampling_time_unit": 0})
    with pytest.raises(ModparamError, match="reqs_density_per_unit: expected an integer"):
        Pike.from_settings({"reqs_density_per_unit": "many"})
    h.core.modules["pike"] = Pike.from_settings({"reqs_density_per_unit": 2})
    req = make_req(h)
    assert pk.pike_check_req(req) == 1
    assert pk.pike_check_req(req) == -2
    assert pk.pike_check_req(req) == -1
    assert pk.pike_check_ip(req, "10.1.1.1") == -1
    assert pk.pike_check_ip(req, "10.1.1.9") == 1
    assert pk.pike_check_ip(req, "not an ip") == 1


def test_pike_default_instance_when_not_configured() -> None:
    hh = Harness(script_from(lambda req: None))
    req: Any = make_req(hh)
    assert pk.pike_check_req(req) == 1
    assert isinstance(hh.core.modules["pike"], Pike)
