"""Stateful proxy core: response contexts, forking and best-response selection (RFC 3261 §16).

Theory of operation
-------------------
When a script relays a request statefully, the runtime creates a server transaction for it and
a :class:`ResponseContext` here (§16.2: "response context"). Each target becomes a
:class:`Branch` with its own client transaction. This module then implements §16.7:

- 100 Trying from downstream is absorbed (we sent our own); other provisionals go upstream at
  once (step 5);
- every 2xx goes upstream at once, and for INVITE the other pending branches are cancelled
  (§16.7 step 10, §16.10);
- 3xx-6xx are kept; a 6xx cancels the pending branches; when no branch is pending any more the
  best response is chosen (step 6: a 6xx if any, else the lowest class, preferring 401, 407,
  415, 420 and 484 within 4xx), 401/407 challenges of every branch are merged into it (step 7),
  and the script's failure callback may start new branches (serial forking) before the best
  response is sent upstream;
- a branch that times out (Timer B/F) counts as 408, one whose transport failed as 503
  (§16.7 step 10 / §16.8 / Kamailio tm's local replies);
- a CANCEL from upstream cancels every pending branch (§16.10); when the branches end without
  a real response the caller gets 487;
- for INVITE the ``fr_inv`` timer (Kamailio ``fr_inv_timer``, RFC 3261 §16.8 Timer C's role)
  cancels a branch that rang too long and counts it as 408.

The core is sans-IO: it calls the transaction layer, performs the effects it returns through the
``perform`` callable the runtime passes in, and asks the runtime's ``hooks`` to run script
callbacks. Time comes in as ``now``; the core's own deadlines are in :meth:`next_deadline`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

from ..sip.build import make_response, new_tag
from ..sip.message import SipMessage, parse_message
from ..sip.types import Endpoint
from ..transaction.layer import TransactionLayer
from ..transaction.timers import TimerEntry, TimerWheel

log = logging.getLogger(__name__)

__all__ = ["Branch", "Proxy", "ProxyHooks", "ResponseContext", "choose_best"]

# §16.7 step 6: within 4xx these are preferred, because the caller can act on them.
_PREFERRED_4XX = (401, 407, 415, 420, 484)


class ProxyHooks(Protocol):
    """What the core asks of the runtime (script callbacks, local bookkeeping)."""

    def on_branch_reply(self, rc: ResponseContext, branch: Branch, resp: SipMessage) -> bool:
        """Run the script's reply callback; False drops the response."""
        ...

    def on_branch_failure(self, rc: ResponseContext, branch: Branch, resp: SipMessage) -> None:
        ...

    def on_failure(self, rc: ResponseContext, best: SipMessage, handler: Any) -> bool:
        """Run the script's failure callback; True when it started new branches."""
        ...

    def on_context_done(self, rc: ResponseContext) -> None:
        ...


class Branch:
    __slots__ = (
        "cancelled",
        "ct",
        "dest",
        "fr_entry",
        "idx",
        "provisional",
        "rc",
        "request",
        "response",
        "status",
        "synthetic",
        "uri",
    )

    def __init__(self, rc: ResponseContext, idx: int, request: SipMessage, dest: Endpoint) -> None:
        self.rc = rc
        self.idx = idx
        self.ct: Any = None
        self.request = request
        self.dest = dest
        self.uri = request.ruri
        self.status = 0  # final status, 0 while pending
        self.response: SipMessage | None = None
        self.provisional = False
        self.cancelled = False
        self.synthetic = False  # the final status was made up here (timeout, transport error)
        self.fr_entry: TimerEntry | None = None

    @property
    def pending(self) -> bool:
        return self.status == 0


