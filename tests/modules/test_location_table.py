"""Location: in-memory table, ordering, sweep, persistence through the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprouter.modules.aor import aor_key
from siprouter.modules.location import Binding, Location, StoreError, normalize_aor
from siprouter.sip.uri import parse_uri
from siprouter.storage.location_store import LocationStore
from siprouter.storage.memory import MemoryLocationStore
from siprouter.storage.sqlite import SqliteLocationStore

T0 = 1_700_000_000.0


def bind(aor: str, contact: str, expires: float = T0 + 3600, **kw: object) -> Binding:
    b = Binding(aor, contact, expires, last_modified=T0)
    return b.copy(**kw) if kw else b


@pytest.mark.parametrize(
    ("text", "use_domain", "key"),
    [
        ("sip:alice@Example.COM", True, "alice@example.com"),
        ("sips:alice@example.com:5061;transport=tls?subject=x", True, "alice@example.com"),
        ("<sip:Alice:secret@EXAMPLE.com>", True, "Alice@example.com"),
        ("sip:al%69ce@example.com", True, "alice@example.com"),
        ("sip:alice@[2001:DB8::1]:5060", True, "alice@[2001:db8::1]"),
        ("alice@example.com", True, "alice@example.com"),
        ("sip:alice;npdi@example.com;user=phone", True, "alice;npdi@example.com"),
        ("sip:alice@example.com", False, "alice"),
        ("alice", True, "alice"),
        ("SIP:bob@host", False, "bob"),
    ],
)
def test_normalize_aor(text: str, use_domain: bool, key: str) -> None:
    assert normalize_aor(text, use_domain) == key
    assert normalize_aor(key, use_domain) == key  # idempotent
    assert normalize_aor(text) == normalize_aor(text, False)  # usrloc's default: no domain


@pytest.mark.parametrize(
    "text", ["tel:+15551234", "sip:example.com", "sip:@example.com", "", "mailto:a@b",
             "sip:alice@", "sip:%ff@host", "sip:alice@[::1"],
)
def test_normalize_aor_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_aor(text, True)


_USER = st.text("abAB09-_.!~*'()&=+$,;?/%", min_size=0, max_size=8) | st.sampled_from(
    ["alice", "al%69ce", "%41lice", "%zz", "%ff", "a%2Fb"])
_HOST = st.sampled_from(["example.com", "EXAMPLE.Com", "10.0.0.1", "[2001:DB8::1]", "[::1]",
                         "host-1.example", "h_x"])
_TAIL = st.sampled_from(["", ":5060", ":5061;transport=TLS", ";user=phone", "?subject=x",
                         ";lr;maddr=1.2.3.4?h=v"])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["sip", "sips", "SIP"]), _USER, st.sampled_from(["", ":secret"]),
       _HOST, _TAIL, st.booleans())
def test_aor_key_of_a_parsed_uri_is_normalize_aor(
    scheme: str, user: str, password: str, host: str, tail: str, use_domain: bool
) -> None:
    """The registrar's key from the parsed To URI is the key normalize_aor gives its text,
    and both refuse the same AoRs."""
    userinfo = f"{user}{password}@" if user or password else ""
    text = f"{scheme}:{userinfo}{host}{tail}"
    try:
        uri = parse_uri(text)
    except ValueError:
        return  # the registrar answers 400 before it makes a key
    try:
        want: str | None = normalize_aor(text, use_domain)
    except ValueError:
        want = None
    try:
        got: str | None = aor_key(uri, use_domain)
    except ValueError:
        got = None
    assert got == want, text


def test_a_table_without_a_store_holds_bindings_in_memory_only() -> None:
    loc = Location()  # --db memory://
    assert loc.store is None and loc.load(T0) == 0
    loc.save(bind("a@x", "sip:a@1", expires=T0 + 10))
    assert [b.contact for b in loc.lookup("a@x", T0)] == ["sip:a@1"]
    assert [b.contact for b in loc.sweep(T0 + 20)] == ["sip:a@1"]
    assert loc.lookup("a@x", T0) == [] and loc.count() == 0


def test_lookup_orders_by_q_then_most_recent() -> None:
    loc = Location()
    loc.save(bind("a@x", "sip:low@1", q=0.1, last_modified=T0 + 5))
    loc.save(bind("a@x", "sip:old@1", q=0.8, last_modified=T0))
    loc.save(bind("a@x", "sip:new@1", q=0.8, last_modified=T0 + 1))
    loc.save(bind("a@x", "sip:top@1", q=1.0, last_modified=T0 - 10))
    got = [b.contact for b in loc.lookup("a@x", T0)]
    assert got == ["sip:top@1", "sip:new@1", "sip:old@1", "sip:low@1"]


def test_lookup_filters_expired_and_accepts_uri_text() -> None:
    loc = Location(use_domain=True)
    loc.save(bind("alice@example.com", "sip:a@1", expires=T0 + 10))
    loc.save(bind("alice@example.com", "sip:a@2", expires=T0 + 20))
    assert len(loc.lookup("alice@example.com", T0)) == 2
    assert [b.contact for b in loc.lookup("sip:alice@EXAMPLE.com;transport=udp", T0 + 10)] == [
        "sip:a@2"
    ]
    assert loc.lookup("alice@example.com", T0 + 20) == []
    assert loc.lookup("nobody@example.com", T0) == []
    assert loc.lookup("tel:+1555", T0) == []
    assert loc.count() == 2  # expired but not yet swept


def test_save_replaces_same_contact_and_update_requires_existing() -> None:
    loc = Location()
    loc.save(bind("a@x", "sip:c@1", cseq=1))
    loc.save(bind("a@x", "sip:c@1", cseq=2))
    assert [b.cseq for b in loc.lookup("a@x", T0)] == [2]
    assert loc.count() == 1
    loc.update(bind("a@x", "sip:c@1", cseq=3))
    assert loc.lookup("a@x", T0)[0].cseq == 3
    with pytest.raises(KeyError):
        loc.update(bind("a@x", "sip:other@1"))


def test_lookup_result_is_not_mutated_by_later_changes() -> None:
    loc = Location()
    loc.save(bind("a@x", "sip:c@1", cseq=1))
    first = loc.lookup("a@x", T0)
    loc.save(bind("a@x", "sip:c@1", cseq=2))
    loc.save(bind("a@x", "sip:d@1"))
    assert [(b.contact, b.cseq) for b in first] == [("sip:c@1", 1)]


def test_remove_and_remove_all() -> None:
    store = MemoryLocationStore()
    loc = Location(store)
    loc.save(bind("a@x", "sip:c@1"))
    loc.save(bind("a@x", "sip:c@2"))
    loc.save(bind("b@x", "sip:c@3"))
    removed = loc.remove("a@x", "sip:c@1")
    assert removed is not None and removed.contact == "sip:c@1"
    assert loc.remove("a@x", "sip:c@1") is None
    assert [b.contact for b in loc.remove_all("a@x")] == ["sip:c@2"]
    assert loc.lookup("a@x", T0) == [] and loc.aors() == ["b@x"]
    assert loc.count() == 1 and len(store) == 1


def test_sweep_removes_expired_from_memory_and_store() -> None:
    store = MemoryLocationStore()
    loc = Location(store)
    loc.save(bind("a@x", "sip:short@1", expires=T0 + 30))
    loc.save(bind("a@x", "sip:long@1", expires=T0 + 300))
    loc.save(bind("b@x", "sip:short@2", expires=T0 + 30))
    assert loc.sweep(T0 + 29) == []
    swept = loc.sweep(T0 + 30)
    assert sorted(b.contact for b in swept) == ["sip:short@1", "sip:short@2"]
    assert loc.count() == 1 and loc.aor_count() == 1 and len(store) == 1
    assert loc.sweep(T0 + 30) == []


class FailingStore(MemoryLocationStore):
    fail = False

    def apply(self, upserts: object, deletes: object) -> None:
        if self.fail:
            raise StoreError("disk full")
        super().apply(upserts, deletes)  # type: ignore[arg-type]


def test_store_failure_leaves_memory_unchanged() -> None:
    store = FailingStore()
    loc = Location(store)
    loc.save(bind("a@x", "sip:c@1", cseq=1))
    store.fail = True
    with pytest.raises(StoreError):
        loc.save(bind("a@x", "sip:c@1", cseq=2))
    with pytest.raises(StoreError):
        loc.remove_all("a@x")
    assert [b.cseq for b in loc.lookup("a@x", T0)] == [1]
    # a sweep still clears expired entries from memory and does not raise
    assert len(loc.sweep(T0 + 7200)) == 1 and loc.count() == 0


def test_dump() -> None:
    loc = Location()
    loc.save(bind("a@x", "sip:c@1", expires=T0 + 100))
    loc.save(bind("a@x", "sip:c@2", expires=T0 - 1))
    d = loc.dump(T0)
    assert list(d) == ["a@x"] and len(d["a@x"]) == 1
    assert d["a@x"][0]["contact"] == "sip:c@1" and d["a@x"][0]["expires_in"] == 100
    assert len(loc.dump()["a@x"]) == 2


def _sqlite(tmp_path: Path) -> LocationStore:
    return SqliteLocationStore(str(tmp_path / "loc.db"))


def test_persistence_round_trip_sqlite(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    loc = Location(store)
    loc.save(bind("a@x", "sip:c@1", q=0.5, path=["<sip:p1;lr>"], received="udp:1.2.3.4:5"))
    loc.save(bind("a@x", "sip:c@2", q=0.9))
    loc.save(bind("b@x", "sip:gone@1", expires=T0 + 5))
    # simulate a crash: no close(), a new process opens the file
    loc2 = Location(_sqlite(tmp_path))
    assert loc2.load(T0 + 10) == 2
    got = loc2.lookup("a@x", T0 + 10)
    assert [b.contact for b in got] == ["sip:c@2", "sip:c@1"]
    assert got[1].path == ["<sip:p1;lr>"] and got[1].received == "udp:1.2.3.4:5"
    assert loc2.lookup("b@x", T0) == []  # expired row dropped at load, not just filtered
    assert loc2.get("b@x") == []
    store.close()
    loc2.store.close()


def test_thousand_aors(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    loc = Location(store)
    for i in range(1000):
        loc.save(bind(f"user{i}@example.com", f"sip:user{i}@10.0.{i // 256}.{i % 256}",
                      expires=T0 + 60 + (i % 2) * 3600))
    assert loc.count() == 1000 and loc.aor_count() == 1000
    assert loc.lookup("user999@example.com", T0)[0].contact == "sip:user999@10.0.3.231"
    assert len(loc.sweep(T0 + 61)) == 500
    loc2 = Location(_sqlite(tmp_path))
    assert loc2.load(T0 + 61) == 500
    assert all(loc2.lookup(f"user{i}@example.com", T0 + 61) for i in range(1, 1000, 2))
    store.close()
    loc2.store.close()


def test_sweep_finds_what_is_due_through_the_expiry_index() -> None:
    """A sweep removes exactly what a walk over every binding finds expired: refreshed
    bindings stay, bindings due later in the current second are found by the next sweep, and
    an AoR filed under several seconds is reported once per binding."""
    loc = Location(use_domain=True)
    loc.save(bind("a@x", "sip:a1@1", expires=T0 + 10.2))
    loc.save(bind("a@x", "sip:a2@1", expires=T0 + 10.7))
    loc.save(bind("b@x", "sip:b@1", expires=T0 + 5))
    loc.save(bind("b@x", "sip:b@1", expires=T0 + 100))  # refreshed before it fell due
    loc.save(bind("c@x", "sip:c@1", expires=T0 + 3))
    loc.remove("c@x", "sip:c@1")  # removed: its AoR stays filed, with nothing due
    for now in (T0 + 4, T0 + 6, T0 + 10.5, T0 + 10.9, T0 + 99, T0 + 100):
        want = sorted(b.contact for b in loc.expired(now))
        assert sorted(b.contact for b in loc.sweep(now)) == want
        assert loc.expired(now) == []
    assert loc.count() == 0 and loc.aor_count() == 0


def test_loaded_bindings_are_in_the_expiry_index(tmp_path: Path) -> None:
    store = SqliteLocationStore(str(tmp_path / "loc.sqlite"))
    Location(store).save(bind("a@x", "sip:a@1", expires=T0 + 50))
    loc = Location(store)
    assert loc.load(T0) == 1
    assert loc.sweep(T0 + 49) == []
    assert [b.contact for b in loc.sweep(T0 + 50)] == ["sip:a@1"]
    store.close()
