"""Settings: defaults, TOML loading, overrides and the error messages for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprouter.config import ConfigError, Settings, default_script, load_settings
from siprouter.transport import ListenSpec, TransportSettings


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "config.toml"
    p.write_text(text, encoding="utf-8")
    return str(p)


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_settings(path, {})
    msg = str(ei.value)
    assert msg.startswith(f"{path}: ")
    assert "\n" not in msg
    return msg.removeprefix(f"{path}: ")


def test_defaults() -> None:
    s = load_settings(None, {})
    assert s == Settings()
    assert s.server.listen == ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
    assert s.server.advertise is None and s.server.domains == [] and s.server.aliases == []
    assert s.server.script == default_script() and s.server.script.endswith("scripts/default.py")
    assert Path(s.server.script).is_file()
    assert (s.server.workers, s.server.log_level) == (0, "info")
    assert s.database.url == "sqlite:///siprouter.sqlite"
    assert (s.sip.max_message_size, s.sip.user_agent, s.sip.max_forwards) == (
        65535,
        "siprouter",
        70,
    )
    assert (s.timers.t1, s.timers.t2, s.timers.t4) == (0.5, 4.0, 5.0)
    assert (s.timers.fr_timeout, s.timers.fr_inv_timeout) == (30.0, 120.0)
    assert (s.tcp.idle_timeout, s.tcp.max_connections, s.tcp.connect_timeout) == (600.0, 2048, 10.0)
    r = s.registrar
    assert (r.default_expires, r.min_expires, r.max_expires, r.max_contacts, r.use_domain) == (
        3600,
        60,
        86400,
        0,
        False,
    )
    assert s.modules == {}
    # defaults are not shared between instances
    s.server.listen.append("udp:127.0.0.1:1")
    assert Settings().server.listen == ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]


def test_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
listen = ["udp:127.0.0.1:5080", "tcp:[::1]:5080"]
advertise = "203.0.113.5:5060"
domains = ["example.com"]
aliases = ["sip.example.com:5060"]
script = "route.py"
defines = ["WITH_AUTH", "N=3"]
workers = 2
log_level = "DEBUG"

[database]
url = "postgresql://user@db/sip"

[sip]
max_message_size = 4096
user_agent = "edge"
server_header = ""
max_forwards = 20

[timers]
t1 = 1
t2 = 8.5
fr_inv_timeout = 60

[tcp]
idle_timeout = 30
max_connections = 10
connect_timeout = 2.5

[registrar]
default_expires = 600
min_expires = 30
max_expires = 7200
max_contacts = 5
use_domain = true

[modules.dispatcher]
list = "dispatcher.list"
ping_interval = 10

[modules.htable]
tables = ["a=>size=8"]
""",
    )
    s = load_settings(path, {})
    assert s.server.listen == ["udp:127.0.0.1:5080", "tcp:[::1]:5080"]
    assert s.server.script == str(tmp_path.resolve() / "route.py")  # relative to the file
    assert s.server.defines == ["WITH_AUTH", "N=3"]
    assert (s.server.workers, s.server.log_level) == (2, "debug")
    assert s.database.url == "postgresql://user@db/sip"
    assert (s.sip.max_message_size, s.sip.server_header, s.sip.max_forwards) == (4096, "", 20)
    assert s.timers.t1 == 1.0 and isinstance(s.timers.t1, float)
    assert (s.timers.t2, s.timers.t4, s.timers.fr_inv_timeout) == (8.5, 5.0, 60.0)
    assert s.registrar.use_domain is True and s.registrar.max_contacts == 5
    assert s.modules == {
        "dispatcher": {"list": "dispatcher.list", "ping_interval": 10},
        "htable": {"tables": ["a=>size=8"]},
    }
    specs = s.server.listen_specs()
    assert specs == [
        ListenSpec("udp", "127.0.0.1", 5080, "203.0.113.5", 5060),
        ListenSpec("tcp", "::1", 5080, "203.0.113.5", 5060),
    ]
    assert s.transport_settings() == TransportSettings(4096, 30.0, 10, 2.5)


def test_overrides_win_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nlisten = ["udp:127.0.0.1:5080"]\nscript = "a.py"\n')
    s = load_settings(
        path,
        {
            "server": {"listen": ["tcp:127.0.0.1:5090"], "script": "b.py", "domains": None},
            "database.url": "sqlite:///x.db",
        },
    )
    assert s.server.listen == ["tcp:127.0.0.1:5090"]
    assert s.server.script == "b.py"  # command-line paths stay relative to the working dir
    assert s.database.url == "sqlite:///x.db"
    assert s.server.domains == []


