"""The runtime core: wires transport -> parser -> transactions -> script -> proxy -> transport.

This is the only place (with ``runtime.server``) that knows about the event loop and the clock.
Every input arrives through :meth:`Core.on_message` (bytes from a transport) or the one timer
(:meth:`Core._on_timer`); both read ``now`` from the loop once, feed the sans-IO layers, perform
the effects they return and re-arm the single timer.

Request pipeline (RFC 3261 §16.3, §17.2.3, §18.2.1):
  parse (ParseError -> best-effort error answer) -> received/rport on the top Via ->
  validation (4xx) -> transaction matching (retransmissions and ACKs of non-2xx absorbed;
  CANCEL of a known INVITE answered and fanned out, §16.10) -> the script's request route.
Response pipeline (§16.7, §18.1.2):
  parse -> transaction matching -> proxy core; a response that matches no transaction is
  forwarded statelessly when the top Via is ours (2xx retransmissions, §16.11), else dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from ..modules.registrar import Registrar
from ..proxy.core import Branch, Proxy, ResponseContext
from ..proxy.routing import (
    DEFAULT_PORTS,
    MAGIC_COOKIE,
    LocalAddresses,
    branch_hash,
    detect_loop,
    loose_route,
    next_hop_uri,
    record_route_value,
)
from ..scripting.api import LookupResult, Reply, Request, StopRoute
from ..sip.build import make_response, make_response_from_raw, new_tag
from ..sip.headers import Via, fill_rport, parse_name_addr, split_commas
from ..sip.message import ParseError, SipMessage, is_ascii, parse_message
from ..sip.types import Endpoint, endpoint
from ..sip.uri import parse_uri
from ..sip.validate import unsupported_proxy_require, validate_request
from ..transaction.layer import TransactionLayer
from ..transaction.timers import RESOLUTION

#: Resolution of the server's timer wake-ups, in seconds (Kamailio's timer ticks are 1/16 s).
#: A SIP timer fires at most this late; T1 is 0.5 s.
TIMER_GRID: Final = RESOLUTION

log = logging.getLogger("siprouter.core")

__all__ = ["Core", "SUPPORTED"]

# Option tags this server implements as a proxy (RFC 3261 §16.3 step 5): none need proxy support.
SUPPORTED: Final[frozenset[str]] = frozenset()


_ip_cache: Final[dict[str, bool]] = {}


def _is_ip(host: str) -> bool:
    """Is ``host`` an IP literal (IPv6 without brackets)? Cached: next hops repeat."""
    r = _ip_cache.get(host)
    if r is None:
        try:
            ipaddress.ip_address(host)
            r = True
        except ValueError:
            r = False
        if len(_ip_cache) > 10000:
            _ip_cache.clear()
        _ip_cache[host] = r
    return r


def reply_destination(via: Via, src: Endpoint) -> Endpoint:
    """Where responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4)."""
    if src.proto != "udp":
        return src  # the connection it came on (the transport keys it by the source address)
    maddr = via.maddr
    if maddr:
        return endpoint("udp", maddr, via.port or 5060)
    if via.rport is not None:
        return src  # (udp) where it came from
    return endpoint("udp", src.host, via.port or 5060)


# the decimal text of the numbers a Max-Forwards takes
_NUMBERS: Final = [str(i) for i in range(256)]


def _small_number(v: str) -> int:
    """The value of 1 to 3 ASCII digits, else -1."""
    n = len(v)
    if n == 0 or n > 3:
        return -1
    out = 0
    for i in range(n):
        d = ord(v[i]) - 48
        if d < 0 or d > 9:
            return -1
        out = out * 10 + d
    return out


class Core:
    """See the module docstring."""

    def __init__(
        self,
        *,
        transport: Any,
        tl: TransactionLayer,
        script: Any,
        location: Any = None,
        registrar: Registrar | None = None,
        me: LocalAddresses | None = None,
        server_header: str = "siprouter",
        fr_timeout: float = 30.0,
        fr_inv_timeout: float = 120.0,
        max_message_size: int = 65535,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Any = None,
        wall_clock: Any = None,
    ) -> None:
        self.transport = transport
        self.tl = tl
        self.script = script
        # the script's onsend_route, looked up again only when another script is set (a
        # getattr that misses raises and catches AttributeError: ~4,000 instructions per branch)
        self._onsend_of: Any = None
        self._onsend: Any = None
        self.location = location
        self.registrar = registrar
        # "proto:host:port" of each local listener, as the registrar stores a binding's socket
        self._socket_names: dict[object, str] = {}
        self.me = me or LocalAddresses()
        self.server_header = server_header
        self.fr_timeout = fr_timeout
        self.fr_inv_timeout = fr_inv_timeout
        self.max_message_size = max_message_size
        self.loop = loop
        self.clock = clock  # monotonic seconds; tests pass a fake clock
        # now(): the bound method itself, called ~13 times per call (a method call on the loop
        # looks the method up each time)
        self._time: Callable[[], float] = (
            (lambda: float(clock())) if clock is not None
            else loop.time if loop is not None else time.monotonic
        )
        self.wall_clock = wall_clock or time.time  # registrations persist in wall-clock time
        self.proxy = Proxy(tl, self.perform, self, server_header=server_header)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._sent_by: tuple[str, ...] = ()
        self._dns_cache: dict[str, str | None] = {}
        # next hops with a numeric host, resolved (see _resolve), and the listener to send from
        # per protocol and address family (see _pick_listener; emptied when their number changes)
        self._hops: dict[str, Endpoint] = {}
        self._senders: dict[str, Any] = {}
        self._senders_of: int = -1
        # the start of the Via value each listener writes, up to "branch="
        self._via_heads: dict[object, str] = {}
        # worker processes (runtime.ipc.Peers): hand-off of messages that belong to another
        # worker; the branch prefix names this worker in every Via branch we create
        self.cluster: Any = None
        #: with workers: hand each UDP request to the worker its Call-ID belongs to
        #: (``[server] udp_dispatch = "call-id"``), not only misdirected responses
        self.dispatch_udp_requests = False
        self.branch_prefix = MAGIC_COOKIE
        # Kamailio maxfwd modparam max_limit (default 70, RFC 3261 §16.6 step 3's usual value):
        # a decremented Max-Forwards is never left above it.
        self.max_forwards_limit = 70
        # module instances by name (htable, pike, sanity, nathelper ...; modules.instances)
        self.modules: dict[str, Any] = {}
        self.stats: dict[str, int] = {
            "rcv_requests": 0, "rcv_replies": 0, "fwd_requests": 0, "fwd_replies": 0,
            "drop_requests": 0, "drop_replies": 0, "err_requests": 0, "script_errors": 0,
            "sent_replies": 0,
        }

    # -- setup ------------------------------------------------------------------------------------
    def refresh_addresses(self) -> None:
        """Learn our own addresses from the transport's listeners (after they are bound)."""
        sent_by = []
        for lst in self.transport.listeners:
            self.me.add_host(lst.host)
            self.me.add_host(lst.advertise_host)
            self.me.ports.add(lst.port)
            self.me.ports.add(lst.advertise_port)
            sent_by.append(lst.hostport())
        self._sent_by = tuple(sent_by)

    def _pick_listener(self, dest: Endpoint) -> Any:
        """The listener to send to ``dest`` from: same protocol and address family."""
        v6 = ":" in dest.host
        listeners = self.transport.listeners
        senders = self._senders
        if len(listeners) != self._senders_of:
            senders.clear()
            self._senders_of = len(listeners)
        key = dest.proto + "6" if v6 else dest.proto
        found = senders.get(key)
        if found is not None:
            return found
        fallback = None
        for lst in listeners:
            if lst.proto == dest.proto:
                if (":" in lst.host) == v6:
                    senders[key] = lst
                    return lst
                if fallback is None:
                    fallback = lst
        if fallback is not None:
            senders[key] = fallback
        return fallback

    def now(self) -> float:
        return self._time()

    # -- inputs -----------------------------------------------------------------------------------
    def on_message(self, data: bytes, src: Endpoint, listener: Any) -> None:
        cluster = self.cluster
        if (cluster is not None and self.dispatch_udp_requests and src.proto == "udp"
                and not data.startswith(b"SIP/")
                and cluster.dispatch_request(data, src, listener)):
            return  # another worker owns this Call-ID (docs/workers.md)
        now = self.now()
        try:
            try:
                msg = parse_message(data, stream=src.proto != "udp")
            except ParseError as e:
                self._on_parse_error(data, src, listener, e)
                return
            if msg.is_request:
                self.stats["rcv_requests"] += 1
                self._on_request(msg, src, listener, now)
            else:
                self.stats["rcv_replies"] += 1
                self._on_response(msg, src, listener, now)
        except Exception:  # a bug must not take the server down
            log.exception("internal error handling a message from %s", src.hostport())
        finally:
            self._rearm()

    def on_reject(
        self, data: bytes, src: Endpoint, listener: Any, status: int, reason: str,
    ) -> bytes | None:
        """The answer to a message the transport refused (too large, unframeable stream)."""
        self.stats["err_requests"] += 1
        return make_response_from_raw(data, status, reason)

    def _on_parse_error(self, data: bytes, src: Endpoint, listener: Any, e: ParseError) -> None:
        self.stats["err_requests"] += 1
        log.info("unparseable message from %s: %s", src.hostport(), e.reason)
        if e.status:
            resp = make_response_from_raw(data, e.status, e.reason)
            if resp is not None:
                self._send(src, resp, listener)

    def _on_request(self, msg: SipMessage, src: Endpoint, listener: Any, now: float) -> None:
        # §18.2.1 / RFC 3581: note where the request really came from in the top Via.
        try:
            via = msg.via1
        except ValueError as e:
            self._stateless_error(msg, src, listener, 400, f"Bad Via: {e}")
            return
        self._mark_received(msg, via, src)
        status = self._validate(msg)
        if status is not None:
            if msg.method != "ACK":
                self._stateless_reply(msg, src, listener, status[0], status[1])
            return
        if msg.method not in ("ACK", "CANCEL") and msg.has("proxy-require"):
            # §16.3 step 5: a proxy rejects extensions it does not know in Proxy-Require
            unknown = unsupported_proxy_require(msg, SUPPORTED)
            if unknown:
                self._stateless_reply(msg, src, listener, 420, "Bad Extension",
                                      [("Unsupported", ", ".join(unknown))])
                return
        tl = self.tl
        st = tl.match_request(msg)
        if st is not None:
            self.perform(tl.server_receive(st, msg, now))
            return
        if msg.method == "CANCEL":
            target = tl.match_cancel_target(msg)
            if target is not None:
                self._on_cancel(msg, src, listener, target, now)
                return
            if self.cluster is not None and self.cluster.handoff_request(msg, src, listener):
                return  # another worker may hold the INVITE; it answers if so
        elif (msg.method == "ACK" and self.cluster is not None and not msg.has("route")
              and self.cluster.handoff_request(msg, src, listener)):
            return  # an ACK for a non-2xx (no Route: not an ACK for a 2xx through our RR)
        if msg.method == "ACK" and msg.to_tag is not None and self._is_own_local_ack(msg):
            return
        req = Request(self, msg, src, listener)
        self._run_request_route(req)
        if req.st is not None:
            msg.compact()  # kept by its transaction for 64*T1, rarely read again

    def _is_own_local_ack(self, msg: SipMessage) -> bool:
        # An ACK to a 2xx we generated ourselves never happens (we never answer INVITE with
        # 2xx locally); everything else goes to the script.
        return False

    def _mark_received(self, msg: SipMessage, via: Via, src: Endpoint) -> None:
        params = via.params
        if via.host == src.host and "received" not in params and params.get("rport", "") is None:
            # RFC 3581 as nearly every UA asks for it: ";rport" last in the top via-parm
            # (already read as such), the sent-by host the source's. Fill in the text itself
            # rather than writing the whole Via again; what it gives is the same.
            first_line = msg.value_of("via")
            port = str(src.port)
            filled = fill_rport(first_line, port, src.host) if first_line is not None else None
            if filled is not None:
                params["rport"] = port
                params["received"] = src.host
                # the received line's text and an address: wire form already
                msg.replace_first_wire("via", filled)
                msg._via1 = via  # still the same parsed object
                return
        changed = False
        if via.host != src.host:
            params["received"] = src.host
            changed = True
        if "rport" in params and not params["rport"]:
            params["rport"] = str(src.port)
            params["received"] = src.host
            changed = True
        if changed:
            first_line = msg.get_all("via")[0]
            parts = split_commas(first_line)
            parts[0] = via.to_string()
            msg.replace_first("via", ", ".join(parts))
            msg._via1 = via  # still the same parsed object

    def _validate(self, msg: SipMessage) -> tuple[int, str] | None:
        return validate_request(msg)

    def _on_cancel(
        self, msg: SipMessage, src: Endpoint, listener: Any, target: Any, now: float,
    ) -> None:
        # §16.10: answer the CANCEL ourselves (200) and cancel every pending branch.
        self._stateless_reply(msg, src, listener, 200, "OK")
        rc = getattr(target, "context", None)
        if isinstance(rc, ResponseContext):
            self.proxy.cancel(rc, now, msg.get("reason"))

    def on_peer_request(self, data: bytes, src: Endpoint, listener: Any) -> bool:
        """A CANCEL or ACK that another worker matched to none of its transactions: handle it
        when it matches one of ours (True), else leave it alone (False)."""
        now = self.now()
        try:
            msg = parse_message(data, stream=src.proto != "udp")
            if not msg.is_request:
                return False
            self._mark_received(msg, msg.via1, src)
            tl = self.tl
            st = tl.match_request(msg)
            if st is not None:
                self.perform(tl.server_receive(st, msg, now))
                return True
            if msg.method == "CANCEL":
                target = tl.match_cancel_target(msg)
                if target is not None:
                    self._on_cancel(msg, src, listener, target, now)
                    return True
            return False
        except Exception:
            log.exception("internal error handling a request from another worker")
            return False
        finally:
            self._rearm()

    def _on_response(self, msg: SipMessage, src: Endpoint, listener: Any, now: float) -> None:
        cluster = self.cluster
        if cluster is not None and cluster.handoff_response(msg, src, listener):
            return  # its transaction lives in the worker named by the branch
        script = self.script
        if script is not None and script.reply_route is not None:
            rep = Reply(self, msg, src, listener)
            if not self._run_script(script.reply_route, rep, msg) or rep.dropped:
                return
        ct = self.tl.match_response(msg)
        if ct is not None:
            self.perform(self.tl.client_receive(ct, msg, now))
            return
        self._forward_response_stateless(msg)

    def _forward_response_stateless(self, msg: SipMessage) -> None:
        """§16.11 / §18.2.2: a response for no transaction of ours goes to the next Via."""
        try:
            vias = msg.vias
        except ValueError:
            self.stats["drop_replies"] += 1
            return
        if len(vias) < 2 or vias[0].sent_by() not in self._sent_by:
            self.stats["drop_replies"] += 1
            return
        msg.remove_first_value("via")
        nxt = vias[1]
        proto = nxt.transport.lower()
        host = nxt.received or nxt.maddr or nxt.host
        rport = nxt.rport
        if rport and rport.isdigit():
            port = int(rport)
        else:
            port = nxt.port or DEFAULT_PORTS.get(proto, 5060)
        if not _is_ip(host):
            self.stats["drop_replies"] += 1
            return
        self.stats["fwd_replies"] += 1
        self._send(endpoint(proto, host, port), msg.to_bytes(), None)

    # -- timer ------------------------------------------------------------------------------------
    def _rearm(self) -> None:
        d1 = self.tl.next_deadline()
        d2 = self.proxy.next_deadline()
        if d1 is None or (d2 is not None and d2 < d1):
            d1 = d2
        if d1 is not None:
            # on a TIMER_GRID grid: the timers due within one step fire in one wake-up (under
            # load several transactions end every millisecond), and a deadline that lands on
            # the step already scheduled does not reschedule it
            d1 = math.ceil(d1 / TIMER_GRID) * TIMER_GRID
        if d1 == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = d1
        if d1 is not None and self.loop is not None:
            self._timer = self.loop.call_at(d1, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.now()
        try:
            self.perform(self.tl.on_timer(now))
            self.proxy.on_timer(now)
        except Exception:
            log.exception("internal error in timer processing")
        finally:
            self._rearm()

    # -- effects ----------------------------------------------------------------------------------
    def perform(self, effects: Iterable[tuple[Any, ...]]) -> None:
        now = None
        for eff in effects:
            kind = eff[0]
            if kind == "send":
                dest, data, txn = eff[1], eff[2], eff[3]
                self._send(dest, data, None, txn)
            elif kind == "response":
                ct, resp = eff[1], eff[2]
                br = ct.context
                if isinstance(br, Branch):
                    if now is None:
                        now = self.now()
                    self.proxy.on_response(br, resp, now)
            elif kind == "timeout":
                br = eff[1].context
                if isinstance(br, Branch):
                    if now is None:
                        now = self.now()
                    self.proxy.on_timeout(br, now)
            elif kind == "transport_error":
                br = eff[1].context
                if isinstance(br, Branch):
                    if now is None:
                        now = self.now()
                    self.proxy.on_transport_error(br, now)
            elif kind == "ack":
                # an ACK for a 2xx that matched an INVITE server transaction (RFC 6026): route it
                st, ack = eff[1], eff[2]
                rc = st.context
                if isinstance(rc, ResponseContext) and isinstance(rc.data, Request):
                    old = rc.data
                    areq = Request(self, ack, old.source, old.local)
                    areq.vars["__e2e_ack"] = True  # t_check_trans() is true for it
                    self._run_request_route(areq)
            elif kind == "terminated":
                self._forget(eff[1])

    @staticmethod
    def _forget(txn: Any) -> None:
        """A transaction ended: break the reference cycles it was part of, so plain reference
        counting frees the proxy state (the cyclic GC is then rarely needed, see server.py)."""
        ctx = txn.context
        txn.context = None
        if isinstance(ctx, Branch):
            ctx.ct = None
            rc = ctx.rc
        elif isinstance(ctx, ResponseContext):
            rc = ctx
            rc.st = None
        else:
            return
        if rc.st is None and all(b.ct is None for b in rc.branches):
            rc.branches.clear()
            rc.data = None

    def _send(
        self, dest: Endpoint, data: bytes, listener: Any = None, txn: Any = None,
    ) -> None:
        on_error = None
        if txn is not None and dest.proto != "udp":
            def on_error(exc: Exception, txn: Any = txn) -> None:
                self._transport_failed(txn, exc)
        self.transport.send(dest, data, on_error, listener)

    def _transport_failed(self, txn: Any, exc: Exception) -> None:
        now = self.now()
        try:
            self.perform(self.tl.transport_error(txn, now))
        except Exception:
            log.exception("internal error handling a transport failure")
        finally:
            self._rearm()

    # -- script -----------------------------------------------------------------------------------
    def _run_script(self, fn: Any, arg: Any, msg: SipMessage) -> bool:
        try:
            rv = fn(arg)
        except StopRoute:
            return True
        except Exception:
            self.stats["script_errors"] += 1
            log.exception("routing script failed, call-id=%s", _safe_call_id(msg))
            return False
        return rv is not False

    def _run_request_route(self, req: Request) -> None:
        msg = req.msg
        try:
            self.script.request_route(req)
        except StopRoute:
            pass
        except Exception:
            self.stats["script_errors"] += 1
            log.exception("request route failed, call-id=%s", _safe_call_id(msg))
            if msg.method != "ACK" and not req.replied and not req.relayed:
                self.reply(req, 500, "Server Internal Error", [], b"")
            return

    # -- operations the script calls -------------------------------------------------------------
    def process_maxfwd(self, msg: SipMessage, limit: int) -> int:
        v = msg.value_of("max-forwards")
        if v is None:
            msg.add("Max-Forwards", str(limit))
            return 2
        n = _small_number(v)
        if n < 0:
            return -2  # not 1 to 3 ASCII digits
        if n == 0:
            return -1
        n = min(n - 1, self.max_forwards_limit)
        msg.replace_first_wire("max-forwards", _NUMBERS[n] if n < len(_NUMBERS) else str(n))
        return 1

    def reply(
        self, req: Request, code: int, reason: str | None, headers: list[tuple[str, str]],
        body: bytes,
    ) -> bool:
        if req.msg.method == "ACK":
            return False
        now = self.now()
        rc = req.rc
        if rc is not None:
            ok = self.proxy.reply(rc, code, reason, now, headers, body)
        elif req.st is not None:
            data = make_response(req.msg, code, reason, to_tag=self._to_tag(req),
                                 headers=headers, body=body, server=self.server_header)
            self.perform(self.tl.server_respond(req.st, data, now))
            ok = True
        else:
            ok = self._stateless_reply(req.msg, req.source, req.local, code, reason, headers,
                                       body, to_tag=self._to_tag(req))
        if ok and code >= 200:
            req.replied = True
        return ok

    def _to_tag(self, req: Request) -> str:
        t = req.vars.get("__to_tag")
        if t is None:
            t = req.vars["__to_tag"] = new_tag()
        return str(t)

    def _stateless_reply(
        self, msg: SipMessage, src: Endpoint, listener: Any, code: int, reason: str | None,
        headers: Iterable[tuple[str, str]] = (), body: bytes = b"", to_tag: str | None = None,
    ) -> bool:
        if msg.method == "ACK":
            return False
        try:
            dest = reply_destination(msg.via1, src)
        except ValueError:
            return False
        data = make_response(msg, code, reason, to_tag=to_tag or new_tag(), headers=headers,
                             body=body, server=self.server_header)
        self.stats["sent_replies"] += 1
        self._send(dest, data, listener)
        return True

    def _stateless_error(
        self, msg: SipMessage, src: Endpoint, listener: Any, code: int, reason: str,
    ) -> None:
        data = make_response_from_raw(msg.to_bytes(), code, reason)
        if data is not None:
            self._send(src, data, listener)

    def loose_route(self, req: Request) -> int:
        consumed: list[str] = []
        rc = loose_route(req.msg, self.me, consumed)
        if consumed or "__rr_consumed" in req.vars:
            # our own Route values, for the rr module's check_route_param / is_direction
            req.vars["__rr_consumed"] = consumed
        return rc

    # -- relaying ---------------------------------------------------------------------------------
    def _targets(self, req: Request) -> list[tuple[str, str | None, list[str]]]:
        targets: list[tuple[str, str | None, list[str]]] = [(req.msg.ruri, req.dst_uri, [])]
        path = req.vars.get("__path")
        if isinstance(path, list):
            targets[0] = (targets[0][0], targets[0][1], path)
        targets.extend(req.branches)
        req.branches = []
        return targets

    def _resolve(self, uri_text: str, default_proto: str) -> Endpoint | None:
        """Next-hop URI -> transport address (numeric hosts; names via the resolver cache)."""
        key = uri_text if default_proto == "udp" else f"{default_proto} {uri_text}"
        hop = self._hops.get(key)
        if hop is not None:
            return hop
        try:
            u = parse_uri(uri_text)
        except ValueError:
            return None
        if u.scheme == "tel":
            return None
        proto = (u.params.get("transport") or "").lower() or (
            "tls" if u.scheme == "sips" else default_proto
        )
        host = u.maddr or u.host
        if host.startswith("["):
            host = host[1:-1]
        port = u.port or DEFAULT_PORTS.get(proto, 5060)
        if not _is_ip(host):
            resolved = self.resolve_name(host)
            if resolved is None:
                return None
            return endpoint(proto, resolved, port)
        hop = endpoint(proto, host, port)  # a numeric host: the same answer every time
        if len(self._hops) >= 4096:
            self._hops.clear()
        self._hops[key] = hop
        return hop

    def resolve_name(self, host: str) -> str | None:
        """Synchronous name resolution from /etc/hosts-style sources (localhost, cached)."""
        if host.lower() == "localhost":
            return "127.0.0.1"
        cache = self._dns_cache
        if host in cache:
            return cache[host]
        import socket

        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM,
                                       flags=socket.AI_NUMERICSERV)
        except OSError:
            infos = []
        addr = str(infos[0][4][0]) if infos else None
        if len(cache) < 10000:
            cache[host] = addr
        return addr

    def relay(self, req: Request) -> bool:
        """Stateful forwarding of ``req`` to its targets (Kamailio ``t_relay``)."""
        msg = req.msg
        now = self.now()
        if msg.method == "ACK":
            # ACK is never relayed statefully (§16.11: forwarded statelessly)
            return self.forward_stateless(req)
        rc = req.rc
        if rc is not None and rc.cancelled:
            return False  # Kamailio: no new branch once the transaction is cancelled
        new_context = rc is None
        if rc is None:
            st = req.st
            if st is None:
                try:
                    reply_dest = reply_destination(msg.via1, req.source)
                except ValueError:
                    return False
                st = self.tl.new_server(msg, reply_dest, now, req.source.proto != "udp")
                req.st = st
            rc = self.proxy.new_context(st, msg)
            rc.data = req
            rc.fr_timeout = req.fr_timeout or self.fr_timeout
            rc.fr_inv_timeout = req.fr_inv_timeout or self.fr_inv_timeout
            req.rc = rc
            if msg.method == "INVITE":
                # §16.2: a stateful proxy answers INVITE with 100 Trying at once
                data = make_response(msg, 100, "Trying", server=self.server_header)
                self.perform(self.tl.server_respond(st, data, now))
        # callback names resolve now, against the script that armed them: a reload while the
        # transaction is in flight does not change which functions finish it
        rc.failure_handler = self._callable(req.failure_handler)
        rc.reply_handler = self._callable(req.reply_handler) or rc.reply_handler
        rc.branch_failure_handler = (self._callable(req.branch_failure_handler)
                                     or rc.branch_failure_handler)
        branch_fn = self._callable(req.branch_handler)
        req.branch_handler = None
        # like Kamailio's t_on_failure: armed for one failure; a failure route re-arms it
        req.failure_handler = None
        targets = self._targets(req)
        started = 0
        my_hash = branch_hash(msg, req.received_ruri) if new_context else None
        if my_hash is not None and self._sent_by and detect_loop(msg, self._sent_by, my_hash):
            self.proxy.reply(rc, 482, "Loop Detected", now)
            req.replied = True
            return False
        base_hash = my_hash or branch_hash(msg, req.received_ruri)
        for uri, dst_uri, path in targets:
            bmsg = msg.copy()
            if uri != msg.ruri:
                bmsg.ruri = uri
            if path:
                for p in reversed(path):
                    bmsg.insert_top("Route", p)
            if branch_fn is not None:
                # Kamailio branch_route: runs per branch on its copy; drop() discards the branch
                breq = self._branch_request(req, bmsg, dst_uri, len(rc.branches), "branch")
                self._run_script(branch_fn, breq, bmsg)
                if breq.dropped:
                    continue
                bmsg, dst_uri, uri = breq.msg, breq.dst_uri, breq.msg.ruri
            hop = next_hop_uri(bmsg, dst_uri)
            dest = self._resolve(hop, "udp")
            if dest is None:
                log.info("cannot resolve next hop %s, call-id=%s", hop, msg.call_id)
                self.proxy.fail_branch(rc, uri, 478, "Unresolvable destination", now)
                continue
            out = self._pick_listener(dest)
            if out is None:
                self.proxy.fail_branch(rc, uri, 503, "No socket for destination", now)
                continue
            if req.record_routed and msg.method not in ("REGISTER",):
                self._add_record_route(bmsg, req, out)
            idx = len(rc.branches)
            branch = f"{self.branch_prefix}{base_hash}.{idx}"
            head = self._via_heads.get(out)
            if head is None:  # "SIP/2.0/UDP host:port;branch=" of this listener
                head = Via(out.proto.upper(), out.advertise_host, out.advertise_port,
                           {"branch": ""}).to_string()
                if not is_ascii(head):
                    head = ""  # a host name beyond ASCII: written through the checks each time
                self._via_heads[out] = head
            bmsg.push_via(Via(out.proto.upper(), out.advertise_host, out.advertise_port,
                              {"branch": branch}), head + branch if head else None)
            script = self.script
            if script is not self._onsend_of:
                self._onsend_of = script
                self._onsend = getattr(script, "onsend_route", None)
            onsend = self._onsend
            if onsend is not None:
                # Kamailio onsend_route: the last look at what leaves; drop() stops the send
                oreq = self._branch_request(req, bmsg, dst_uri, idx, "onsend")
                self._run_script(onsend, oreq, bmsg)
                if oreq.dropped:
                    continue
            self.proxy.start_branch(rc, bmsg, dest, now)
            self.stats["fwd_requests"] += 1
            started += 1
        req.relayed = True
        return started > 0

    def _branch_request(
        self, req: Request, bmsg: SipMessage, dst_uri: str | None, idx: int, route: str,
    ) -> Request:
        """The script context of one outgoing branch (shares flags and variables)."""
        breq = Request(self, bmsg, req.source, req.local)
        breq.route = route
        breq.branch_index = idx
        breq.dst_uri = dst_uri
        breq.flags = req.flags
        breq.bflags = req.bflags
        breq.vars = req.vars
        breq.xavp = req.xavp
        breq.rc = req.rc
        breq.st = req.st
        breq.received_ruri = req.received_ruri
        return breq

    def newtran(self, req: Request) -> int:
        """Create the server transaction of ``req`` (Kamailio ``t_newtran``): 1, -1 on error."""
        if req.st is not None or req.rc is not None:
            return 1
        msg = req.msg
        if msg.method == "ACK":
            return -1
        try:
            reply_dest = reply_destination(msg.via1, req.source)
        except ValueError:
            return -1
        req.st = self.tl.new_server(msg, reply_dest, self.now(), req.source.proto != "udp")
        return 1

    def _add_record_route(self, bmsg: SipMessage, req: Request, out: Any) -> None:
        inn = req.local
        ftag = req.msg.from_tag
        params = req.rr_params
        if out is inn or (out.proto == inn.proto and out.hostport() == inn.hostport()):
            bmsg.insert_top("Record-Route", record_route_value(
                inn.advertise_host, inn.advertise_port, inn.proto, ftag=ftag, params=params))
            return
        # transport or interface changes: two entries (RFC 3261 §16.6 step 4 note, r2=on)
        bmsg.insert_top("Record-Route", record_route_value(
            inn.advertise_host, inn.advertise_port, inn.proto, ftag=ftag, r2=True, params=params))
        bmsg.insert_top("Record-Route", record_route_value(
            out.advertise_host, out.advertise_port, out.proto, ftag=ftag, r2=True, params=params))

    def forward_stateless(self, req: Request) -> bool:
        """Stateless forwarding (Kamailio ``forward``; ACK for 2xx, §16.11)."""
        msg = req.msg
        hop = next_hop_uri(msg, req.dst_uri)
        dest = self._resolve(hop, "udp")
        if dest is None:
            return False
        out = self._pick_listener(dest)
        if out is None:
            return False
        if req.record_routed and msg.method != "ACK":
            self._add_record_route(msg, req, out)
        # §16.11: a stateless proxy's branch must be the same for retransmissions
        b = branch_hash(msg, req.received_ruri)
        msg.insert_top(
            "Via", f"SIP/2.0/{out.proto.upper()} {out.hostport()};branch={MAGIC_COOKIE}{b}.s"
        )
        self.stats["fwd_requests"] += 1
        self._send(dest, msg.to_bytes(), out)
        req.relayed = True
        return True

    # -- registrar --------------------------------------------------------------------------------
    def registrar_save(self, req: Request, table: str, flags: int, aor: str | None) -> int:
        reg = self.registrar
        if reg is None:
            return -1
        now = self.wall_clock()
        received = req.vars.get("__received")  # set by nathelper's fix_nated_register
        local = req.local
        socket = self._socket_names.get(local)
        if socket is None:
            socket = f"{local.proto}:{local.hostport()}"
            self._socket_names[local] = socket
        # cflags: the branch flags (setbflag) are stored with the binding
        res = reg.save(req.msg, now, received=received, socket=socket, flags=flags,
                       cflags=req.bflags, aor=aor)
        if flags & 0x01:
            # Kamailio save() flag 0x01: no reply now; reg_send_reply() sends it later
            req.vars["__reg_reply"] = (res.status, res.reason, list(res.headers))
        else:
            self.reply(req, res.status, res.reason, res.headers, b"")
        return int(res.code)

    def registrar_lookup(self, req: Request, table: str, aor: str | None) -> LookupResult:
        reg = self.registrar
        if reg is None:
            return LookupResult.ERROR
        target = aor or req.msg.ruri
        try:
            branches = reg.branches(target, self.wall_clock())
        except ValueError:
            return LookupResult.ERROR
        if not branches:
            return LookupResult.NOT_FOUND
        first = branches[0]
        req.msg.ruri = first.uri
        req.dst_uri = first.dst_uri
        if first.route:
            req.vars["__path"] = list(first.route)
        req.vars["__q"] = {b.uri: b.q for b in branches}  # for t_load_contacts
        for b in branches[1:]:
            req.branches.append((b.uri, b.dst_uri, list(b.route)))
        return LookupResult.FOUND

    def registrar_registered(self, req: Request, table: str, aor: str | None) -> bool:
        reg = self.registrar
        if reg is None:
            return False
        try:
            return bool(reg.registered(aor or req.msg.ruri, self.wall_clock()))
        except ValueError:
            return False

    # -- ProxyHooks -------------------------------------------------------------------------------
    def on_branch_reply(self, rc: ResponseContext, branch: Branch, resp: SipMessage) -> bool:
        handler = rc.reply_handler
        if handler is None:
            return True
        rep = Reply(self, resp, None, None, branch, rc)
        fn = self._callable(handler)
        if fn is None:
            return True
        ok = self._run_script(fn, rep, resp)
        return not rep.dropped and ok is not False

    def on_branch_failure(self, rc: ResponseContext, branch: Branch, resp: SipMessage) -> None:
        handler = rc.branch_failure_handler
        fn = self._callable(handler)
        if fn is None:
            return
        rep = Reply(self, resp, None, None, branch, rc)
        rep.route = "branch_failure"
        self._run_script(fn, rep, resp)

    def on_failure(self, rc: ResponseContext, best: SipMessage, handler: Any) -> bool:
        fn = self._callable(handler)
        req = rc.data
        if fn is None or not isinstance(req, Request):
            return False
        before = len(rc.branches)
        req.in_failure = True
        req.route = "failure"
        req.vars["__failure_reply"] = best
        try:
            fn(req)
        except StopRoute:
            pass
        except Exception:
            self.stats["script_errors"] += 1
            log.exception("failure route failed, call-id=%s", _safe_call_id(rc.request))
        finally:
            req.in_failure = False
            req.route = "request"
        return len(rc.branches) > before

    def on_context_done(self, rc: ResponseContext) -> None:
        rc.data = None

    def _callable(self, handler: Any) -> Any:
        if handler is None:
            return None
        if callable(handler):
            return handler
        return self.script.resolve(handler) if self.script is not None else None


def _contact_uri(contact: str) -> str:
    try:
        return parse_name_addr(contact).uri
    except ValueError:
        return contact


def _safe_call_id(msg: SipMessage) -> str:
    try:
        return msg.call_id
    except Exception:  # pragma: no cover
        return "?"
