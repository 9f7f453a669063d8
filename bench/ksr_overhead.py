"""CPU per message added by the KSR layer (Lua and Python KEMI) over the Pythonic API.

The same routing is written three times - in the Pythonic API, in Lua against ``KSR`` and in
Kamailio's app_python3 style - and each version routes the same message stream in-process,
through :class:`siprouter.testing.harness.Harness` (a real ``Core`` on a fake transport and a
fake clock; messages go in through ``core.on_message``). Only the ``on_message`` calls are
timed (process CPU time); building the callee's answers, draining the fake transport and firing
timers happen outside the measurement.

The stream, per call: REGISTER (save), OPTIONS keep-alive (200), INVITE (record-route, lookup,
relay), the callee's 200, ACK and BYE in the dialog (loose_route + relay), the callee's 200 for
the BYE: 7 messages, 5 of which run the request route.

Run: ``.venv/bin/python -m bench.ksr_overhead [--calls N] [--rounds R] [--profile lua|kemi]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from siprouter.scripting.loader import load_script
from siprouter.sip.build import make_response
from siprouter.sip.message import parse_message
from siprouter.sip.types import Endpoint
from siprouter.testing.harness import Harness

PYTHONIC = '''
def request_route(req):
    if req.process_maxfwd(10) == -1:
        req.reply(483, "Too Many Hops")
        return
    if req.method == "OPTIONS" and req.is_myself() and req.msg.ruri == "sip:127.0.0.1":
        req.reply(200, "Keepalive")
        return
    if req.has_to_tag:
        if req.loose_route() > 0:
            req.relay()
            return
        req.reply(404, "Not here")
        return
    if req.method == "REGISTER":
        req.save("location")
        return
    if req.method in ("INVITE", "SUBSCRIBE"):
        req.record_route()
    if req.lookup("location") < 0:
        req.reply(404, "Not Found")
        return
    req.relay()
'''

LUA = '''
function ksr_request_route()
  if KSR.maxfwd.process_maxfwd(10) == -1 then
    KSR.sl.sl_send_reply(483, "Too Many Hops")
    KSR.x.exit()
  end
  if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.pv.gete("$rU") == "" then
    KSR.sl.sl_send_reply(200, "Keepalive")
    KSR.x.exit()
  end
  if KSR.siputils.has_totag() > 0 then
    if KSR.rr.loose_route() > 0 then
      KSR.tm.t_relay()
      KSR.x.exit()
    end
    KSR.sl.sl_send_reply(404, "Not here")
    KSR.x.exit()
  end
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end
  if KSR.is_method_in("IS") then
    KSR.rr.record_route()
  end
  if KSR.registrar.lookup("location") < 0 then
    KSR.sl.send_reply(404, "Not Found")
    KSR.x.exit()
  end
  KSR.tm.t_relay()
end
'''

KEMI = '''
import KSR


def mod_init():
    return Router()


class Router:
    def ksr_request_route(self, msg):
        if KSR.maxfwd.process_maxfwd(10) == -1:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return -255
        if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.pv.gete("$rU") == "":
            KSR.sl.sl_send_reply(200, "Keepalive")
            return -255
        if KSR.siputils.has_totag() > 0:
            if KSR.rr.loose_route() > 0:
                KSR.tm.t_relay()
                return -255
            KSR.sl.sl_send_reply(404, "Not here")
            return -255
        if KSR.is_REGISTER():
            KSR.registrar.save("location", 0)
            return -255
        if KSR.is_method_in("IS"):
            KSR.rr.record_route()
        if KSR.registrar.lookup("location") < 0:
            KSR.sl.send_reply(404, "Not Found")
            return -255
        KSR.tm.t_relay()
        return 1
'''

VARIANTS = {"pythonic": ("route.py", PYTHONIC), "lua": ("route.lua", LUA),
            "kemi": ("route_kemi.py", KEMI)}
CALLER = ("udp", "127.0.0.1", 5070)
CALLEE = ("udp", "127.0.0.1", 5080)
MESSAGES_PER_CALL = 7
SCRIPT_RUNS_PER_CALL = 5


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def _request(method: str, ruri: str, i: int, branch: str, cseq: int, *, to_tag: str = "",
             route: str = "") -> bytes:
    tt = f";tag={to_tag}" if to_tag else ""
    rt = f"Route: {route}\n" if route else ""
    return _crlf(
        f"{method} {ruri} SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch}{i}\n"
        f"{rt}"
        "Max-Forwards: 70\n"
        f"From: <sip:alice@127.0.0.1>;tag=a{i}\n"
        f"To: <sip:bob@127.0.0.1>{tt}\n"
        f"Call-ID: call{i}@bench\n"
        f"CSeq: {cseq} {method}\n"
        "Contact: <sip:alice@127.0.0.1:5070>\n"
        "Content-Length: 0\n\n")


def _register(i: int) -> bytes:
    return _crlf(
        "REGISTER sip:127.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKreg{i}\n"
        "Max-Forwards: 70\n"
        "From: <sip:bob@127.0.0.1>;tag=r1\n"
        "To: <sip:bob@127.0.0.1>\n"
        "Call-ID: reg@bench\n"
        f"CSeq: {i + 1} REGISTER\n"
        "Contact: <sip:bob@127.0.0.1:5080>;expires=3600\n"
        "Content-Length: 0\n\n")


def _options(i: int) -> bytes:
    return _crlf(
        "OPTIONS sip:127.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKopt{i}\n"
        "Max-Forwards: 70\n"
        f"From: <sip:alice@127.0.0.1>;tag=o{i}\n"
        "To: <sip:127.0.0.1>\n"
        f"Call-ID: opt{i}@bench\n"
        "CSeq: 1 OPTIONS\n"
        "Content-Length: 0\n\n")


class Run:
    """One variant's Harness and the CPU time of its ``on_message`` calls."""

    def __init__(self, script: Any) -> None:
        self.h = Harness(script)
        self.core = self.h.core
        self.listener = self.h.listener("udp")
        self.caller = Endpoint(*CALLER)
        self.callee = Endpoint(*CALLEE)
        self.cpu_ns = 0
        self.messages = 0
        self.sent = 0

    def feed(self, data: bytes, src: Endpoint) -> None:
        t0 = time.process_time_ns()
        self.core.on_message(data, src, self.listener)
        self.cpu_ns += time.process_time_ns() - t0
        self.messages += 1

    def _forwarded(self, method: str) -> bytes:
        sent = self.h.transport.sent
        for dest, data in sent:
            if data.startswith(method.encode() + b" ") and dest.port == CALLEE[2]:
                return data
        raise RuntimeError(f"no {method} was forwarded to the callee: {sent!r}")

    def call(self, i: int) -> None:
        sent = self.h.transport.sent
        self.feed(_register(i), self.callee)
        self.feed(_options(i), self.caller)
        self.feed(_request("INVITE", "sip:bob@127.0.0.1", i, "inv", 1), self.caller)
        inv = parse_message(self._forwarded("INVITE"))
        ok = make_response(inv, 200, to_tag=f"b{i}",
                           headers=[("Contact", "<sip:bob@127.0.0.1:5080>")])
        self.sent += len(sent)
        sent.clear()
        self.feed(ok, self.callee)
        route = f"<sip:127.0.0.1:5060;lr;ftag=a{i}>"
        self.feed(_request("ACK", "sip:bob@127.0.0.1:5080", i, "ack", 1, to_tag=f"b{i}",
                           route=route), self.caller)
        self.feed(_request("BYE", "sip:bob@127.0.0.1:5080", i, "bye", 2, to_tag=f"b{i}",
                           route=route), self.caller)
        bye = parse_message(self._forwarded("BYE"))
        self.sent += len(sent)
        sent.clear()
        self.feed(make_response(bye, 200), self.callee)
        self.sent += len(sent)
        sent.clear()

    def expire(self) -> None:
        self.h.advance(40.0, step=40.0)
        self.h.transport.sent.clear()


