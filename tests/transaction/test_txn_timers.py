"""The timer wheel: ordering, removal, and the transaction layer's timers by kind."""

from __future__ import annotations

from txn_helpers import UAS, request

from siprouter.transaction.layer import TimerSettings, TransactionLayer
from siprouter.transaction.timers import TransactionTimers


def _txns(n: int):  # type: ignore[no-untyped-def]
    layer = TransactionLayer(TimerSettings(timer_c=None))
    out = []
    for i in range(n):
        txn, _ = layer.new_client(request("OPTIONS", branch=f"z9hG4bK-{i}"), UAS, 0.0, True)
        out.append(txn)
    return out


def test_pop_in_deadline_order_and_lazy_cancel() -> None:
    a, b, c = _txns(3)
    heap = TransactionTimers()
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
    heap = TransactionTimers()
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


def test_wheel_orders_within_and_across_slots() -> None:
    from siprouter.transaction.timers import TimerWheel

    w = TimerWheel()
    deadlines = [5.004, 5.001, 5.009, 5.0, 7.5, 5.0105, 0.2, 5.001]
    for i, d in enumerate(deadlines):
        w.add(d, i)
    assert len(w) == len(deadlines) and w.next_deadline() == 0.2
    assert w.pop_due(0.1) is None  # nothing due yet
    got = []
    for now in (0.2, 5.0, 5.0011, 5.005, 5.0105, 7.49, 7.5):
        item = w.pop_due(now)
        while item is not None:
            got.append((now, deadlines[item]))  # type: ignore[index]
            item = w.pop_due(now)
    # each item comes out at the first "now" its deadline is due, in deadline order
    assert got == [(0.2, 0.2), (5.0, 5.0), (5.0011, 5.001), (5.0011, 5.001), (5.005, 5.004),
                   (5.0105, 5.009), (5.0105, 5.0105), (7.5, 7.5)]
    assert len(w) == 0 and w.next_deadline() is None


def test_wheel_remove_lets_go_of_the_item_at_once() -> None:
    """A removed entry keeps nothing alive (before its slot is reached and after), and an entry
    added into a slot already reached still comes out in order."""
    import gc
    import weakref

    from siprouter.transaction.timers import TimerWheel

    class Item:
        pass

    w = TimerWheel()
    a, b = Item(), Item()
    ha = w.add(120.0, a)
    hb = w.add(1.0, b)
    ref = weakref.ref(a)
    w.remove(ha)
    del a
    gc.collect()
    assert ref() is None and len(w) == 1
    assert w.next_deadline() == 1.0  # b's slot is reached (moved to the ready heap) here
    w.remove(hb)
    w.remove(hb)  # no-op
    assert w.next_deadline() is None and len(w) == 0 and w.pop_due(1e9) is None
    w.add(2.0, "late")
    w.add(1.999, "early")  # same slot as "late"
    assert w.pop_due(1.9985) is None
    assert w.pop_due(2.0) == "early" and w.pop_due(2.0) == "late" and w.pop_due(2.0) is None


def test_wheel_agrees_with_a_sorted_list_model() -> None:
    """Random adds, removes, next_deadline and pop_due calls, checked against a plain model:
    the earliest deadline held, and items coming out when due in (deadline, order added)."""
    import random

    from siprouter.transaction.timers import TimerWheel

    rnd = random.Random(7)
    for _ in range(30):
        w = TimerWheel()
        model: dict[int, tuple[float, int]] = {}  # handle -> (deadline, item)
        now = 1000.0 + rnd.random()
        n = 0
        for _ in range(400):
            op = rnd.random()
            if op < 0.45:
                d = now + rnd.choice([0.0, 0.001, 0.004, 0.01, 0.0123, 0.5, 2.0, 32.0, 120.0])
                d += rnd.random() * 0.02
                model[w.add(d, n)] = (d, n)
                n += 1
            elif op < 0.65 and model:
                h = rnd.choice(list(model))
                del model[h]
                w.remove(h)
                w.remove(h)  # twice: a no-op
            elif op < 0.8:
                want = min((d for d, _ in model.values()), default=None)
                assert w.next_deadline() == want
            else:
                now += rnd.choice([0.0, 0.001, 0.005, 0.01, 0.3, 5.0, 40.0])
                due = sorted(v for v in model.values() if v[0] <= now)
                got = []
                item = w.pop_due(now)
                while item is not None:
                    got.append(item)
                    item = w.pop_due(now)
                assert sorted(got) == sorted(i for _, i in due)
                # in deadline order (ties: any order)
                ds = [next(d for d, i in due if i == g) for g in got]
                assert ds == sorted(ds)
                model = {h: v for h, v in model.items() if v[0] > now}
            assert len(w) == len(model)


def test_wheel_entry_is_its_handle_and_belongs_to_its_wheel() -> None:
    """add() returns the entry, which remove() takes; an entry of another wheel is left alone
    (it is not counted out of this one), and removing after it came due is a no-op."""
    from siprouter.transaction.timers import TimerWheel

    w, other = TimerWheel(), TimerWheel()
    e = w.add(1.0, "a", "F")
    f = other.add(0.5, "b")
    assert e.kind == "F" and e.deadline == 1.0 and e.item == "a"
    w.remove(f)
    assert len(w) == 1 and len(other) == 1 and other.next_deadline() == 0.5
    assert w.pop_due(1.0) == "a" and len(w) == 0
    w.remove(e)  # came due already
    assert len(w) == 0 and w.next_deadline() is None
    assert other.pop_due(0.5) == "b"
