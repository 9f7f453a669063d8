"""Transaction timers as data: the RFC 3261 / RFC 6026 timer values and one deadline heap.

Timer values (RFC 3261 §17 and Table 4 in Appendix A; RFC 6026 §8.4 and §8.7 for L and M):

====== ========================================== ===============================================
timer  unreliable transport (UDP)                 reliable transport (TCP, TLS, WS, SCTP)
====== ========================================== ===============================================
A      T1, doubling (INVITE retransmit)           not used
B      64*T1 (INVITE client timeout)              64*T1
C      ``timer_c`` (proxy INVITE, RFC 3261 §16.6) same
D      ``timer_d`` >= 32 s (absorb final retrans) 0
E      T1, doubling up to T2 (non-INVITE retrans) not used
F      64*T1 (non-INVITE client timeout)          64*T1
G      T1, doubling up to T2 (INVITE final retr.) not used
H      64*T1 (wait for ACK)                       64*T1
I      T4 (absorb ACK retransmits)                0
J      64*T1 (absorb non-INVITE retransmits)      0
K      T4 (absorb final retransmits)              0
L      64*T1 (RFC 6026: server Accepted)          64*T1
M      64*T1 (RFC 6026: client Accepted)          64*T1
====== ========================================== ===============================================

A zero-length timer fires at once, inside the call that started it (no heap entry).

All deadlines of a transaction layer live in one :class:`TimerWheel` (through
:class:`TransactionTimers`, which files them by transaction and timer kind): entries are filed
in slots of 10 ms by deadline, a set per slot, so arming a timer and stopping it are a few set
and dict operations, whatever the number of timers running; a stopped timer is taken out of its
slot at once and keeps nothing alive. The entry object :meth:`TimerWheel.add` returns is the
handle (it knows its slot), so no handle number is made and boxed per timer. Only the slots
time has reached go into a (small) heap, from which entries come out in deadline order. (One
binary heap of every deadline with lazy cancellation would cost a log(n) climb per timer and
keep a stopped timer's transaction until its deadline.)
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

if TYPE_CHECKING:  # pragma: no cover
    from .base import Transaction

__all__ = ["RESOLUTION", "TimerEntry", "TimerSettings", "TimerWheel", "TransactionTimers"]


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """Base timer values, in seconds."""

    # RFC 3261 §17.1.1.1 / Table 4: RTT estimate, default 500 ms.
    t1: float = 0.5
    # RFC 3261 §17.1.2.2 / Table 4: maximum retransmit interval for non-INVITE requests and
    # INVITE responses, default 4 s.
    t2: float = 4.0
    # RFC 3261 §17.1.2.2 / Table 4: maximum duration a message remains in the network, 5 s.
    t4: float = 5.0
    # RFC 3261 §17.1.1.2 / Table 4: Timer D, "at least 32 seconds" on unreliable transports.
    timer_d: float = 32.0
    # RFC 3261 §16.6 step 11: a proxy's Timer C for INVITE ("greater than 3 minutes", e.g.
    # 180.0). Off (None) by default: siprouter's proxy core runs its own ``fr_inv`` timer
    # (Kamailio tm's fr_inv_timer) for that role; this one is for a TU that wants the layer to
    # do it.
    timer_c: float | None = None

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t4", "timer_d", "timer_c"):
            v = getattr(self, name)
            if v is None and name == "timer_c":
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"timer setting {name} must be a positive number, got {v!r}")
        if self.t2 < self.t1:
            raise ValueError(f"T2 ({self.t2}) must not be smaller than T1 ({self.t1})")

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H (RFC 3261 Table 4), L and M (RFC 6026 §8.4, §8.7)."""
        return 64.0 * self.t1


# The wheel's slot width, also the grid of Core's loop timer wake-ups (runtime.core.TIMER_GRID).
# heapq's functions as C statics of the compiled module (an imported name is a dict lookup
# per call)
heappush: Final = heapq.heappush
heappop: Final = heapq.heappop

RESOLUTION: Final = 0.01
_PER_SECOND: Final = 1.0 / RESOLUTION

# where a TimerEntry is
_GONE: Final = 0  # came due or removed
_IN_SLOT: Final = 1  # in the slot of its deadline (not reached yet)
_READY: Final = 2  # in the ready heap (its slot was reached)


class TimerEntry:
    """One deadline in a :class:`TimerWheel`: what :meth:`TimerWheel.add` returns, and what
    :meth:`TimerWheel.remove` takes back. ``kind`` is free for the caller (the transaction
    timers file their timer's letter there). An entry belongs to the wheel that made it: another
    wheel's ``remove`` leaves it alone."""

    __slots__ = ("deadline", "item", "kind", "seq", "state", "tick", "wheel")

    def __init__(
        self, wheel: TimerWheel, deadline: float, item: object, kind: str, tick: int, seq: int
    ) -> None:
        self.wheel = wheel
        self.deadline = deadline
        self.item: object = item
        self.kind = kind
        self.tick = tick
        self.seq = seq
        self.state = _IN_SLOT


