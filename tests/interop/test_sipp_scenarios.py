"""Self-test of the SIPp scenarios: each UAC scenario against its SIPp peer on loopback.

No siprouter here: this proves the scenarios themselves are right (message flow, branches,
tags, route sets), so that a failure in test_interop_sipp.py points at the server.
"""

from __future__ import annotations

import re

import pytest
from interop_support import LOOPBACK, SippResult, SippRunner, free_port

pytestmark = pytest.mark.interop

TRANSPORTS = ["udp", "tcp"]


def assert_all_ok(result: SippResult, calls: int) -> None:
    assert (result.returncode, result.successful, result.failed) == (0, calls, 0), result.summary()


def _pair(
    sipp: SippRunner,
    uac: str,
    uas: str,
    transport: str,
    calls: int,
    trace_msg: bool = False,
    service: str | None = None,
    users: list[str] | None = None,
) -> tuple[SippResult, SippResult]:
    port = free_port()
    server = sipp.start(uas, calls=calls, transport=transport, local_port=port, timeout=20)
    client = sipp.run(
        uac,
        f"{LOOPBACK}:{port}",
        calls=calls,
        rate=20,
        timeout=20,
        transport=transport,
        trace_msg=trace_msg,
        service=service,
        users=users,
    )
    return client, server.wait()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reg_many_against_stand_in_registrar(sipp: SippRunner, transport: str) -> None:
    users = [f"self{i:03d}" for i in range(50)]
    client, server = _pair(
        sipp, "reg_many.xml", "selftest_registrar.xml", transport, 50, users=users
    )
    assert_all_ok(client, 50)
    assert_all_ok(server, 50)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_uac_call_against_uas_answer(sipp: SippRunner, transport: str) -> None:
    client, server = _pair(
        sipp, "uac_call.xml", "uas_answer.xml", transport, 10, trace_msg=True, service="bob"
    )
    assert_all_ok(client, 10)
    assert_all_ok(server, 10)
    assert client.message_log is not None
    log = client.message_log.read_text()
    # Without a proxy there is no Record-Route: ACK and BYE go straight to the callee's Contact.
    assert re.search(rf"ACK sip:callee@{LOOPBACK}:\d+;transport={transport} SIP/2.0", log)
    assert re.search(rf"BYE sip:callee@{LOOPBACK}:\d+;transport={transport} SIP/2.0", log)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_uac_404_against_stand_in(sipp: SippRunner, transport: str) -> None:
    client, server = _pair(
        sipp, "uac_404.xml", "selftest_404.xml", transport, 5, trace_msg=True, service="nobody"
    )
    assert_all_ok(client, 5)
    assert_all_ok(server, 5)
    assert client.message_log is not None
    _assert_same_branch(client.message_log.read_text(), ("INVITE", "ACK"))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_uac_cancel_against_uas_ring_no_answer(sipp: SippRunner, transport: str) -> None:
    client, server = _pair(
        sipp,
        "uac_cancel.xml",
        "uas_ring_no_answer.xml",
        transport,
        5,
        trace_msg=True,
        service="carol",
    )
    assert_all_ok(client, 5)
    assert_all_ok(server, 5)
    assert client.message_log is not None
    _assert_same_branch(client.message_log.read_text(), ("INVITE", "CANCEL", "ACK"))


_SENT_RE = re.compile(
    r"^(INVITE|CANCEL|ACK) \S+ SIP/2.0\r?\nVia: [^\r\n]*;branch=([^;\s]+)", re.MULTILINE
)


def _assert_same_branch(log: str, methods: tuple[str, ...]) -> None:
    """CANCEL and the ACK of a non-2xx final carry the INVITE's branch (RFC 3261 9.1, 17.1.1.3)."""
    sent = _SENT_RE.findall(log)
    assert [m for m, _ in sent[: len(methods)]] == list(methods), sent[:5]
    branches = {b for _, b in sent[: len(methods)]}
    assert len(branches) == 1, sent[: len(methods)]
