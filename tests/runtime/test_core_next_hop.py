"""Core: next-hop resolution and the listener to send from, asked again and again per call
(both remembered for numeric hosts and per protocol and family)."""

from __future__ import annotations

from siprouter.testing.harness import Harness, script_from


def test_next_hops_resolve_the_same_when_asked_again() -> None:
    core = Harness(script_from(lambda req: None)).core
    for _ in range(2):  # the second time from what the first one remembered
        assert core._resolve("sip:u@192.0.2.1:5080", "udp") == ("udp", "192.0.2.1", 5080)
        assert core._resolve("sip:u@192.0.2.1:5080", "tcp") == ("tcp", "192.0.2.1", 5080)
        assert core._resolve("sip:u@192.0.2.1;transport=TCP", "udp") == ("tcp", "192.0.2.1", 5060)
        assert core._resolve("sips:u@[2001:db8::1]", "udp") == ("tls", "2001:db8::1", 5061)
        assert core._resolve("sip:u@192.0.2.1;maddr=198.51.100.2", "udp") == (
            "udp", "198.51.100.2", 5060)
        assert core._resolve("sip:u@localhost:5070", "udp") == ("udp", "127.0.0.1", 5070)
        assert core._resolve("tel:+15551234", "udp") is None
        assert core._resolve("not a uri", "udp") is None
    assert "sip:u@localhost:5070" not in core._hops  # names are not remembered here


def test_the_listener_to_send_from_follows_the_listeners() -> None:
    h = Harness(script_from(lambda req: None))
    core = h.core
    udp = h.listener("udp")
    first = core._pick_listener(core._resolve("sip:192.0.2.1", "udp"))
    assert first is udp and core._pick_listener(core._resolve("sip:192.0.2.9", "udp")) is udp
    listeners = core.transport.listeners
    saved = list(listeners)
    listeners.clear()  # the listeners change: what was remembered is not used
    try:
        assert core._pick_listener(core._resolve("sip:192.0.2.1", "udp")) is None
    finally:
        listeners.extend(saved)
    assert core._pick_listener(core._resolve("sip:192.0.2.1", "udp")) is udp
