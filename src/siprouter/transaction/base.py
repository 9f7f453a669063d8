"""What every transaction shares: the states, the effect tuples and the table-driven engine.

A state machine is a table ``{(state, event): (next_state, action_name | None)}``. A pair that is
not in the table is an input the machine absorbs without any output (a retransmitted final in
Completed, an INVITE retransmission in Accepted ...): that is how RFC 3261 §17 wants them
treated. :func:`compile_table` turns the table into one dict per state so that dispatching an
event costs two dict lookups.

Firing an event first moves to the next state, then runs the action. Entering ``Terminated``
always cancels the transaction's timers, removes it from the layer's indexes and emits
``('terminated', txn)`` after whatever the action emitted.

Events are short strings: ``'1xx'``, ``'2xx'``, ``'3xx-6xx'`` for responses received by a client
transaction; ``'tu_1xx'``, ``'tu_2xx'``, ``'tu_3xx-6xx'`` for responses the TU sends through a
server transaction; ``'request'`` and ``'ack'`` for requests that match a server transaction;
``'transport_error'``; and the timer letters ``'A'`` ... ``'M'`` (plus ``'C'``/``'C2'``, the
proxy's Timer C, see ``client.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:  # pragma: no cover
    from ..sip.message import SipMessage
    from .layer import TransactionLayer
    from .timers import TimerEntry

__all__ = ["Effect", "State", "Transaction", "compile_table"]

# An effect is a plain tuple whose first item names it; see ``transaction/layer.py``.
Effect: TypeAlias = tuple[Any, ...]

EV_1XX: Final = "1xx"
EV_2XX: Final = "2xx"
EV_ERR: Final = "3xx-6xx"
EV_TU_1XX: Final = "tu_1xx"
EV_TU_2XX: Final = "tu_2xx"
EV_TU_ERR: Final = "tu_3xx-6xx"
EV_REQUEST: Final = "request"
EV_ACK: Final = "ack"
EV_TRANSPORT_ERROR: Final = "transport_error"


class State(Enum):
    """Transaction states, named as RFC 3261 figures 5-8 and RFC 6026 figures 5 and 7 name them."""

    CALLING = "Calling"  # INVITE client (fig. 5)
    TRYING = "Trying"  # non-INVITE client and server (figs. 6, 8)
    PROCEEDING = "Proceeding"  # all four machines
    COMPLETED = "Completed"  # all four machines
    CONFIRMED = "Confirmed"  # INVITE server (fig. 7)
    ACCEPTED = "Accepted"  # RFC 6026: INVITE client and server after a 2xx
    TERMINATED = "Terminated"


_TERMINATED: Final = State.TERMINATED
_FINISHED: Final[dict[str, Any]] = {}  # the row of a finished transaction: no event applies

Action: TypeAlias = "Callable[[Any, float, Any, list[Effect]], None]"
Row: TypeAlias = "dict[str, tuple[State, Action | None, Row]]"
Table: TypeAlias = "dict[tuple[State, str], tuple[State, str | None]]"


def compile_table(cls: type, table: Table) -> dict[State, Row]:
    """One ``{event: (next_state, action, next_row)}`` dict per state, actions resolved on
    ``cls``; each entry carries the next state's row so a transition needs no Enum hashing."""
    rows: dict[State, Row] = {s: {} for s in State}
    for (state, event), (nxt, action_name) in table.items():
        action: Action | None = getattr(cls, action_name) if action_name else None
        rows[state][event] = (nxt, action, rows[nxt])
    return rows


class Transaction:
    """Fields and engine shared by client and server transactions.

    Public attributes (read them; ``context`` is the TU's to set):

    ``state`` (:class:`State`), ``method`` (request method), ``request`` (the :class:`SipMessage`
    the transaction was created with), ``dest`` (the opaque transport destination: where requests
    go for a client transaction, where responses go for a server transaction), ``reliable``,
    ``branch`` (top Via branch of the request, may be None for RFC 2543 server transactions),
    ``is_invite``, ``last_status`` (last response status sent or received, 0 when none) and
    ``context`` (anything the TU wants; the layer never touches it).
    """

    __slots__ = (
        "_armed",
        "_interval",
        "_layer",
        "_row",
        "branch",
        "context",
        "dest",
        "is_invite",
        "last_status",
        "method",
        "reliable",
        "request",
        "state",
    )

    def __init__(
        self,
        layer: TransactionLayer,
        rows: dict[State, Row],
        state: State,
        request: SipMessage,
        dest: Any,
        reliable: bool,
        branch: str | None,
    ) -> None:
        self._layer = layer
        self.state = state
        self._row = rows[state]
        self.request = request
        self.method = request.method
        self.is_invite = request.method == "INVITE"
        self.dest = dest
        self.reliable = reliable
        self.branch = branch
        self.last_status = 0
        self.context: Any = None
        self._armed: dict[str, TimerEntry] = {}
        self._interval = 0.0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.method} branch={self.branch!r} "
            f"{self.state.value} call-id={self.request.call_id!r}>"
        )

    # -- engine ---------------------------------------------------------------------------------
    def _fire(self, event: str, now: float, arg: Any, out: list[Effect]) -> bool:
        """Feed one event; False when the current state has no row for it (absorbed)."""
        entry = self._row.get(event)
        if entry is None:
            return False
        nxt, action, row = entry
        self.state = nxt
        self._row = row
        if action is not None:
            action(self, now, arg, out)
        if nxt is _TERMINATED and self._row is not _FINISHED:
            self._finish(out)
        return True

    def _finish(self, out: list[Effect]) -> None:
        # _FINISHED marks "already finished" (a nested zero-length timer may get here first)
        self._row = _FINISHED
        self._layer._forget(self)
        out.append(("terminated", self))

    def _arm(self, kind: str, delay: float, now: float, out: list[Effect]) -> None:
        """Start timer ``kind``; a zero-length timer fires right away (reliable transports)."""
        if delay <= 0.0:
            self._fire(kind, now, None, out)
        else:
            self._layer._timers.arm(self, kind, now + delay)

    # -- inputs shared by both kinds ------------------------------------------------------------
    def transport_error(self, now: float) -> list[Effect]:
        """The transport could not send for this transaction (RFC 3261 §17.1.4, §17.2.4)."""
        out: list[Effect] = []
        self._fire(EV_TRANSPORT_ERROR, now, None, out)
        return out

    # -- actions shared by both kinds -----------------------------------------------------------
    def _transport_error(self, now: float, arg: Any, out: list[Effect]) -> None:
        out.append(("transport_error", self))

    def _timeout(self, now: float, arg: Any, out: list[Effect]) -> None:
        out.append(("timeout", self))
