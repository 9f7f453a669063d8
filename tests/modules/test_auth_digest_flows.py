"""auth / auth_db through the runtime core on a fake transport and clock.

The script is the ``ksr_route_auth`` part of Kamailio's kamailio-basic-kemi scripts, written
against the KSR export functions (``auth_check(... ) < 0`` -> ``auth_challenge``).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from siprouter.modules.auth import Auth, AuthSettings, NonceTracker, Secret
from siprouter.modules.auth_db import AuthDb, AuthDbSettings
from siprouter.modules.modparam import ModparamError
from siprouter.sip import digest
from siprouter.sip.message import SipMessage
from siprouter.storage.credentials import MemoryCredentialStore, make_subscriber
from siprouter.storage.location_store import StoreError
from siprouter.testing.harness import Harness, script_from

DOMAIN = "example.com"
_cseq = itertools.count(1)



def _export(table: str, name: str) -> Any:
    from siprouter.modules.exports import declared

    e = declared()[table].get(name)
    assert e is not None, f"KSR.{table}.{name} not declared"
    return e.func


def basic_auth_route(codes: list[int]) -> Any:
    check = _export("auth_db", "auth_check")
    chal = _export("auth", "auth_challenge")
    consume = _export("auth", "consume_credentials")

    def route(req: Any) -> None:
        rc = check(req, DOMAIN, "subscriber", 1)
        codes.append(rc)
        if rc < 0:
            chal(req, DOMAIN, 0)
            return
        if req.msg.method not in ("REGISTER", "PUBLISH"):
            consume(req)
            req.vars["consumed"] = req.msg.get("proxy-authorization")
        req.reply(200, "OK")
    return route


class Store(MemoryCredentialStore):
    down = False

    def get(self, username: str, domain: str | None, table: str = "subscriber") -> Any:
        if self.down:
            raise StoreError("database gone")
        return super().get(username, domain, table)


def make(settings: dict[str, Any] | None = None, dbset: dict[str, Any] | None = None,
         ) -> tuple[Harness, list[int], Store]:
    codes: list[int] = []
    h = Harness(script_from(basic_auth_route(codes)), domains=(DOMAIN,))
    store = Store()
    store.add(make_subscriber("alice", DOMAIN, "s3cret"))
    a = Auth(AuthSettings.from_table(settings))
    h.core.modules = {"auth": a, "auth_db": AuthDb(a, store, AuthDbSettings.from_table(dbset))}  # type: ignore[attr-defined]
    return h, codes, store


def request(method: str = "REGISTER", user: str = "alice", auth: str | None = None,
            hname: str | None = None, call_id: str = "c1@test") -> str:
    hname = hname or ("Authorization" if method == "REGISTER" else "Proxy-Authorization")
    ruri = f"sip:{DOMAIN}" if method == "REGISTER" else f"sip:bob@{DOMAIN}"
    to = f"sip:{user}@{DOMAIN}" if method == "REGISTER" else f"sip:bob@{DOMAIN}"
    extra = f"{hname}: {auth}\n" if auth is not None else ""
    n = next(_cseq)
    return (
        f"{method} {ruri} SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{n}x\n"
        "Max-Forwards: 70\n"
        f"From: <sip:{user}@{DOMAIN}>;tag=a{n}\n"
        f"To: <{to}>\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {n} {method}\n"
        "Contact: <sip:alice@127.0.0.1:5070>\n"
        f"{extra}"
        "Content-Length: 0\n\n"
    )


def challenge_of(resp: SipMessage) -> dict[str, str]:
    name = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
    v = resp.get(name)
    assert v is not None, resp.to_bytes()
    return digest.parse_auth_header(v)[1]


def credentials(ch: dict[str, str], method: str, uri: str, password: str = "s3cret",
                user: str = "alice", nc: int = 1, algorithm: str | None = None) -> str:
    alg = algorithm or ch.get("algorithm", "MD5")
    ha1 = digest.ha1(user, ch["realm"], password, alg)
    qop = ch.get("qop")
    ncs = f"{nc:08x}"
    resp = digest.response(ha1, ch["nonce"], method, uri, qop, ncs if qop else None,
                           "abcd" if qop else None, alg)
    return digest.format_authorization(user, ch["realm"], ch["nonce"], uri, resp,
                                       algorithm=alg, qop=qop, nc=ncs if qop else None,
                                       cnonce="abcd" if qop else None)


def one_reply(h: Harness) -> SipMessage:
    sent = [m for _, m in h.take() if not m.is_request and m.status >= 200]
    assert len(sent) == 1, sent
    return sent[0]


def register_challenge(h: Harness) -> dict[str, str]:
    h.receive(request())
    r = one_reply(h)
    assert r.status == 401
    return challenge_of(r)


def test_register_401_then_200_then_wrong_password_401() -> None:
    h, codes, _ = make()
    ch = register_challenge(h)
    assert ch["realm"] == DOMAIN and ch["qop"] == "auth" and ch["algorithm"] == "MD5"
    assert codes == [-5]
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}")))
    assert one_reply(h).status == 200
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}", "wrong", nc=2)))
    r = one_reply(h)
    assert r.status == 401 and "stale" not in challenge_of(r)
    assert codes == [-5, 1, -2]


def test_unknown_user_and_wrong_password_look_the_same() -> None:
    h, codes, _ = make()
    ch = register_challenge(h)
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}", "wrong")))
    wrong = one_reply(h)
    h.receive(request(user="mallory", auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}",
                                                       user="mallory")))
    unknown = one_reply(h)
    assert codes[-2:] == [-2, -3]
    assert (wrong.status, wrong.reason) == (unknown.status, unknown.reason)

    def shape(m: SipMessage) -> list[str]:
        names = [ln.split(b":", 1)[0].decode() for ln in m.to_bytes().split(b"\r\n")[1:] if ln]
        ch = challenge_of(m)
        return names + sorted(k for k in ch if k != "nonce")
    assert shape(wrong) == shape(unknown)


@pytest.mark.parametrize("calculate_ha1", [False, True])
def test_unknown_user_costs_the_same_digest_work_as_a_wrong_password(
    monkeypatch: pytest.MonkeyPatch, calculate_ha1: bool,
) -> None:
    """User enumeration by timing: an unknown user must cost the same digest computations as a
    known user with a wrong password, with stored HA1s and with plain-text passwords. Counted,
    not timed."""
    a = Auth()
    store = MemoryCredentialStore()
    store.add(make_subscriber("alice", DOMAIN, "pw"))
    dbx = AuthDb(a, store)
    dbx.settings.calculate_ha1 = calculate_ha1
    from siprouter.modules import auth as auth_mod
    from siprouter.modules.auth import WWW
    from siprouter.sip.message import parse_message

    ch = digest.parse_auth_header(a.challenge_headers(
        parse_message(request().replace("\n", "\r\n").encode()), DOMAIN, 0, 1000.0, WWW)[0][1])[1]
    calls: list[str] = []
    real_ha1, real_verify = digest.ha1, digest.verify_response

    def ha1(*args: Any) -> str:
        calls.append("ha1")
        return real_ha1(*args)

    def verify_response(*args: Any) -> bool:
        calls.append("verify")
        return real_verify(*args)

    monkeypatch.setattr(auth_mod.digest, "ha1", ha1)
    monkeypatch.setattr(auth_mod.digest, "verify_response", verify_response)

    def run(user: str) -> tuple[int, list[str]]:
        msg = parse_message(request(user=user, auth=credentials(
            ch, "REGISTER", f"sip:{DOMAIN}", "bad", user=user)).replace("\n", "\r\n").encode())
        calls.clear()
        v = a.verify(msg, DOMAIN, WWW, dbx._lookup("subscriber", []), 1000.0)
        return v.code, list(calls)

    known_code, known_work = run("alice")
    unknown_code, unknown_work = run("mallory")
    assert (known_code, unknown_code) == (-2, -3)  # invalid password / user unknown
    assert known_work == (["ha1", "verify"] if calculate_ha1 else ["verify"])
    assert unknown_work == known_work


def test_nonce_count_replay_refused_and_higher_nc_accepted() -> None:
    h, codes, _ = make()
    ch = register_challenge(h)
    creds = credentials(ch, "REGISTER", f"sip:{DOMAIN}")
    h.receive(request(auth=creds))
    assert one_reply(h).status == 200
    h.receive(request(auth=creds))  # the same nc again: a replay
    r = one_reply(h)
    assert r.status == 401 and challenge_of(r).get("stale") == "true"
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}", nc=2)))
    assert one_reply(h).status == 200
    assert codes == [-5, 1, -6, 1]


def test_nonce_expires_stale_true() -> None:
    h, codes, _ = make({"nonce_expire": 30})
    ch = register_challenge(h)
    h.wall.t += 31
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}")))
    r = one_reply(h)
    assert r.status == 401 and challenge_of(r)["stale"] == "true"
    assert codes[-1] == -4
    h.receive(request(auth=credentials(challenge_of(r), "REGISTER", f"sip:{DOMAIN}")))
    assert one_reply(h).status == 200


def test_forged_nonce_is_refused() -> None:
    h, codes, _ = make()
    ch = register_challenge(h)
    other = Secret("another-secret").new_nonce(h.wall.t)
    h.receive(request(auth=credentials({**ch, "nonce": other}, "REGISTER", f"sip:{DOMAIN}")))
    assert one_reply(h).status == 401
    assert codes[-1] == -1


def test_shared_secret_lets_another_process_check_nonces() -> None:
    a1 = Secret("shared-secret-1")
    a2 = Secret("shared-secret-1")
    n = a1.new_nonce(5000.0)
    assert a2.issued(n) == 5000
    assert Secret("shared-secret-2").issued(n) is None
    for garbage in ("", "x" * 38, n[:-1] + ("A" if n[-1] != "A" else "B"), "é" * 38):
        assert a2.issued(garbage) is None


def test_invite_without_credentials_407_then_authenticated_and_consumed() -> None:
    h, codes, _ = make()
    h.receive(request("INVITE"))
    r = one_reply(h)
    assert r.status == 407 and r.reason == "Proxy Authentication Required"
    ch = challenge_of(r)
    h.receive(request("INVITE", auth=credentials(ch, "INVITE", f"sip:bob@{DOMAIN}")))
    assert one_reply(h).status == 200
    assert codes == [-5, 1]


def test_consume_credentials_removes_the_header() -> None:
    h, _codes, _ = make()
    h.receive(request("MESSAGE"))
    ch = challenge_of(one_reply(h))
    seen: dict[str, Any] = {}
    route = h.core.script.request_route

    def spy(req: Any) -> None:
        route(req)
        seen["after"] = req.msg.get("proxy-authorization")
    h.core.script.request_route = spy
    h.receive(request("MESSAGE", auth=credentials(ch, "MESSAGE", f"sip:bob@{DOMAIN}")))
    assert one_reply(h).status == 200
    assert seen["after"] is None


def test_auth_user_must_match_from_user() -> None:
    h, codes, store = make()
    store.add(make_subscriber("bob", DOMAIN, "bobpw"))
    ch = register_challenge(h)
    # bob's valid credentials on a REGISTER for alice
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}", "bobpw", user="bob")))
    assert one_reply(h).status == 401
    assert codes[-1] == -8


@pytest.mark.parametrize("bad", [
    'Digest username="alice", realm="example.com", nonce="abc',   # unterminated quote
    "Digest username=alice realm=example.com",                     # no commas
    'Digest realm="example.com", nonce="x"',                       # no username/response
    'Digest username="alice", realm="example.com", nonce="x", uri="sip:a", response="1", '
    'qop=auth',                                                    # qop without nc/cnonce
    'Digest username="alice", realm="example.com", nonce="x", uri="sip:a", response="1", '
    'algorithm=ROT13',
    '=',
])
def test_malformed_authorization_is_400(bad: str) -> None:
    h, codes, _ = make()
    h.receive(request(auth=bad))
    r = one_reply(h)
    assert (r.status, r.reason) == (400, "Bad Credentials")
    assert codes == [-1]
    assert h.core.stats["script_errors"] == 0


def test_database_down_500_then_recovers() -> None:
    h, codes, store = make()
    ch = register_challenge(h)
    store.down = True
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}")))
    r = one_reply(h)
    assert r.status == 500
    store.down = False
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}", nc=2)))
    assert one_reply(h).status == 200
    assert codes == [-5, -1, 1]


def test_passwd_change_applies_at_once() -> None:
    h, _codes, store = make()
    ch = register_challenge(h)
    store.update(make_subscriber("alice", DOMAIN, "newpw"))
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}")))
    assert one_reply(h).status == 401
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}", "newpw", nc=2)))
    assert one_reply(h).status == 200


def test_sha256_challenge_and_answer() -> None:
    h, _codes, _ = make({"algorithm": ["SHA-256", "MD5"]})
    h.receive(request())
    r = one_reply(h)
    chs = [digest.parse_auth_header(v)[1] for v in r.get_all("www-authenticate")]
    assert [c["algorithm"] for c in chs] == ["SHA-256", "MD5"]
    assert chs[0]["nonce"] == chs[1]["nonce"]
    h.receive(request(auth=credentials(chs[0], "REGISTER", f"sip:{DOMAIN}")))
    assert one_reply(h).status == 200


def test_calculate_ha1_from_password_column() -> None:
    h, _codes, _store = make(dbset={"calculate_ha1": True, "password_column": "password"})
    ch = register_challenge(h)
    h.receive(request(auth=credentials(ch, "REGISTER", f"sip:{DOMAIN}")))
    assert one_reply(h).status == 200


def test_no_qop_nonce_is_single_use() -> None:
    h, codes, _ = make({"qop": ""})
    ch = register_challenge(h)
    assert "qop" not in ch
    creds = credentials(ch, "REGISTER", f"sip:{DOMAIN}")
    h.receive(request(auth=creds))
    assert one_reply(h).status == 200
    h.receive(request(auth=creds))
    assert one_reply(h).status == 401
    assert codes[-1] == -6


def test_has_credentials() -> None:
    from siprouter.sip.message import parse_message

    has = _export("auth", "has_credentials")

    class Ctx:
        is_request = True

        def __init__(self, text: str) -> None:
            self.msg = parse_message(text.replace("\n", "\r\n").encode())
    ok = Ctx(request(auth='Digest username="a", realm="example.com"'))
    assert has(ok, DOMAIN) is True
    assert has(ok, "other.org") is False
    assert has(Ctx(request()), DOMAIN) is False


def test_nonce_tracker_bounded_and_safe() -> None:
    t = NonceTracker(max_entries=16)
    now = 9100.0  # every nonce below is still valid (issued within nonce_expire)
    for i in range(40):
        assert t.check(f"n{i}", 9000 + i, 1, now, 300) in (1, -4)
    assert len(t) <= 16
    # an early nonce that was forgotten cannot be replayed: refused as stale
    assert t.check("n0", 9000, 1, now, 300) == -4
    assert t.check("n39", 9039, 1, now, 300) == -6
    assert t.check("n39", 9039, 2, now, 300) == 1


@pytest.mark.parametrize(("table", "match"), [
    ({"nonce_expire": "x"}, r"\[modules.auth\] nonce_expire: expected an integer"),
    ({"nonce_expire": 0}, "nonce_expire: expected seconds > 0"),
    ({"qop": "both"}, "qop: expected"),
    ({"algorithm": "ROT13"}, "algorithm: unsupported algorithm"),
    ({"secret": "short"}, "secret: too short"),
    ({"nonse_expire": 3}, "nonse_expire: unknown setting"),
])
def test_auth_settings_errors_name_the_key(table: dict[str, Any], match: str) -> None:
    with pytest.raises(ModparamError, match=match):
        AuthSettings.from_table(table)


@pytest.mark.parametrize(("table", "match"), [
    ({"password_column": "pass"}, "password_column: expected"),
    ({"calculate_ha1": "yes"}, "calculate_ha1: expected true or false"),
    ({"calculate_ha1": True}, "password_column: calculate_ha1 needs"),
    ({"load_credentials": ["rpid"]}, "load_credentials: unknown column"),
    ({"use_domain": 2}, "use_domain: expected true or false"),
])
def test_auth_db_settings_errors_name_the_key(table: dict[str, Any], match: str) -> None:
    with pytest.raises(ModparamError, match=match):
        AuthDbSettings.from_table(table)


def test_settings_accept_kamailio_values() -> None:
    s = AuthDbSettings.from_table({"calculate_ha1": 1, "password_column": "password",
                                   "use_domain": 0, "load_credentials": ""})
    assert s.calculate_ha1 is True and s.use_domain is False and s.load_credentials == []
