"""The transaction layer (RFC 3261 §17, RFC 6026, RFC 4320), sans-IO.

Theory of operation
-------------------
The layer owns every client and server transaction, the indexes that match messages to them and
one heap of timer deadlines. It performs no I/O and reads no clock: every call that can start or
fire a timer takes ``now`` (seconds, any monotonic origin), and every call returns a list of
*effects* — plain tuples the caller performs in order. The caller (the runtime, on behalf of the
TU, i.e. the proxy core) arms one timer for :meth:`TransactionLayer.next_deadline` and calls
:meth:`TransactionLayer.on_timer` when it expires.

The state machines are tables in ``client.py`` (figures 5 and 6) and ``server.py`` (figures 7 and
8), each file opening with the rules it implements; timer values are in ``timers.py``.

Effects
-------
``('send', dest, data, txn)``
    Send ``data`` (bytes) to ``dest``, the opaque transport destination given when the
    transaction was created (an ``Endpoint`` in siprouter). If the transport fails, call
    ``layer.transport_error(txn, now)``.
``('response', client_txn, response)``
    A response (SipMessage) the TU must see: provisionals, the final, and in Accepted (RFC 6026)
    every further 2xx — retransmissions and other forks, which a proxy forwards upstream.
    Retransmitted non-2xx finals are absorbed (the ACK is re-sent) and never reported.
``('timeout', txn)``
    Client: Timer B / F fired with no final response, or the proxy's Timer C fired (see
    ``client.py``). Server: Timer H fired, the ACK never came. RFC 4320: a proxy must not answer
    408 upstream for a non-INVITE that timed out; it lets the upstream transaction time out.
``('transport_error', txn)``
    A transport error was reported for ``txn`` (RFC 3261 §17.1.4, §17.2.4).
``('ack', server_txn, ack)``
    An ACK matched an INVITE server transaction in Accepted (RFC 6026 "ACK / to TU"; only possible
    with RFC 2543 matching or a peer reusing the INVITE's branch): forward it like any ACK for a
    2xx. An ACK for a non-2xx final is absorbed by the transaction and never reported.
``('terminated', txn)``
    The transaction reached Terminated and left the layer's indexes; always the last effect
    about it.

API
---
::

    layer = TransactionLayer(settings: TimerSettings = TimerSettings())

    # incoming requests
    layer.match_request(request) -> ServerTxn | None        # §17.2.3 (+ RFC 2543 fallback)
    layer.server_receive(txn, request, now) -> list[Effect] # absorb a retransmission / ACK
    layer.match_cancel_target(cancel) -> ServerTxn | None   # §9.2: the INVITE a CANCEL is for
    layer.new_server(request, reply_dest, now, reliable=None) -> ServerTxn
    layer.server_respond(txn, response, now) -> list[Effect]  # response: SipMessage | bytes

    # outgoing requests
    layer.new_client(request, dest, now, reliable) -> tuple[ClientTxn, list[Effect]]
    layer.match_response(response) -> ClientTxn | None      # §17.1.3
    layer.client_receive(txn, response, now) -> list[Effect]
    layer.cancel(client_txn, now, reason=None) -> list[Effect]  # §9.1, deferred until a 1xx

    # both
    layer.transport_error(txn, now) -> list[Effect]         # also txn.transport_error(now)
    layer.next_deadline() -> float | None
    layer.on_timer(now) -> list[Effect]
    len(layer)                                              # live transactions

A typical request path in the TU::

    txn = layer.match_request(msg)
    if txn is not None:
        perform(layer.server_receive(txn, msg, now)); return     # absorbed
    if msg.method == "ACK": ...                                  # ACK for a 2xx: route it
    if msg.method == "CANCEL": target = layer.match_cancel_target(msg) ...
    txn = layer.new_server(msg, reply_dest, now); txn.context = ...
    perform(layer.server_respond(txn, trying_100, now))          # INVITE: 100 Trying at once

and a response path::

    txn = layer.match_response(resp)
    if txn is None: forward statelessly (§16.7)
    else: perform(layer.client_receive(txn, resp, now))

Transactions (``ClientTxn``, ``ServerTxn``) expose ``state`` (:class:`State`), ``method``,
``request``, ``dest``, ``reliable``, ``branch``, ``is_invite``, ``last_status`` and ``context``
(free for the TU). A ``ClientTxn`` also has ``data`` (bytes sent), ``cancel_txn`` and ``cancels``
(the CANCEL transaction and the INVITE it cancels: the TU usually drops responses to its own
CANCEL); a ``ServerTxn`` has ``last_response`` and ``created``.

Reliability: a client transaction is told (``reliable``); a server transaction derives it from the
transport in the request's top Via (``UDP`` is unreliable) unless told. On a reliable transport no
retransmission timer (A, E, G) runs and the wait timers D, I, J, K are zero: the transaction
terminates within the call that completed it.

Errors: ``new_server``/``new_client``/``server_respond`` raise ``ValueError`` for a message they
cannot use (no Via or branch for a client, an ACK, a duplicate transaction, a bad status line);
``cancel`` raises ``ValueError`` for a non-INVITE transaction. ``match_*`` never raise: a message
whose Via / CSeq cannot be parsed matches nothing.
"""

