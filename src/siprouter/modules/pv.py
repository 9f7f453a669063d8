"""Pseudo-variables (Kamailio ``pv`` module) and the ``KSR.pv`` exports.

A PV name (``$ru``, ``$hdr(Via)``, ``$xavp(a=>b)`` ...) is parsed once into a ``(getter,
setter)`` pair and cached, so ``KSR.pv.get("$ru")`` costs one dict lookup and one call. Getters
take the script context (``scripting.api.Request`` / ``Reply``) and return ``str``, ``int`` or
``None`` (Kamailio's ``<null>``); setters take the context and a value and raise ValueError
when the PV is read-only.

Other modules add PV classes with :func:`register_pv_class` (htable registers ``$sht``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..sip.headers import parse_name_addr
from ..sip.uri import SipURI, parse_uri
from .exports import BOOL, INT, STR, XVAL, Export, declare

__all__ = ["PvSpec", "pv_get", "pv_set", "pv_spec", "pv_unset", "register_pv_class"]

log = logging.getLogger("siprouter.pv")

Getter = Callable[[Any], "str | int | None"]
Setter = Callable[[Any, Any], None]
PvSpec = tuple[Getter, Setter | None]


# -- helpers ------------------------------------------------------------------------------------
def _ruri(msg: Any) -> SipURI | None:
    if not msg.is_request:
        return None
    try:
        return parse_uri(msg.msg.ruri)
    except ValueError:
        return None


def _hdr_uri(msg: Any, name: str) -> SipURI | None:
    v = msg.msg.get(name)
    if v is None:
        return None
    try:
        return parse_uri(parse_name_addr(v).uri)
    except ValueError:
        return None


def _na(msg: Any, name: str) -> Any:
    v = msg.msg.get(name)
    if v is None:
        return None
    try:
        return parse_name_addr(v)
    except ValueError:
        return None


def _with_ruri(msg: Any, **parts: Any) -> None:
    parsed = _ruri(msg)
    if parsed is None:
        raise ValueError("the Request-URI cannot be changed here")
    u = parsed.copy()  # parsed URIs are shared (parse_uri): change a private copy
    for k, v in parts.items():
        setattr(u, k, v)
    msg.msg.ruri = str(u)


def _set_ru(msg: Any, v: Any) -> None:
    if not msg.is_request:
        raise ValueError("$ru: not a request")
    msg.msg.ruri = str(v)


def _set_ru_user(msg: Any, v: Any) -> None:
    _with_ruri(msg, user=str(v) if v not in (None, "") else None)


def _set_ru_host(msg: Any, v: Any) -> None:
    _with_ruri(msg, host=str(v))


def _set_ru_port(msg: Any, v: Any) -> None:
    _with_ruri(msg, port=int(v) if v not in (None, "", 0) else None)


def _set_du(msg: Any, v: Any) -> None:
    msg.dst_uri = str(v) if v else None


def _status(msg: Any) -> int | None:
    return None if msg.is_request else int(msg.msg.status)


def _reason(msg: Any) -> str | None:
    return None if msg.is_request else str(msg.msg.reason)


def _cseq(msg: Any) -> int | None:
    try:
        return int(msg.msg.cseq_num)
    except ValueError:
        return None


def _src_ip(msg: Any) -> str | None:
    s = msg.source
    return None if s is None else str(s.host)


def _src_port(msg: Any) -> int | None:
    s = msg.source
    return None if s is None else int(s.port)


def _rcv_ip(msg: Any) -> str | None:
    lst = msg.local
    return None if lst is None else str(lst.host)


def _rcv_port(msg: Any) -> int | None:
    lst = msg.local
    return None if lst is None else int(lst.port)


def _branch_idx(msg: Any) -> int:
    if msg.is_request:
        return int(msg.branch_index)
    br = msg.branch
    return int(br.idx) if br is not None else 0


def _reply_code(msg: Any) -> int:
    if not msg.is_request:
        return int(msg.msg.status)
    failed = msg.vars.get("__failure_reply")
    if failed is not None:
        return int(failed.status)
    rc = msg.rc
    if rc is not None and rc.final_status:
        return int(rc.final_status)
    return 0


def _call_id(msg: Any) -> str | None:
    try:
        return str(msg.msg.call_id)
    except ValueError:
        return None


def _ro(name: str) -> Setter:
    def setter(msg: Any, value: Any) -> None:
        raise ValueError(f"{name} is read-only")

    return setter


def _g(fn: Callable[[Any], Any]) -> Getter:
    return fn


_SIMPLE: dict[str, tuple[Getter, Setter | None]] = {
    "$ru": (lambda m: m.msg.ruri if m.is_request else None, _set_ru),
    "$rU": (lambda m: ((u := _ruri(m)) and u.user) or None, _set_ru_user),
    "$rd": (lambda m: ((u := _ruri(m)) and u.host) or None, _set_ru_host),
    "$rp": (lambda m: ((u := _ruri(m)) and (u.port or 5060)) or None, _set_ru_port),
    "$rm": (lambda m: m.msg.method if m.is_request else m.msg.cseq_method, None),
    "$rs": (_status, None),
    "$rr": (_reason, None),
    "$du": (lambda m: getattr(m, "dst_uri", None), _set_du),
    "$fu": (lambda m: ((n := _na(m, "from")) and n.uri) or None, None),
    "$fU": (lambda m: ((u := _hdr_uri(m, "from")) and u.user) or None, None),
    "$fd": (lambda m: ((u := _hdr_uri(m, "from")) and u.host) or None, None),
    "$fn": (lambda m: ((n := _na(m, "from")) and n.display) or None, None),
    "$ft": (lambda m: m.msg.from_tag, None),
    "$tu": (lambda m: ((n := _na(m, "to")) and n.uri) or None, None),
    "$tU": (lambda m: ((u := _hdr_uri(m, "to")) and u.user) or None, None),
    "$td": (lambda m: ((u := _hdr_uri(m, "to")) and u.host) or None, None),
    "$tt": (lambda m: m.msg.to_tag, None),
    "$ci": (_call_id, None),
    "$cs": (_cseq, None),
    "$ua": (lambda m: m.msg.get("user-agent"), None),
    "$si": (_src_ip, None),
    "$sp": (_src_port, None),
    "$Ri": (_rcv_ip, None),
    "$Rp": (_rcv_port, None),
    "$pr": (lambda m: m.source.proto if m.source is not None else None, None),
    "$proto": (lambda m: m.source.proto if m.source is not None else None, None),
    "$ou": (lambda m: m.received_ruri if m.is_request else None, None),
    "$ct": (lambda m: m.msg.get("contact"), None),
    "$rb": (lambda m: m.msg.body.decode("utf-8", "replace"), None),
    "$mb": (lambda m: m.msg.to_bytes().decode("utf-8", "replace"), None),
    "$ml": (lambda m: len(m.msg.to_bytes()), None),
    "$T_branch_idx": (_branch_idx, None),
    "$T_reply_code": (_reply_code, None),
}


# -- classes with a name: $hdr(x), $var(x), $avp(x), $xavp(x=>y) --------------------------------
def _hdr(name: str) -> PvSpec:
    return (lambda m: m.msg.get(name)), None


def _store(kind: str, name: str) -> PvSpec:
    key = f"{kind}:{name}"

    def get(m: Any) -> Any:
        return m.vars.get(key)

    def set_(m: Any, v: Any) -> None:
        if v is None:
            m.vars.pop(key, None)
        else:
            m.vars[key] = v

    return get, set_


def _xavp(spec: str) -> PvSpec:
    root, _, field = spec.partition("=>")
    root = root.strip()
    field = field.strip()

    def items(m: Any) -> list[dict[str, Any]] | None:
        xavp = getattr(m, "xavp", None)
        if xavp is None:
            return None
        lst: list[dict[str, Any]] | None = xavp.get(root)
        return lst

    def get(m: Any) -> Any:
        lst = items(m)
        if not lst:
            return None
        if not field:
            return f"<<xavp:{root}>>"
        return lst[0].get(field)

    def set_(m: Any, v: Any) -> None:
        xavp = getattr(m, "xavp", None)
        if xavp is None:
            raise ValueError("$xavp: not available here")
        if v is None:
            if field:
                lst = xavp.get(root)
                if lst:
                    lst[0].pop(field, None)
            else:
                xavp.pop(root, None)
            return
        if not field:
            raise ValueError("$xavp: assign a field ($xavp(name=>field))")
        lst = xavp.setdefault(root, [])
        if not lst:
            lst.append({})
        lst[0][field] = v

    return get, set_


_CLASSES: dict[str, Callable[[str], PvSpec]] = {
    "hdr": _hdr,
    "var": lambda n: _store("var", n),
    "avp": lambda n: _store("avp", n),
    "xavp": _xavp,
}


def register_pv_class(name: str, factory: Callable[[str], PvSpec]) -> None:
    """Add a ``$name(inner)`` class (e.g. htable's ``$sht``); ``factory(inner)`` builds it."""
    _CLASSES[name] = factory
    _CACHE.clear()


_CACHE: dict[str, PvSpec] = {}


def _null(m: Any) -> None:
    return None


def pv_spec(name: str) -> PvSpec:
    """The getter/setter of PV ``name`` (ValueError when the name is unknown)."""
    spec = _CACHE.get(name)
    if spec is not None:
        return spec
    simple = _SIMPLE.get(name)
    if simple is not None:
        spec = simple
    elif name.startswith("$") and name.endswith(")") and "(" in name:
        cls, _, inner = name[1:-1].partition("(")
        factory = _CLASSES.get(cls)
        if factory is None:
            if cls == "sht":  # htable not loaded: no table exists, every key is null
                spec = (_null, None)
            else:
                raise ValueError(f"unknown pseudo-variable {name}")
        else:
            spec = factory(inner)
    else:
        raise ValueError(f"unknown pseudo-variable {name}")
    if len(_CACHE) < 4096:
        _CACHE[name] = spec
    return spec


def pv_get(msg: Any, name: str) -> Any:
    return pv_spec(name)[0](msg)


def pv_set(msg: Any, name: str, value: Any) -> None:
    setter = pv_spec(name)[1]
    if setter is None:
        raise ValueError(f"{name} is read-only")
    setter(msg, value)


def pv_unset(msg: Any, name: str) -> None:
    pv_set(msg, name, None)


# -- KSR.pv ---------------------------------------------------------------------------------------
def _get(msg: Any, name: str) -> Any:
    try:
        return pv_spec(name)[0](msg)
    except ValueError as e:
        log.error("KSR.pv.get: %s", e)
        return None


def _gete(msg: Any, name: str) -> Any:
    v = _get(msg, name)
    return "" if v is None else v


def _getw(msg: Any, name: str) -> Any:
    v = _get(msg, name)
    return "<null>" if v is None else v


def _geti(msg: Any, name: str) -> int:
    v = _get(msg, name)
    if isinstance(v, int):
        return v
    try:
        return int(str(v))
    except (TypeError, ValueError):
        return 0


def _getvn(msg: Any, name: str, default: int) -> Any:
    v = _get(msg, name)
    return default if v is None else v


def _getvs(msg: Any, name: str, default: str) -> Any:
    v = _get(msg, name)
    return default if v is None else v


def _set(msg: Any, name: str, value: Any) -> bool:
    try:
        pv_set(msg, name, value)
    except ValueError as e:
        log.error("KSR.pv: cannot set %s: %s", name, e)
        return False
    return True


def _seti(msg: Any, name: str, value: int) -> bool:
    return _set(msg, name, int(value))


def _sets(msg: Any, name: str, value: str) -> bool:
    return _set(msg, name, str(value))


def _unset(msg: Any, name: str) -> bool:
    return _set(msg, name, None)


def _is_null(msg: Any, name: str) -> bool:
    return _get(msg, name) is None


declare("pv", (
    Export("get", _get, (STR,), XVAL, "Value of a pseudo-variable (str or int), None if null."),
    Export("gete", _gete, (STR,), XVAL, "Like get, but an empty string instead of null."),
    Export("getw", _getw, (STR,), XVAL, 'Like get, but "<null>" instead of null.'),
    Export("geti", _geti, (STR,), INT, "Value as an integer (0 if null or not numeric)."),
    Export("getvn", _getvn, (STR, INT), XVAL, "Value, or the given integer if null."),
    Export("getvs", _getvs, (STR, STR), XVAL, "Value, or the given string if null."),
    Export("seti", _seti, (STR, INT), BOOL, "Assign an integer to a writable PV."),
    Export("sets", _sets, (STR, STR), BOOL, "Assign a string to a writable PV."),
    Export("unset", _unset, (STR,), BOOL, "Set a writable PV to null (remove a $var/$avp)."),
    Export("is_null", _is_null, (STR,), BOOL, "True if the PV has no value."),
), doc="Pseudo-variables: $ru $rU $rd $rp $rm $rs $rr $du $fu $fU $fd $fn $ft $tu $tU $td "
       "$tt $ci $cs $ua $si $sp $Ri $Rp $pr $ou $ct $rb $mb $ml $hdr(name) $var(x) $avp(x) "
       "$xavp(x=>y) $sht(t=>k) $T_branch_idx $T_reply_code. Writable: $ru $rU $rd $rp $du "
       "$var $avp $xavp $sht.", core=True)
