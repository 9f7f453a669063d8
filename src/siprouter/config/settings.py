"""Typed settings, one dataclass per area; every default says where its value comes from.

The TOML file has one table per dataclass (``[server]``, ``[database]``, ``[sip]``, ``[timers]``,
``[tcp]``, ``[registrar]``) plus ``[modules.<name>]`` tables that belong to the modules. See
:func:`siprouter.config.loader.load_settings` for loading and validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..modules.registrar import RegistrarSettings
from ..transport.spec import ListenSpec, TransportSettings, parse_hostport

__all__ = [
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
]

#: accepted ``log_level`` values; "trace" adds full message dumps below "debug"
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, section and key."""


def default_script() -> str:
    """Path of the routing script shipped with the package."""
    return str(Path(__file__).resolve().parent.parent / "scripts" / "default.py")


_DEFAULT_MODULES = (
    "tm", "tmx", "sl", "rr", "pv", "maxfwd", "usrloc", "registrar", "textops", "siputils",
    "sanity", "corex", "kex", "xlog",
)


def _default_listen() -> list[str]:
    # Kamailio listens on every address, UDP and TCP, port 5060 (RFC 3261 §19.1.2) by default
    return ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]


@dataclass(slots=True)
class ServerSettings:
    # sockets to open, "PROTO:HOST:PORT [advertise HOST[:PORT]]" (Kamailio `listen=`)
    listen: list[str] = field(default_factory=_default_listen)
    # address written into Via / Record-Route instead of the bound one, e.g. behind NAT
    # (Kamailio `advertised_address` / `advertised_port`); applies to every listener
    advertise: str | None = None
    # SIP domains served here: requests for them are local (Kamailio domain module table)
    domains: list[str] = field(default_factory=list)
    # more host[:port] names that mean this server ("myself"; Kamailio `alias=`)
    aliases: list[str] = field(default_factory=list)
    # routing script, Python (.py) or Lua (.lua); default: the script bundled with siprouter.
    # A relative path in the TOML file is relative to that file.
    script: str = field(default_factory=default_script)
    # names defined for the script, "NAME" or "NAME=VALUE" (Kamailio `-A` / `#!define`)
    defines: list[str] = field(default_factory=list)
    # modules loaded (Kamailio `loadmodule`): KSR.<module> exists only for these. The default is
    # what Kamailio's default kamailio.cfg loads without WITH_* defines; add "auth", "auth_db",
    # "nathelper", "htable", "pike", "permissions" ... as the script needs them
    modules: list[str] = field(default_factory=lambda: list(_DEFAULT_MODULES))
    # file the running server writes its process id to (for `siprouter reload`); none by default
    pid_file: str | None = None
    # worker processes sharing the SIP ports (SO_REUSEPORT); 0 = one per core, os.cpu_count()
    # (Kamailio `children`, there 8 by default)
    workers: int = 0
    # with workers: "source" leaves a UDP request where the kernel put it (SO_REUSEPORT: by
    # source address, so one peer stays on one worker); "call-id" hands every UDP request to
    # the worker its Call-ID belongs to, so the calls of one peer (a trunk) are spread over all
    # workers, at the cost of a hand-off for most requests. docs/workers.md
    udp_dispatch: str = "source"
    # with workers: a program in the kernel delivers each UDP response to the worker its Via
    # branch names (SO_ATTACH_REUSEPORT_CBPF), so it need not be handed over; false: the
    # kernel's hash alone, with the hand-off. docs/workers.md
    udp_steering: bool = True
    # trace | debug | info | warning | error | critical (siprouter default)
    log_level: str = "info"

    def listen_specs(self) -> list[ListenSpec]:
        """The ``listen`` entries parsed, with ``advertise`` applied where none is given."""
        adv_host: str | None = None
        adv_port: int | None = None
        if self.advertise is not None:
            adv_host, adv_port = parse_hostport(self.advertise, "advertise")
        specs: list[ListenSpec] = []
        for text in self.listen:
            specs.append(ListenSpec.parse(text).with_advertise(adv_host, adv_port))
        return specs


@dataclass(slots=True)
class DatabaseSettings:
    # where location, credentials and state persist; the embedded SQLite file in the working
    # directory by default (siprouter default)
    url: str = "sqlite:///siprouter.sqlite"


@dataclass(slots=True)
class SipSettings:
    # largest SIP message accepted, in bytes (Kamailio BUF_SIZE = 65535)
    max_message_size: int = 65535
    # User-Agent of requests we originate (Kamailio `user_agent_header`); "" = none
    user_agent: str = "siprouter"
    # Server header of responses we generate (Kamailio `server_header`); "" = none
    server_header: str = "siprouter"
    # Max-Forwards set on requests that have none (RFC 3261 §16.6 step 3 recommends 70)
    max_forwards: int = 70


@dataclass(slots=True)
class TimerSettings:
    # RTT estimate, seconds (RFC 3261 §17.1.1.1, table 4: T1 = 500 ms)
    t1: float = 0.5
    # longest retransmit interval of non-INVITE requests and INVITE responses (RFC 3261: 4 s)
    t2: float = 4.0
    # longest time a message may stay in the network (RFC 3261: T4 = 5 s)
    t4: float = 5.0
    # final-response timeout of a client transaction, seconds (Kamailio tm `fr_timer`, 30 s)
    fr_timeout: float = 30.0
    # INVITE final-response timeout after a provisional reply (Kamailio tm `fr_inv_timer`, 120 s)
    fr_inv_timeout: float = 120.0


@dataclass(slots=True)
class TcpSettings:
    # seconds a connection may stay without traffic before it is closed (siprouter default;
    # Kamailio's `tcp_connection_lifetime` is 120 s)
    idle_timeout: float = 600.0
    # open TCP connections at most; more are closed at accept (Kamailio `tcp_max_connections`)
    max_connections: int = 2048
    # seconds to wait for an outbound connection (Kamailio `tcp_connect_timeout`, 10 s)
    connect_timeout: float = 10.0


@dataclass(slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    sip: SipSettings = field(default_factory=SipSettings)
    timers: TimerSettings = field(default_factory=TimerSettings)
    tcp: TcpSettings = field(default_factory=TcpSettings)
    registrar: RegistrarSettings = field(default_factory=RegistrarSettings)
    # one free table per module, [modules.<name>]; each module validates its own table
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)

    def transport_settings(self) -> TransportSettings:
        """What :class:`~siprouter.transport.TransportManager` needs."""
        return TransportSettings(
            max_message_size=self.sip.max_message_size,
            tcp_idle_timeout=self.tcp.idle_timeout,
            tcp_max_connections=self.tcp.max_connections,
            tcp_connect_timeout=self.tcp.connect_timeout,
        )