from __future__ import annotations

from typing import Any, Final

from ..sip.message import SipMessage, parse_message
from .base import Effect, State, Transaction
from .client import ClientTxn
from .server import ServerTxn
from .timers import TimerSettings, TransactionTimers

__all__ = [
    "MAGIC_COOKIE",
    "ClientTxn",
    "Effect",
    "ServerTxn",
    "State",
    "TimerSettings",
    "Transaction",
    "TransactionLayer",
]

MAGIC_COOKIE: Final = "z9hG4bK"  # RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with it

_DEFAULT_SETTINGS = TimerSettings()


class TransactionLayer:
    """All transactions of one process, their matching indexes and their timers."""

    __slots__ = ("_clients", "_servers", "_timers", "settings")

    def __init__(self, settings: TimerSettings = _DEFAULT_SETTINGS) -> None:
        self.settings = settings
        self._timers = TransactionTimers()
        # server key: (branch, sent-by, method) for RFC 3261 requests, ACK counted as INVITE;
        # (method, Call-ID, CSeq number, From tag, Request-URI, top Via) for RFC 2543 ones.
        self._servers: dict[tuple[Any, ...], ServerTxn] = {}
        # client key: (branch, method): §17.1.3
        self._clients: dict[tuple[str, str], ClientTxn] = {}

    def __len__(self) -> int:
        return len(self._servers) + len(self._clients)

    # -- timers ---------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must be called next (None: no timer runs)."""
        return self._timers.next_deadline()

    def on_timer(self, now: float) -> list[Effect]:
        """Fire every timer due at ``now``, in deadline order."""
        out: list[Effect] = []
        timers = self._timers
        item = timers.pop_due(now)
        while item is not None:  # bounded: a re-armed timer is due strictly after ``now``
            txn, kind = item
            txn._fire(kind, now, None, out)
            item = timers.pop_due(now)
        return out

    # -- server side ----------------------------------------------------------------------------
    @staticmethod
    def _server_key(msg: SipMessage, method: str) -> tuple[Any, ...]:
        """Index key of a request per §17.2.3; ValueError when its Via or CSeq is unusable."""
        via = msg.via1
        branch = via.branch
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            return (branch, via.sent_by(), method)
        return (method, msg.call_id, msg.cseq_num, msg.from_tag, msg.ruri, via.to_string())

    def match_request(self, request: SipMessage) -> ServerTxn | None:
        """The server transaction ``request`` belongs to (RFC 3261 §17.2.3), or None.

        An ACK matches the INVITE transaction it acknowledges (for RFC 2543 requests: when its To
        tag is the one of the response the transaction sent). CANCEL matches its own transaction
        (retransmissions); use :meth:`match_cancel_target` for the INVITE it cancels.
        """
        method = request.method
        try:
            key = self._server_key(request, "INVITE" if method == "ACK" else method)
        except ValueError:
            return None
        txn = self._servers.get(key)
        if txn is None or len(key) == 3:
            return txn
        # RFC 2543 fallback: the To tag must match too
        if method == "ACK":
            return txn if request.to_tag == txn.response_to_tag() else None
        return txn if request.to_tag == txn.request.to_tag else None

    def match_cancel_target(self, cancel: SipMessage) -> ServerTxn | None:
        """The INVITE server transaction a CANCEL applies to (RFC 3261 §9.2), or None."""
        try:
            key = self._server_key(cancel, "INVITE")
        except ValueError:
            return None
        txn = self._servers.get(key)
        if txn is None or len(key) == 3:
            return txn
        return txn if cancel.to_tag == txn.request.to_tag else None

    def new_server(
        self, request: SipMessage, reply_dest: Any, now: float, reliable: bool | None = None
    ) -> ServerTxn:
        """Create the server transaction for a new request (not ACK); responses go to
        ``reply_dest``. ``reliable`` defaults to "top Via transport is not UDP"."""
        method = request.method
        if not request.is_request or method == "ACK":
            raise ValueError("only requests other than ACK create server transactions")
        key = self._server_key(request, method)
        if key in self._servers:
            raise ValueError("a server transaction for this request exists already")
        via = request.via1
        if reliable is None:
            reliable = via.transport.upper() != "UDP"
        txn = ServerTxn(self, request, reply_dest, reliable, via.branch, now)
        txn._key = key
        self._servers[key] = txn
        return txn

    def server_receive(self, txn: ServerTxn, request: SipMessage, now: float) -> list[Effect]:
        """Feed a request that :meth:`match_request` matched to ``txn``."""
        return txn.receive_request(request, now)

    def server_respond(
        self, txn: ServerTxn, response: SipMessage | bytes, now: float
    ) -> list[Effect]:
        """Send a response through ``txn`` (see ``server.py`` for what each state does)."""
        return txn.respond(response, now)

    # -- client side ----------------------------------------------------------------------------
    def new_client(
        self, request: SipMessage | bytes, dest: Any, now: float, reliable: bool
    ) -> tuple[ClientTxn, list[Effect]]:
        """Start a client transaction: the request (message or bytes, not ACK) is sent to
        ``dest`` at once (first effect). The top Via must carry the branch the TU chose."""
        if isinstance(request, bytes):
            data = request
            msg = sent = parse_message(request)
        else:
            msg = request
            data = msg.to_bytes()
            sent = None
        out: list[Effect] = []
        txn = self._start_client(msg, data, sent, dest, reliable, now, out)
        return txn, out

    def _start_client(
        self,
        msg: SipMessage,
        data: bytes,
        sent: SipMessage | None,
        dest: Any,
        reliable: bool,
        now: float,
        out: list[Effect],
    ) -> ClientTxn:
        method = msg.method
        if not msg.is_request or method == "ACK":
            raise ValueError("only requests other than ACK create client transactions")
        branch = msg.via1.branch
        if not branch:
            raise ValueError("the request's top Via has no branch")
        key = (branch, method)
        if key in self._clients:
            raise ValueError(f"a client transaction with branch {branch!r} exists already")
        txn = ClientTxn(self, msg, data, sent, dest, reliable, branch)
        self._clients[key] = txn
        txn._start(now, out)
        return txn

    def match_response(self, response: SipMessage) -> ClientTxn | None:
        """The client transaction ``response`` belongs to (RFC 3261 §17.1.3), or None."""
        try:
            branch = response.top_branch()
            if branch is None:
                return None
            return self._clients.get((branch, response.cseq_method))
        except ValueError:
            return None

    def client_receive(self, txn: ClientTxn, response: SipMessage, now: float) -> list[Effect]:
        """Feed a response that :meth:`match_response` matched to ``txn``."""
        return txn.receive_response(response, now)

    def cancel(self, txn: ClientTxn, now: float, reason: str | None = None) -> list[Effect]:
        """CANCEL the INVITE client transaction ``txn`` (RFC 3261 §9.1).

        Sent at once (in a new non-INVITE client transaction, ``txn.cancel_txn``) when a
        provisional was received; deferred until the first provisional otherwise; nothing when a
        final was received or a CANCEL was already asked for. ``reason`` is a Reason header
        value (RFC 3326), e.g. ``'SIP;cause=200;text="Call completed elsewhere"'``.
        """
        return txn.request_cancel(now, reason)

    # -- both -----------------------------------------------------------------------------------
    def transport_error(self, txn: Transaction, now: float) -> list[Effect]:
        """The transport failed to send for ``txn``."""
        return txn.transport_error(now)

    def _forget(self, txn: Transaction) -> None:
        self._timers.cancel_all(txn)
        if isinstance(txn, ServerTxn):
            if self._servers.get(txn._key) is txn:
                del self._servers[txn._key]
        elif isinstance(txn, ClientTxn):
            key = (txn.branch or "", txn.method)
            if self._clients.get(key) is txn:
                del self._clients[key]
