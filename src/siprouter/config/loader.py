"""Load :class:`Settings` from one TOML file plus overrides (the command line), strictly.

Every key is checked for its type and its value; unknown sections and keys are errors (a typo
must not silently fall back to a default). Messages name the source, section and key::

    config.toml: [timers] t1: expected a number, got "abc"
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..transport.spec import ListenSpec, parse_hostport
from .settings import (
    LOG_LEVELS,
    ConfigError,
    DatabaseSettings,
    RegistrarSettings,
    ServerSettings,
    Settings,
    SipSettings,
    TcpSettings,
    TimerSettings,
)

__all__ = ["COMMAND_LINE", "load_settings"]

#: the origin named in errors about override values
COMMAND_LINE = "command line"

_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "database": DatabaseSettings,
    "sip": SipSettings,
    "timers": TimerSettings,
    "tcp": TcpSettings,
    "registrar": RegistrarSettings,
}
_ALL_SECTIONS = (*_SECTIONS, "modules")

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_DEFINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(=.*)?$", re.DOTALL)


def _show(value: Any) -> str:
    """A value as TOML would write it, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return str(value)


# -- value checks: raise ValueError with the reason -------------------------------------------


def _positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {_show(value)}")


def _with_defaults(cls: type[Any], values: Mapping[str, Any]) -> SimpleNamespace:
    """A section's values as its class would hold them, defaults filled in."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            out[f.name] = values[f.name]
        elif f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return SimpleNamespace(**out)


def at_least(low: int) -> Callable[[Any], None]:
    """A check for a setting: ``value >= low`` (shared with the modules' modparams)."""

    def check(value: Any) -> None:
        if value < low:
            raise ValueError(f"must be at least {low}, got {value}")

    return check


def between(low: int, high: int) -> Callable[[Any], None]:
    """A check for a setting: ``low <= value <= high``."""

    def check(value: Any) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")

    return check


def _check_listen(value: list[str]) -> None:
    if not value:
        raise ValueError("needs at least one PROTO:HOST:PORT entry")
    for text in value:
        try:
            ListenSpec.parse(text)
        except ValueError as exc:
            reason = str(exc).removeprefix(f"listen {text!r}: ")
            raise ValueError(f"{_show(text)}: {reason}") from None


def _check_advertise(value: str | None) -> None:
    if value is not None:
        host, _port = parse_hostport(value.strip(), _show(value))
        if any(c.isspace() for c in host):
            raise ValueError(f"{_show(value)}: host contains spaces")


def _check_names(value: list[str]) -> None:
    for name in value:
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"{_show(name)} is not a host name")


def _check_aliases(value: list[str]) -> None:
    for name in value:
        parse_hostport(name, _show(name))
        if any(c.isspace() for c in name):
            raise ValueError(f"{_show(name)} is not a host[:port]")


def _check_defines(value: list[str]) -> None:
    for name in value:
        if not _DEFINE.match(name):
            raise ValueError(f"{_show(name)}: expected NAME or NAME=VALUE")


def _check_udp_dispatch(value: str) -> None:
    if value not in ("call-id", "source"):
        raise ValueError('must be "call-id" or "source"')


def _check_log_level(value: str) -> None:
    if value.lower() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {_show(value)}")


