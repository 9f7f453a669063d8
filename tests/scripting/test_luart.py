"""The _luart Lua binding: values across the boundary, errors, references."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest

luart = pytest.importorskip("siprouter.scripting._luart",
                            reason="the _luart binding is not built (needs liblua5.4-dev)")


def test_values_cross_both_ways() -> None:
    rt = luart.Runtime()
    assert rt.execute("return nil") is None
    assert rt.execute("return 1, 'a', nil, true, false, 2.5") == (1, "a", None, True, False, 2.5)
    # integers stay integers; a Python int too big for Lua becomes a float
    assert rt.execute("local a = ... return math.type(a), a", "=t", 2**40) == ("integer", 2**40)
    assert rt.execute("local a = ... return math.type(a)", "=t", 2**80) == "float"
    # strings are UTF-8; bytes that are not cross back unchanged
    assert rt.execute("return #..., ...", "=t", "é") == (2, "é")
    raw = rt.execute("return '\\xff\\xfe'")
    assert raw.encode("utf-8", "surrogateescape") == b"\xff\xfe"
    assert rt.execute("local s = ... return s == '\\xff\\xfe'", "=t", raw) is True
    assert rt.execute("local b = ... return b", "=t", b"x\x00y") == "x\x00y"
    t = rt.execute("return {a = 1, [2] = 'two'}")
    assert t.type == "table" and t["a"] == 1 and t[2] == "two" and t.a == 1
    f = rt.execute("return function(x, y) return x + y, x .. y end")
    assert f.type == "function" and f(2, 3) == (5, "23")


def test_python_callables_and_tables_from_dicts() -> None:
    rt = luart.Runtime()
    calls: list[tuple[Any, ...]] = []

    def rec(*a: Any) -> Any:
        calls.append(a)
        return len(a)

    tab = rt.table({"f": rec, "n": {"k": "v"}, 1: "one"})
    rt.globals().T = tab
    assert rt.execute("return T.f(1, 'x', nil, true), T.n.k, T[1]") == (4, "v", "one")
    assert calls == [(1, "x", None, True)]
    # more arguments than the fast path holds; tuples come back as several results
    rt.globals().many = lambda *a: tuple(reversed(a))
    args = ", ".join(str(i) for i in range(12))
    assert rt.execute(f"return many({args})") == tuple(range(11, -1, -1))
    # Lua -> Python -> Lua
    inner = rt.execute("return function(x) return x * 2 end")
    rt.globals().twice = lambda x: inner(x)
    assert rt.execute("return twice(21)") == 42
    with pytest.raises(TypeError, match="cannot cross into Lua"):
        rt.execute("return ...", "=t", object())
    with pytest.raises(TypeError, match="keyword"):
        inner(x=1)


def test_errors() -> None:
    rt = luart.Runtime()
    with pytest.raises(luart.LuaSyntaxError, match=r"script:1:"):
        rt.execute("x = = 1", "=script")
    with pytest.raises(luart.LuaError, match="boom"):
        rt.execute("error('boom')")
    with pytest.raises(luart.LuaError, match="table:"):
        rt.execute("error({})")

    def bad() -> None:
        raise KeyError("k")

    rt.globals().bad = bad
    # the Python exception ends the outer call as itself ...
    with pytest.raises(KeyError, match="k"):
        rt.execute("bad()")
    # ... and a Lua pcall sees its text
    assert rt.execute("local ok, e = pcall(bad) return ok, e") == (False, "KeyError: 'k'")
    # a Python error caught in Lua does not come back later as another error's cause
    with pytest.raises(luart.LuaError, match="later"):
        rt.execute("pcall(bad) error('later')")
    # the runtime is still usable
    assert rt.execute("return 1") == 1
    with pytest.raises(TypeError, match="not a Lua table"):
        rt.execute("return function() end")["x"]


def test_references_are_released() -> None:
    class Fn:
        def __call__(self) -> int:
            return 1

    fn = Fn()
    before = sys.getrefcount(fn)
    rt = luart.Runtime()
    rt.globals().fn = fn
    assert sys.getrefcount(fn) > before
    ref = rt.execute("return {}")
    del rt  # the LuaRef keeps the runtime alive
    assert ref.type == "table"
    del ref
    gc.collect()
    assert sys.getrefcount(fn) == before
    # replacing the global lets Lua's collector release it
    rt2 = luart.Runtime()
    rt2.globals().fn = fn
    rt2.globals().fn = None
    rt2.execute("collectgarbage()")
    assert sys.getrefcount(fn) == before


def test_many_calls_return_the_right_objects() -> None:
    """lupa's LuaJIT / Lua 5.1 runtimes returned wrong objects after a few hundred calls into
    Python; thousands of mixed crossings here must all come back exact."""
    rt = luart.Runtime()
    seen: list[Any] = []

    def echo(v: Any) -> Any:
        seen.append(v)
        return v

    rt.globals().echo = echo
    loop = rt.execute(
        "return function(n)\n"
        "  local out = {}\n"
        "  for i = 1, n do\n"
        "    local s = 'v' .. i\n"
        "    local t = {i}\n"
        "    if echo(i) ~= i or echo(s) ~= s or echo(t) ~= t or echo(i % 2 == 0) ~= (i % 2 == 0)\n"
        "    then return i end\n"
        "  end\n"
        "  return 0\n"
        "end")
    assert loop(5000) == 0
    assert len(seen) == 20000
    for i in range(1, 5001):
        v, s, t, b = seen[4 * (i - 1): 4 * i]
        assert (v, s, b) == (i, f"v{i}", i % 2 == 0)
        assert t.type == "table" and t[1] == i
    # and from Python: 5000 calls into Lua with distinct values
    ident = rt.execute("return function(...) return ... end")
    for i in range(5000):
        assert ident(i, f"s{i}") == (i, f"s{i}")


def test_bound_functions_get_the_current_message_first() -> None:
    rt = luart.Runtime()

    class State:
        msg: Any = None

    state = State()
    rt.globals().reply = rt.bind(lambda msg, code, text: f"{msg}:{code}:{text}", state, 2,
                                 "KSR.sl.sl_send_reply")
    state.msg = "m1"
    assert rt.execute("return reply(200, 'OK')") == "m1:200:OK"
    state.msg = "m2"  # read at each call, as the route wrapper sets it per message
    assert rt.execute("return reply(404, 'Nope')") == "m2:404:Nope"
    # the script-facing arity is checked and named
    with pytest.raises(TypeError, match=r"KSR.sl.sl_send_reply\(\) takes 2 arguments \(1 given\)"):
        rt.execute("return reply(200)")
    assert rt.execute("local ok, e = pcall(reply) return e") == (
        "TypeError: KSR.sl.sl_send_reply() takes 2 arguments (0 given)")
    # any count with -1
    rt.globals().many = rt.bind(lambda msg, *a: len(a), state, -1, "KSR.x.many")
    assert rt.execute("return many(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)") == 10
    with pytest.raises(TypeError, match="bind"):
        rt.bind(1, state, 0, "x")
