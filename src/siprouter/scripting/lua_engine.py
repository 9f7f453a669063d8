"""Lua routing scripts (Kamailio app_lua / KEMI style) in an embedded Lua 5.4.

The Lua state comes from :mod:`siprouter.scripting._luart`, our own small binding of the
system's Lua 5.4 (built when the C compiler and liblua5.4-dev are at hand; docs/lua.md says
why), or else from lupa's ``lupa.lua54``. Lua 5.4 on purpose in both: lupa's LuaJIT / Lua 5.1
runtimes have a known bug that hands back wrong objects after a few hundred calls into Python.
``SIPROUTER_LUA=lupa`` in the environment picks lupa when both are there.

The script defines ``ksr_request_route()`` and may define ``ksr_reply_route()``,
``ksr_onsend_route()`` and the callbacks it names in ``KSR.tm.t_on_*("name")``. ``KSR`` is a
Lua table built from the export declarations; ``KSR.<module>`` is ``nil`` when the module is not
loaded; an unknown function raises a Lua error naming it. ``KSR.x.exit()`` ends the route
function, ``KSR.x.drop()`` marks the message dropped and ends it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from ..modules.corex_kemi import _METHOD_LETTERS, _is_method_in
from ..modules.exports import Export
from ..modules.siputils import _has_totag
from .ksr import KsrState, bind, check_source, present_tables, x_functions
from .loader import ScriptError

__all__ = ["LuaScript"]

# KSR.x.exit() ends the route function with a Lua error carrying a private token, caught by
# the route runner's pcall: a Python exception crossing Lua costs about 20 us, this about 1 us.
#
# Every call from Lua into Python costs about 0.1 us with _luart and 0.2-0.5 us with lupa (GIL,
# argument tuple, conversions), and more in a busy server, where the Lua VM's code is no longer
# in the CPU caches (docs/lua.md). So
# facts every script asks for cross once per route call, packed into one integer: the method
# code times 2, plus 1 when the To header has a tag. The method checks (KSR.is_INVITE() ...
# KSR.is_method_in()) and KSR.siputils.has_totag() then answer in Lua. ``rm`` is the method of
# the request being routed, false for a reply (is_<METHOD>() is false; is_method_in() asks
# Python, it looks at the CSeq method), nil when unknown (every check asks Python); ``tt`` is
# the To-tag fact, nil when unknown. Uncommon methods cross as strings, and then tt is nil.
# The facts change only when an export replaces the whole message (textops.subst): those
# exports run through ``rewrites``, which forgets the facts for the rest of the route and for
# the routes it is nested in. Header edits do not change them, as in Kamailio, where has_totag
# reads the To header as it arrived.
_SETUP = """
local ksr_unloaded, mark_drop, method_names = ...
local exit_token = {}
local pcall, error, setmetatable, tostring, type = pcall, error, setmetatable, tostring, type
local byte, find = string.byte, string.find
local rm, tt = nil, nil
local generation = 0
local function mk(path, t, top)
  return setmetatable(t, {__index = function(_, k)
    -- KSR holds the loaded modules only, as in Kamailio: a module that is not loaded
    -- (declared here or not: rtpproxy, rtpengine ...) is nil, so `if KSR.m then` works;
    -- misspelt KSR.<fn>( calls are load errors (check_source)
    if top then return nil end
    error(path .. "." .. tostring(k) .. ": no such function" ..
          (top and " or module" or ""), 2)
  end})
end
local function x_exit() error(exit_token, 0) end
local function x_drop() mark_drop(); error(exit_token, 0) end
local function runner(fn)
  return function(m, ...)
    local prev, prevtt, gen = rm, tt, generation
    if type(m) == "number" then
      rm = method_names[m >> 1]
      tt = (m & 1) == 1
    else
      rm = m
      tt = nil
    end
    local ok, err = pcall(fn, ...)
    if generation == gen then rm, tt = prev, prevtt else rm, tt = nil, nil end
    if ok or err == exit_token then return end
    error(err, 0)
  end
end
local function is_method(name, slow)
  return function()
    local m = rm
    if m == nil then return slow() end
    return m == name
  end
end
local function is_method_in(letters, slow)
  -- letters: byte of a method letter (either case) -> method name
  return function(s)
    local m = rm
    if not m or type(s) ~= "string" or find(s, "[\\128-\\255]") then return slow(s) end
    for i = 1, #s do
      if letters[byte(s, i)] == m then return true end
    end
    return false
  end
end
local function has_totag(slow)
  return function()
    local t = tt
    if t == nil then return slow() end
    return t and 1 or -1
  end
end
local function rewrites(f)
  return function(...)
    rm, tt = nil, nil
    generation = generation + 1
    return f(...)
  end
end
return mk, x_exit, x_drop, runner, is_method, is_method_in, has_totag, rewrites
"""

#: request methods handed to Lua as even integers (2, 4 ...; +1 carries the To-tag fact);
#: others cross as strings
_METHOD_CODES: dict[str, int] = {m: 2 * i for i, m in enumerate(sorted(
    {*_METHOD_LETTERS.values(), "INFO"}), 1)}

#: exports that may replace the whole message (and so its method); see ``_SETUP``
_REWRITES_MESSAGE = frozenset({("textops", "subst")})

_LONG_COMMENT = re.compile(r"--\[(=*)\[.*?\]\1\]", re.S)
_LINE_COMMENT = re.compile(r"--[^\n]*")


def _strip_comments(text: str) -> str:
    # keep line numbers: replace comment text by as many newlines
    text = _LONG_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return _LINE_COMMENT.sub("", text)


class _LupaRuntime:
    """lupa's LuaRuntime behind the interface of ``_luart.Runtime`` (the fallback); KSR
    functions are the closures of :func:`ksr.bind`."""

    def __init__(self, lupa: Any) -> None:
        self._lua = lupa.LuaRuntime(unpack_returned_tuples=True, register_eval=False,
                                    register_builtins=False)
        self._lua_type = lupa.lua_type

    def execute(self, code: str, name: str = "=script", *args: Any) -> Any:
        return self._lua.execute(code, *args)

    def globals(self) -> Any:
        return self._lua.globals()

    def table(self, d: dict[Any, Any]) -> Any:
        return self._lua.table_from(d)

    def type_of(self, v: Any) -> str | None:
        t: str | None = self._lua_type(v)
        return t

    def bind_export(self, ex: Export, state: KsrState, path: str) -> Any:
        return bind(state, ex)


class _LuartRuntime:
    """``_luart.Runtime`` with ``type_of`` and ``bind_export``."""

    def __init__(self, luart: Any) -> None:
        self._rt = luart.Runtime()
        self._ref = luart.LuaRef
        self.execute = self._rt.execute
        self.globals = self._rt.globals
        self.table = self._rt.table

    def type_of(self, v: Any) -> str | None:
        return v.type if isinstance(v, self._ref) else None

    def bind_export(self, ex: Export, state: KsrState, path: str) -> Any:
        """A Lua function calling ``ex.func(state.msg, *args)`` in C (no Python closure)."""
        return self._rt.bind(ex.func, state, len(ex.params), path)


def lua_backend(name: str | None = None) -> tuple[str, Any, Any, Any]:
    """(backend name, runtime factory, syntax error class, error class): ``luart`` when it is
    built, else ``lupa``; ``name`` (or ``SIPROUTER_LUA``) asks for one."""
    want = name or os.environ.get("SIPROUTER_LUA") or ""
    if want in ("", "luart"):
        try:
            from . import _luart  # type: ignore[attr-defined]
        except ImportError:
            if want == "luart":
                raise ScriptError("the _luart Lua binding is not built (it needs a C compiler "
                                  "and liblua5.4-dev at install time)") from None
        else:
            return ("luart", lambda: _LuartRuntime(_luart), _luart.LuaSyntaxError,
                    _luart.LuaError)
    if want not in ("", "lupa"):
        raise ScriptError(f"SIPROUTER_LUA={want!r}: expected luart or lupa")
    try:
        import lupa.lua54 as lupa  # type: ignore[import-untyped]
    except ImportError as e:  # pragma: no cover - lupa is a dependency
        raise ScriptError(f"Lua scripts need the _luart binding or the lupa package ({e})"
                          ) from None
    return "lupa", lambda: _LupaRuntime(lupa), lupa.LuaSyntaxError, lupa.LuaError


class LuaScript:
    """A loaded Lua routing script; same interface as :class:`loader.Script`."""

    kind = "lua"

    def __init__(self, path: str, modules: Iterable[str], backend: str | None = None) -> None:
        try:
            self.backend, make_runtime, syntax_error, lua_error = lua_backend(backend)
        except ScriptError as e:
            raise ScriptError(f"{path}: {e}") from None
        self.path = path
        self.state = KsrState()
        lua = make_runtime()
        self.lua = lua
        self._lua_type = lua.type_of
        present, absent = present_tables(modules)
        unloaded = lua.table({n: True for n in absent})
        state = self.state

        def mark_drop() -> None:
            msg = state.msg
            if msg is not None:
                msg.drop()

        (mk, x_exit, x_drop, self._runner, is_method, is_method_in, has_totag,
         rewrites) = lua.execute(
            _SETUP, "=siprouter", unloaded, mark_drop,
            lua.table({c >> 1: m for m, c in _METHOD_CODES.items()}))
        letters = lua.table(_method_letters())
        top: dict[str, Any] = {}
        for name, me in present.items():
            funcs: dict[str, Any] = {}
            for ex in me.exports:
                call: Any = lua.bind_export(ex, self.state,
                                            f"KSR.{name}.{ex.name}" if name else f"KSR.{ex.name}")
                method = _method_is_of(ex)
                if ex.func is _is_method_in:
                    call = is_method_in(letters, call)
                elif ex.func is _has_totag:
                    call = has_totag(call)
                elif method is not None:
                    call = is_method(method, call)
                elif (name, ex.name) in _REWRITES_MESSAGE:
                    call = rewrites(call)
                funcs[ex.name] = call
            if name == "":
                top.update(funcs)
            else:
                top[name] = mk(f"KSR.{name}", lua.table(funcs), False)
        xf: dict[str, Any] = dict(x_functions(self.state))
        xf["exit"] = x_exit
        xf["drop"] = x_drop
        top["x"] = mk("KSR.x", lua.table(xf), False)
        g = lua.globals()
        g.KSR = mk("KSR", lua.table(top), True)
        try:
            with open(path, encoding="utf-8") as f:
                source = f.read()
        except OSError as e:
            raise ScriptError(f"{path}: cannot read: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ScriptError(f"{path}: not UTF-8 text: {e}") from None
        try:
            lua.execute(source, "=script")
        except syntax_error as e:
            raise ScriptError(f"{path}: syntax error: {_lua_msg(e)}") from None
        except lua_error as e:
            raise ScriptError(f"{path}: error while loading the script: {_lua_msg(e)}") from None
        except Exception as e:
            raise ScriptError(f"{path}: error while loading the script: "
                              f"{type(e).__name__}: {e}") from None
        self._g = g
        self._cache: dict[str, Callable[[Any], Any] | None] = {}
        rr = self.resolve("ksr_request_route")
        if rr is None:
            raise ScriptError(f"{path}: the script defines no ksr_request_route() function")
        self.request_route: Callable[[Any], Any] = rr
        self.reply_route = self.resolve("ksr_reply_route")
        self.onsend_route = self.resolve("ksr_onsend_route")
        try:
            check_source(path, _strip_comments(source), lambda n: self.resolve(n) is not None)
        except ValueError as e:
            raise ScriptError(str(e)) from None

    def resolve(self, name: str) -> Callable[[Any], Any] | None:
        """The route wrapper of Lua function ``name`` (None when the script has none)."""
        try:
            return self._cache[name]
        except KeyError:
            pass
        fn = self._g[name]
        wrapped = None
        if fn is not None and self._lua_type(fn) == "function":
            wrapped = self._wrap(fn)
        self._cache[name] = wrapped
        return wrapped

    def resolve_event(self, name: str) -> Callable[[Any, str], Any] | None:
        """An event callback: Lua ``name(evname)`` run with ``ctx`` as the message."""
        fn = self._g[name]
        if fn is None or self._lua_type(fn) != "function":
            return None
        state = self.state
        run = self._runner(fn)

        def event(ctx: Any, evname: str) -> None:
            prev = state.msg
            state.msg = ctx
            try:
                run(None, evname)
            finally:
                state.msg = prev

        return event

    def _wrap(self, fn: Any) -> Callable[[Any], Any]:
        state = self.state
        run = self._runner(fn)
        codes = _METHOD_CODES

        def route(ctx: Any) -> None:
            prev = state.msg
            state.msg = ctx
            try:
                # the request's method and To-tag fact for the checks in Lua (see _SETUP)
                if ctx.is_request:
                    msg = ctx.msg
                    m = msg.method
                    c = codes.get(m)
                    if c is None:
                        run(m)
                    elif msg.to_tag is None:
                        run(c)
                    else:
                        run(c + 1)
                else:
                    run(False)
            finally:
                state.msg = prev

        return route


def _method_is_of(e: Export) -> str | None:
    """The method of a core ``is_<METHOD>`` export (``bool(msg.is_request and method ==``)."""
    f = e.func
    if (getattr(f, "__module__", None) == _is_method_in.__module__
            and getattr(f, "__qualname__", "") == "_method_is.<locals>.fn"
            and e.name.startswith("is_") and f.__name__ == e.name and not e.params):
        return e.name[3:]
    return None


def _method_letters() -> dict[int, str]:
    """is_method_in's letters, both cases, by byte (Python lower-cases the argument first)."""
    out: dict[int, str] = {}
    for ch, method in _METHOD_LETTERS.items():
        out[ord(ch)] = method
        out[ord(ch.upper())] = method
    return out


def _lua_msg(e: Exception) -> str:
    text = str(e)
    return text.replace('[string "<python>"]', "script")
