"""Module settings: the ``[modules.<name>]`` tables of the configuration, typed and checked.

Each module describes its settings as a dataclass whose field names are Kamailio's modparam
names and whose defaults are Kamailio's defaults, then builds it with :func:`load_modparams`::

    @dataclass(slots=True)
    class PikeParams:
        sampling_time_unit: int = 2
        ...

    params = load_modparams(PikeParams, "pike", settings.modules.get("pike", {}),
                            checks={"sampling_time_unit": at_least(1)})

Errors are :class:`ModparamError` (a ``ValueError``) whose text names the table and the key:
``[modules.pike] sampling_time_unit: expected an integer, got "2s"``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..config.loader import at_least, between

__all__ = ["ModparamError", "at_least", "between", "load_modparams", "one_of"]

T = TypeVar("T")


class ModparamError(ValueError):
    """A module setting that cannot be used; the message names ``[modules.<name>] key``."""


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _coerce(value: Any, hint: Any) -> Any:
    if hint is bool:
        # Kamailio modparams are integers 0/1; TOML booleans are accepted too
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"expected true or false, got {_show(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"expected an integer, got {_show(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"expected a number, got {_show(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {_show(value)}")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is list and args == (str,):
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError(f"expected an array of strings, got {_show(value)}")
    if origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ValueError(f"expected a table, got {_show(value)}")
    if args and type(None) in args:  # X | None
        inner = [a for a in args if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, inner[0])
    raise TypeError(f"unsupported modparam type {hint!r}")  # a bug in a module, not bad input


def load_modparams(
    cls: type[T], module: str, table: Mapping[str, Any] | None,
    checks: Mapping[str, Callable[[Any], None]] | None = None,
) -> T:
    """Build ``cls`` (a dataclass) from ``table``; ModparamError names the bad key."""
    table = table or {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(fields)}"
            raise ModparamError(f"[modules.{module}] {key}: unknown setting ({hint})")
        try:
            value = _coerce(raw, hints[key])
            check = (checks or {}).get(key)
            if check is not None:
                check(value)
        except ValueError as e:
            raise ModparamError(f"[modules.{module}] {key}: {e}") from None
        values[key] = value
    return cls(**values)


def one_of(*allowed: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {_show(value)}")

    return check
