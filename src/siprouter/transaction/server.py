"""Server transactions: RFC 3261 §17.2 with RFC 6026 (INVITE Accepted) and RFC 4320.

Rules this file implements
--------------------------
INVITE server transaction (RFC 3261 §17.2.1, figure 7; RFC 6026 §7.1, §8.5-§8.7, figure 7):

- Proceeding: created by the TU for the INVITE. The TU sends every response through the
  transaction (a proxy sends its 100 Trying at once, §16.2 / §17.2.1). A retransmitted INVITE is
  absorbed by re-sending the last provisional (nothing when none was sent yet).
- A 2xx from the TU is sent and moves to Accepted (RFC 6026): INVITE retransmissions are absorbed
  without output, further 2xx from the TU (retransmissions forwarded by a proxy, other forks) are
  sent, an ACK that matches is passed to the TU (``ack`` effect). Timer L (64*T1) ends it.
- A 300-699 from the TU is sent and moves to Completed: Timer G (T1 doubling up to T2,
  unreliable only) re-sends it, an INVITE retransmission re-sends it, and Timer H (64*T1) gives
  up waiting for the ACK (``timeout`` to the TU, Terminated). Further responses from the TU are
  discarded.
- The ACK moves to Confirmed, which absorbs ACK and INVITE retransmissions until Timer I
  (T4 unreliable, 0 reliable) ends it.
- A transport error in Proceeding or Completed informs the TU and terminates (§17.2.4); in
  Accepted it informs the TU only (the TU owns 2xx retransmission, Timer L still ends it).

Non-INVITE server transaction (RFC 3261 §17.2.2, figure 8; RFC 4320):

- Trying: retransmissions of the request are absorbed without output.
- A provisional from the TU is sent and moves to Proceeding, where retransmissions re-send it.
  RFC 4320 §4.1: only 100 may be sent to a non-INVITE request, and over an unreliable transport
  not before T2 has passed since the request arrived; other provisionals are discarded.
- A final from the TU is sent and moves to Completed, where retransmissions re-send it and other
  finals from the TU are discarded; Timer J (64*T1 unreliable, 0 reliable) ends it.
- A transport error in Proceeding or Completed informs the TU and terminates (§17.2.4).
- RFC 4320 §4.2: no 408 is ever generated for a non-INVITE request; nothing here generates
  responses on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..sip.message import SipMessage, parse_message
from .base import (
    EV_ACK,
    EV_REQUEST,
    EV_TRANSPORT_ERROR,
    EV_TU_1XX,
    EV_TU_2XX,
    EV_TU_ERR,
    Effect,
    State,
    Table,
    Transaction,
    compile_table,
)

if TYPE_CHECKING:  # pragma: no cover
    from .layer import TransactionLayer

__all__ = ["ServerTxn"]

TRYING: Final = State.TRYING
PROCEEDING: Final = State.PROCEEDING
COMPLETED: Final = State.COMPLETED
CONFIRMED: Final = State.CONFIRMED
ACCEPTED: Final = State.ACCEPTED
TERMINATED: Final = State.TERMINATED

# INVITE server transaction: RFC 3261 figure 7 as amended by RFC 6026 figure 7.
INVITE_SERVER_TABLE: Table = {
    (PROCEEDING, EV_REQUEST): (PROCEEDING, "_resend_last"),
    (PROCEEDING, EV_TU_1XX): (PROCEEDING, "_send"),
    (PROCEEDING, EV_TU_2XX): (ACCEPTED, "_accepted"),
    (PROCEEDING, EV_TU_ERR): (COMPLETED, "_completed_invite"),
    (PROCEEDING, EV_TRANSPORT_ERROR): (TERMINATED, "_transport_error"),
    (COMPLETED, EV_REQUEST): (COMPLETED, "_resend_last"),
    (COMPLETED, "G"): (COMPLETED, "_retransmit_g"),
    (COMPLETED, "H"): (TERMINATED, "_timeout"),
    (COMPLETED, EV_ACK): (CONFIRMED, "_confirmed"),
    (COMPLETED, EV_TRANSPORT_ERROR): (TERMINATED, "_transport_error"),
    (CONFIRMED, "I"): (TERMINATED, None),
    (ACCEPTED, EV_TU_2XX): (ACCEPTED, "_send"),
    (ACCEPTED, EV_ACK): (ACCEPTED, "_ack_to_tu"),
    (ACCEPTED, EV_TRANSPORT_ERROR): (ACCEPTED, "_transport_error"),
    (ACCEPTED, "L"): (TERMINATED, None),
}

# Non-INVITE server transaction: RFC 3261 figure 8.
NON_INVITE_SERVER_TABLE: Table = {
    (TRYING, EV_TU_1XX): (PROCEEDING, "_send"),
    (TRYING, EV_TU_2XX): (COMPLETED, "_completed_non_invite"),
    (TRYING, EV_TU_ERR): (COMPLETED, "_completed_non_invite"),
    (PROCEEDING, EV_REQUEST): (PROCEEDING, "_resend_last"),
    (PROCEEDING, EV_TU_1XX): (PROCEEDING, "_send"),
    (PROCEEDING, EV_TU_2XX): (COMPLETED, "_completed_non_invite"),
    (PROCEEDING, EV_TU_ERR): (COMPLETED, "_completed_non_invite"),
    (PROCEEDING, EV_TRANSPORT_ERROR): (TERMINATED, "_transport_error"),
    (COMPLETED, EV_REQUEST): (COMPLETED, "_resend_last"),
    (COMPLETED, "J"): (TERMINATED, None),
    (COMPLETED, EV_TRANSPORT_ERROR): (TERMINATED, "_transport_error"),
}


def status_of(data: bytes) -> int:
    """Status code of a serialized response (ValueError when ``data`` is not one)."""
    if len(data) < 12 or not data.startswith(b"SIP/2.0 ") or data[11] != 0x20:
        raise ValueError("not a SIP/2.0 response status line")
    a, b, c = data[8] - 0x30, data[9] - 0x30, data[10] - 0x30
    if not (0 <= a <= 9 and 0 <= b <= 9 and 0 <= c <= 9):
        raise ValueError("not a SIP/2.0 response status line")
    status = a * 100 + b * 10 + c
    if status < 100:
        raise ValueError(f"invalid response status {status}")
    return status


class ServerTxn(Transaction):
    """One server transaction; created by :meth:`TransactionLayer.new_server`.

    Beyond :class:`Transaction`'s attributes: ``last_response`` (bytes of the last response sent,
    or None) and ``created`` (the ``now`` it was created at).
    """

    __slots__ = ("_key", "_resp_to_tag", "created", "last_response")

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipMessage,
        dest: Any,
        reliable: bool,
        branch: str | None,
        now: float,
    ) -> None:
        invite = request.method == "INVITE"
        super().__init__(
            layer,
            _INVITE_ROWS if invite else _NON_INVITE_ROWS,
            PROCEEDING if invite else TRYING,
            request,
            dest,
            reliable,
            branch,
        )
        self.created = now
        self.last_response: bytes | None = None
        self._resp_to_tag: str | bool | None = False  # False: not computed yet
        self._key: tuple[Any, ...] = ()  # index key held by the layer

    # -- inputs ----------------------------------------------------------------------------------
    def respond(self, response: SipMessage | bytes, now: float) -> list[Effect]:
        """Send a response through this transaction (see ``TransactionLayer.server_respond``)."""
        if isinstance(response, bytes):
            data = response
            status = status_of(data)
        else:
            if response.is_request:
                raise ValueError("server_respond() needs a response, got a request")
            data = response.to_bytes()
            status = response.status
        out: list[Effect] = []
        if status < 200:
            if not self.is_invite and (
                status != 100
                or (not self.reliable and now - self.created < self._layer.settings.t2)
            ):
                return out  # RFC 4320 §4.1
            event = EV_TU_1XX
        elif status < 300:
            event = EV_TU_2XX
        else:
            event = EV_TU_ERR
        self._fire(event, now, (data, status), out)
        return out

    def receive_request(self, request: SipMessage, now: float) -> list[Effect]:
        """Feed a request matched to this transaction (retransmission or ACK)."""
        out: list[Effect] = []
        self._fire(EV_ACK if request.method == "ACK" else EV_REQUEST, now, request, out)
        return out

    def response_to_tag(self) -> str | None:
        """To tag of the last response sent (used by RFC 2543 ACK matching)."""
        tag = self._resp_to_tag
        if tag is False:
            tag = None
            if self.last_response is not None:
                try:
                    tag = parse_message(self.last_response).to_tag
                except ValueError:
                    tag = None
            self._resp_to_tag = tag
        return tag  # type: ignore[return-value]

    # -- actions ---------------------------------------------------------------------------------
    def _send(self, now: float, arg: tuple[bytes, int], out: list[Effect]) -> None:
        data, status = arg
        self.last_response = data
        self.last_status = status
        self._resp_to_tag = False
        out.append(("send", self.dest, data, self))

    def _resend_last(self, now: float, arg: Any, out: list[Effect]) -> None:
        data = self.last_response
        if data is not None:
            out.append(("send", self.dest, data, self))

    def _accepted(self, now: float, arg: tuple[bytes, int], out: list[Effect]) -> None:
        self._send(now, arg, out)
        self._arm("L", self._layer.settings.timeout, now, out)

    def _completed_invite(self, now: float, arg: tuple[bytes, int], out: list[Effect]) -> None:
        self._send(now, arg, out)
        settings = self._layer.settings
        if not self.reliable:
            self._interval = settings.t1
            self._arm("G", settings.t1, now, out)
        self._arm("H", settings.timeout, now, out)

    def _retransmit_g(self, now: float, arg: Any, out: list[Effect]) -> None:
        self._resend_last(now, arg, out)
        self._interval = interval = min(self._interval * 2.0, self._layer.settings.t2)
        self._arm("G", interval, now, out)

    def _confirmed(self, now: float, arg: Any, out: list[Effect]) -> None:
        self._layer._timers.cancel_all(self)
        self._arm("I", 0.0 if self.reliable else self._layer.settings.t4, now, out)

    def _ack_to_tu(self, now: float, ack: SipMessage, out: list[Effect]) -> None:
        out.append(("ack", self, ack))

    def _completed_non_invite(self, now: float, arg: tuple[bytes, int], out: list[Effect]) -> None:
        self._send(now, arg, out)
        self._arm("J", 0.0 if self.reliable else self._layer.settings.timeout, now, out)


_INVITE_ROWS: Final = compile_table(ServerTxn, INVITE_SERVER_TABLE)
_NON_INVITE_ROWS: Final = compile_table(ServerTxn, NON_INVITE_SERVER_TABLE)
