"""The ``KSR`` facade: Kamailio's KEMI object, generated from the modules' export declarations.

Each engine (Python, Lua) owns one :class:`KsrState`; the route wrappers put the script context
of the message being routed (``api.Request`` / ``api.Reply``) into ``state.msg`` for the length
of the call, and every ``KSR`` function is a small closure bound once, at load, to the export's
function and that state: a call costs one closure call and one attribute read, nothing is built
per call. No SIP logic lives here (see :mod:`siprouter.modules.exports`).

``KSR.<module>`` exists only for the modules the configuration loads; a known module that is not
loaded is ``None`` (Python) / ``nil`` (Lua), so ``if not KSR.auth`` works as in Kamailio. A name
that no module exports is an error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..modules.exports import Export, ModuleExports, load_declarations
from .api import StopRoute

__all__ = [
    "DEFAULT_MODULES",
    "KsrObject",
    "KsrState",
    "KsrTable",
    "bind",
    "build_python_ksr",
    "check_source",
    "present_tables",
]

#: modules loaded when the configuration names none (Kamailio's default kamailio.cfg loads
#: these without the WITH_* defines)
DEFAULT_MODULES: tuple[str, ...] = (
    "tm", "tmx", "sl", "rr", "pv", "maxfwd", "usrloc", "registrar", "textops", "siputils",
    "sanity", "corex", "kex", "xlog",
)


class KsrState:
    """The message the running route function works on (None outside a route)."""

    __slots__ = ("msg",)

    def __init__(self) -> None:
        self.msg: Any = None


def bind(state: KsrState, e: Export) -> Callable[..., Any]:
    """A script-callable for ``e`` that passes ``state.msg`` first (arity fixed when possible)."""
    f = e.func
    n = len(e.params)
    if n == 0:
        def call0() -> Any:
            return f(state.msg)
        fn: Callable[..., Any] = call0
    elif n == 1:
        def call1(a: Any) -> Any:
            return f(state.msg, a)
        fn = call1
    elif n == 2:
        def call2(a: Any, b: Any) -> Any:
            return f(state.msg, a, b)
        fn = call2
    elif n == 3:
        def call3(a: Any, b: Any, c: Any) -> Any:
            return f(state.msg, a, b, c)
        fn = call3
    else:
        def calln(*a: Any) -> Any:
            return f(state.msg, *a)
        fn = calln
    fn.__name__ = e.name
    fn.__doc__ = e.doc
    return fn


def present_tables(loaded: Iterable[str]) -> tuple[dict[str, ModuleExports], set[str]]:
    """(tables present for these loaded modules, names of declared tables that are absent)."""
    wanted = set(loaded)
    present: dict[str, ModuleExports] = {}
    absent: set[str] = set()
    for name, me in load_declarations().items():
        if me.core or me.module_name in wanted:
            present[name] = me
        else:
            absent.add(name)
    return present, absent


class KsrTable:
    """``KSR.<module>`` for Python scripts: the bound functions as attributes."""

    def __init__(self, path: str, funcs: Mapping[str, Callable[..., Any]]) -> None:
        self.__dict__.update(funcs)
        self.__dict__["_ksr_path"] = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{self.__dict__['_ksr_path']}.{name}: no such function")


class KsrObject(KsrTable):
    """The ``KSR`` object of Python scripts (what ``import KSR`` gives them)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"KSR.{name}: no such function or module (no module declares it)")


def _x_exit() -> None:
    raise StopRoute()


def x_functions(state: KsrState) -> dict[str, Callable[..., Any]]:
    """``KSR.x``: exit() stops the route function; drop() marks the message dropped and exits."""
    def drop() -> None:
        msg = state.msg
        if msg is not None:
            msg.drop()
        raise StopRoute()

    def modf(name: str, *args: Any) -> int:
        raise NotImplementedError(f"KSR.x.modf({name!r}): native module functions do not exist "
                                  "here; call the KSR.<module> function")

    return {"exit": _x_exit, "drop": drop, "modf": modf}


def build_python_ksr(state: KsrState, loaded: Iterable[str]) -> KsrObject:
    present, absent = present_tables(loaded)
    top: dict[str, Any] = {}
    for name, me in present.items():
        funcs = {e.name: bind(state, e) for e in me.exports}
        if name == "":
            top.update(funcs)
        else:
            top[name] = KsrTable(f"KSR.{name}", funcs)
    for name in absent:
        top[name] = None
    top["x"] = KsrTable("KSR.x", x_functions(state))
    return KsrObject("KSR", top)


# -- load-time checks -----------------------------------------------------------------------------
_CALLBACK_RE = re.compile(
    r"""\bt_on_(?:branch_failure|branch|failure|reply)\s*\(\s*(["'])([^"']*)\1""")
_MODFN_RE = re.compile(r"\bKSR\.(\w+)\.(\w+)\s*\(")
_TOPFN_RE = re.compile(r"\bKSR\.(\w+)\s*\(")


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def check_source(
    path: str, text: str, resolve: Callable[[str], bool],
) -> None:
    """Find, without running anything, what would fail at the first call.

    - every callback name given to ``KSR.tm.t_on_*("name")`` must be a function of the script;
    - ``KSR.<module>.<fn>(`` and ``KSR.<fn>(`` must name declared functions.
    Raises ``ValueError("path:line: ...")`` at the first problem. ``text`` has comments removed.
    """
    from ..modules.exports import declared

    for m in _CALLBACK_RE.finditer(text):
        name = m.group(2)
        if name and not resolve(name):
            raise ValueError(f"{path}:{_line_of(text, m.start())}: callback {name!r} given to "
                             f"t_on_{m.group(0).split('t_on_')[1].split('(')[0].strip()} is "
                             "not a function of the script")
    decl = declared()
    core = decl.get("")
    for m in _MODFN_RE.finditer(text):
        mod, fn = m.group(1), m.group(2)
        if mod == "x":
            if fn not in ("exit", "drop", "modf"):
                raise ValueError(f"{path}:{_line_of(text, m.start())}: KSR.x.{fn}: no such "
                                 "function")
            continue
        me = decl.get(mod)
        if me is not None and me.get(fn) is None:
            raise ValueError(f"{path}:{_line_of(text, m.start())}: KSR.{mod}.{fn}: module "
                             f"{mod} exports no such function")
    for m in _TOPFN_RE.finditer(text):
        fn = m.group(1)
        if core is not None and core.get(fn) is None and fn not in decl:
            raise ValueError(f"{path}:{_line_of(text, m.start())}: KSR.{fn}: no such function")
