"""Loading the operator's routing script.

A Python routing script is a file that defines ``request_route(req)`` and may define
``reply_route(rep)``; callbacks for failure, reply and branch events are passed to
``req.on_failure(...)`` etc. as functions or by name. Loading fails with a :class:`ScriptError`
that says what is wrong (file missing, syntax error with its line, exception at import, no
``request_route``) so the server can refuse to start with a clear message.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

__all__ = ["DEFAULT_SCRIPT", "Script", "ScriptError", "load_script"]

DEFAULT_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "default.py")

_counter = itertools.count(1)


class ScriptError(Exception):
    """The routing script cannot be used; the message says why."""


class Script:
    """A loaded routing script: its route functions and the names it defines."""

    def __init__(self, path: str, module: ModuleType) -> None:
        self.path = path
        self.module = module
        rr = getattr(module, "request_route", None)
        if not callable(rr):
            raise ScriptError(f"{path}: the script defines no request_route(req) function")
        self.request_route: Callable[[Any], Any] = rr
        rep = getattr(module, "reply_route", None)
        self.reply_route: Callable[[Any], Any] | None = rep if callable(rep) else None

    def resolve(self, name: str) -> Callable[..., Any] | None:
        """The function a callback name refers to (None when the script has none)."""
        fn = getattr(self.module, name, None)
        return fn if callable(fn) else None

    def resolve_event(self, name: str) -> Callable[[Any, str], Any] | None:
        """An event callback named in module settings: ``name(ctx, event_name)``."""
        return self.resolve(name)


def load_script(
    path: str | None, *, modules: Iterable[str] | None = None,
    defines: Iterable[str] | None = None,
) -> Any:
    """Load a routing script (the bundled default when ``path`` is None).

    ``.lua`` runs in the embedded Lua engine; ``.py`` is a KEMI script when it defines
    ``mod_init`` or ``ksr_request_route`` (app_python3 / app_python3s), else a Pythonic one.
    ``modules`` are the loaded modules (``KSR.<module>`` exists only for them; default
    :data:`~siprouter.scripting.ksr.DEFAULT_MODULES`); ``defines`` answer ``KSR.kx.ifdef``.
    """
    from ..modules.corex_kemi import set_defines
    from .ksr import DEFAULT_MODULES, KsrState, build_python_ksr

    path = path or DEFAULT_SCRIPT
    if not os.path.isfile(path):
        raise ScriptError(f"{path}: no such script file")
    loaded = tuple(DEFAULT_MODULES if modules is None else modules)
    set_defines(list(defines or ()))
    if path.endswith(".lua"):
        from .lua_engine import LuaScript

        return LuaScript(path, loaded)
    if not path.endswith(".py"):
        raise ScriptError(f"{path}: unknown script type (expected a .py or .lua file)")
    state = KsrState()
    ksr = build_python_ksr(state, loaded)
    name = f"siprouter_script_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    module.__dict__["KSR"] = ksr
    saved = sys.modules.get("KSR")
    sys.modules["KSR"] = ksr  # type: ignore[assignment]  # what `import KSR` gives the script
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ScriptError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{path}:{f.lineno}" for f in reversed(tb) if f.filename == path), path)
        raise ScriptError(f"{where}: error while loading the script: "
                          f"{type(e).__name__}: {e}") from None
    finally:
        if saved is None:
            sys.modules.pop("KSR", None)
        else:
            sys.modules["KSR"] = saved
        sys.modules.pop(name, None)
    if callable(getattr(module, "mod_init", None)) or callable(
            getattr(module, "ksr_request_route", None)):
        from .python_engine import KemiPythonScript

        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
        saved = sys.modules.get("KSR")
        sys.modules["KSR"] = ksr  # type: ignore[assignment]
        try:
            return KemiPythonScript(path, module, state, source)
        finally:
            if saved is None:
                sys.modules.pop("KSR", None)
            else:
                sys.modules["KSR"] = saved
    return Script(path, module)
