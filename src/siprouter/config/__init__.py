"""siprouter.config: typed settings loaded from one TOML file, overridden by the command line."""

from __future__ import annotations

from .loader import COMMAND_LINE, load_settings
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
    default_script,
)

__all__ = [
    "COMMAND_LINE",
    "LOG_LEVELS",
    "ConfigError",
    "DatabaseSettings",
    "RegistrarSettings",
    "ServerSettings",
    "Settings",
    "SipSettings",
    "TcpSettings",
    "TimerSettings",
    "default_script",
    "load_settings",
]
