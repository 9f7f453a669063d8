"""Client transactions: RFC 3261 §17.1 with RFC 6026 (INVITE Accepted state).

Rules this file implements
--------------------------
INVITE client transaction (RFC 3261 §17.1.1, figure 5; RFC 6026 §7.2, §8.4, figure 5):

- Calling: the request is sent at creation. Timer A (T1, doubling, unreliable transports only)
  retransmits it; Timer B (64*T1) fires with no response at all: the TU is told (``timeout``) and
  the transaction terminates.
- A provisional response moves to Proceeding and is passed to the TU; retransmissions stop.
- A 2xx (from Calling or Proceeding) moves to Accepted (RFC 6026): it and every further 2xx
  (retransmissions, other forks) are passed to the TU, which acknowledges them end to end; the
  transaction ends when Timer M (64*T1) fires.
- A 300-699 moves to Completed: the transaction itself builds and sends the ACK
  (§17.1.1.3: Request-URI, Call-ID, From, CSeq number and Route of the request, the To of the
  response with its tag, a single Via equal to the request's top Via, CSeq method ACK), passes
  the response to the TU, and re-sends the same ACK for every retransmission of the final, which
  is absorbed. Timer D (``timer_d`` >= 32 s unreliable, 0 reliable) ends it.
- A transport error in Calling or Completed informs the TU and terminates (§17.1.4).
- CANCEL (§9.1): built from the request (same Request-URI, Call-ID, From, To, CSeq number, top
  Via, Route) and sent in its own non-INVITE client transaction, but only once a provisional
  response has arrived: asked for earlier, it is deferred until the first provisional; if a final
  response arrives first nothing is sent.
- Timer C (RFC 3261 §16.6 step 11, §16.8, proxies only; ``TimerSettings.timer_c``, off by default):
  started at creation, restarted by every provisional 101-199 in Proceeding. Firing in
  Proceeding tells the TU (``timeout``; the proxy treats the branch as answered 408) and sends the
  CANCEL; the transaction then waits 64*T1 more (Timer ``C2``) for the final and terminates.
  Firing in Calling (only when configured shorter than Timer B) behaves like Timer B.

Non-INVITE client transaction (RFC 3261 §17.1.2, figure 6):

- Trying: the request is sent at creation; Timer E (T1 doubling up to T2, unreliable only)
  retransmits it; Timer F (64*T1) fires with no final: ``timeout`` and Terminated. RFC 4320: the
  TU of a proxy must then let the request time out silently upstream (no 408 is sent for a
  non-INVITE request).
- A provisional moves to Proceeding (passed to the TU); Timer E keeps running, at T2.
- A final (200-699) moves to Completed and is passed to the TU; retransmitted finals are
  absorbed until Timer K (T4 unreliable, 0 reliable) ends it.
- A transport error in Trying or Proceeding informs the TU and terminates (§17.1.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..sip.message import SipMessage, parse_message
from .base import (
    EV_1XX,
    EV_2XX,
    EV_ERR,
    EV_TRANSPORT_ERROR,
    Effect,
    State,
    Table,
    Transaction,
    compile_table,
)

if TYPE_CHECKING:  # pragma: no cover
    from .layer import TransactionLayer

__all__ = ["ClientTxn"]

CALLING: Final = State.CALLING
TRYING: Final = State.TRYING
PROCEEDING: Final = State.PROCEEDING
COMPLETED: Final = State.COMPLETED
ACCEPTED: Final = State.ACCEPTED
TERMINATED: Final = State.TERMINATED

# INVITE client transaction: RFC 3261 figure 5 as amended by RFC 6026 figure 5 (+ Timer C).
INVITE_CLIENT_TABLE: Table = {
    (CALLING, "A"): (CALLING, "_retransmit_a"),
    (CALLING, "B"): (TERMINATED, "_timeout"),
    (CALLING, "C"): (TERMINATED, "_timeout"),
    (CALLING, EV_1XX): (PROCEEDING, "_first_provisional"),
    (CALLING, EV_2XX): (ACCEPTED, "_accepted"),
    (CALLING, EV_ERR): (COMPLETED, "_completed_invite"),
    (CALLING, EV_TRANSPORT_ERROR): (TERMINATED, "_transport_error"),
    (PROCEEDING, EV_1XX): (PROCEEDING, "_provisional"),
    (PROCEEDING, EV_2XX): (ACCEPTED, "_accepted"),
    (PROCEEDING, EV_ERR): (COMPLETED, "_completed_invite"),
    (PROCEEDING, "C"): (PROCEEDING, "_timer_c"),
    (PROCEEDING, "C2"): (TERMINATED, None),
    (COMPLETED, EV_ERR): (COMPLETED, "_resend_ack"),
    (COMPLETED, "D"): (TERMINATED, None),
    (COMPLETED, EV_TRANSPORT_ERROR): (TERMINATED, "_transport_error"),
    (ACCEPTED, EV_2XX): (ACCEPTED, "_to_tu"),
    (ACCEPTED, "M"): (TERMINATED, None),
}

# Non-INVITE client transaction: RFC 3261 figure 6.
NON_INVITE_CLIENT_TABLE: Table = {
    (TRYING, "E"): (TRYING, "_retransmit_e"),
    (TRYING, "F"): (TERMINATED, "_timeout"),
    (TRYING, EV_1XX): (PROCEEDING, "_to_tu"),
    (TRYING, EV_2XX): (COMPLETED, "_completed_non_invite"),
    (TRYING, EV_ERR): (COMPLETED, "_completed_non_invite"),
    (TRYING, EV_TRANSPORT_ERROR): (TERMINATED, "_transport_error"),
    (PROCEEDING, "E"): (PROCEEDING, "_retransmit_e"),
    (PROCEEDING, "F"): (TERMINATED, "_timeout"),
    (PROCEEDING, EV_1XX): (PROCEEDING, "_to_tu"),
    (PROCEEDING, EV_2XX): (COMPLETED, "_completed_non_invite"),
    (PROCEEDING, EV_ERR): (COMPLETED, "_completed_non_invite"),
    (PROCEEDING, EV_TRANSPORT_ERROR): (TERMINATED, "_transport_error"),
    (COMPLETED, "K"): (TERMINATED, None),
}


def _top_via_value(msg: SipMessage) -> str:
    vias = msg.values("via")
    if not vias:
        raise ValueError("request has no Via header")
    return vias[0]


def _build_request(method: str, req: SipMessage, to_value: str | None, extra: list[str]) -> bytes:
    """A hop-by-hop request (ACK for a non-2xx, CANCEL) derived from the request ``req``."""
    lines = [f"{method} {req.ruri} SIP/2.0", f"Via: {_top_via_value(req)}", "Max-Forwards: 70"]
    for route in req.get_all("route"):
        lines.append(f"Route: {route}")
    from_value = req.get("from")
    if from_value is None or to_value is None:
        raise ValueError("request has no From or To header")
    lines.append(f"From: {from_value}")
    lines.append(f"To: {to_value}")
    lines.append(f"Call-ID: {req.call_id}")
    lines.append(f"CSeq: {req.cseq_num} {method}")
    lines.extend(extra)
    lines.append("Content-Length: 0")
    lines.append("")
    lines.append("")
    return "\r\n".join(lines).encode("utf-8")


class ClientTxn(Transaction):
    """One client transaction; created by :meth:`TransactionLayer.new_client`.

    Beyond :class:`Transaction`'s attributes: ``data`` (the request bytes sent),
    ``cancel_txn`` (the CANCEL client transaction started for this INVITE, or None) and
    ``cancels`` (for a CANCEL transaction: the INVITE client transaction it cancels).
    """

    __slots__ = (
        "_ack",
        "_cancel_reason",
        "_cancel_wanted",
        "_sent",
        "cancel_txn",
        "cancels",
        "data",
    )

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipMessage,
        data: bytes,
        sent: SipMessage | None,
        dest: Any,
        reliable: bool,
        branch: str,
    ) -> None:
        invite = request.method == "INVITE"
        super().__init__(
            layer,
            _INVITE_ROWS if invite else _NON_INVITE_ROWS,
            CALLING if invite else TRYING,
            request,
            dest,
            reliable,
            branch,
        )
        self.data = data
        self._sent = sent  # the request as parsed from ``data`` (built lazily when needed)
        self._ack: bytes | None = None
        self._cancel_wanted = False
        self._cancel_reason: str | None = None
        self.cancel_txn: ClientTxn | None = None
        self.cancels: ClientTxn | None = None

    # -- inputs ----------------------------------------------------------------------------------
    def _start(self, now: float, out: list[Effect]) -> None:
        settings = self._layer.settings
        out.append(("send", self.dest, self.data, self))
        timeout = settings.timeout
        if self.is_invite:
            if not self.reliable:
                self._interval = settings.t1
                self._arm("A", settings.t1, now, out)
            self._arm("B", timeout, now, out)
            if settings.timer_c is not None:
                self._arm("C", settings.timer_c, now, out)
        else:
            if not self.reliable:
                self._interval = settings.t1
                self._arm("E", settings.t1, now, out)
            self._arm("F", timeout, now, out)

    def receive_response(self, response: SipMessage, now: float) -> list[Effect]:
        """Feed a response matched to this transaction (see ``TransactionLayer.match_response``)."""
        out: list[Effect] = []
        status = response.status
        self._fire(
            EV_1XX if status < 200 else EV_2XX if status < 300 else EV_ERR, now, response, out
        )
        return out

    def sent_request(self) -> SipMessage:
        """The request exactly as sent (parsed from ``data``; cached)."""
        sent = self._sent
        if sent is None:
            sent = self._sent = parse_message(self.data)
        return sent

    def build_ack(self, response: SipMessage) -> bytes:
        """The ACK for a non-2xx final ``response`` to this INVITE (RFC 3261 §17.1.1.3)."""
        return _build_request("ACK", self.sent_request(), response.get("to"), [])

    def build_cancel(self, reason: str | None = None) -> bytes:
        """The CANCEL for this INVITE (RFC 3261 §9.1); ``reason`` is a Reason header value."""
        req = self.sent_request()
        extra = [f"Reason: {reason}"] if reason else []
        return _build_request("CANCEL", req, req.get("to"), extra)

    def request_cancel(self, now: float, reason: str | None) -> list[Effect]:
        if not self.is_invite:
            raise ValueError(f"cannot CANCEL a {self.method} transaction")
        out: list[Effect] = []
        if self.cancel_txn is not None or self._cancel_wanted:
            return out
        state = self.state
        if state is CALLING:
            self._cancel_wanted = True
            self._cancel_reason = reason
        elif state is PROCEEDING:
            self._send_cancel(now, reason, out)
        return out

    def _send_cancel(self, now: float, reason: str | None, out: list[Effect]) -> None:
        self._cancel_wanted = False
        if self.cancel_txn is not None:
            return
        data = self.build_cancel(reason)
        msg = parse_message(data)
        txn = self._layer._start_client(msg, data, msg, self.dest, self.reliable, now, out)
        txn.cancels = self
        self.cancel_txn = txn

    # -- actions ---------------------------------------------------------------------------------
    def _to_tu(self, now: float, response: SipMessage, out: list[Effect]) -> None:
        self.last_status = response.status
        out.append(("response", self, response))

    def _retransmit_a(self, now: float, arg: Any, out: list[Effect]) -> None:
        out.append(("send", self.dest, self.data, self))
        self._interval = interval = self._interval * 2.0
        self._arm("A", interval, now, out)

    def _retransmit_e(self, now: float, arg: Any, out: list[Effect]) -> None:
        out.append(("send", self.dest, self.data, self))
        t2 = self._layer.settings.t2
        if self.state is PROCEEDING:
            interval = t2
        else:
            interval = min(self._interval * 2.0, t2)
        self._interval = interval
        self._arm("E", interval, now, out)

    def _first_provisional(self, now: float, response: SipMessage, out: list[Effect]) -> None:
        timers = self._layer._timers
        timers.cancel(self, "A")
        timers.cancel(self, "B")
        self._to_tu(now, response, out)
        if self._cancel_wanted:
            self._send_cancel(now, self._cancel_reason, out)
        else:
            self._restart_c(now, response.status, out)

    def _provisional(self, now: float, response: SipMessage, out: list[Effect]) -> None:
        self._to_tu(now, response, out)
        self._restart_c(now, response.status, out)

    def _restart_c(self, now: float, status: int, out: list[Effect]) -> None:
        # §16.7 step 2: a provisional other than 100 restarts Timer C (not once it has fired).
        timer_c = self._layer.settings.timer_c
        if timer_c is not None and status > 100 and "C" in self._armed:
            self._arm("C", timer_c, now, out)

    def _timer_c(self, now: float, arg: Any, out: list[Effect]) -> None:
        out.append(("timeout", self))
        self._send_cancel(now, None, out)
        self._arm("C2", self._layer.settings.timeout, now, out)

    def _accepted(self, now: float, response: SipMessage, out: list[Effect]) -> None:
        self._layer._timers.cancel_all(self)
        self._cancel_wanted = False
        self._to_tu(now, response, out)
        self._arm("M", self._layer.settings.timeout, now, out)

    def _completed_invite(self, now: float, response: SipMessage, out: list[Effect]) -> None:
        self._layer._timers.cancel_all(self)
        self._cancel_wanted = False
        self._ack = ack = self.build_ack(response)
        out.append(("send", self.dest, ack, self))
        self._to_tu(now, response, out)
        self._arm("D", 0.0 if self.reliable else self._layer.settings.timer_d, now, out)

    def _resend_ack(self, now: float, response: SipMessage, out: list[Effect]) -> None:
        ack = self._ack
        if ack is not None:
            out.append(("send", self.dest, ack, self))

    def _completed_non_invite(self, now: float, response: SipMessage, out: list[Effect]) -> None:
        self._layer._timers.cancel_all(self)
        self._to_tu(now, response, out)
        self._arm("K", 0.0 if self.reliable else self._layer.settings.t4, now, out)


_INVITE_ROWS: Final = compile_table(ClientTxn, INVITE_CLIENT_TABLE)
_NON_INVITE_ROWS: Final = compile_table(ClientTxn, NON_INVITE_CLIENT_TABLE)
