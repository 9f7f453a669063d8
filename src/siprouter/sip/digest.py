"""HTTP Digest authentication math as SIP uses it, sans-IO.

RFC 2617 (MD5, qop auth / auth-int, -sess), RFC 7616 (SHA-256, SHA-512-256) and RFC 8760
(those algorithms in SIP). The functions here do arithmetic and header syntax only; nonce
policy, credential storage and replay protection belong to the auth module.

    A1 = username ":" realm ":" password            (H(A1) = ``ha1``)
    A1 = H(username:realm:password) ":" nonce ":" cnonce   for the ``-sess`` algorithms
    A2 = method ":" digest-uri  [ ":" H(entity-body) for qop=auth-int ]
    response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)   with qop
    response = H(HA1 ":" nonce ":" HA2)                            without qop (RFC 2069)

``parse_auth_header`` reads a WWW-Authenticate / Authorization / Proxy-* value into its scheme
and its parameters (names lower case, quoted-string values unquoted); ``ValueError`` on bad
syntax, nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping

__all__ = [
    "ALGORITHMS",
    "format_authorization",
    "format_challenge",
    "ha1",
    "ha1_sess",
    "hash_hex",
    "parse_auth_header",
    "response",
    "verify_response",
]


def _sha512_256(data: bytes) -> str:
    return hashlib.new("sha512_256", data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_HASHES: dict[str, Callable[[bytes], str]] = {"MD5": _md5, "SHA-256": _sha256}
if "sha512_256" in hashlib.algorithms_available:  # depends on the OpenSSL build
    _HASHES["SHA-512-256"] = _sha512_256

#: Algorithm names accepted (case-insensitively), including the ``-sess`` variants.
ALGORITHMS: frozenset[str] = frozenset(list(_HASHES) + [f"{name}-SESS" for name in _HASHES])


def _hash_for(algorithm: str) -> Callable[[bytes], str]:
    name = algorithm.upper()
    name = name.removesuffix("-SESS")
    fn = _HASHES.get(name)
    if fn is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return fn


def hash_hex(data: str | bytes, algorithm: str = "MD5") -> str:
    """Lower-case hex digest of ``data`` (UTF-8 encoded if text) with ``algorithm``'s hash."""
    return _hash_for(algorithm)(data.encode() if isinstance(data, str) else data)


