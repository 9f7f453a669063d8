"""``python -m bench``: the SIPp benchmark against Kamailio, and the memory benchmark.

python -m bench [calls] [--smoke] [--workers N] [--servers ...] [--scenarios ...] [--json F]
python -m bench memory [--counts 100000,1000000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time

from bench import memory
from bench.cgroups import CgroupError, find_controller, quota_us
from bench.harness import SERVER_KINDS, ensure_installed, kamailio_missing
from bench.suite import DEFAULT_LADDER, SCENARIOS, Settings, run_suite, table, to_json


def _list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _rates(text: str) -> list[float]:
    try:
        rates = [float(p) for p in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad rate list {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"bad rate list {text!r}")
    return rates


def main_calls(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--servers",
        type=_list,
        default=list(SERVER_KINDS),
        help="comma list of " + ",".join(SERVER_KINDS),
    )
    p.add_argument(
        "--scenarios",
        type=_list,
        default=list(SCENARIOS),
        help="comma list of " + ",".join(SCENARIOS),
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="siprouter workers = Kamailio UDP children (default 1)",
    )
    p.add_argument("--rate", type=float, default=1000.0, help="fixed rate of the CPU run (/s)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of the CPU run")
    p.add_argument(
        "--ladder",
        type=_rates,
        default=list(DEFAULT_LADDER),
        help="rate steps (/s): from the first step >= --rate, up while steps pass, "
        "else down until one passes",
    )
    p.add_argument("--step-seconds", type=float, default=3.0, help="seconds per ladder step")
    p.add_argument("--warmup", type=int, default=500, help="warm-up calls (not measured)")
    p.add_argument("--rounds", type=int, default=1, help="repeat everything, alternating order")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny run: 20 calls at 20/s, one ladder step, no warm-up",
    )
    p.add_argument(
        "--cpu-cap",
        type=float,
        metavar="SHARE",
        help="put each server process in a cgroup of its own capped at SHARE of one core "
        "(e.g. 0.25), so that the server and not the machine limits the ladder (root)",
    )
    p.add_argument(
        "--per-call-sockets",
        action="store_true",
        help="SIPp's caller sends each call from its own socket (sipp -t un: many source "
        "ports, as from many phones) instead of one",
    )
    p.add_argument("--no-install", action="store_true", help="do not apt-get missing packages")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    a = p.parse_args(argv)  # fmt: skip
    for s in a.servers:
        if s not in SERVER_KINDS:
            p.error(f"unknown server {s!r}")
    for s in a.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}")
    if a.workers < 1 or a.rounds < 1:
        p.error("--workers and --rounds must be >= 1")
    if a.cpu_cap is not None:
        try:
            quota_us(a.cpu_cap)
        except ValueError as exc:
            p.error(f"--cpu-cap: {exc}")
        try:
            find_controller()
        except CgroupError as exc:
            print(f"--cpu-cap: {exc}", file=sys.stderr)
            return 1

    log: list[str] = []
    if not a.no_install:
        why = ensure_installed(log)
        for line in log:
            print(line)
        if why:
            print(f"install: {why}", file=sys.stderr)
    if shutil.which("sipp") is None:
        print("sipp is not installed (Debian package sip-tester)", file=sys.stderr)
        return 2
    if kamailio_missing():
        dropped = [s for s in a.servers if s.startswith("kamailio")]
        if dropped:
            print(f"Kamailio unavailable ({', '.join(kamailio_missing())} missing): "
                  f"running without {', '.join(dropped)}", file=sys.stderr)  # fmt: skip
            a.servers = [s for s in a.servers if not s.startswith("kamailio")]

    st = Settings(
        servers=a.servers, scenarios=a.scenarios, workers=a.workers, rate=a.rate,
        duration=a.duration, ladder=sorted(a.ladder), step_seconds=a.step_seconds,
        warmup_calls=a.warmup, rounds=a.rounds,
        keep=a.keep, cpu_cap=a.cpu_cap, per_call_sockets=a.per_call_sockets,
    )  # fmt: skip
    if a.smoke:
        st.rate, st.duration, st.ladder, st.step_seconds, st.warmup_calls = (
            20.0,
            1.0,
            [20.0],
            1.0,
            0,
        )
    started = time.monotonic()
    print(f"# siprouter benchmark {datetime.datetime.now().isoformat(timespec='seconds')}: "
          f"python -m bench {' '.join(argv)}")  # fmt: skip
    results = run_suite(st, lambda line: print(line, flush=True))
    print()
    cap = f"; each server process capped at {st.cpu_cap:g} of a core" if st.cpu_cap else ""
    sockets = "; SIPp caller: one socket per call" if st.per_call_sockets else ""
    took = time.monotonic() - started
    print(f"workers = children = {st.workers}; fixed-rate run {st.duration:g} s; ladder steps "
          f"{st.step_seconds:g} s{cap}{sockets}; {took:.0f} s in all\n")  # fmt: skip
    print(table(results, st.servers, st.rate))
    problems = [r for r in results if r.errors]
    for r in problems:
        print(f"\n## {r.scenario} / {r.server}: problems\n{r.errors}")
    if a.json:
        with open(a.json, "w") as f:
            f.write(to_json(results, st))
    return 0


def main_memory(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench memory")
    p.add_argument("--counts", default="100000,1000000", help="comma list of binding counts")
    p.add_argument("--lookups", type=int, default=100_000)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)
    try:
        counts = [int(c) for c in _list(a.counts)]
    except ValueError:
        p.error(f"bad --counts {a.counts!r}")
    if not counts or any(c < 1 for c in counts):
        p.error("counts must be >= 1")
    rows = memory.run(counts, a.lookups)
    print(memory.table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def main_memory_one(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench memory-one")
    p.add_argument("count", type=int)
    p.add_argument("--lookups", type=int, default=100_000)
    a = p.parse_args(argv)
    print(json.dumps(memory.measure(a.count, a.lookups)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "memory":
        return main_memory(args[1:])
    if args and args[0] == "memory-one":
        return main_memory_one(args[1:])
    if args and args[0] == "calls":
        args = args[1:]
    return main_calls(args)


if __name__ == "__main__":
    sys.exit(main())
