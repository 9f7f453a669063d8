"""Event callbacks named in module settings (Kamailio's ``event_callback`` modparams).

A KEMI script has no ``event_route[...]`` blocks; instead a module setting names a function of
the script that the module calls with the event's name, e.g.::

    [modules.htable]
    event_callback = "ksr_htable_event"     # called with "htable:mod-init" at start

    function ksr_htable_event(evname) ... end              -- Lua
    def ksr_htable_event(self, evname): ...                # app_python3 (a method)

:data:`EVENT_CALLBACKS` lists the settings that name such a function and the events raised
through them. Every name is checked when the script loads (:func:`check_event_callbacks`): a
function the script lacks is a load error, as for ``t_on_*`` names. The runtime raises an event
with :func:`raise_event`, which runs the function on a placeholder request (Kamailio runs event
routes on a faked message too), so KSR functions that need a message context still work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .api import Request, StopRoute
from .loader import ScriptError

__all__ = [
    "EVENT_CALLBACKS",
    "check_event_callbacks",
    "configured_callbacks",
    "raise_event",
]

log = logging.getLogger("siprouter.script")

#: (module, setting) -> events raised through the function the setting names (Kamailio's
#: htable and tm ``event_callback`` modparams; their documented event names)
EVENT_CALLBACKS: dict[tuple[str, str], tuple[str, ...]] = {
    ("htable", "event_callback"): ("htable:mod-init",),
    ("tm", "event_callback"): ("tm:local-request",),
}

# Kamailio's faked message for event routes (src/core/fmsg.c) is an OPTIONS like this one
_FAKED = (
    b"OPTIONS sip:you@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKfaked.0\r\n"
    b"From: <sip:you@127.0.0.1>;tag=faked\r\n"
    b"To: <sip:you@127.0.0.1>\r\n"
    b"Call-ID: faked-event@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def configured_callbacks(modules: Mapping[str, Any] | None) -> dict[str, str]:
    """``module -> function name`` from the ``[modules.<name>]`` tables (empty names ignored).

    Raises ValueError when a setting is not a string.
    """
    out: dict[str, str] = {}
    for (module, key) in EVENT_CALLBACKS:
        table = (modules or {}).get(module)
        if not isinstance(table, Mapping):
            continue
        name = table.get(key)
        if name is None or name == "":
            continue
        if not isinstance(name, str):
            raise ValueError(f"[modules.{module}] {key}: expected a function name (a string), "
                             f"got {name!r}")
        out[module] = name.strip()
    return out


def check_event_callbacks(script: Any, modules: Mapping[str, Any] | None) -> dict[str, str]:
    """Every event callback the settings name must be a function of ``script``.

    Returns the ``module -> function name`` map; raises :class:`ScriptError` naming the setting
    and the function otherwise.
    """
    try:
        names = configured_callbacks(modules)
    except ValueError as e:
        raise ScriptError(str(e)) from None
    for module, name in names.items():
        if _resolve(script, name) is None:
            raise ScriptError(f"{getattr(script, 'path', 'script')}: [modules.{module}] "
                              f"event_callback names {name!r}, which is not a function of "
                              "the script")
    return names


def _resolve(script: Any, name: str) -> Callable[[Any, str], Any] | None:
    resolver = getattr(script, "resolve_event", None)
    if resolver is None:
        return None
    fn: Callable[[Any, str], Any] | None = resolver(name)
    return fn


def raise_event(core: Any, module: str, event: str, modules: Mapping[str, Any] | None) -> bool:
    """Run the callback ``[modules.<module>] event_callback`` names with ``event``.

    Returns whether a callback ran. An exception in it is logged (the server keeps running),
    like an error in a route function.
    """
    script = core.script
    name = configured_callbacks(modules).get(module)
    if not name or script is None:
        return False
    fn = _resolve(script, name)
    if fn is None:
        log.error("event %s: the script has no function %r", event, name)
        return False
    from ..sip.message import parse_message
    from ..sip.types import Endpoint

    listeners = getattr(getattr(core, "transport", None), "listeners", None) or [None]
    ctx = Request(core, parse_message(_FAKED), Endpoint("udp", "127.0.0.1", 9), listeners[0])
    ctx.route = "event"
    try:
        fn(ctx, event)
    except StopRoute:
        pass
    except Exception:
        log.exception("event callback %s(%r) failed", name, event)
    return True