def test_listen_spec_advertise_per_listener_wins() -> None:
    s = load_settings(
        None,
        {
            "server": {
                "listen": ["udp:10.0.0.1:5060 advertise 198.51.100.1", "tcp:10.0.0.1:5060"],
                "advertise": "203.0.113.9",
            }
        },
    )
    a, b = s.server.listen_specs()
    assert a.advertise_host == "198.51.100.1"
    assert (b.advertise_host, b.advertise_port) == ("203.0.113.9", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[timers]\nt1 = "abc"\n', '[timers] t1: expected a number, got "abc"'),
        ("[timers]\nt1 = true\n", "[timers] t1: expected a number, got true"),
        ("[timers]\nt1 = 0\n", "[timers] t1: must be greater than 0, got 0"),
        ("[timers]\nt1 = 2.0\nt2 = 1.0\n", "[timers] t2: T2 (1.0) must not be shorter than T1"),
        ("[timers]\nt7 = 1\n", "[timers] t7: unknown key (known: t1, t2, t4, fr_timeout"),
        (
            "[timers]\nfr_timout = 1\n",
            "[timers] fr_timout: unknown key (did you mean 'fr_timeout'?)",
        ),
        ("[timer]\nt1 = 1\n", "[timer]: unknown section (did you mean 'timers'?)"),
        ("[bogus]\n", "[bogus]: unknown section (known: server, database"),
        ("server = 1\n", "server: expected a table [server]"),
        ("[server]\nworkers = 1.5\n", "[server] workers: expected an integer, got 1.5"),
        ("[server]\nworkers = -1\n", "[server] workers: must be between 0 and 1024, got -1"),
        ('[server]\nlog_level = "loud"\n', "[server] log_level: expected one of trace"),
        ('[server]\nudp_dispatch = "callid"\n',
         '[server] udp_dispatch: must be "call-id" or "source"'),
        ("[server]\nlisten = []\n", "[server] listen: needs at least one"),
        ("[server]\nlisten = [1]\n", "[server] listen: expected an array of strings, got an array"),
        (
            '[server]\nlisten = ["udp:0.0.0.0:99999"]\n',
            '[server] listen: "udp:0.0.0.0:99999": port 99999 out of range',
        ),
        (
            '[server]\nlisten = ["sctp:0.0.0.0:5060"]\n',
            "[server] listen: \"sctp:0.0.0.0:5060\": protocol 'sctp' not supported",
        ),
        ('[server]\nlisten = ["udp:host:5060"]\n', "host 'host' is not an IP address"),
        ('[server]\nadvertise = "[::1"\n', "[server] advertise: "),
        ('[server]\nadvertise = "0.0.0.0"\n', '[server] advertise: "0.0.0.0" is not a reachable'),
        ('[server]\ndomains = ["a b"]\n', '[server] domains: "a b" is not a host name'),
        ('[server]\naliases = ["h:x"]\n', "[server] aliases: "),
        ('[server]\ndefines = ["1X"]\n', '[server] defines: "1X": expected NAME or NAME=VALUE'),
        ('[server]\nscript = ""\n', "[server] script: must not be empty"),
        ("[server]\nadvertise = 5\n", "[server] advertise: expected a string, got 5"),
        ('[database]\nurl = "siprouter.db"\n', "[database] url: expected a URL"),
        ("[sip]\nmax_message_size = 10\n", "[sip] max_message_size: must be between 512"),
        ("[sip]\nmax_forwards = 0\n", "[sip] max_forwards: must be between 1 and 255"),
        ('[sip]\nuser_agent = "a\\nb"\n', "[sip] user_agent: must be a single line"),
        ("[tcp]\nmax_connections = 0\n", "[tcp] max_connections: must be at least 1, got 0"),
        ("[tcp]\nidle_timeout = -1\n", "[tcp] idle_timeout: must be greater than 0"),
        ('[registrar]\nuse_domain = "yes"\n', "[registrar] use_domain: expected true or false"),
        ("[registrar]\nmin_expires = 100\nmax_expires = 50\n", "[registrar] min_expires: "),
        ("[registrar]\ndefault_expires = 10\n", "[registrar] default_expires: 10 is outside"),
        ("[modules]\ndispatcher = 3\n", "[modules] dispatcher: expected a table"),
        ("[timers\n", "invalid TOML: "),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load_settings(missing, {})


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_bytes(b'[server]\nlog_level = "\xff"\n')
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(str(p), {})


def test_override_errors_name_the_command_line() -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(None, {"server": {"listen": ["udp:nowhere"]}})
    assert str(ei.value).startswith("command line: [server] listen: ")
    with pytest.raises(ConfigError, match=r"command line: \[server\] log_level"):
        load_settings(None, {"server.log_level": "shout"})


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
