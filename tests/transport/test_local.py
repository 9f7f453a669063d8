"""transport.local and the listen specs of a wildcard address: what 0.0.0.0 advertises."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from siprouter.config.settings import ServerSettings
from siprouter.runtime import server
from siprouter.transport import local
from siprouter.transport.spec import ListenSpec


def test_wildcards() -> None:
    assert local.is_wildcard("0.0.0.0") and local.is_wildcard("::")
    assert not local.is_wildcard("127.0.0.1") and not local.is_wildcard("example.com")


def test_the_route_source_is_one_of_our_addresses() -> None:
    src = local.route_source(socket.AF_INET)
    if src is None:  # pragma: no cover - a host without a default route
        pytest.skip("no IPv4 default route here")
    assert src in local.interface_addresses(socket.AF_INET)


def test_loopback_is_an_interface_address() -> None:
    assert "127.0.0.1" in local.interface_addresses(socket.AF_INET)
    v6 = local.interface_addresses(socket.AF_INET6)
    assert not v6 or all(":" in a for a in v6)


def test_without_a_default_route_loopback_is_advertised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "route_source", lambda family: None)
    assert local.wildcard_advertise(socket.AF_INET) == "127.0.0.1"
    assert local.wildcard_advertise(socket.AF_INET6) == "::1"


def _settings(listen: list[str], advertise: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(server=ServerSettings(listen=listen, advertise=advertise))


def test_a_wildcard_listen_advertises_the_route_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "wildcard_advertise",
                        lambda family: "192.0.2.7" if family == socket.AF_INET else "2001:db8::7")
    specs = server._listen_specs(_settings(
        ["udp:0.0.0.0:5060", "tcp:[::]:5060", "udp:127.0.0.1:5070",
         "udp:0.0.0.0:5080 advertise 203.0.113.9:5090"]))
    assert specs == [
        ListenSpec("udp", "0.0.0.0", 5060, "192.0.2.7", None),
        ListenSpec("tcp", "::", 5060, "2001:db8::7", None),
        ListenSpec("udp", "127.0.0.1", 5070),
        ListenSpec("udp", "0.0.0.0", 5080, "203.0.113.9", 5090),
    ]


def test_the_advertise_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "wildcard_advertise", lambda family: "192.0.2.7")
    specs = server._listen_specs(_settings(["udp:0.0.0.0:5060"], advertise="sip.example.com"))
    assert specs == [ListenSpec("udp", "0.0.0.0", 5060, "sip.example.com", None)]