class TimerWheel:
    """Deadlines in 10 ms slots, with removal (see the module docstring).

    ``add(deadline, item)`` files ``item`` in the slot of its deadline and returns its
    :class:`TimerEntry`; ``remove(entry)`` takes it out again, so a stopped timer keeps
    nothing alive. When time reaches a slot, its entries move to a small heap (``_ready``) and
    come out of :meth:`pop_due` in deadline order, each when its own deadline is due.
    """

    __slots__ = ("_n", "_next", "_next_ok", "_origin", "_ready", "_seq", "_slots", "_ticks")

    def __init__(self) -> None:
        self._slots: dict[int, set[TimerEntry]] = {}
        self._ticks: list[int] = []  # heap of slot numbers (one entry per slot made)
        # heap of the entries of reached slots, by (deadline, order added); an entry removed
        # after its slot was reached stays until it surfaces, holding nothing (state _GONE)
        self._ready: list[tuple[float, int, TimerEntry]] = []
        self._seq = 0
        self._n = 0  # entries held (slots and _ready's live ones)
        # the earliest deadline, remembered while _next_ok (the runtime asks after every message)
        self._next = 0.0
        self._next_ok = False
        self._origin: float | None = None  # slot 0 starts here (the first deadline's second)

    def _tick(self, t: float) -> int:
        """The slot of time ``t`` (int() is monotonic, which is all the slots need)."""
        origin = self._origin
        if origin is None:
            origin = self._origin = float(int(t))
        return int((t - origin) * _PER_SECOND)

    def __len__(self) -> int:
        return self._n

    def add(self, deadline: float, item: object, kind: str = "") -> TimerEntry:
        """File ``item`` to come due at ``deadline`` (seconds); returns its entry."""
        self._seq += 1
        tick = self._tick(deadline)
        entry = TimerEntry(self, deadline, item, kind, tick, self._seq)
        slot = self._slots.get(tick)
        if slot is None:
            self._slots[tick] = {entry}
            heappush(self._ticks, tick)
        else:
            slot.add(entry)
        if self._n == 0:
            self._next = deadline
            self._next_ok = True
        elif self._next_ok and deadline < self._next:
            self._next = deadline
        self._n += 1
        return entry

    def remove(self, entry: TimerEntry) -> None:
        """Take an entry out (no-op when it came due or was removed already)."""
        state = entry.state
        if state == _GONE or entry.wheel is not self:
            return
        entry.state = _GONE
        entry.item = None
        self._n -= 1
        if state == _IN_SLOT:
            tick = entry.tick
            slot = self._slots.get(tick)
            if slot is not None:
                slot.discard(entry)
                if not slot:
                    del self._slots[tick]
            if entry.deadline <= self._next:
                self._next_ok = False
        else:  # in the ready heap: skipped when it surfaces
            self._next_ok = False

    def _promote(self) -> None:
        """Move the earliest slot's entries to the ready heap."""
        tick = heappop(self._ticks)
        slot = self._slots.pop(tick, None)
        if slot is not None:
            ready = self._ready
            for entry in slot:
                entry.state = _READY
                heappush(ready, (entry.deadline, entry.seq, entry))

    def _ready_head(self) -> TimerEntry | None:
        ready = self._ready
        while ready:
            head = ready[0][2]
            if head.state == _READY:
                return head
            heappop(ready)
        return None

    def next_deadline(self) -> float | None:
        """The earliest deadline held, or None."""
        if self._n == 0:
            return None
        if self._next_ok:
            return self._next
        ticks = self._ticks
        while True:
            head = self._ready_head()
            # a slot not reached yet can only hold an earlier deadline if it is head's slot
            if head is not None and (not ticks or ticks[0] > head.tick):
                self._next = head.deadline
                self._next_ok = True
                return head.deadline
            if not ticks:
                return None  # not reached while _n > 0
            self._promote()

    def pop_due_entry(self, now: float) -> TimerEntry | None:
        """Remove and return the entry with the earliest deadline if it is due at ``now``
        (its ``item`` still set)."""
        ticks = self._ticks
        last = self._tick(now)
        while ticks and ticks[0] <= last:
            self._promote()
        head = self._ready_head()
        if head is None or head.deadline > now:
            return None
        heappop(self._ready)
        head.state = _GONE
        self._n -= 1
        self._next_ok = False
        return head

    def pop_due(self, now: float) -> object | None:
        """Remove and return the item with the earliest deadline if it is due at ``now``."""
        entry = self.pop_due_entry(now)
        if entry is None:
            return None
        item = entry.item
        entry.item = None
        return item


class TransactionTimers:
    """The timers of a transaction layer, by transaction and kind, in one :class:`TimerWheel`.

    A transaction remembers, per timer kind, its live entry (``txn._armed``); re-arming or
    cancelling a timer removes the previous entry from the wheel."""

    __slots__ = ("_wheel",)

    def __init__(self) -> None:
        self._wheel = TimerWheel()

    def __len__(self) -> int:
        """Entries held."""
        return len(self._wheel)

    def arm(self, txn: Transaction, kind: str, deadline: float) -> None:
        """(Re)start timer ``kind`` of ``txn`` to fire at ``deadline``."""
        armed = txn._armed
        old = armed.get(kind)
        if old is not None:
            self._wheel.remove(old)
        armed[kind] = self._wheel.add(deadline, txn, kind)

    def cancel(self, txn: Transaction, kind: str) -> None:
        """Stop timer ``kind`` of ``txn`` (no-op when it is not running)."""
        entry = txn._armed.pop(kind, None)
        if entry is not None:
            self._wheel.remove(entry)

    def cancel_all(self, txn: Transaction) -> None:
        armed = txn._armed
        if armed:
            for entry in armed.values():
                self._wheel.remove(entry)
            armed.clear()

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer runs."""
        return self._wheel.next_deadline()

    def pop_due(self, now: float) -> tuple[Transaction, str] | None:
        """Remove and return the earliest live timer due at ``now`` (its entry is disarmed)."""
        entry = self._wheel.pop_due_entry(now)
        if entry is None:
            return None
        txn = cast("Transaction", entry.item)
        entry.item = None
        del txn._armed[entry.kind]
        return txn, entry.kind
