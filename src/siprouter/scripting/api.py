"""The Pythonic routing API: the object a routing script's functions receive.

A routing script is a Python file defining ``request_route(req)`` and optionally
``reply_route(rep)``. ``req`` is a :class:`Request`; its methods are the proxy, transaction and
registrar operations a Kamailio script calls through ``KSR`` (``relay`` is ``t_relay``,
``reply`` is ``sl_send_reply``/``t_reply``, ``save``/``lookup`` are the registrar's ...).
The KSR facade is built on top of this class; nothing here knows about KSR return codes
except where noted, and no SIP logic lives here: every method delegates to the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from ..sip.headers import parse_name_addr
from ..sip.message import SipMessage
from ..sip.types import Endpoint

if TYPE_CHECKING:  # pragma: no cover
    from ..proxy.core import Branch, ResponseContext
    from ..runtime.core import Core
    from ..transport.spec import Listener

__all__ = ["LookupResult", "Reply", "Request", "StopRoute"]


class LookupResult(IntEnum):
    """Outcome of a location lookup (values are Kamailio's ``lookup()`` return codes)."""

    FOUND = 1
    NOT_FOUND = -1
    METHOD_NOT_ALLOWED = -2
    ERROR = -3


class StopRoute(Exception):
    """Raised by :meth:`Request.exit` to end the route function at once (KSR.x.exit)."""


Handler = Callable[..., Any] | str | None


class Request:
    """A request being routed, with the operations a routing script may apply to it."""

    __slots__ = (
        "bflags",
        "branch_failure_handler",
        "branch_handler",
        "branch_index",
        "branches",
        "core",
        "dropped",
        "dst_uri",
        "failure_handler",
        "flags",
        "fr_inv_timeout",
        "fr_timeout",
        "in_failure",
        "local",
        "msg",
        "next_hop",
        "rc",
        "received_ruri",
        "record_routed",
        "relayed",
        "replied",
        "reply_handler",
        "reply_headers",
        "route",
        "rr_params",
        "source",
        "st",
        "vars",
        "xavp",
    )

    #: a request context (scripts and script exports tell Request and Reply apart with it)
    is_request = True

    def __init__(self, core: Core, msg: SipMessage, source: Endpoint, local: Listener) -> None:
        self.core = core
        # which route runs: "request", "branch", "failure", "onsend" (Kamailio route types)
        self.route = "request"
        self.branch_index = 0  # $T_branch_idx in a branch route
        self.bflags = 0  # branch flags of the first branch (Kamailio setbflag)
        self.fr_timeout: float | None = None  # t_set_fr overrides, seconds
        self.fr_inv_timeout: float | None = None
        self.msg = msg
        self.source = source
        self.local = local
        self.dst_uri: str | None = None
        self.flags = 0
        self.vars: dict[str, Any] = {}
        self.branches: list[tuple[str, str | None, list[str]]] = []  # (uri, dst_uri, path)
        self.rc: ResponseContext | None = None
        self.st: Any = None
        self.replied = False
        self.relayed = False
        self.dropped = False
        self.record_routed = False
        self.rr_params = ""
        self.failure_handler: Handler = None
        self.reply_handler: Handler = None
        self.branch_handler: Handler = None
        self.branch_failure_handler: Handler = None
        self.received_ruri = msg.ruri
        self.in_failure = False
        self.reply_headers: list[tuple[str, str]] = []
        self.xavp: dict[str, list[dict[str, Any]]] = {}
        self.next_hop: str | None = None

    # -- what the message says ------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.msg.method

    @property
    def ruri(self) -> str:
        return self.msg.ruri

    @ruri.setter
    def ruri(self, value: str) -> None:
        self.msg.ruri = value

    @property
    def call_id(self) -> str:
        return self.msg.call_id

    def header(self, name: str) -> str | None:
        return self.msg.get(name)

    def header_values(self, name: str) -> list[str]:
        return self.msg.values(name)

    def add_header(self, name: str, value: str) -> None:
        self.msg.add(name, value)

    def remove_header(self, name: str) -> int:
        return self.msg.remove(name)

    @property
    def has_to_tag(self) -> bool:
        return self.msg.to_tag is not None

    @property
    def is_initial(self) -> bool:
        """True for a request outside a dialog (no To tag)."""
        return self.msg.to_tag is None

    def is_method(self, *methods: str) -> bool:
        return self.msg.method in methods

    # -- flags ----------------------------------------------------------------------------------
    def set_flag(self, flag: int) -> None:
        self.flags |= 1 << flag

    def reset_flag(self, flag: int) -> None:
        self.flags &= ~(1 << flag)

    def is_flag_set(self, flag: int) -> bool:
        return bool(self.flags & (1 << flag))

    # -- checks ---------------------------------------------------------------------------------
    def is_myself(self, uri: str | None = None) -> bool:
        """Does ``uri`` (default: the Request-URI) name this server or one of its domains?"""
        return self.core.me.is_myself(self.msg.ruri if uri is None else uri)

    def from_is_myself(self) -> bool:
        try:
            return self.core.me.is_myself(parse_name_addr(self.msg.get("from") or "").uri)
        except ValueError:
            return False

    # -- actions --------------------------------------------------------------------------------
    def process_maxfwd(self, limit: int = 70) -> int:
        """Decrement Max-Forwards (adding it with ``limit`` when absent).

        Returns Kamailio's ``process_maxfwd`` codes: 2 header added, 1 decremented,
        -1 the value was already 0 (answer 483), -2 the header is malformed.
        """
        return self.core.process_maxfwd(self.msg, limit)

    def reply(
        self, code: int, reason: str | None = None, *, headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"", content_type: str | None = None,
    ) -> bool:
        """Answer the request (statefully when a transaction exists, else statelessly)."""
        hdrs = list(self.reply_headers) + list(headers)
        if content_type:
            hdrs.append(("Content-Type", content_type))
        return self.core.reply(self, code, reason, hdrs, body)

    def relay(self, dest: str | None = None) -> bool:
        """Forward statefully (``t_relay``): to ``dest``, the destination URI, Route, R-URI."""
        if dest is not None:
            self.dst_uri = dest
        return self.core.relay(self)

    def forward(self, dest: str | None = None) -> bool:
        """Forward statelessly (``forward``)."""
        if dest is not None:
            self.dst_uri = dest
        return self.core.forward_stateless(self)

    def record_route(self, params: str = "") -> None:
        """Insert Record-Route for this server when the request is forwarded."""
        self.record_routed = True
        if params:
            self.rr_params += params if params.startswith(";") else ";" + params

    def loose_route(self) -> int:
        """Process Route headers (§16.4); Kamailio codes: 1/2 routed, -1 no Route."""
        return self.core.loose_route(self)

    def save(self, table: str = "location", flags: int = 0, aor: str | None = None) -> int:
        """REGISTER: update the bindings and answer (registrar ``save``): 1 ok, -1 error."""
        return self.core.registrar_save(self, table, flags, aor)

    def lookup(self, table: str = "location", aor: str | None = None) -> LookupResult:
        """Turn the Request-URI's AoR into its contacts (the first in R-URI, others branches)."""
        return self.core.registrar_lookup(self, table, aor)

    def registered(self, table: str = "location", aor: str | None = None) -> bool:
        return self.core.registrar_registered(self, table, aor)

    def append_branch(self, uri: str | None = None, dst_uri: str | None = None) -> None:
        """Add a parallel branch (default: the current Request-URI and destination)."""
        self.branches.append((uri or self.msg.ruri, dst_uri if uri else self.dst_uri, []))

    def on_failure(self, handler: Handler) -> None:
        self.failure_handler = handler

    def on_reply(self, handler: Handler) -> None:
        self.reply_handler = handler

    def on_branch(self, handler: Handler) -> None:
        self.branch_handler = handler

    def on_branch_failure(self, handler: Handler) -> None:
        self.branch_failure_handler = handler

    def drop(self) -> None:
        """Do not forward or answer this message."""
        self.dropped = True

    def exit(self) -> None:
        """Stop the route function here."""
        raise StopRoute()


class Reply:
    """A response seen by ``reply_route`` or a branch reply callback."""

    __slots__ = (
        "branch", "core", "dropped", "flags", "local", "msg", "rc", "route", "source", "vars",
    )

    is_request = False

    def __init__(
        self, core: Core, msg: SipMessage, source: Endpoint | None, local: Listener | None,
        branch: Branch | None = None, rc: ResponseContext | None = None,
    ) -> None:
        self.core = core
        self.msg = msg
        self.source = source
        self.local = local
        self.branch = branch
        self.rc = rc
        self.dropped = False
        self.flags = 0
        self.vars: dict[str, Any] = {}
        # "reply" (the core reply route), "onreply" (t_on_reply), "branch_failure"
        self.route = "reply" if branch is None else "onreply"

    @property
    def status(self) -> int:
        return self.msg.status

    @property
    def reason(self) -> str:
        return self.msg.reason

    @property
    def call_id(self) -> str:
        return self.msg.call_id

    def header(self, name: str) -> str | None:
        return self.msg.get(name)

    def drop(self) -> None:
        self.dropped = True

    def exit(self) -> None:
        raise StopRoute()