def ha1(user: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password) — what a credential store keeps instead of the password.

    For a ``-sess`` algorithm pass the result through ``ha1_sess`` with the nonces.
    """
    return hash_hex(f"{user}:{realm}:{password}", algorithm)


def ha1_sess(ha1_value: str, nonce: str, cnonce: str, algorithm: str = "MD5-sess") -> str:
    """H(H(A1):nonce:cnonce) for the ``-sess`` algorithms (RFC 2617 §3.2.2.2)."""
    return hash_hex(f"{ha1_value}:{nonce}:{cnonce}", algorithm)


def response(
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    algorithm: str = "MD5",
    body: bytes = b"",
) -> str:
    """The request-digest (RFC 2617 §3.2.2.1). ``ha1`` already includes ``-sess`` processing.

    ``qop`` is None (RFC 2069 compatibility), 'auth' or 'auth-int' (``body`` is then hashed).
    """
    h = _hash_for(algorithm)
    if qop is None or qop == "":
        ha2 = h(f"{method}:{uri}".encode())
        return h(f"{ha1}:{nonce}:{ha2}".encode())
    qop_l = qop.lower()
    if qop_l == "auth":
        ha2 = h(f"{method}:{uri}".encode())
    elif qop_l == "auth-int":
        ha2 = h(f"{method}:{uri}:{h(body)}".encode())
    else:
        raise ValueError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise ValueError("qop requires nc and cnonce")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


def verify_response(
    params: Mapping[str, str], method: str, ha1_value: str, body: bytes = b""
) -> bool:
    """Check an Authorization's ``response`` against ``ha1_value`` in constant time.

    ``params`` is the dict from ``parse_auth_header``. Returns False (never raises) when a
    needed parameter is missing or the algorithm / qop is not supported.
    """
    try:
        algorithm = params.get("algorithm", "MD5")
        nonce = params["nonce"]
        uri = params["uri"]
        got = params["response"]
        qop = params.get("qop")
        nc = params.get("nc")
        cnonce = params.get("cnonce")
        key = ha1_value
        if algorithm.upper().endswith("-SESS"):
            if cnonce is None:
                return False
            key = ha1_sess(ha1_value, nonce, cnonce, algorithm)
        want = response(key, nonce, method, uri, qop, nc, cnonce, algorithm, body)
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(want.encode(), got.lower().encode("utf-8", "replace"))


# --------------------------------------------------------------------------------------------
# header syntax (RFC 7235 §2.1 / RFC 3261 §25.1)

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_OWS = r"[ \t\r\n]*"
_SCHEME_RE = re.compile(rf"{_OWS}({_TOKEN})(?:[ \t\r\n]+|$)")
_PARAM_RE = re.compile(
    rf'{_OWS}({_TOKEN}){_OWS}={_OWS}(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))', re.DOTALL
)
_SEP_RE = re.compile(rf"{_OWS}(,|$)")
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """``'Digest realm="a", nonce="b", qop=auth'`` -> ``('Digest', {'realm': 'a', ...})``.

    Parameter names are lower case; quoted values are unquoted and unescaped. A parameter
    given twice, a missing ``=`` or an unterminated quote is a ValueError.
    """
    m = _SCHEME_RE.match(value)
    if m is None:
        raise ValueError(f"bad auth header: no scheme in {value[:40]!r}")
    scheme = m.group(1)
    params: dict[str, str] = {}
    pos = m.end()
    n = len(value)
    while True:
        # empty list elements are allowed (RFC 7230 §7)
        while pos < n and value[pos] in " \t\r\n,":
            pos += 1
        if pos >= n:
            break
        pm = _PARAM_RE.match(value, pos)
        if pm is None:
            raise ValueError(f"bad auth header parameter at {value[pos : pos + 30]!r}")
        name = pm.group(1).lower()
        if name in params:
            raise ValueError(f"bad auth header: parameter {name!r} repeated")
        quoted = pm.group(2)
        if quoted is not None:
            params[name] = _UNESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        else:
            params[name] = pm.group(3)
        sm = _SEP_RE.match(value, pm.end())
        if sm is None:
            raise ValueError(
                f"bad auth header: ',' expected at {value[pm.end() : pm.end() + 30]!r}"
            )
        pos = sm.end()
    return scheme, params


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_challenge(
    realm: str,
    nonce: str,
    *,
    algorithm: str | None = "MD5",
    qop: str | None = "auth",
    opaque: str | None = None,
    stale: bool = False,
    domain: str | None = None,
) -> str:
    """A WWW-Authenticate / Proxy-Authenticate value (RFC 2617 §3.2.1, RFC 8760 §2.2).

    ``qop`` may list several values ('auth,auth-int'); ``algorithm=None`` leaves it out
    (the peer then assumes MD5).
    """
    parts = [f"Digest realm={_quote(realm)}"]
    if domain is not None:
        parts.append(f"domain={_quote(domain)}")
    parts.append(f"nonce={_quote(nonce)}")
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    if stale:
        parts.append("stale=true")
    if algorithm is not None:
        _hash_for(algorithm)
        parts.append(f"algorithm={algorithm}")
    if qop is not None:
        parts.append(f"qop={_quote(qop)}")
    return ", ".join(parts)


def format_authorization(
    username: str,
    realm: str,
    nonce: str,
    uri: str,
    response_value: str,
    *,
    algorithm: str | None = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    opaque: str | None = None,
) -> str:
    """An Authorization / Proxy-Authorization value (RFC 2617 §3.2.2, RFC 3261 §22.4)."""
    parts = [
        f"Digest username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response_value)}",
    ]
    if algorithm is not None:
        parts.append(f"algorithm={algorithm}")
    if cnonce is not None:
        parts.append(f"cnonce={_quote(cnonce)}")
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    if qop is not None:
        parts.append(f"qop={qop}")
    if nc is not None:
        parts.append(f"nc={nc}")
    return ", ".join(parts)