def _check_nonempty(value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


def _check_url(value: str) -> None:
    if not _URL.match(value):
        raise ValueError(
            f"expected a URL like sqlite:///path or postgresql://..., got {_show(value)}"
        )


def _check_header_text(value: str) -> None:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must be a single line")


_CHECKS: dict[tuple[str, str], Callable[[Any], None]] = {
    ("server", "listen"): _check_listen,
    ("server", "advertise"): _check_advertise,
    ("server", "domains"): _check_names,
    ("server", "aliases"): _check_aliases,
    ("server", "script"): _check_nonempty,
    ("server", "defines"): _check_defines,
    ("server", "workers"): between(0, 1024),
    ("server", "log_level"): _check_log_level,
    ("server", "udp_dispatch"): _check_udp_dispatch,
    ("database", "url"): _check_url,
    ("sip", "max_message_size"): between(512, 1 << 24),
    ("sip", "user_agent"): _check_header_text,
    ("sip", "server_header"): _check_header_text,
    # RFC 3261 §20.22: Max-Forwards is 0..255; 0 would reject every request
    ("sip", "max_forwards"): between(1, 255),
    ("timers", "t1"): _positive,
    ("timers", "t2"): _positive,
    ("timers", "t4"): _positive,
    ("timers", "fr_timeout"): _positive,
    ("timers", "fr_inv_timeout"): _positive,
    ("tcp", "idle_timeout"): _positive,
    ("tcp", "max_connections"): at_least(1),
    ("tcp", "connect_timeout"): _positive,
    ("registrar", "default_expires"): at_least(0),
    ("registrar", "min_expires"): at_least(0),
    ("registrar", "max_expires"): at_least(1),
    ("registrar", "max_contacts"): at_least(0),
}


# -- types -------------------------------------------------------------------------------------


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` converted to the field type ``hint``; ValueError says what was expected."""
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {_show(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {_show(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"expected an integer, got {_show(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"expected a number, got {_show(value)}")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is list and args == (str,):
        if isinstance(value, str):
            return [value]  # a single entry is accepted for a list
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError(f"expected an array of strings, got {_show(value)}")
    if args == (str, type(None)):
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {_show(value)}")
    raise TypeError(f"unsupported settings field type {hint!r}")  # a bug, not bad input


def _unknown(what: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    return f"unknown {what} ({hint})"


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 ({exc.reason})") from None


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Accept ``{"server": {"listen": [...]}}`` and ``{"server.listen": [...]}``; drop None."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if "." in key:
            section, _, name = key.partition(".")
            table = out.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{COMMAND_LINE}: [{section}] must be a table")
            table[name] = value
        elif isinstance(value, Mapping):
            table = out.setdefault(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{COMMAND_LINE}: [{key}] must be a table")
            table.update({k: v for k, v in value.items() if v is not None})
        else:
            out[key] = value
    return out


class _Builder:
    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        self.origins: dict[tuple[str, str], str] = {}
        self.modules: dict[str, dict[str, Any]] = {}
        self.hints = {name: typing.get_type_hints(cls) for name, cls in _SECTIONS.items()}

    def apply(self, origin: str, data: Mapping[str, Any], base_dir: Path | None) -> None:
        for section, table in data.items():
            if section not in _ALL_SECTIONS:
                raise ConfigError(
                    f"{origin}: [{section}]: {_unknown('section', section, list(_ALL_SECTIONS))}"
                )
            if not isinstance(table, Mapping):
                raise ConfigError(f"{origin}: {section}: expected a table [{section}]")
            if section == "modules":
                self._apply_modules(origin, table)
                continue
            hints = self.hints[section]
            for key, raw in table.items():
                if key not in hints:
                    known = list(hints)
                    raise ConfigError(f"{origin}: [{section}] {key}: {_unknown('key', key, known)}")
                try:
                    value = _coerce(raw, hints[key])
                    check = _CHECKS.get((section, key))
                    if check is not None:
                        check(value)
                except ValueError as exc:
                    raise ConfigError(f"{origin}: [{section}] {key}: {exc}") from None
                if section == "server" and key == "script" and base_dir is not None:
                    value = str(base_dir / Path(value).expanduser())
                if section == "server" and key == "log_level":
                    value = value.lower()
                self.values[section][key] = value
                self.origins[(section, key)] = origin

    def _apply_modules(self, origin: str, table: Mapping[str, Any]) -> None:
        for name, mod in table.items():
            if not isinstance(mod, Mapping):
                raise ConfigError(
                    f"{origin}: [modules] {name}: expected a table [modules.{name}], "
                    f"got {_show(mod)}"
                )
            self.modules.setdefault(name, {}).update(mod)

    def build(self) -> Settings:
        # checks across keys run on the plain values first, so they name the key even where
        # a section's own class (e.g. the registrar's) would refuse the combination itself
        view = SimpleNamespace(
            **{name: _with_defaults(cls, self.values[name]) for name, cls in _SECTIONS.items()}
        )
        self._cross_checks(view)
        sections = {name: cls(**self.values[name]) for name, cls in _SECTIONS.items()}
        return Settings(modules=self.modules, **sections)

    def _fail(self, section: str, key: str, reason: str) -> typing.NoReturn:
        origin = self.origins.get((section, key), "defaults")
        raise ConfigError(f"{origin}: [{section}] {key}: {reason}")

    def _cross_checks(self, s: Any) -> None:
        t = s.timers
        if t.t2 < t.t1:
            key = "t2" if ("timers", "t2") in self.origins else "t1"
            self._fail("timers", key, f"T2 ({t.t2}) must not be shorter than T1 ({t.t1})")
        r = s.registrar
        if r.min_expires > r.max_expires:
            key = "min_expires" if ("registrar", "min_expires") in self.origins else "max_expires"
            self._fail(
                "registrar",
                key,
                f"min_expires ({r.min_expires}) is greater than max_expires ({r.max_expires})",
            )
        if not r.min_expires <= r.default_expires <= r.max_expires:
            self._fail(
                "registrar",
                "default_expires",
                f"{r.default_expires} is outside min_expires..max_expires "
                f"({r.min_expires}..{r.max_expires})",
            )
        adv = s.server.advertise
        if adv is not None:
            host, _ = parse_hostport(adv.strip())
            try:
                unspecified = ipaddress.ip_address(host).is_unspecified
            except ValueError:
                unspecified = False  # a host name: fine
            if unspecified:
                self._fail("server", "advertise", f"{_show(adv)} is not a reachable address")


def load_settings(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults, then the TOML file at ``path`` (if any), then ``overrides``; raises ConfigError.

    ``overrides`` is ``{"section": {"key": value}}`` (or ``{"section.key": value}``); ``None``
    values are ignored so command-line options that were not given can be passed through.
    """
    builder = _Builder()
    if path is not None:
        data = _read_toml(path)
        builder.apply(path, data, Path(path).resolve().parent)
    if overrides:
        builder.apply(COMMAND_LINE, _nest(overrides), None)
    return builder.build()
