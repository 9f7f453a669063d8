"""The deadline heap: ordering, lazy cancellation, compaction."""

from __future__ import annotations

from txn_helpers import UAS, request

from siprouter.transaction.layer import TimerSettings, TransactionLayer
from siprouter.transaction.timers import TimerHeap


def _txns(n: int):  # type: ignore[no-untyped-def]
    layer = TransactionLayer(TimerSettings(timer_c=None))
    out = []
    for i in range(n):
        txn, _ = layer.new_client(request("OPTIONS", branch=f"z9hG4bK-{i}"), UAS, 0.0, True)
        out.append(txn)
    return out


def test_pop_in_deadline_order_and_lazy_cancel() -> None:
    a, b, c = _txns(3)
    heap = TimerHeap()
    heap.arm(a, "F", 3.0)
    heap.arm(b, "F", 1.0)
    heap.arm(c, "F", 2.0)
    heap.arm(c, "K", 2.5)
    assert heap.next_deadline() == 1.0
    heap.cancel(b, "F")
    heap.cancel(b, "F")  # no-op
    assert heap.next_deadline() == 2.0
    heap.arm(c, "F", 4.0)  # re-arming supersedes the 2.0 entry
    assert heap.pop_due(1.9) is None
    assert heap.pop_due(10.0) == (c, "K")
    assert heap.pop_due(10.0) == (a, "F")
    assert heap.pop_due(3.5) is None
    assert heap.pop_due(10.0) == (c, "F")
    assert heap.pop_due(10.0) is None
    assert heap.next_deadline() is None and len(heap) == 0


def test_compaction_keeps_live_entries_only() -> None:
    txns = _txns(600)
    heap = TimerHeap()
    for i, t in enumerate(txns):
        heap.arm(t, "F", 100.0 + i)
    for t in txns[:500]:
        heap.cancel(t, "F")
    assert len(heap) < 600  # compacted once stale entries outnumbered live ones
    assert heap.next_deadline() == 600.0
    popped = []
    for _ in range(200):
        item = heap.pop_due(1e9)
        if item is None:
            break
        popped.append(item[0])
    assert popped == txns[500:]


def test_cancel_all_and_layer_next_deadline() -> None:
    layer = TransactionLayer(TimerSettings(timer_c=None))
    txn, _ = layer.new_client(request("INVITE"), UAS, 0.0, False)
    assert layer.next_deadline() == 0.5
    layer._timers.cancel_all(txn)
    assert layer.next_deadline() is None
    assert layer.on_timer(100.0) == []
