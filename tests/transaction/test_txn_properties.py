"""Random event sequences: no input order crashes a transaction, and each one ends exactly once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from txn_helpers import UAC, UAS, drive, request, response, response_bytes

from siprouter.transaction.layer import Effect, State, TimerSettings, TransactionLayer

STATUSES = [100, 180, 183, 200, 302, 404, 487, 503, 603]

client_ops = st.lists(
    st.one_of(
        st.tuples(st.just("response"), st.sampled_from(STATUSES)),
        st.tuples(st.just("cancel"), st.just(0)),
        st.tuples(st.just("transport_error"), st.just(0)),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 2.0, 10.0, 40.0])),
    ),
    max_size=12,
)
server_ops = st.lists(
    st.one_of(
        st.tuples(st.just("respond"), st.sampled_from(STATUSES)),
        st.tuples(st.just("retransmit"), st.just(0)),
        st.tuples(st.just("ack"), st.just(0)),
        st.tuples(st.just("transport_error"), st.just(0)),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 2.0, 10.0, 40.0])),
    ),
    max_size=12,
)


def _check_log(log: list[Effect]) -> None:
    ended: set[int] = set()
    for eff in log:
        txn = eff[3] if eff[0] == "send" else eff[1]
        assert id(txn) not in ended, f"effect after termination: {eff[0]}"
        if eff[0] == "terminated":
            ended.add(id(txn))
        if eff[0] == "send":
            assert isinstance(eff[2], bytes) and eff[1] in (UAC, UAS)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "OPTIONS"]),
    reliable=st.booleans(),
    timer_c=st.sampled_from([None, 60.0]),
    ops=client_ops,
)
def test_client_random_sequences(
    method: str, reliable: bool, timer_c: float | None, ops: list[tuple[str, float]]
) -> None:
    layer = TransactionLayer(TimerSettings(timer_c=timer_c))
    req = request(method)
    txn, log = layer.new_client(req, UAS, 0.0, reliable)
    now = 0.0
    for op, arg in ops:
        if op == "response":
            resp = response(req, int(arg))
            if layer.match_response(resp) is txn:
                log += layer.client_receive(txn, resp, now)
        elif op == "cancel":
            if method == "INVITE":
                log += layer.cancel(txn, now)
        elif op == "transport_error":
            log += layer.transport_error(txn, now)
        else:
            now += arg
            log += [e for _, e in drive(layer, now)]
    # without Timer C an INVITE in Proceeding waits for its final as long as it takes (§17.1.1.2)
    if txn.state is State.PROCEEDING and timer_c is None and method == "INVITE":
        assert layer.next_deadline() is None or txn.cancel_txn is not None
        log += layer.client_receive(txn, response(req, 487), now)
    log += [e for _, e in drive(layer, now + 1000.0)]
    _check_log(log)
    assert txn.state is State.TERMINATED
    assert sum(1 for e in log if e[0] == "terminated" and e[1] is txn) == 1
    assert len(layer) == 0 and layer.next_deadline() is None


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "BYE"]),
    reliable=st.booleans(),
    ops=server_ops,
)
def test_server_random_sequences(method: str, reliable: bool, ops: list[tuple[str, float]]) -> None:
    layer = TransactionLayer()
    transport = "TCP" if reliable else "UDP"
    req = request(method, transport=transport)
    txn = layer.new_server(req, UAC, 0.0)
    log: list[Effect] = []
    now = 0.0
    for op, arg in ops:
        if op == "respond":
            log += layer.server_respond(txn, response_bytes(req, int(arg)), now)
        elif op in ("retransmit", "ack"):
            msg = request("ACK" if op == "ack" else method, transport=transport, to_tag="totag9")
            if op == "retransmit":
                msg = request(method, transport=transport)
            if layer.match_request(msg) is txn:
                log += layer.server_receive(txn, msg, now)
        elif op == "transport_error":
            log += layer.transport_error(txn, now)
        else:
            now += arg
            log += [e for _, e in drive(layer, now)]
    # a transaction that never got a final response lives until the TU answers
    if txn.state in (State.PROCEEDING, State.TRYING):
        log += layer.server_respond(txn, response_bytes(req, 500), now)
    log += [e for _, e in drive(layer, now + 1000.0)]
    _check_log(log)
    assert txn.state is State.TERMINATED
    assert sum(1 for e in log if e[0] == "terminated") == 1
    assert len(layer) == 0 and layer.next_deadline() is None
