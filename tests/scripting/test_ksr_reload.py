"""Script reload: in-flight transactions keep the old script; a failing reload keeps it too."""

from __future__ import annotations

from pathlib import Path

from siprouter.config import load_settings
from siprouter.runtime.server import Server, load_configured_script
from siprouter.scripting.loader import load_script
from siprouter.sip.build import make_response
from siprouter.testing.harness import Harness

OLD = """
function ksr_request_route()
  KSR.tm.t_on_failure("on_fail")
  KSR.tm.t_relay_to_proto_addr("udp", "127.0.0.1", 5080)
end
function on_fail()
  KSR.tm.t_relay_to_proto_addr("udp", "127.0.0.1", 5090)
end
"""

NEW = """
function ksr_request_route()
  KSR.sl.sl_send_reply(503, "New script")
end
function on_fail()
  KSR.tm.t_reply(500, "New failure route")
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
    "Content-Length: 0\n\n"
)


def test_in_flight_transaction_finishes_with_the_old_script(tmp_path: Path) -> None:
    old = tmp_path / "old.lua"
    old.write_text(OLD)
    new = tmp_path / "new.lua"
    new.write_text(NEW)
    h = Harness(load_script(str(old)))
    h.receive(INVITE.format(b="one"))
    fwd = [m for _, m in h.take() if m.is_request]
    assert len(fwd) == 1
    h.core.script = load_script(str(new))  # what Server.reload does
    h.receive(make_response(fwd[0], 486, to_tag="x"), src=("udp", "127.0.0.1", 5080))
    out = h.take()
    # the old failure route ran: a second branch to 5090, no reply from the new script
    assert [d.port for d, m in out if m.is_request and m.method == "INVITE"] == [5090]
    assert not [m for _, m in out if not m.is_request]
    # a new request gets the new script
    h.receive(INVITE.format(b="two"))
    [(_, r)] = h.take()
    assert (r.status, r.reason) == (503, "New script")


def test_failing_reload_keeps_the_old_script(tmp_path: Path) -> None:
    good = tmp_path / "route.lua"
    good.write_text(OLD)
    settings = load_settings(None, {"server": {"script": str(good)}})
    script = load_configured_script(settings)
    server = Server(settings, script)
    good.write_text("function ksr_request_route(\n")  # syntax error
    assert server.reload() is False
    assert server.script is script
    good.write_text(NEW)
    assert server.reload() is True
    assert server.script is not script