class ResponseContext:
    """The proxy's state for one relayed request (§16.2 "response context")."""

    __slots__ = (
        "branch_failure_handler",
        "branch_handler",
        "branches",
        "cancel_reason",
        "cancelled",
        "data",
        "failure_handler",
        "final_sent",
        "final_status",
        "fr_inv_timeout",
        "fr_timeout",
        "in_failure",
        "is_invite",
        "reply_handler",
        "request",
        "_to_tag",
        "st",
    )

    def __init__(self, st: Any, request: SipMessage) -> None:
        self.st = st
        self.request = request
        self.branches: list[Branch] = []
        self.final_sent = False
        self.final_status = 0
        self.cancelled = False
        self.is_invite = request.method == "INVITE"
        self._to_tag: str | None = None  # made when a local reply first needs it
        self.failure_handler: Any = None
        self.reply_handler: Any = None
        self.branch_failure_handler: Any = None
        self.branch_handler: Any = None
        self.data: Any = None  # runtime's per-request state (script context)
        self.in_failure = False
        self.fr_inv_timeout = 120.0
        self.fr_timeout = 30.0
        self.cancel_reason: str | None = None

    def pending(self) -> list[Branch]:
        return [b for b in self.branches if b.status == 0]

    @property
    def to_tag(self) -> str:
        """The To tag of every reply made here (one per context; most relayed requests never
        need one, and a fresh tag costs a getrandom() call)."""
        tag = self._to_tag
        if tag is None:
            tag = self._to_tag = new_tag()
        return tag