def load_variants(tmp: Path) -> dict[str, Any]:
    scripts = {}
    for name, (fname, text) in VARIANTS.items():
        p = tmp / fname
        p.write_text(text)
        scripts[name] = load_script(str(p))
    return scripts


def measure(scripts: dict[str, Any], calls: int, offset: int = 0) -> dict[str, Run]:
    """Route ``calls`` calls through each variant in lockstep: call ``i`` goes through every
    variant before call ``i + 1`` (in a rotating order), so that noise from the machine
    (frequency changes, other processes' cache use) reaches every variant alike."""
    runs = {name: Run(script) for name, script in scripts.items()}
    names = list(runs)
    for i in range(50):  # warm-up (caches, first allocations)
        for run in runs.values():
            run.call(offset + 10_000_000 + i)
    for run in runs.values():
        run.expire()
        run.cpu_ns = run.messages = 0
    # the cyclic collector would run at random points of one variant or another: it is off
    # while routing and runs between blocks of calls, outside the measurement
    gc.collect()
    gc.disable()
    try:
        for i in range(calls):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                runs[name].call(offset + i)
            if i % 200 == 199:
                for run in runs.values():
                    run.expire()
                gc.collect()
    finally:
        gc.enable()
    return runs


def report(calls: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        scripts = load_variants(Path(d))
    best: dict[str, float] = {}
    over_best: dict[str, float] = {}
    for r in range(rounds):
        runs = measure(scripts, calls, offset=r * calls)
        sent = {name: run.sent for name, run in runs.items()}
        if len(set(sent.values())) != 1:
            raise RuntimeError(f"the variants sent different numbers of messages: {sent}")
        per_msg = {name: run.cpu_ns / run.messages / 1000.0 for name, run in runs.items()}
        for name, v in per_msg.items():
            best[name] = min(best.get(name, v), v)
            o = v - per_msg["pythonic"]
            over_best[name] = min(over_best.get(name, o), o)
    print(f"KSR overhead: {calls} calls x {MESSAGES_PER_CALL} messages per round, variants in "
          f"lockstep, best of {rounds} rounds (Python {sys.version.split()[0]})")
    print(f"{'variant':<10} {'us/message':>11} {'overhead us/message':>20} "
          f"{'overhead us/script run':>23}")
    for name in ("pythonic", "lua", "kemi"):
        over = over_best[name]
        print(f"{name:<10} {best[name]:>11.2f} {over:>20.2f} "
              f"{over * MESSAGES_PER_CALL / SCRIPT_RUNS_PER_CALL:>23.2f}")
    return over_best


def profile(variant: str, calls: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        script = load_variants(Path(d))[variant]
    prof = cProfile.Profile()
    run = Run(script)
    for i in range(50):
        run.call(10_000_000 + i)
    orig: Callable[[bytes, Endpoint], None] = run.feed

    def feed(data: bytes, src: Endpoint) -> None:
        prof.enable()
        orig(data, src)
        prof.disable()

    run.feed = feed  # type: ignore[method-assign]
    for i in range(calls):
        run.call(i)
        if i % 200 == 199:
            run.expire()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ksr_overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3000, help="calls per round (default 3000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, best kept (default 3)")
    ap.add_argument("--profile", choices=sorted(VARIANTS), help="cProfile one variant instead")
    args = ap.parse_args(argv)
    if args.calls < 1 or args.rounds < 1:
        ap.error("--calls and --rounds must be at least 1")
    if args.profile:
        profile(args.profile, args.calls)
        return 0
    report(args.calls, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
