"""siprouter.transport: asyncio UDP/TCP adapters. Bytes in, bytes out."""

from __future__ import annotations

from .manager import OnError, OnMessage, TransportManager
from .spec import SUPPORTED_PROTOS, Listener, ListenSpec, TransportSettings, parse_hostport

__all__ = [
    "SUPPORTED_PROTOS",
    "ListenSpec",
    "Listener",
    "OnError",
    "OnMessage",
    "TransportManager",
    "TransportSettings",
    "parse_hostport",
]
