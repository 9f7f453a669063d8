"""Script exports: what each module offers to routing scripts, declared in one place.

A module declares its KSR-visible functions once, next to its code::

    from .exports import INT, STR, Export, declare

    declare("maxfwd", (
        Export("process_maxfwd", _process_maxfwd, (INT,), INT,
               "Decrement Max-Forwards (add it with the limit when absent) ..."),
    ), doc="Max-Forwards handling (RFC 3261 §16.6 step 3).")

From these declarations the scripting layer builds the ``KSR`` object of every engine (Lua and
Python) and ``docs/scripting.md`` is generated (``python -m siprouter.scripting.docgen``), so the
two cannot drift apart.

Calling convention
------------------
``Export.func(msg, *args)``: ``msg`` is the script context of the message being routed (a
:class:`siprouter.scripting.api.Request` in request/branch/failure routes, a
:class:`~siprouter.scripting.api.Reply` in reply routes; check with ``msg.is_request``), followed
by the script's arguments in the declared order and types. The function returns what Kamailio's
function returns:

- ``INT`` functions return an ``int``: >0 true, <0 false (with the function's documented
  negative codes), 0 means "stop the script" (Kamailio's ``exit`` after e.g. ``t_newtran``);
- ``BOOL`` functions return a ``bool`` (Kamailio's ``SR_KEMIP_BOOL``; Lua and Python get a real
  boolean, so ``if KSR.is_INVITE() then`` works);
- ``XVAL`` functions return ``str``, ``int`` or ``None`` (Lua ``nil``);
- ``NONE`` functions return ``None``.

Module tables and loading
-------------------------
``KSR.<name>`` exists only when the configuration loads the module (``[server] modules``), as in
Kamailio (``if not KSR.auth then ...``). Tables declared with ``core=True`` (the core functions on
``KSR`` itself, ``KSR.hdr``, ``KSR.pv``, ``KSR.kx``) are always present. ``module`` names the
loadable module a table belongs to when it differs from the table name (``tmx`` belongs to
``tmx``; ``kx`` to the core).

A module that declares exports must be listed in :data:`DECLARING_MODULES` so the scripting
layer imports it; :func:`load_declarations` does that.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "BOOL",
    "DECLARING_MODULES",
    "INT",
    "NONE",
    "STR",
    "XVAL",
    "Export",
    "ModuleExports",
    "declare",
    "declared",
    "load_declarations",
]

#: parameter / return types (Kamailio's SR_KEMIP_INT, _STR, _BOOL, _XVAL, _NONE)
INT = "int"
STR = "str"
BOOL = "bool"
XVAL = "xval"
NONE = "none"

_PARAM_TYPES = (INT, STR)
_RETURN_TYPES = (INT, STR, BOOL, XVAL, NONE)

#: Python modules that call :func:`declare` (imported by :func:`load_declarations`).
#: A module that adds exports appends its import path here.
DECLARING_MODULES: list[str] = [
    "siprouter.modules.corex_kemi",  # KSR core functions, KSR.hdr, KSR.kx
    "siprouter.modules.pv",
    "siprouter.modules.tm",  # KSR.tm and KSR.tmx
    "siprouter.modules.sl",
    "siprouter.modules.rr",
    "siprouter.modules.maxfwd",
    "siprouter.modules.textops",
    "siprouter.modules.siputils",
    "siprouter.modules.registrar_exports",
    "siprouter.modules.htable",
    "siprouter.modules.pike",
    "siprouter.modules.sanity",
    "siprouter.modules.nathelper",
    "siprouter.modules.corex",
    "siprouter.modules.siputils_uri",  # more KSR.siputils
    "siprouter.modules.auth_db",  # KSR.auth and KSR.auth_db
    "siprouter.modules.permissions",
]


class Export(NamedTuple):
    """One script-visible function: ``KSR.<module>.<name>(*params)``."""

    name: str
    func: Callable[..., Any]  # func(msg, *args) -> value of type ``returns``
    params: tuple[str, ...] = ()  # INT / STR, in Kamailio's order
    returns: str = INT
    doc: str = ""


@dataclass(frozen=True, slots=True)
class ModuleExports:
    """The exports of one ``KSR.<name>`` table ("" = functions directly on ``KSR``)."""

    name: str
    exports: tuple[Export, ...]
    doc: str = ""
    core: bool = False  # present whatever modules the configuration loads
    module: str = ""  # the loadable module this table belongs to (default: ``name``)

    @property
    def module_name(self) -> str:
        return self.module or self.name

    def get(self, fn: str) -> Export | None:
        for e in self.exports:
            if e.name == fn:
                return e
        return None


_REGISTRY: dict[str, ModuleExports] = {}


def declare(
    name: str, exports: tuple[Export, ...] | list[Export], *, doc: str = "", core: bool = False,
    module: str = "",
) -> ModuleExports:
    """Register the exports of ``KSR.<name>``; a second declaration of a name extends it.

    Raises ValueError on a malformed declaration (bad type names, duplicate function names),
    so a mistake shows up when the module is imported, not when a script calls it.
    """
    seen: set[str] = set()
    for e in exports:
        if not e.name.isidentifier():
            raise ValueError(f"KSR.{name}: bad function name {e.name!r}")
        if e.name in seen:
            raise ValueError(f"KSR.{name}.{e.name}: declared twice")
        seen.add(e.name)
        for p in e.params:
            if p not in _PARAM_TYPES:
                raise ValueError(f"KSR.{name}.{e.name}: bad parameter type {p!r}")
        if e.returns not in _RETURN_TYPES:
            raise ValueError(f"KSR.{name}.{e.name}: bad return type {e.returns!r}")
        if not callable(e.func):
            raise ValueError(f"KSR.{name}.{e.name}: func is not callable")
    old = _REGISTRY.get(name)
    if old is not None:
        dup = seen & {e.name for e in old.exports}
        if dup:
            raise ValueError(f"KSR.{name}: {', '.join(sorted(dup))} declared twice")
        me = ModuleExports(name, old.exports + tuple(exports), old.doc or doc,
                           old.core or core, old.module or module)
    else:
        me = ModuleExports(name, tuple(exports), doc, core, module)
    _REGISTRY[name] = me
    return me


def declared() -> Mapping[str, ModuleExports]:
    """Every table declared so far, by KSR table name."""
    return _REGISTRY


def load_declarations() -> Mapping[str, ModuleExports]:
    """Import every module in :data:`DECLARING_MODULES` and return the registry."""
    for path in DECLARING_MODULES:
        try:
            importlib.import_module(path)
        except ModuleNotFoundError as e:
            if e.name != path:  # a missing dependency inside the module is a real error
                raise
    return _REGISTRY
