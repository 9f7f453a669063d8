"""KSR engines: one scenario in Lua, app_python3 and the Pythonic API gives the same wire output."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from siprouter.scripting.loader import ScriptError, load_script
from siprouter.sip.build import make_response
from siprouter.sip.message import SipMessage
from siprouter.testing.harness import Harness

HERE = Path(__file__).parent / "scripts"
CALLER = ("udp", "127.0.0.1", 5070)
BOB = ("udp", "127.0.0.1", 5080)
SECOND = ("udp", "127.0.0.1", 5090)


def req(method: str, ruri: str, *, branch: str, cseq: int = 1, extra: str = "",
        to_tag: str = "", call_id: str = "c1@test") -> str:
    tt = f";tag={to_tag}" if to_tag else ""
    return (
        f"{method} {ruri} SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\n"
        "Max-Forwards: 70\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\n"
        f"To: <sip:bob@127.0.0.1>{tt}\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {cseq} {method}\n"
        "Contact: <sip:alice@127.0.0.1:5070>\n"
        f"{extra}"
        "Content-Length: 0\n\n"
    )


def register(h: Harness) -> None:
    h.receive(
        "REGISTER sip:127.0.0.1 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKr1\n"
        "Max-Forwards: 70\n"
        "From: <sip:bob@127.0.0.1>;tag=r1\n"
        "To: <sip:bob@127.0.0.1>\n"
        "Call-ID: reg1@test\n"
        "CSeq: 1 REGISTER\n"
        "Contact: <sip:bob@127.0.0.1:5080>;expires=300\n"
        "Content-Length: 0\n\n", src=BOB)


def scenario(script: Any) -> list[tuple[str, bytes]]:
    h = Harness(script)
    wire: list[tuple[str, bytes]] = []

    def take() -> list[tuple[Any, SipMessage]]:
        out = h.take()
        wire.extend((d.hostport(), m.to_bytes()) for d, m in out)
        return out

    register(h)
    take()
    h.receive(req("OPTIONS", "sip:127.0.0.1", branch="z9hG4bKo1"), src=CALLER)
    take()
    h.receive(req("INVITE", "sip:bob@127.0.0.1", branch="z9hG4bKi1"), src=CALLER)
    out = take()
    fwd = [m for _, m in out if m.is_request]
    assert len(fwd) == 1
    h.receive(make_response(fwd[0], 486, to_tag="bt"), src=BOB)
    out = take()
    second = [m for d, m in out if m.is_request and m.method == "INVITE"]
    assert len(second) == 1
    h.receive(make_response(second[0], 200, to_tag="st"), src=SECOND)
    take()
    h.receive(req("INVITE", "sip:nobody@127.0.0.1", branch="z9hG4bKi2", call_id="c2@test"),
              src=CALLER)
    take()
    return wire


def _normalise(wire: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    out = []
    for dest, data in wire:
        text = data.decode()
        text = re.sub(r"^Date: .*$", "Date: X", text, flags=re.M)
        text = re.sub(r"(To: [^\r\n]*;tag=)[0-9a-zA-Z.\-]+", r"\1T", text)
        out.append((dest, text))
    return out


def test_same_wire_output_in_lua_app_python3_and_pythonic() -> None:
    results = {}
    for name in ("scenario.lua", "scenario_kemi.py", "scenario_pythonic.py"):
        results[name] = _normalise(scenario(load_script(str(HERE / name))))
    lua = results["scenario.lua"]
    texts = "\n".join(t for _, t in lua)
    # what the scenario shows: keepalive with the reply header, RR, the branch route header,
    # the failure route's second destination, the final 200 and a 404
    assert "SIP/2.0 200 Keepalive" in texts and "X-Engine: same" in texts
    assert "Record-Route: <sip:127.0.0.1:5060;lr;ftag=a1>" in texts
    assert "X-Caller: alice" in texts
    # t_on_branch is armed for one relay: the failure route's branch runs none
    assert texts.count("X-Branch: 0") == 1 and "X-Branch: 1" not in texts
    assert any(d == "127.0.0.1:5090" for d, _ in lua)
    assert "SIP/2.0 404 Not Found" in texts
    assert results["scenario_kemi.py"] == lua
    assert results["scenario_pythonic.py"] == lua


def test_misspelt_callback_is_a_load_error(tmp_path: Path) -> None:
    src = (HERE / "scenario.lua").read_text().replace('t_on_failure("failure_next")',
                                                      't_on_failure("failure_nxet")')
    p = tmp_path / "bad.lua"
    p.write_text(src)
    with pytest.raises(ScriptError, match="failure_nxet"):
        load_script(str(p))
    srcp = (HERE / "scenario_kemi.py").read_text().replace('t_on_branch("branch_mark")',
                                                           't_on_branch("branch_mrak")')
    p2 = tmp_path / "bad.py"
    p2.write_text(srcp)
    with pytest.raises(ScriptError, match="branch_mrak"):
        load_script(str(p2))


def test_unknown_ksr_function_is_a_load_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.lua"
    p.write_text("function ksr_request_route()\n  KSR.tm.t_relay_later()\nend\n")
    with pytest.raises(ScriptError, match=r"bad.lua:2: KSR.tm.t_relay_later"):
        load_script(str(p))
    p2 = tmp_path / "bad2.py"
    p2.write_text("import KSR\ndef ksr_request_route(msg):\n    KSR.is_INVIET()\n")
    with pytest.raises(ScriptError, match=r"KSR.is_INVIET"):
        load_script(str(p2))


def test_modules_not_loaded_are_nil_and_ifdef_uses_defines(tmp_path: Path) -> None:
    p = tmp_path / "m.lua"
    p.write_text(
        "function ksr_request_route()\n"
        "  local r = 'none'\n"
        "  if not KSR.registrar then r = 'noreg' end\n"
        "  if KSR.kx.ifdef('WITH_X') then r = r .. '+x' end\n"
        "  KSR.sl.sl_send_reply(299, r)\n"
        "end\n")
    s = load_script(str(p), modules=["sl", "tm"], defines=["WITH_X"])
    h = Harness(s)
    h.receive(req("MESSAGE", "sip:bob@127.0.0.1", branch="z9hG4bKm1"))
    [(_, m)] = h.take()
    assert (m.status, m.reason) == (299, "noreg+x")
    s2 = load_script(str(p))
    h2 = Harness(s2)
    h2.receive(req("MESSAGE", "sip:bob@127.0.0.1", branch="z9hG4bKm1"))
    [(_, m2)] = h2.take()
    assert m2.reason == "none"


def test_python3s_style_and_unknown_function_at_call(tmp_path: Path) -> None:
    p = tmp_path / "s.py"
    p.write_text(
        "def ksr_request_route(msg):\n"
        "    name = 'no_such'\n"
        "    try:\n"
        "        getattr(KSR.tm, name)()\n"
        "    except AttributeError as e:\n"
        "        KSR.sl.sl_send_reply(500, str(e))\n"
        "        return -255\n")
    h = Harness(load_script(str(p)))
    h.receive(req("MESSAGE", "sip:bob@127.0.0.1", branch="z9hG4bKm2"))
    [(_, m)] = h.take()
    assert m.reason == "KSR.tm.no_such: no such function"


def test_docs_scripting_md_is_generated_from_the_declarations() -> None:
    from siprouter.scripting.docgen import render

    doc = Path(__file__).parents[2] / "docs" / "scripting.md"
    assert doc.read_text() == render(), "regenerate: python -m siprouter.scripting.docgen"


def test_lua_backends_give_the_same_wire_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The _luart binding and lupa (the fallback when _luart is not built) route alike."""
    pytest.importorskip("siprouter.scripting._luart", reason="the _luart binding is not built")
    pytest.importorskip("lupa.lua54")
    out = {}
    for backend in ("luart", "lupa"):
        monkeypatch.setenv("SIPROUTER_LUA", backend)
        script = load_script(str(HERE / "scenario.lua"))
        assert script.backend == backend
        out[backend] = _normalise(scenario(script))
    assert out["luart"] == out["lupa"]
    monkeypatch.setenv("SIPROUTER_LUA", "luajit")
    with pytest.raises(ScriptError, match="expected luart or lupa"):
        load_script(str(HERE / "scenario.lua"))


