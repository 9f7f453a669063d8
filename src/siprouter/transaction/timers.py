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

All deadlines of a transaction layer live in one :class:`TimerHeap`: a binary heap of
``(deadline, seq, kind, txn)`` entries with lazy cancellation. A transaction remembers, per timer
kind, the ``seq`` of its live entry (``txn._armed``); cancelling a timer just forgets that seq, and
an entry popped from the heap whose seq is no longer the armed one is discarded. Stale entries are
compacted away when they outnumber the live ones, so memory stays bounded by the live timers.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .base import Transaction

__all__ = ["TimerHeap", "TimerSettings"]


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


class TimerHeap:
    """One heap for every deadline of a transaction layer (see the module docstring)."""

    __slots__ = ("_heap", "_seq", "_stale")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, Transaction]] = []
        self._seq = 0
        self._stale = 0

    def __len__(self) -> int:
        """Entries held, stale ones included."""
        return len(self._heap)

    def arm(self, txn: Transaction, kind: str, deadline: float) -> None:
        """(Re)start timer ``kind`` of ``txn`` to fire at ``deadline``."""
        self._seq = seq = self._seq + 1
        armed = txn._armed
        if kind in armed:
            self._stale += 1
        armed[kind] = seq
        heapq.heappush(self._heap, (deadline, seq, kind, txn))

    def cancel(self, txn: Transaction, kind: str) -> None:
        """Stop timer ``kind`` of ``txn`` (no-op when it is not running)."""
        if txn._armed.pop(kind, None) is not None:
            self._stale += 1
            self._maybe_compact()

    def cancel_all(self, txn: Transaction) -> None:
        armed = txn._armed
        if armed:
            self._stale += len(armed)
            armed.clear()
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._stale > 256 and self._stale * 2 > len(self._heap):
            live = [e for e in self._heap if e[3]._armed.get(e[2]) == e[1]]
            heapq.heapify(live)
            self._heap = live
            self._stale = 0

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer runs."""
        heap = self._heap
        while heap:
            deadline, seq, kind, txn = heap[0]
            if txn._armed.get(kind) == seq:
                return deadline
            heapq.heappop(heap)
            self._stale -= 1
        return None

    def pop_due(self, now: float) -> tuple[Transaction, str] | None:
        """Remove and return the earliest live timer due at ``now`` (its entry is disarmed)."""
        heap = self._heap
        while heap:
            deadline, seq, kind, txn = heap[0]
            armed = txn._armed
            if armed.get(kind) != seq:
                heapq.heappop(heap)
                self._stale -= 1
                continue
            if deadline > now:
                return None
            heapq.heappop(heap)
            del armed[kind]
            return txn, kind
        return None