def choose_best(branches: list[Branch]) -> Branch | None:
    """§16.7 step 6 over the branches that ended (a 6xx wins; else the lowest class)."""
    done = [b for b in branches if b.status >= 300]
    if not done:
        return None
    six = [b for b in done if b.status >= 600]
    if six:
        return six[0]
    lowest = min(b.status // 100 for b in done)
    cls = [b for b in done if b.status // 100 == lowest]
    if lowest == 4:
        for pref in _PREFERRED_4XX:
            for b in cls:
                if b.status == pref:
                    return b
        # a real response beats one we made up
        real = [b for b in cls if not b.synthetic]
        if real:
            return real[0]
    return cls[0]


class Proxy:
    """See the module docstring."""

    def __init__(
        self,
        tl: TransactionLayer,
        perform: Callable[[list[Any]], None],
        hooks: ProxyHooks,
        *,
        server_header: str | None = None,
    ) -> None:
        self.tl = tl
        self.perform = perform
        self.hooks = hooks
        self.server_header = server_header
        self._timers = TimerWheel()  # fr_inv timers of branches (Branch.fr_entry: the handle)
        self.contexts = 0  # live response contexts (for metrics)

    # -- timers -----------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def on_timer(self, now: float) -> None:
        timers = self._timers
        item = timers.pop_due(now)
        while item is not None:  # bounded: each comes out once, and nothing here re-arms one
            br = cast(Branch, item)
            br.fr_entry = None
            if br.status == 0:
                self._fr_expired(br, now)
            item = timers.pop_due(now)

    def _fr_expired(self, br: Branch, now: float) -> None:
        log.info("fr_inv timer: cancelling branch %d to %s call-id=%s",
                 br.idx, br.uri, br.rc.request.call_id)
        self._cancel_branch(br, now)
        self._branch_final(br, 408, None, now, synthetic=True)

    def _arm_fr(self, br: Branch, timeout: float, now: float) -> None:
        self._stop_fr(br)
        br.fr_entry = self._timers.add(now + timeout, br)

    def _stop_fr(self, br: Branch) -> None:
        """Stop the branch's fr_inv timer: the wheel lets go of the branch at once."""
        entry = br.fr_entry
        if entry is not None:
            self._timers.remove(entry)
            br.fr_entry = None

    # -- contexts and branches --------------------------------------------------------------------
    def new_context(self, st: Any, request: SipMessage) -> ResponseContext:
        rc = ResponseContext(st, request)
        if st is not None:
            st.context = rc
        self.contexts += 1
        return rc

    def start_branch(
        self, rc: ResponseContext, request: SipMessage, dest: Endpoint, now: float,
    ) -> Branch:
        """Send ``request`` (Via already pushed) to ``dest`` in a new client transaction."""
        br = Branch(rc, len(rc.branches), request, dest)
        rc.branches.append(br)
        ct, effects = self.tl.new_client(request, dest, now, dest.proto != "udp")
        ct.context = br
        br.ct = ct
        # the transaction keeps the bytes it sent; the parsed copy is rarely read again
        request.mark_sent(ct.data)
        if rc.cancelled and rc.is_invite:
            # upstream cancelled while we were still starting branches
            effects.extend(self.tl.cancel(ct, now))
            br.cancelled = True
        self.perform(effects)
        return br

    def fail_branch(
        self, rc: ResponseContext, uri: str, status: int, reason: str, now: float,
    ) -> None:
        """Record a branch that could not even be sent (no route, unresolvable)."""
        br = Branch(rc, len(rc.branches), rc.request, Endpoint("udp", "", 0))
        br.uri = uri
        rc.branches.append(br)
        self._branch_final(br, status, None, now, synthetic=True, reason=reason)

    # -- responses from downstream ----------------------------------------------------------------
    def on_response(self, br: Branch, resp: SipMessage, now: float) -> None:
        rc = br.rc
        status = resp.status
        # Our Via is on top: pop it before anything else looks at the response (§16.7 step 3).
        resp.remove_first_value("via")
        if status == 100:
            br.provisional = True
            return
        if br.status and not (200 <= status < 300):
            return  # a late response on a branch we already closed
        if rc.reply_handler is not None and not self.hooks.on_branch_reply(rc, br, resp):
            return
        if status < 200:
            if not br.provisional:
                br.provisional = True
                if rc.is_invite and br.status == 0:
                    self._arm_fr(br, rc.fr_inv_timeout, now)
            if not rc.final_sent:
                self._send_upstream(rc, resp.to_bytes(), status, now)
            return
        if status < 300:
            first = br.status == 0
            br.status = status
            br.response = resp
            self._stop_fr(br)
            # every 2xx goes upstream, retransmissions and further 2xx of other forks included
            data = resp.to_bytes()
            self._send_upstream(rc, data, status, now)
            resp.mark_sent(data)
            if first and rc.is_invite:
                for other in rc.branches:
                    if other is not br and other.status == 0:
                        self._cancel_branch(other, now)
            self._maybe_done(rc)
            return
        self._branch_final(br, status, resp, now)

    def on_timeout(self, br: Branch, now: float) -> None:
        if br.status:
            return
        log.info("no final response from %s (branch %d) call-id=%s",
                 br.uri, br.idx, br.rc.request.call_id)
        self._branch_final(br, 408, None, now, synthetic=True)

    def on_transport_error(self, br: Branch, now: float) -> None:
        if br.status:
            return
        log.info("transport error towards %s (branch %d) call-id=%s",
                 br.dest.hostport(), br.idx, br.rc.request.call_id)
        self._branch_final(br, 503, None, now, synthetic=True, reason="Service Unavailable")

    def _branch_final(
        self, br: Branch, status: int, resp: SipMessage | None, now: float,
        *, synthetic: bool = False, reason: str | None = None,
    ) -> None:
        rc = br.rc
        br.status = status
        self._stop_fr(br)
        br.synthetic = synthetic
        if resp is None:
            resp = self._local_response(rc, status, reason)
        br.response = resp
        if rc.branch_failure_handler is not None:
            self.hooks.on_branch_failure(rc, br, resp)
        if status >= 600 and rc.is_invite:
            for other in rc.branches:
                if other.status == 0:
                    self._cancel_branch(other, now)
        self._maybe_complete(rc, now)

    def _maybe_complete(self, rc: ResponseContext, now: float) -> None:
        if rc.final_sent or rc.in_failure:
            return
        if any(b.status == 0 for b in rc.branches):
            return
        best = choose_best(rc.branches)
        if best is None:
            return
        assert best.response is not None
        resp = best.response
        if rc.failure_handler is not None:
            # a failure callback runs once; it arms itself again (t_on_failure) if it wants.
            # As in Kamailio it runs for a cancelled transaction too (scripts test
            # t_is_canceled() there); new branches are refused then (tm's t_relay)
            handler = rc.failure_handler
            rc.failure_handler = None
            rc.in_failure = True
            try:
                started = self.hooks.on_failure(rc, resp, handler)
            finally:
                rc.in_failure = False
            if rc.final_sent:
                self._maybe_done(rc)
                return
            if started and any(b.status == 0 for b in rc.branches):
                return
        self._send_best(rc, best, now)

    def _send_best(self, rc: ResponseContext, best: Branch, now: float) -> None:
        assert best.response is not None
        resp = best.response
        if rc.cancelled and best.synthetic:
            data = self._local_response_bytes(rc, 487, "Request Terminated")
            self._send_upstream(rc, data, 487, now)
            self._maybe_done(rc)
            return
        if best.synthetic and best.status == 408 and not rc.is_invite:
            # RFC 4320 §4.1: no 408 upstream for a non-INVITE; the upstream client times out
            rc.final_sent = True
            rc.final_status = 408
            self._maybe_done(rc)
            return
        if best.status in (401, 407):
            self._merge_challenges(rc, resp)
        data = resp.to_bytes()
        self._send_upstream(rc, data, best.status, now)
        resp.mark_sent(data)
        self._maybe_done(rc)

    def _merge_challenges(self, rc: ResponseContext, resp: SipMessage) -> None:
        """§16.7 step 7: every branch's challenges go into the forwarded 401/407."""
        for name in ("www-authenticate", "proxy-authenticate"):
            have = set(resp.get_all(name))
            for b in rc.branches:
                if b.response is None or b.response is resp or b.status not in (401, 407):
                    continue
                for v in b.response.get_all(name):
                    if v not in have:
                        have.add(v)
                        resp.add(name, v)

    def _maybe_done(self, rc: ResponseContext) -> None:
        if rc.final_sent and not any(b.status == 0 for b in rc.branches):
            self.hooks.on_context_done(rc)

    # -- upstream ---------------------------------------------------------------------------------
    def _send_upstream(self, rc: ResponseContext, data: bytes, status: int, now: float) -> None:
        if status >= 200:
            if rc.final_sent and status >= 300:
                return
            if not rc.final_sent:
                rc.final_sent = True
                rc.final_status = status
        if rc.st is not None:
            self.perform(self.tl.server_respond(rc.st, data, now))

    def reply(
        self, rc: ResponseContext, status: int, reason: str | None, now: float,
        headers: list[tuple[str, str]] | None = None, body: bytes = b"",
    ) -> bool:
        """A local reply through the server transaction (Kamailio ``t_reply``)."""
        if rc.final_sent and status >= 200:
            return False
        data = make_response(
            rc.request, status, reason, to_tag=rc.to_tag, headers=headers or (), body=body,
            server=self.server_header,
        )
        self._send_upstream(rc, data, status, now)
        if status >= 200:
            for b in rc.branches:
                if b.status == 0:
                    self._cancel_branch(b, now)
            self._maybe_done(rc)
        return True

    def _local_response(self, rc: ResponseContext, status: int, reason: str | None) -> SipMessage:
        return parse_message(self._local_response_bytes(rc, status, reason))

    def _local_response_bytes(self, rc: ResponseContext, status: int, reason: str | None) -> bytes:
        return make_response(rc.request, status, reason, to_tag=rc.to_tag,
                             server=self.server_header)

    # -- CANCEL -----------------------------------------------------------------------------------
    def cancel(self, rc: ResponseContext, now: float, reason: str | None = None) -> None:
        """A CANCEL from upstream matched this context (§16.10)."""
        rc.cancelled = True
        rc.cancel_reason = reason
        for b in rc.branches:
            if b.status == 0:
                self._cancel_branch(b, now)
        if not rc.branches and not rc.final_sent:
            # nothing was relayed yet: answer the INVITE ourselves
            self.reply(rc, 487, "Request Terminated", now)

    def _cancel_branch(self, br: Branch, now: float) -> None:
        if br.cancelled or br.ct is None or not br.rc.is_invite:
            return
        br.cancelled = True
        self.perform(self.tl.cancel(br.ct, now, br.rc.cancel_reason))
