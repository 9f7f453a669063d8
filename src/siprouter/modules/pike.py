"""Flood detection per source IP (Kamailio ``pike``): ``KSR.pike``.

Settings (``[modules.pike]``, Kamailio's modparams and defaults)::

    sampling_time_unit = 2       # seconds per sampling unit
    reqs_density_per_unit = 30   # requests per unit that make an IP a flood source
    remove_latency = 120         # seconds an IP is remembered after its last request

Theory of operation (as Kamailio's ``refresh_node`` / ``is_hot_leaf``): every IP counts its
hits in two slots, the previous and the current sampling unit. At each unit boundary the
current count becomes the previous one and the current restarts at 0. An IP is *hot* when
either slot, or their mean, reaches ``reqs_density_per_unit``. The first hit that finds it hot
marks it red and answers -2 ("new flood source"); later hits while red answer -1. A red IP
whose counts fall below the limit at a unit boundary is unmarked. An IP not seen for
``remove_latency`` seconds is forgotten.

Kamailio keeps IPs in a tree of address bytes and only grows a leaf for an address once its
prefix gets busy, which is why its documentation says the limit is between x and 3x for IPv4;
here every address has its leaf from the first request, so the limit is x exactly (the
behaviour the documentation promises, reached sooner).

Time is passed in (``now``, monotonic seconds); the boundaries are computed from it, so no
timer is needed: each call rolls the IP's slots forward by the units elapsed.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .modparam import at_least, load_modparams

__all__ = ["BLOCKED", "NEW_BLOCKED", "OK", "Pike", "PikeParams", "pike_for"]

log = logging.getLogger("siprouter.pike")

OK = 1  # not a flood source (or an internal error: Kamailio answers true then)
BLOCKED = -1  # a flood source, seen before
NEW_BLOCKED = -2  # a flood source, detected now


@dataclass(slots=True)
class PikeParams:
    sampling_time_unit: int = 2  # Kamailio default, seconds
    reqs_density_per_unit: int = 30  # Kamailio default
    remove_latency: int = 120  # Kamailio default, seconds
    pike_log_level: int = 1  # Kamailio default (L_WARN); the log line is at WARNING


_CHECKS = {
    "sampling_time_unit": at_least(1),
    "reqs_density_per_unit": at_least(1),
    "remove_latency": at_least(0),
}


class Pike:
    """Per-IP hit counters. ``check(ip, now)`` -> OK / BLOCKED / NEW_BLOCKED."""

    __slots__ = ("_last_sweep", "_outbox", "bus", "limit", "nodes", "remove_latency", "step",
                 "unit")

    def __init__(self, params: PikeParams | None = None) -> None:
        p = params or PikeParams()
        self.unit = float(p.sampling_time_unit)
        self.limit = p.reqs_density_per_unit
        self.remove_latency = float(p.remove_latency)
        # ip -> [unit index of the current slot, prev hits, curr hits, red flag, last seen]
        # (replicated: a 6th item, hits of the current unit not yet published)
        self.nodes: dict[str, list[Any]] = {}
        self._last_sweep = 0.0
        self.bus: Any = None  # runtime.ipc.Peers of the node's workers, None in one process
        self.step = 0  # replicated: hits of one IP in one unit published together
        self._outbox: list[tuple[str, int, int, bool, float]] = []

    @classmethod
    def from_settings(cls, table: Mapping[str, Any] | None) -> Pike:
        return cls(load_modparams(PikeParams, "pike", table, _CHECKS))

    def check(self, ip: str, now: float) -> int:
        if self.bus is not None:
            return self._check_replicated(ip, now)
        unit = int(now // self.unit)
        node = self.nodes.get(ip)
        if node is None or now - node[4] > self.remove_latency:
            node = self.nodes[ip] = [unit, 0, 0, False, now]
            if len(self.nodes) > 1024 and now - self._last_sweep >= self.unit:
                self.sweep(now)
        elif node[0] != unit:
            self._roll(node, unit)
        node[2] += 1
        node[4] = now
        limit = self.limit
        prev, curr = node[1], node[2]
        if node[3]:
            return BLOCKED
        if prev >= limit or curr >= limit or (prev + curr) >> 1 >= limit:
            node[3] = True
            log.warning("pike: blocking %s (%d requests in %.0f s)", ip, prev + curr,
                        2 * self.unit)
            return NEW_BLOCKED
        return OK

    # -- worker processes ---------------------------------------------------------------------
    def replicate(self, peers: Any) -> None:
        """Count hits node-wide through ``peers`` (:class:`~siprouter.runtime.ipc.Peers`).

        Each worker counts its own hits at once and publishes them on the ``pike`` topic in
        batches of :attr:`step` hits per IP and unit (the rest of a batch at the next unit or
        :meth:`sweep`); an IP found hot is published at once as red. Every count of a worker
        therefore lacks at most ``(workers - 1) * (step - 1)`` hits of the others: with
        ``step = max(2, limit // (4 * workers))`` a flood spread over all workers is caught
        below 1.25x the limit, and an IP sending less than ``step`` requests a unit to a
        worker costs no message but the one batched per second."""
        self.bus = peers
        self.step = max(2, self.limit // (4 * max(1, peers.count)))
        for ip, node in self.nodes.items():
            if len(node) < 6:
                self.nodes[ip] = [*node, 0]
        peers.subscribe("pike", self._on_remote_hits)

    def _check_replicated(self, ip: str, now: float) -> int:
        self.bus.sync()
        unit = int(now // self.unit)
        node = self.nodes.get(ip)
        if node is None or now - node[4] > self.remove_latency:
            node = self.nodes[ip] = [unit, 0, 0, False, now, 0]
            if len(self.nodes) > 1024 and now - self._last_sweep >= self.unit:
                self.sweep(now)
        elif node[0] != unit:
            if node[5]:
                if unit - node[0] == 1:
                    self._outbox.append((ip, node[0], node[5], False, now))
                node[5] = 0
            self._roll(node, unit)
        node[2] += 1
        node[4] = now
        node[5] += 1
        limit = self.limit
        prev, curr = node[1], node[2]
        if node[3]:
            result = BLOCKED
        elif prev >= limit or curr >= limit or (prev + curr) >> 1 >= limit:
            node[3] = True
            log.warning("pike: blocking %s (%d requests in %.0f s)", ip, prev + curr,
                        2 * self.unit)
            self.bus.publish("pike", [(ip, unit, node[5], True, now)])
            node[5] = 0
            return NEW_BLOCKED
        else:
            result = OK
        if node[5] >= self.step:
            self.bus.publish("pike", [(ip, unit, node[5], False, now)])
            node[5] = 0
        return result

    def _on_remote_hits(self, payload: Any) -> None:
        lat = self.remove_latency
        try:
            for ip, unit, hits, red, now in payload:
                node = self.nodes.get(ip)
                if node is None or now - node[4] > lat:
                    node = self.nodes[ip] = [unit, 0, 0, False, now, 0]
                elif unit > node[0]:
                    if node[5]:
                        if unit - node[0] == 1:
                            self._outbox.append((ip, node[0], node[5], False, now))
                        node[5] = 0
                    self._roll(node, unit)
                if unit == node[0]:
                    node[2] += hits
                elif unit == node[0] - 1:
                    node[1] += hits
                if red:
                    node[3] = True
                if now > node[4]:
                    node[4] = now
        except (TypeError, ValueError) as e:
            log.error("pike: malformed replicated hits dropped: %s", e)

    def flush(self) -> int:
        """Publish every hit not yet published (replicated only; :meth:`sweep` calls it)."""
        bus = self.bus
        if bus is None:
            return 0
        out = self._outbox
        self._outbox = []
        for ip, node in self.nodes.items():
            if node[5]:
                out.append((ip, node[0], node[5], False, node[4]))
                node[5] = 0
        for i in range(0, len(out), 500):
            bus.publish("pike", out[i : i + 500])
        return len(out)

    def _roll(self, node: list[Any], unit: int) -> None:
        elapsed = unit - node[0]
        if elapsed == 1:
            node[1], node[2] = node[2], 0
        else:
            node[1] = node[2] = 0
        node[0] = unit
        if node[3]:
            limit = self.limit
            prev = node[1]
            if not (prev >= limit or prev >> 1 >= limit):
                node[3] = False
                log.warning("pike: unblocking an IP (below the limit again)")

    def is_blocked(self, ip: str, now: float) -> bool:
        if self.bus is not None:
            self.bus.sync()
        node = self.nodes.get(ip)
        if node is None or now - node[4] > self.remove_latency:
            return False
        unit = int(now // self.unit)
        if node[0] != unit:
            self._roll(node, unit)
        return bool(node[3])

    def sweep(self, now: float) -> int:
        """Forget IPs not seen for ``remove_latency`` seconds (replicated: publish first every
        hit not yet published)."""
        self._last_sweep = now
        if self.bus is not None:
            self.flush()
        lat = self.remove_latency
        gone = [ip for ip, n in self.nodes.items() if now - n[4] > lat]
        for ip in gone:
            del self.nodes[ip]
        return len(gone)

    def list(self, now: float) -> list[tuple[str, int, int, bool]]:
        """(ip, hits in the previous unit, hits in the current unit, blocked) of known IPs."""
        if self.bus is not None:
            self.bus.sync()
        out = []
        for ip, n in self.nodes.items():
            if now - n[4] <= self.remove_latency:
                out.append((ip, int(n[1]), int(n[2]), bool(n[3])))
        return out


# -- the module instance of a runtime ----------------------------------------------------------
def pike_for(core: Any) -> Pike:
    """``core.modules["pike"]``, created with the default settings when not configured."""
    mods = getattr(core, "modules", None)
    if mods is None:
        mods = {}
        try:
            core.modules = mods
        except AttributeError:
            return Pike()
    p = mods.get("pike")
    if p is None:
        p = mods["pike"] = Pike()
    assert isinstance(p, Pike)
    return p


def _normalize_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


# -- KSR.pike ----------------------------------------------------------------------------------
def pike_check_req(msg: Any) -> int:
    src = msg.source
    if src is None:
        return OK  # Kamailio: an internal error answers true
    return pike_for(msg.core).check(src.host, msg.core.now())


def pike_check_ip(msg: Any, ip: str) -> int:
    addr = _normalize_ip(str(ip))
    if addr is None:
        log.error("pike_check_ip: not an IP address: %r", ip)
        return OK
    return pike_for(msg.core).check(addr, msg.core.now())


def _declare() -> None:
    from .exports import INT, STR, Export, declare

    declare("pike", (
        Export("pike_check_req", pike_check_req, (), INT,
               "Count the request's source IP: 1 fine, -1 flood source seen before, "
               "-2 flood source detected now."),
        Export("pike_check_ip", pike_check_ip, (STR,), INT,
               "Like pike_check_req for the given IP address."),
    ), doc="Flood detection per source IP (Kamailio pike).")


_declare()
