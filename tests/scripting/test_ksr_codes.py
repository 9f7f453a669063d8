"""KSR return codes and pseudo-variables through the harness (Lua engine)."""

from __future__ import annotations

from pathlib import Path

from siprouter.scripting.loader import load_script
from siprouter.testing.harness import Harness

SCRIPT = """
function ksr_request_route()
  local r = {}
  r[#r+1] = "ct=" .. KSR.tm.t_check_trans()
  r[#r+1] = "mf=" .. KSR.maxfwd.process_maxfwd(10)
  r[#r+1] = "tt=" .. KSR.siputils.has_totag()
  r[#r+1] = "lr=" .. KSR.rr.loose_route()
  r[#r+1] = "lk=" .. KSR.registrar.lookup("location")
  r[#r+1] = "inv=" .. tostring(KSR.is_INVITE())
  r[#r+1] = "in=" .. tostring(KSR.is_method_in("CB"))
  r[#r+1] = "hp=" .. KSR.hdr.is_present("X-None")
  r[#r+1] = "ru=" .. KSR.pv.get("$ru") .. "," .. KSR.pv.get("$rU") .. "," .. KSR.pv.get("$rd")
  r[#r+1] = "fu=" .. KSR.pv.get("$fU") .. "," .. KSR.pv.get("$ft") .. "," .. KSR.pv.get("$ci")
  r[#r+1] = "si=" .. KSR.pv.get("$si") .. ":" .. KSR.pv.get("$sp") .. "," .. KSR.pv.get("$cs")
  r[#r+1] = "br=" .. KSR.pv.get("$T_branch_idx") .. "," .. KSR.pv.get("$T_reply_code")
  KSR.pv.sets("$var(x)", "v1")
  KSR.pv.seti("$avp(n)", 7)
  KSR.pv.sets("$xavp(a=>b)", "xb")
  r[#r+1] = "vars=" .. KSR.pv.get("$var(x)") .. KSR.pv.get("$avp(n)") .. KSR.pv.get("$xavp(a=>b)")
  r[#r+1] = "null=" .. tostring(KSR.pv.is_null("$var(none)")) .. KSR.pv.gete("$var(none)")
  KSR.pv.sets("$rU", "carol")
  r[#r+1] = "ru2=" .. KSR.pv.get("$ru")
  r[#r+1] = "pre=" .. KSR.tmx.t_precheck_trans() .. KSR.tmx.t_is_request_route()
  KSR.sl.sl_send_reply(299, table.concat(r, " "))
end
"""

CANCEL = (
    "CANCEL sip:bob@127.0.0.1 SIP/2.0\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKnone\n"
    "Max-Forwards: 0\n"
    "From: <sip:alice@127.0.0.1>;tag=a1\n"
    "To: <sip:bob@127.0.0.1>\n"
    "Call-ID: cx@test\n"
    "CSeq: 5 CANCEL\n"
    "Content-Length: 0\n\n"
)


def test_codes_and_pvs(tmp_path: Path) -> None:
    p = tmp_path / "codes.lua"
    p.write_text(SCRIPT)
    h = Harness(load_script(str(p)))
    h.receive(CANCEL)
    [(_, m)] = h.take()
    assert m.status == 299
    got = dict(kv.split("=", 1) for kv in m.reason.split(" "))
    assert got["ct"] == "-1"  # a CANCEL matching no INVITE transaction
    assert got["mf"] == "-1"  # Max-Forwards already 0
    assert got["tt"] == "-1"
    assert got["lr"] == "-1"  # no Route header
    assert got["lk"] == "-1"  # not registered
    assert got["inv"] == "false" and got["in"] == "true"
    assert got["hp"] == "-1"
    assert got["ru"] == "sip:bob@127.0.0.1,bob,127.0.0.1"
    assert got["fu"] == "alice,a1,cx@test"
    assert got["si"] == "127.0.0.1:5070,5"
    assert got["br"] == "0,0"
    assert got["vars"] == "v17xb"
    assert got["null"] == "true"
    assert got["ru2"] == "sip:carol@127.0.0.1"
    assert got["pre"] == "-11"
