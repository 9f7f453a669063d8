"""Python routing scripts in Kamailio's KEMI styles (app_python3 and app_python3s).

- app_python3: the script defines ``mod_init()`` returning an object whose methods
  ``ksr_request_route(self, msg)``, ``ksr_reply_route(self, msg)``, ``ksr_onsend_route`` and the
  callbacks named in ``KSR.tm.t_on_*("name")`` are called; ``child_init(self, rank)`` runs once
  after loading with rank 1 (the first SIP worker).
- app_python3s: global functions ``ksr_request_route(msg)`` ... (a function without a
  parameter is called without one) and the global ``KSR``.

``import KSR`` gives the script the ``KSR`` object of this load. Returning -255 from a route
function is how Kamailio's Python examples propagate ``exit``; ``KSR.x.exit()`` also works.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .ksr import KsrState, check_source

__all__ = ["KemiPythonScript"]


def _takes_arg(fn: Any) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return bool(params)


class KemiPythonScript:
    """A loaded KEMI-style Python script; same interface as :class:`loader.Script`."""

    kind = "python-kemi"

    def __init__(self, path: str, module: Any, state: KsrState, source: str) -> None:
        from .loader import ScriptError

        self.path = path
        self.module = module
        self.state = state
        mod_init = getattr(module, "mod_init", None)
        if callable(mod_init):
            try:
                self.target: Any = mod_init()
            except Exception as e:
                raise ScriptError(f"{path}: mod_init() failed: {type(e).__name__}: {e}") from None
            if self.target is None:
                raise ScriptError(f"{path}: mod_init() returned no object")
            child_init = getattr(self.target, "child_init", None)
            if callable(child_init):
                try:
                    child_init(1)
                except Exception as e:
                    raise ScriptError(f"{path}: child_init() failed: "
                                      f"{type(e).__name__}: {e}") from None
        else:
            self.target = module
        self._cache: dict[str, Callable[[Any], Any] | None] = {}
        rr = self.resolve("ksr_request_route")
        if rr is None:
            raise ScriptError(f"{path}: the script defines no ksr_request_route function"
                              + (" (on the object mod_init() returns)"
                                 if self.target is not module else ""))
        self.request_route: Callable[[Any], Any] = rr
        self.reply_route = self.resolve("ksr_reply_route")
        self.onsend_route = self.resolve("ksr_onsend_route")
        try:
            check_source(path, _strip_comments(source), lambda n: self.resolve(n) is not None)
        except ValueError as e:
            raise ScriptError(str(e)) from None

    def resolve(self, name: str) -> Callable[[Any], Any] | None:
        try:
            return self._cache[name]
        except KeyError:
            pass
        fn = getattr(self.target, name, None)
        wrapped = self._wrap(fn, _takes_arg(fn)) if callable(fn) else None
        self._cache[name] = wrapped
        return wrapped

    def resolve_event(self, name: str) -> Callable[[Any, str], Any] | None:
        """An event callback: ``name(evname)`` (a method in app_python3 style)."""
        fn = getattr(self.target, name, None)
        if not callable(fn):
            return None
        state = self.state

        def event(ctx: Any, evname: str) -> Any:
            prev = state.msg
            state.msg = ctx
            try:
                return fn(evname)
            finally:
                state.msg = prev

        return event

    def _wrap(self, fn: Callable[..., Any], with_msg: bool) -> Callable[[Any], Any]:
        state = self.state

        if with_msg:
            def route(ctx: Any) -> Any:
                prev = state.msg
                state.msg = ctx
                try:
                    return fn(ctx)
                finally:
                    state.msg = prev
        else:
            def route(ctx: Any) -> Any:
                prev = state.msg
                state.msg = ctx
                try:
                    return fn()
                finally:
                    state.msg = prev

        return route


def _strip_comments(text: str) -> str:
    out = []
    for line in text.split("\n"):
        i = line.find("#")
        out.append(line if i < 0 else line[:i])
    return "\n".join(out)
