"""SIPp against a running siprouter: registrar, proxy with record-routing, CANCEL, transports,
restart with the same database.

Callees are SIPp UAS processes that first register their own address: reg_many.xml runs from
the UAS's port with a one-line user list, then the UAS scenario listens on that port. All
traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import re

import pytest
from interop_support import LOOPBACK, SippResult, SippRunner, SiprouterServer, free_port

pytestmark = pytest.mark.interop


def assert_all_ok(result: SippResult, calls: int, server: SiprouterServer) -> None:
    ok = (result.returncode, result.successful, result.failed) == (0, calls, 0)
    assert ok, f"{result.summary()}\n{server.log_tail(30)}"


def register(
    sipp: SippRunner, server: SiprouterServer, user: str, port: int, transport: str = "udp"
) -> None:
    """Register ``user`` with a Contact at 127.0.0.1:port (;transport=udp|tcp)."""
    result = sipp.run(
        "reg_many.xml",
        f"{LOOPBACK}:{server.port}",
        calls=1,
        transport=transport,
        local_port=port,
        users=[user],
        timeout=15,
    )
    assert_all_ok(result, 1, server)


def test_register_1000_distinct_users(sipp: SippRunner, siprouter: SiprouterServer) -> None:
    users = [f"user{i:04d}" for i in range(1000)]
    result = sipp.run(
        "reg_many.xml", f"{LOOPBACK}:{siprouter.port}", calls=1000, rate=200, timeout=60,
        users=users,
    )  # fmt: skip
    assert_all_ok(result, 1000, siprouter)


def test_call_through_proxy_with_record_route(sipp: SippRunner, siprouter: SiprouterServer) -> None:
    calls = 300
    uas_port = free_port()
    register(sipp, siprouter, "bob", uas_port)
    uas = sipp.start("uas_answer.xml", calls=calls, local_port=uas_port, timeout=60)
    uac = sipp.run(
        "uac_call.xml", f"{LOOPBACK}:{siprouter.port}", calls=calls, rate=50, timeout=60,
        service="bob", trace_msg=True,
    )  # fmt: skip
    uas_result = uas.wait()
    assert_all_ok(uac, calls, siprouter)
    assert_all_ok(uas_result, calls, siprouter)
    # The proxy record-routed: the caller's ACK and BYE carry a Route to the proxy, and they
    # are addressed to the callee's Contact (RFC 3261 12.2.1.1, 16.6 step 4).
    assert uac.message_log is not None
    log = uac.message_log.read_text(errors="replace")
    for method in ("ACK", "BYE"):
        m = re.search(rf"^{method} (\S+) SIP/2.0\r?\n(?:[^\r\n]+\r?\n)*?Route: ([^\r\n]+)", log,
                      re.MULTILINE)  # fmt: skip
        assert m, f"no {method} with a Route header in {uac.message_log}"
        assert m.group(1) == f"sip:callee@{LOOPBACK}:{uas_port};transport=udp", m.group(0)
        assert f"{LOOPBACK}:{siprouter.port}" in m.group(2), m.group(0)
        assert ";lr" in m.group(2), m.group(0)


def test_call_to_unknown_user_gets_404(sipp: SippRunner, siprouter: SiprouterServer) -> None:
    result = sipp.run(
        "uac_404.xml", f"{LOOPBACK}:{siprouter.port}", calls=5, rate=10, timeout=20,
        service="nobody",
    )  # fmt: skip
    assert_all_ok(result, 5, siprouter)


def test_cancel_before_answer_ends_with_487(sipp: SippRunner, siprouter: SiprouterServer) -> None:
    calls = 10
    uas_port = free_port()
    register(sipp, siprouter, "carol", uas_port)
    uas = sipp.start("uas_ring_no_answer.xml", calls=calls, local_port=uas_port, timeout=30)
    uac = sipp.run(
        "uac_cancel.xml", f"{LOOPBACK}:{siprouter.port}", calls=calls, rate=10, timeout=30,
        service="carol",
    )  # fmt: skip
    uas_result = uas.wait()
    assert_all_ok(uac, calls, siprouter)
    assert_all_ok(uas_result, calls, siprouter)


@pytest.mark.parametrize(
    ("caller", "callee"), [("udp", "tcp"), ("tcp", "udp")], ids=["udp-to-tcp", "tcp-to-udp"]
)
def test_call_changes_transport(
    sipp: SippRunner, siprouter: SiprouterServer, caller: str, callee: str
) -> None:
    """The callee registers over its own transport with a ;transport= contact and listens only
    on that transport; the caller comes over the other one."""
    calls = 20
    uas_port = free_port()
    register(sipp, siprouter, "dave", uas_port, transport=callee)
    uas = sipp.start(
        "uas_answer.xml", calls=calls, local_port=uas_port, transport=callee, timeout=30
    )
    uac = sipp.run(
        "uac_call.xml", f"{LOOPBACK}:{siprouter.port}", calls=calls, rate=10, timeout=30,
        transport=caller, service="dave",
    )  # fmt: skip
    uas_result = uas.wait()
    assert_all_ok(uac, calls, siprouter)
    assert_all_ok(uas_result, calls, siprouter)


def test_registration_survives_restart(sipp: SippRunner, siprouter: SiprouterServer) -> None:
    uas_port = free_port()
    register(sipp, siprouter, "erin", uas_port)
    siprouter.stop_cleanly()
    siprouter.start()  # same port, same --db
    uas = sipp.start("uas_answer.xml", calls=3, local_port=uas_port, timeout=20)
    uac = sipp.run(
        "uac_call.xml", f"{LOOPBACK}:{siprouter.port}", calls=3, rate=10, timeout=20,
        service="erin",
    )  # fmt: skip
    uas_result = uas.wait()
    assert_all_ok(uac, 3, siprouter)
    assert_all_ok(uas_result, 3, siprouter)
