"""Lua method checks answered inside Lua (KSR.is_<METHOD>, KSR.is_method_in) agree with the
Python exports in every case: requests, replies (CSeq method), odd arguments, a subst that
rewrites the request line, and event routes without a message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from siprouter.modules.corex_kemi import _is_method_in, _method_is
from siprouter.scripting.loader import load_script
from siprouter.sip.build import make_response
from siprouter.testing.harness import Harness

CALLER = ("udp", "127.0.0.1", 5070)
BOB = ("udp", "127.0.0.1", 5080)

SCRIPT = """
res = {}
local function checks(tag)
  local r = {}
  r[#r+1] = tostring(KSR.is_INVITE())
  r[#r+1] = tostring(KSR.is_ACK())
  r[#r+1] = tostring(KSR.is_BYE())
  for _, s in ipairs({"I", "i", "BC", "", "xi", "\\196\\176", "O"}) do
    r[#r+1] = tostring(KSR.is_method_in(s))
  end
  r[#r+1] = tostring(KSR.is_method_in(5))
  res[tag] = table.concat(r, ",")
end
function ksr_request_route()
  checks("req")
  if KSR.pv.get("$hdr(X-Rewrite)") == "yes" then
    KSR.textops.subst("/^INVITE /OPTIONS /")
    checks("rewritten")
    KSR.sl.sl_send_reply(200, "OK")
    KSR.x.exit()
  end
  KSR.pv.sets("$du", "sip:127.0.0.1:5080")
  KSR.tm.t_relay()
end
function ksr_reply_route()
  checks("reply")
end
"""

INVITE = (
    "INVITE sip:bob@127.0.0.1 SIP/2.0\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{b}\n"
    "Max-Forwards: 70\n"
    "From: <sip:alice@127.0.0.1>;tag=a1\n"
    "To: <sip:bob@127.0.0.1>\n"
    "Call-ID: {b}@test\n"
    "CSeq: 1 INVITE\n"
    "{extra}"
    "Content-Length: 0\n\n"
)


def _python_answers(ctx: Any) -> str:
    """What the Python exports say for ``ctx`` (the same list as ``checks`` in SCRIPT)."""
    out = [str(_method_is("INVITE")(ctx)).lower(), str(_method_is("ACK")(ctx)).lower(),
           str(_method_is("BYE")(ctx)).lower()]
    for s in ("I", "i", "BC", "", "xi", "\u0130", "O"):
        out.append(str(_is_method_in(ctx, s)).lower())
    out.append(str(_is_method_in(ctx, 5)).lower())  # type: ignore[arg-type]
    return ",".join(out)


def test_method_checks_match_the_python_exports(tmp_path: Path) -> None:
    p = tmp_path / "m.lua"
    p.write_text(SCRIPT)
    script = load_script(str(p))
    h = Harness(script)
    seen: list[Any] = []
    orig = script.request_route

    def spy(ctx: Any) -> None:
        seen.append(ctx)
        orig(ctx)

    script.request_route = spy
    h.receive(INVITE.format(b="i1", extra=""), src=CALLER)
    [fwd] = [m for _, m in h.take() if m.is_request]
    assert fwd.method == "INVITE"
    res = script.lua.globals().res
    want_req = _python_answers(seen[0])
    assert res["req"] == want_req
    # "\u0130".lower() contains "i": Python says True, and so must Lua
    assert want_req.split(",")[8] == "true"
    assert res["req"].startswith("true,false,false,true,true,false,false,true,true,false")

    # a reply: is_INVITE() is false, is_method_in() looks at the CSeq method
    h.receive(make_response(fwd, 180), src=BOB)
    assert [m.status for _, m in h.take()] == [180]
    assert res["reply"] == "false,false,false,true,true,false,false,true,true,false,false"

    # the request line rewritten by subst: the checks follow the new method
    h.receive(INVITE.format(b="i2", extra="X-Rewrite: yes\n"), src=CALLER)
    assert [m.status for _, m in h.take()] == [200]
    assert seen[-1].msg.method == "OPTIONS"
    assert res["rewritten"] == _python_answers(seen[-1])
    assert res["rewritten"].startswith("false,false,false,false,false")


def test_only_textops_replaces_the_message_of_a_context() -> None:
    # the Lua engine forgets the request method after the exports that replace ctx.msg
    # (lua_engine._REWRITES_MESSAGE); a new one must be added there
    import re

    import siprouter.modules as mods
    from siprouter.scripting.lua_engine import _REWRITES_MESSAGE

    assign = re.compile(r"\.msg\s*=[^=]")
    found = sorted(f.name for f in Path(mods.__file__).parent.glob("*.py")
                   if assign.search(f.read_text()))
    assert found == ["textops.py"]
    assert _REWRITES_MESSAGE == {("textops", "subst")}