def test_onsend_route_sees_each_branch_and_can_drop_it(tmp_path: Path) -> None:
    """ksr_onsend_route runs for every request about to leave and KSR.drop() stops it; the
    callback is looked up again when another script is set (a reload)."""
    relay = "def ksr_request_route(msg):\n    KSR.tm.t_relay()\n    return 1\n"
    p = tmp_path / "s.py"
    p.write_text(
        relay
        + "def ksr_onsend_route(msg):\n"
        "    KSR.hdr.append('X-Seen: onsend\\r\\n')\n"
        "    if KSR.pv.get('$rU') == 'blocked':\n"
        "        KSR.drop()\n"
        "    return 1\n")
    h = Harness(load_script(str(p)))
    h.receive(req("MESSAGE", "sip:bob@127.0.0.1:5080", branch="z9hG4bKs1"))
    sent = [m for _, m in h.take() if m.is_request]
    assert len(sent) == 1 and sent[0].get("X-Seen") == "onsend"
    h.receive(req("MESSAGE", "sip:blocked@127.0.0.1:5080", branch="z9hG4bKs2",
                  call_id="c2@test"))
    assert [m for _, m in h.take() if m.is_request] == []
    # a script without onsend_route: nothing runs it, nothing is dropped
    q = tmp_path / "t.py"
    q.write_text(relay)
    h.core.script = load_script(str(q))
    h.receive(req("MESSAGE", "sip:blocked@127.0.0.1:5080", branch="z9hG4bKs3",
                  call_id="c3@test"))
    sent = [m for _, m in h.take() if m.is_request]
    assert len(sent) == 1 and sent[0].get("X-Seen") is None
