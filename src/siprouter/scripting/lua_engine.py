"""Lua routing scripts (Kamailio app_lua / KEMI style) in an embedded Lua 5.4 (lupa).

Lua 5.4 through ``lupa.lua54`` on purpose: lupa's LuaJIT / Lua 5.1 runtimes have a known bug
that hands back wrong objects after a few hundred calls into Python.

The script defines ``ksr_request_route()`` and may define ``ksr_reply_route()``,
``ksr_onsend_route()`` and the callbacks it names in ``KSR.tm.t_on_*("name")``. ``KSR`` is a
Lua table built from the export declarations; ``KSR.<module>`` is ``nil`` when the module is not
loaded; an unknown function raises a Lua error naming it. ``KSR.x.exit()`` ends the route
function, ``KSR.x.drop()`` marks the message dropped and ends it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from ..modules.corex_kemi import _METHOD_LETTERS, _is_method_in
from ..modules.exports import Export
from .ksr import KsrState, bind, check_source, present_tables, x_functions
from .loader import ScriptError

__all__ = ["LuaScript"]

# KSR.x.exit() ends the route function with a Lua error carrying a private token, caught by
# the route runner's pcall: a Python exception crossing Lua costs about 20 us, this about 1 us.
#
# Every call from Lua into Python costs about 0.5 us (lupa: GIL, argument tuple, conversions),
# so the method checks (KSR.is_INVITE() ... KSR.is_method_in()) answer in Lua from the request
# method, handed to the runner once per route call: ``rm`` is the method of the request being
# routed, false for a reply (is_<METHOD>() is false; is_method_in() asks Python, it looks at
# the CSeq method), nil when unknown (every check asks Python). Common methods cross as small
# integers (``_METHOD_CODES``): a Python string costs about 600 CPU instructions more.
# A request's method changes only when an export replaces the whole message (textops.subst):
# those exports run through ``rewrites``, which forgets rm for the rest of the route and for
# the routes it is nested in.
_SETUP = """
local ksr_unloaded, mark_drop, method_names = ...
local exit_token = {}
local pcall, error, setmetatable, tostring, type = pcall, error, setmetatable, tostring, type
local byte, find = string.byte, string.find
local rm = nil
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
    local prev, gen = rm, generation
    rm = method_names[m] or m
    local ok, err = pcall(fn, ...)
    if generation == gen then rm = prev else rm = nil end
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
local function rewrites(f)
  return function(...)
    rm = nil
    generation = generation + 1
    return f(...)
  end
end
return mk, x_exit, x_drop, runner, is_method, is_method_in, rewrites
"""

#: request methods handed to Lua as integers (1..n); others cross as strings
_METHOD_CODES: dict[str, int] = {m: i for i, m in enumerate(sorted(
    {*_METHOD_LETTERS.values(), "INFO"}), 1)}

#: exports that may replace the whole message (and so its method); see ``_SETUP``
_REWRITES_MESSAGE = frozenset({("textops", "subst")})

_LONG_COMMENT = re.compile(r"--\[(=*)\[.*?\]\1\]", re.S)
_LINE_COMMENT = re.compile(r"--[^\n]*")


def _strip_comments(text: str) -> str:
    # keep line numbers: replace comment text by as many newlines
    text = _LONG_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return _LINE_COMMENT.sub("", text)


class LuaScript:
    """A loaded Lua routing script; same interface as :class:`loader.Script`."""

    kind = "lua"

    def __init__(self, path: str, modules: Iterable[str]) -> None:
        try:
            import lupa.lua54 as lupa  # type: ignore[import-untyped]
        except ImportError as e:  # pragma: no cover - lupa is a dependency
            raise ScriptError(f"{path}: Lua scripts need the lupa package ({e})") from None
        self.path = path
        self.state = KsrState()
        lua = lupa.LuaRuntime(unpack_returned_tuples=True, register_eval=False,
                              register_builtins=False)
        self.lua = lua
        self._lua_type = lupa.lua_type
        present, absent = present_tables(modules)
        unloaded = lua.table_from({n: True for n in absent})
        state = self.state

        def mark_drop() -> None:
            msg = state.msg
            if msg is not None:
                msg.drop()

        mk, x_exit, x_drop, self._runner, is_method, is_method_in, rewrites = lua.execute(
            _SETUP, unloaded, mark_drop, lua.table_from({c: m for m, c in _METHOD_CODES.items()}))
        letters = lua.table_from(_method_letters())
        top: dict[str, Any] = {}
        for name, me in present.items():
            funcs: dict[str, Any] = {}
            for ex in me.exports:
                call: Any = bind(self.state, ex)
                method = _method_is_of(ex)
                if ex.func is _is_method_in:
                    call = is_method_in(letters, call)
                elif method is not None:
                    call = is_method(method, call)
                elif (name, ex.name) in _REWRITES_MESSAGE:
                    call = rewrites(call)
                funcs[ex.name] = call
            if name == "":
                top.update(funcs)
            else:
                top[name] = mk(f"KSR.{name}", lua.table_from(funcs), False)
        xf: dict[str, Any] = dict(x_functions(self.state))
        xf["exit"] = x_exit
        xf["drop"] = x_drop
        top["x"] = mk("KSR.x", lua.table_from(xf), False)
        g = lua.globals()
        g.KSR = mk("KSR", lua.table_from(top), True)
        try:
            with open(path, encoding="utf-8") as f:
                source = f.read()
        except OSError as e:
            raise ScriptError(f"{path}: cannot read: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ScriptError(f"{path}: not UTF-8 text: {e}") from None
        try:
            lua.execute(source)
        except lupa.LuaSyntaxError as e:
            raise ScriptError(f"{path}: syntax error: {_lua_msg(e)}") from None
        except lupa.LuaError as e:
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
                # the request method for the method checks in Lua (see _SETUP)
                if ctx.is_request:
                    m = ctx.msg.method
                    run(codes.get(m, m))
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
