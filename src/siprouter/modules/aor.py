"""The address-of-record key of the location service (Kamailio usrloc's AoR normalisation).

An AoR key is ``user@host``: scheme, password, port, URI parameters and headers dropped, ``%XX``
escapes in the user part resolved, the host lower-cased (host names are case-insensitive,
RFC 3261 §19.1.4; the user part is case-sensitive and is kept as is). With ``use_domain=False``
(usrloc's default ``use_domain=0``) the key is the user part only, so one user name is one AoR
across all domains. Compiled with the hot path: every REGISTER and every lookup makes one.
"""

from __future__ import annotations

from urllib.parse import unquote

from siprouter.sip.uri import SipURI

__all__ = ["aor_key", "normalize_aor"]


def aor_key(uri: SipURI, use_domain: bool = False) -> str:
    """The location key of an AoR already parsed as a sip: or sips: URI: what
    :func:`normalize_aor` gives for its text, without reading the text again (the registrar
    has parsed the To URI by then). ``ValueError`` for an empty user part."""
    user = uri.user
    if user and "%" in user:
        user = unquote(user, errors="strict")
    if not user:
        raise ValueError(f"AoR has no user part: {str(uri)[:60]!r}")
    if not use_domain:
        return user
    host = uri.host.lower()
    return f"{user}@[{host}]" if ":" in host else f"{user}@{host}"


def normalize_aor(text: str, use_domain: bool = False) -> str:
    """The location key of an AoR given as a SIP URI (``sip:alice@Example.com;transport=tcp``)
    or as ``user@host`` / ``user``. ``ValueError`` for another scheme or an empty user part."""
    t = text.strip()
    if t.startswith("<") and t.endswith(">"):
        t = t[1:-1].strip()
    colon = t.find(":")
    at = t.find("@")
    uri = False
    if colon >= 0 and (at < 0 or colon < at):
        scheme = t[:colon].lower()
        if scheme == "sip" or scheme == "sips":
            t = t[colon + 1 :]
            at = t.find("@")
            uri = True
        elif at >= 0 or scheme.isalpha():
            raise ValueError(f"AoR must be a sip: or sips: URI, not {text[:60]!r}")
    if at < 0:
        if uri:
            raise ValueError(f"AoR has no user part: {text[:60]!r}")
        # A bare user name (an explicit AoR, or a key with use_domain off): taken whole, since
        # ';' and '?' are legal in a user part.
        user, host = t, ""
    else:
        user = t[:at]
        host = t[at + 1 :]
        cut = len(host)  # URI parameters and headers end the host part
        for stop in (";", "?"):
            p = host.find(stop, 0, cut)
            if p >= 0:
                cut = p
        host = host[:cut]
        if not host:
            raise ValueError(f"AoR has an empty host: {text[:60]!r}")
        pw = user.find(":")
        if pw >= 0:
            user = user[:pw]
    user = user.strip()
    host = host.strip()
    if "%" in user:
        user = unquote(user, errors="strict")
    if not user:
        raise ValueError(f"AoR has no user part: {text[:60]!r}")
    if not use_domain or not host:
        return user
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ValueError(f"AoR has a bad IPv6 host: {text[:60]!r}")
        host = host[: end + 1]
    else:
        port = host.rfind(":")
        if port >= 0:
            host = host[:port]
    if not host:
        raise ValueError(f"AoR has an empty host: {text[:60]!r}")
    return f"{user}@{host.lower()}"
