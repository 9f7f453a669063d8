"""Registrar.save(): RFC 3261 §10.3 semantics with a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprouter.modules.location import Location, StoreError
from siprouter.modules.registrar import (
    REG_ERROR,
    REG_OK,
    Branch,
    RegisterResult,
    Registrar,
    RegistrarSettings,
    received_to_uri,
)
from siprouter.sip.message import parse_message
from siprouter.storage.location_store import Binding
from siprouter.storage.memory import MemoryLocationStore
from siprouter.storage.sqlite import SqliteLocationStore

T0 = 1_700_000_000.0
AOR = "alice"


def register(
    *contacts: str,
    expires: int | None = None,
    call_id: str = "reg-1@ua",
    cseq: int = 1,
    to: str = "<sip:alice@example.com>",
    extra: tuple[str, ...] = (),
) -> bytes:
    lines = [
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1",
        "Max-Forwards: 70",
        f"To: {to}",
        "From: <sip:alice@example.com>;tag=f1",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: TestPhone/2.0",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += list(extra)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Env:
    def __init__(self, store: MemoryLocationStore | None = None, **settings: object) -> None:
        self.store = MemoryLocationStore() if store is None else store
        use_domain = bool(settings.get("use_domain", False))
        self.location = Location(self.store, use_domain=use_domain)
        self.registrar = Registrar(self.location, RegistrarSettings(**settings))  # type: ignore[arg-type]
        self.now = T0

    def save(self, data: bytes, **kw: object) -> RegisterResult:
        return self.registrar.save(parse_message(data), self.now, **kw)  # type: ignore[arg-type]

    def contacts(self) -> list[str]:
        return [b.contact for b in self.registrar.lookup(AOR, self.now)]


def hdrs(res: RegisterResult, name: str) -> list[str]:
    return [v for n, v in res.headers if n == name]


@pytest.fixture
def env() -> Env:
    return Env()


def test_add_refresh_remove(env: Env) -> None:
    res = env.save(register("<sip:alice@192.0.2.10:5060>", expires=600))
    assert (res.status, res.reason, res.code) == (200, "OK", REG_OK)
    assert res.aor == "alice"
    assert hdrs(res, "Contact") == ["<sip:alice@192.0.2.10:5060>;expires=600"]
    assert hdrs(res, "Date") == ["Tue, 14 Nov 2023 22:13:20 GMT"]
    [b] = env.registrar.lookup(AOR, env.now)
    assert (b.expires, b.call_id, b.cseq) == (T0 + 600, "reg-1@ua", 1)
    assert b.user_agent == "TestPhone/2.0"
    assert b.last_modified == T0

    env.now += 300
    res = env.save(register("<sip:alice@192.0.2.10:5060>", expires=600, cseq=2))
    assert res.status == 200 and hdrs(res, "Contact") == ["<sip:alice@192.0.2.10:5060>;expires=600"]
    assert env.registrar.lookup(AOR, env.now)[0].expires == T0 + 900
    assert env.location.count() == 1

    env.now += 10
    res = env.save(register("<sip:alice@192.0.2.10:5060>", expires=0, cseq=3))
    assert res.status == 200 and hdrs(res, "Contact") == []
    assert env.contacts() == [] and len(env.store) == 0


def test_binding_expires_with_the_clock(env: Env) -> None:
    env.save(register("<sip:alice@192.0.2.10>", expires=60))
    env.now += 59.9
    assert env.contacts() == ["sip:alice@192.0.2.10"]
    env.now += 0.1
    assert env.contacts() == []
    assert len(env.location.sweep(env.now)) == 1 and len(env.store) == 0


def test_fetch_lists_bindings_without_change(env: Env) -> None:
    env.save(register("<sip:alice@192.0.2.10>", expires=600))
    writes = env.store.writes
    env.now += 100
    res = env.save(register(cseq=2))
    assert res.status == 200 and res.code == REG_OK
    assert hdrs(res, "Contact") == ["<sip:alice@192.0.2.10>;expires=500"]
    assert env.store.writes == writes


def test_fetch_of_unknown_aor(env: Env) -> None:
    res = env.save(register())
    assert res.status == 200 and hdrs(res, "Contact") == [] and res.bindings == []


def test_per_contact_expires_beats_header_and_default(env: Env) -> None:
    res = env.save(register(
        "<sip:a@1.1.1.1>;expires=120", "<sip:a@2.2.2.2>", expires=300,
    ))
    assert res.status == 200
    exp = {b.contact: b.expires - env.now for b in env.registrar.lookup(AOR, env.now)}
    assert exp == {"sip:a@1.1.1.1": 120, "sip:a@2.2.2.2": 300}
    env.save(register("<sip:a@3.3.3.3>", cseq=2))
    assert env.location.lookup(AOR, env.now)[-1].expires - env.now in (3600,)


def test_default_expires_setting() -> None:
    e = Env(default_expires=900)
    e.save(register("<sip:a@1.1.1.1>"))
    assert e.registrar.lookup(AOR, e.now)[0].expires == T0 + 900


def test_interval_too_brief(env: Env) -> None:
    env.save(register("<sip:a@1.1.1.1>", expires=600))
    res = env.save(register("<sip:a@2.2.2.2>", "<sip:a@1.1.1.1>;expires=30", cseq=2))
    assert (res.status, res.reason, res.code) == (423, "Interval Too Brief", REG_ERROR)
    assert hdrs(res, "Min-Expires") == ["60"]
    assert env.contacts() == ["sip:a@1.1.1.1"]  # nothing changed, not even the first contact
    # exactly min_expires is fine; 0 is never "too brief"
    assert env.save(register("<sip:a@1.1.1.1>", expires=60, cseq=3)).status == 200
    assert env.save(register("<sip:a@1.1.1.1>", expires=0, cseq=4)).status == 200


def test_max_expires_clamps(env: Env) -> None:
    res = env.save(register("<sip:a@1.1.1.1>", expires=999999))
    assert hdrs(res, "Contact") == ["<sip:a@1.1.1.1>;expires=86400"]
    huge = env.save(register("<sip:a@1.1.1.1>;expires=99999999999999", cseq=2))
    assert hdrs(huge, "Contact") == ["<sip:a@1.1.1.1>;expires=86400"]


def test_star_removes_all(env: Env) -> None:
    env.save(register("<sip:a@1.1.1.1>", "<sip:a@2.2.2.2>", expires=600))
    env.save(register("<sip:a@3.3.3.3>", expires=600, call_id="other@ua"))
    res = env.save(register("*", expires=0, cseq=2))
    assert res.status == 200 and hdrs(res, "Contact") == []
    assert env.contacts() == [] and len(env.store) == 0


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(("*",), None), (("*",), 60), (("*", "<sip:a@1.1.1.1>"), 0), (("*, <sip:a@1.1.1.1>",), 0)],
)
def test_star_misuse_is_400(env: Env, contacts: tuple[str, ...], expires: int | None) -> None:
    env.save(register("<sip:a@1.1.1.1>", expires=600))
    res = env.save(register(*contacts, expires=expires, cseq=2))
    assert (res.status, res.code) == (400, REG_ERROR)
    assert hdrs(res, "P-Registrar-Error")
    assert env.contacts() == ["sip:a@1.1.1.1"]


def test_star_with_stale_cseq_fails(env: Env) -> None:
    env.save(register("<sip:a@1.1.1.1>", expires=600, cseq=5))
    res = env.save(register("*", expires=0, cseq=5))
    assert res.status == 500 and env.contacts() == ["sip:a@1.1.1.1"]


@pytest.mark.parametrize("cseq", [4, 5])
def test_same_call_id_cseq_not_higher_is_rejected(env: Env, cseq: int) -> None:
    env.save(register("<sip:a@1.1.1.1>", expires=600, cseq=5))
    before = env.registrar.lookup(AOR, env.now)
    res = env.save(register("<sip:a@1.1.1.1>", expires=1200, cseq=cseq))
    assert (res.status, res.reason, res.code) == (500, "Server Internal Error", REG_ERROR)
    assert hdrs(res, "P-Registrar-Error") == ["Invalid CSeq number"]
    assert env.registrar.lookup(AOR, env.now) == before
    # an out-of-order removal is ignored as well
    assert env.save(register("<sip:a@1.1.1.1>", expires=0, cseq=cseq)).status == 500
    assert env.contacts() == ["sip:a@1.1.1.1"]


def test_stale_cseq_on_one_contact_aborts_the_whole_request(env: Env) -> None:
    env.save(register("<sip:a@1.1.1.1>", expires=600, cseq=5))
    res = env.save(register("<sip:a@2.2.2.2>", "<sip:a@1.1.1.1>", expires=600, cseq=3))
    assert res.status == 500 and env.contacts() == ["sip:a@1.1.1.1"]


def test_different_call_id_replaces_binding(env: Env) -> None:
    env.save(register("<sip:a@1.1.1.1>", expires=600, cseq=50))
    env.now += 5
    res = env.save(register("<sip:a@1.1.1.1>", expires=300, call_id="rebooted@ua", cseq=1))
    assert res.status == 200
    [b] = env.registrar.lookup(AOR, env.now)
    assert (b.call_id, b.cseq, b.expires) == ("rebooted@ua", 1, env.now + 300)
    # and a different Call-ID may remove it whatever its CSeq
    assert env.save(register("<sip:a@1.1.1.1>", expires=0, call_id="x@ua", cseq=1)).status == 200
    assert env.contacts() == []


def test_removing_unknown_contact_is_fine(env: Env) -> None:
    res = env.save(register("<sip:nobody@1.1.1.1>", expires=0))
    assert res.status == 200 and env.contacts() == []


def test_expired_binding_does_not_hold_cseq(env: Env) -> None:
    env.save(register("<sip:a@1.1.1.1>", expires=60, cseq=9))
    env.now += 61
    assert env.save(register("<sip:a@1.1.1.1>", expires=60, cseq=1)).status == 200
    assert env.location.count() == 1


def test_q_ordering_and_reply_format(env: Env) -> None:
    res = env.save(register(
        "<sip:a@1.1.1.1>;q=0.1", "<sip:a@2.2.2.2>;q=0.9", "<sip:a@3.3.3.3>", expires=600,
    ))
    assert hdrs(res, "Contact") == [
        "<sip:a@3.3.3.3>;expires=600",
        "<sip:a@2.2.2.2>;expires=600;q=0.9",
        "<sip:a@1.1.1.1>;expires=600;q=0.1",
    ]
    assert env.contacts() == ["sip:a@3.3.3.3", "sip:a@2.2.2.2", "sip:a@1.1.1.1"]
    # equal q: most recently registered first
    env.now += 1
    env.save(register("<sip:a@4.4.4.4>;q=0.9", expires=600, cseq=2))
    assert env.contacts() == ["sip:a@3.3.3.3", "sip:a@4.4.4.4", "sip:a@2.2.2.2", "sip:a@1.1.1.1"]


@pytest.mark.parametrize("q", ["1.5", "-0.1", "abc", ".5", ""])
def test_bad_q_is_400(env: Env, q: str) -> None:
    res = env.save(register(f"<sip:a@1.1.1.1>;q={q}", expires=600))
    assert res.status == 400 and env.contacts() == []


@pytest.mark.parametrize(
    "contact", ["", " , ", "<sip:a@1.1.1.1>;expires=soon", "<sip:a@1.1.1.1>;expires=-5",
                "<sip:a@bad host>", "<sip:@@>", "<sip:a@1.1.1.1>;reg-id=x"],
)
def test_bad_contacts_are_400(env: Env, contact: str) -> None:
    res = env.save(register(contact, expires=600))
    assert (res.status, res.code) == (400, REG_ERROR) and env.contacts() == []


@pytest.mark.parametrize("value", ["soon", "-1", "1.5", "١٢"])
def test_bad_expires_header_is_400(env: Env, value: str) -> None:
    data = register("<sip:a@1.1.1.1>", extra=(f"Expires: {value}",))
    assert env.save(data).status == 400


def test_several_contacts_and_max_contacts() -> None:
    e = Env(max_contacts=2)
    assert e.save(register("<sip:a@1.1.1.1>", "<sip:a@2.2.2.2>", expires=600)).status == 200
    res = e.save(register("<sip:a@3.3.3.3>", expires=600, cseq=2))
    assert (res.status, res.reason, res.code) == (503, "Too Many Registered Contacts", REG_ERROR)
    assert sorted(e.contacts()) == ["sip:a@1.1.1.1", "sip:a@2.2.2.2"]
    # refreshing existing ones, or swapping one for another, stays within the limit
    assert e.save(register("<sip:a@1.1.1.1>", expires=600, cseq=3)).status == 200
    res = e.save(register("<sip:a@2.2.2.2>;expires=0", "<sip:a@3.3.3.3>", expires=600, cseq=4))
    assert res.status == 200 and sorted(e.contacts()) == ["sip:a@1.1.1.1", "sip:a@3.3.3.3"]
    # expired bindings do not count
    e.now += 601
    assert e.save(register("<sip:a@5.5.5.5>", "<sip:a@6.6.6.6>", expires=600, cseq=5)).status == 200


def test_to_header_aor_rules(env: Env) -> None:
    assert env.save(register("<sip:a@1.1.1.1>", to="<tel:+15551234>")).status == 404
    assert env.save(register("<sip:a@1.1.1.1>", to="<mailto:a@example.com>")).status == 404
    assert env.save(register("<sip:a@1.1.1.1>", to="<sip:example.com>")).status == 400
    assert env.save(register("<sip:a@1.1.1.1>", to="<sip:a@bad host>")).status == 400
    assert env.save(register("<sip:a@1.1.1.1>", to="\"unterminated <sip:a@b>")).status == 400
    no_to = register("<sip:a@1.1.1.1>").replace(b"To: <sip:alice@example.com>\r\n", b"")
    assert env.save(no_to).status == 400
    assert env.location.count() == 0


def test_use_domain_keys() -> None:
    e = Env(use_domain=True)
    e.save(register("<sip:a@1.1.1.1>", to="<sip:alice@EXAMPLE.com;transport=udp>"))
    e.save(register("<sip:b@1.1.1.1>", to="<sip:alice@other.org>", call_id="x"))
    lookup = e.registrar.lookup
    assert [b.contact for b in lookup("alice@example.com", e.now)] == ["sip:a@1.1.1.1"]
    assert [b.contact for b in lookup("sip:alice@other.org", e.now)] == ["sip:b@1.1.1.1"]
    assert e.location.aors() == ["alice@example.com", "alice@other.org"]


def test_without_use_domain_one_user_across_domains(env: Env) -> None:
    env.save(register("<sip:a@1.1.1.1>", to="<sip:alice@example.com>"))
    env.save(register("<sip:b@1.1.1.1>", to="<sip:alice@other.org>", call_id="x"))
    assert sorted(env.contacts()) == ["sip:a@1.1.1.1", "sip:b@1.1.1.1"]


def test_use_domain_mismatch_is_refused() -> None:
    with pytest.raises(ValueError):
        Registrar(Location(use_domain=True), RegistrarSettings(use_domain=False))


def test_explicit_aor_argument(env: Env) -> None:
    res = env.save(register("<sip:a@1.1.1.1>"), aor="sip:bob@example.com")
    assert res.status == 200 and res.aor == "bob"
    assert env.registrar.registered("bob", env.now) and not env.registrar.registered(AOR, env.now)


def test_stored_metadata_and_branches(env: Env) -> None:
    res = env.save(
        register("<sip:a@10.0.0.5:5062;transport=tcp>;q=0.7", expires=600),
        received="tcp:198.51.100.7:40001", socket="tcp:203.0.113.1:5060", flags=2, cflags=8,
    )
    assert res.status == 200
    [b] = env.registrar.lookup(AOR, env.now)
    assert (b.received, b.socket, b.flags, b.cflags, b.q) == (
        "tcp:198.51.100.7:40001", "tcp:203.0.113.1:5060", 2, 8, 0.7)
    assert env.registrar.branches(AOR, env.now) == [
        Branch("sip:a@10.0.0.5:5062;transport=tcp", "sip:198.51.100.7:40001;transport=tcp", (),
               0.7, "tcp:203.0.113.1:5060", 8, None)
    ]


def test_path_is_stored_used_as_route_and_echoed(env: Env) -> None:
    path = ("Path: <sip:edge1.example.net;lr>", "Path: <sip:edge2.example.net;lr>")
    res = env.save(register("<sip:a@10.0.0.5>", expires=600, extra=(*path, "Supported: path")),
                   received="udp:192.0.2.99:5060")
    assert hdrs(res, "Path") == ["<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>"]
    [br] = env.registrar.branches(AOR, env.now)
    assert br.route == ("<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>")
    assert br.dst_uri is None and br.uri == "sip:a@10.0.0.5"
    # without Supported: path the Path is still stored but not echoed
    res = env.save(register("<sip:a@10.0.0.5>", expires=600, cseq=2, extra=path))
    assert hdrs(res, "Path") == [] and env.registrar.lookup(AOR, env.now)[0].path


def test_outbound_instance_reg_id_replaces_changed_contact(env: Env) -> None:
    inst = '+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"'
    env.save(register(f"<sip:a@1.1.1.1:5060;ob>;{inst};reg-id=1", expires=600))
    env.save(register(f"<sip:a@9.9.9.9:5060;ob>;{inst};reg-id=2", expires=600, call_id="flow2"))
    res = env.save(register(f"<sip:a@2.2.2.2:6000;ob>;{inst};reg-id=1", expires=600, cseq=2))
    assert res.status == 200
    assert sorted(env.contacts()) == ["sip:a@2.2.2.2:6000;ob", "sip:a@9.9.9.9:5060;ob"]
    contacts = hdrs(res, "Contact")
    assert any(c.startswith("<sip:a@2.2.2.2:6000;ob>;expires=600;+sip.instance=\"<urn:uuid:")
               and c.endswith(";reg-id=1") for c in contacts)
    b = next(b for b in env.registrar.lookup(AOR, env.now) if b.reg_id == 1)
    assert b.instance == "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"
    assert len(env.store) == 2  # the old contact's row is gone


def test_contact_matching_uses_uri_equality(env: Env) -> None:
    env.save(register("<sip:a@Host.example.com:5060>", expires=600))
    env.save(register("<sip:a@host.example.com:5060>", expires=600, cseq=2))
    assert env.location.count() == 1


def test_date_header_follows_the_clock(env: Env) -> None:
    assert hdrs(env.save(register()), "Date") == ["Tue, 14 Nov 2023 22:13:20 GMT"]
    env.now += 61.5
    assert hdrs(env.save(register()), "Date") == ["Tue, 14 Nov 2023 22:14:21 GMT"]
    assert hdrs(env.save(register(to="<tel:1>")), "Date") == ["Tue, 14 Nov 2023 22:14:21 GMT"]


def test_same_contact_twice_in_one_request(env: Env) -> None:
    res = env.save(register("<sip:a@1.1.1.1>;expires=100", "<sip:a@1.1.1.1>;expires=200"))
    assert hdrs(res, "Contact") == ["<sip:a@1.1.1.1>;expires=200"]


def test_missing_call_id_or_cseq(env: Env) -> None:
    data = register("<sip:a@1.1.1.1>")
    assert env.save(data.replace(b"Call-ID: reg-1@ua\r\n", b"")).status == 400
    assert env.save(data.replace(b"CSeq: 1 REGISTER\r\n", b"")).status == 400
    assert env.save(data.replace(b"CSeq: 1 REGISTER", b"CSeq: x REGISTER")).status == 400


class BrokenStore(MemoryLocationStore):
    def apply(self, upserts: object, deletes: object) -> None:
        raise StoreError("database is gone")


def test_store_failure_is_500_and_nothing_acknowledged() -> None:
    e = Env(store=BrokenStore())
    res = e.save(register("<sip:a@1.1.1.1>", expires=600))
    assert (res.status, res.code) == (500, REG_ERROR)
    assert e.contacts() == []


def test_acknowledged_binding_survives_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "loc.db")
    loc = Location(SqliteLocationStore(db))
    reg = Registrar(loc)
    res = reg.save(parse_message(register("<sip:a@1.1.1.1>;q=0.5", expires=600)), T0,
                   received="udp:198.51.100.1:5060")
    assert res.status == 200
    # "crash": the first store is never closed; a new process loads the file
    loc2 = Location(SqliteLocationStore(db))
    assert loc2.load(T0 + 1) == 1
    [b] = Registrar(loc2).lookup("sip:alice@example.com", T0 + 1)
    assert (b.contact, b.q, b.cseq) == ("sip:a@1.1.1.1", 0.5, 1)
    assert b.received == "udp:198.51.100.1:5060"
    # the Call-ID/CSeq history survives too
    res = Registrar(loc2).save(parse_message(register("<sip:a@1.1.1.1>", expires=600)), T0 + 2)
    assert res.status == 500
    loc.store.close()
    loc2.store.close()


def test_expired_rows_dropped_at_load(tmp_path: Path) -> None:
    db = str(tmp_path / "loc.db")
    reg = Registrar(Location(SqliteLocationStore(db)))
    reg.save(parse_message(register("<sip:a@1.1.1.1>", expires=60)), T0)
    reg.save(parse_message(register("<sip:a@2.2.2.2>", expires=600, call_id="b")), T0)
    loc2 = Location(SqliteLocationStore(db))
    assert loc2.load(T0 + 60) == 1
    assert [b.contact for b in loc2.get("alice")] == ["sip:a@2.2.2.2"]


def test_thousand_aors_through_registrar(tmp_path: Path) -> None:
    reg = Registrar(Location(SqliteLocationStore(str(tmp_path / "k.db"))), RegistrarSettings())
    for i in range(1000):
        data = register(f"<sip:u{i}@10.1.{i // 250}.{i % 250}>", expires=300 + i,
                        to=f"<sip:user{i}@example.com>", call_id=f"c{i}")
        assert reg.save(parse_message(data), T0).status == 200
    assert reg.location.count() == 1000 and reg.location.aor_count() == 1000
    assert reg.lookup("user500", T0)[0].contact == "sip:u500@10.1.2.0"
    assert len(reg.location.sweep(T0 + 800)) == 501
    loc2 = Location(SqliteLocationStore(str(tmp_path / "k.db")))
    assert loc2.load(T0 + 800) == 499


@pytest.mark.parametrize(
    ("received", "uri"),
    [
        ("udp:192.0.2.1:5060", "sip:192.0.2.1:5060"),
        ("TLS:192.0.2.1:5061", "sip:192.0.2.1:5061;transport=tls"),
        ("ws:2001:db8::1:8080", "sip:[2001:db8::1]:8080;transport=ws"),
        ("tcp:[2001:db8::1]:5060", "sip:[2001:db8::1]:5060;transport=tcp"),
        ("sip:192.0.2.1:5080;transport=tcp", "sip:192.0.2.1:5080;transport=tcp"),
    ],
)
def test_received_to_uri(received: str, uri: str) -> None:
    assert received_to_uri(received) == uri


@pytest.mark.parametrize(
    "bad", ["", "udp", "udp:1.2.3.4", "udp:1.2.3.4:x", "foo:1.2.3.4:5", "udp::5", "udp:h:70000"],
)
def test_received_to_uri_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        received_to_uri(bad)


def test_branch_with_bad_received_is_kept_without_destination(env: Env) -> None:
    env.location.save(Binding("alice", "sip:a@1.1.1.1", T0 + 60, received="garbage"))
    assert env.registrar.branches(AOR, T0) == [
        Branch("sip:a@1.1.1.1", None, (), 1.0, None, 0, None)
    ]


def test_settings_validation() -> None:
    with pytest.raises(ValueError):
        RegistrarSettings(min_expires=-1)
    with pytest.raises(ValueError):
        RegistrarSettings(min_expires=100, max_expires=50)
    with pytest.raises(ValueError):
        RegistrarSettings(max_contacts=-1)
