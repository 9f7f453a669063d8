"""``python -m bench``: the SIPp benchmark against Kamailio, and the memory benchmark.

python -m bench [calls] [--smoke] [--workers N] [--servers ...] [--scenarios ...] [--json F]
python -m bench scaling [--cpu-cap 0.2] [--workers 2] [--servers ...] [--scenarios ...]
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
from bench.cgroups import PERIOD_US, CgroupError, find_controller, quota_us
from bench.harness import SERVER_KINDS, ensure_installed, kamailio_missing
from bench.suite import (
    DEFAULT_LADDER,
    SCALING_LADDER,
    SCENARIOS,
    Settings,
    by_workers,
    run_scaling,
    run_suite,
    scaling_table,
    table,
    to_json,
)

SCALING_HELP = """\
Worker scaling: every scenario with 1 worker and with --workers N (siprouter workers =
Kamailio UDP children) on every server, each server process capped at --cpu-cap of one core
(its own cgroup) and SIPp's caller on one socket per call, so that the capped server and not
the machine sets the highest passing rate. Prints the highest rate with 1 and N workers and
their ratio per server. --cpu-cap 0 runs uncapped.
"""


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


def _parser(scaling: bool) -> argparse.ArgumentParser:
    """The options of ``calls`` and of ``scaling`` (the same, with other defaults)."""
    p = argparse.ArgumentParser(
        prog="python -m bench" + (" scaling" if scaling else ""),
        description=SCALING_HELP if scaling else __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    servers = ["siprouter", "kamailio-native"] if scaling else list(SERVER_KINDS)
    p.add_argument(
        "--servers",
        type=_list,
        default=servers,
        help="comma list of " + ",".join(SERVER_KINDS) + f" (default {','.join(servers)})",
    )
    scenarios = ["call-direct", "call-location"] if scaling else list(SCENARIOS)
    p.add_argument(
        "--scenarios",
        type=_list,
        default=scenarios,
        help="comma list of " + ",".join(SCENARIOS) + f" (default {','.join(scenarios)})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2 if scaling else 1,
        help="siprouter workers = Kamailio UDP children "
        + ("compared with 1 (default 2)" if scaling else "(default 1)"),
    )
    p.add_argument(
        "--rate",
        type=float,
        default=400.0 if scaling else 1000.0,
        help="fixed rate of the CPU run (/s), where the ladder starts",
    )
    p.add_argument(
        "--duration", type=float, default=4.0 if scaling else 10.0, help="seconds of the CPU run"
    )
    p.add_argument(
        "--ladder",
        type=_rates,
        default=list(SCALING_LADDER if scaling else DEFAULT_LADDER),
        help="rate steps (/s): from the first step >= --rate, up while steps pass, "
        "else down until one passes"
        + ("; with N workers from the highest that passed with 1" if scaling else ""),
    )
    p.add_argument(
        "--step-seconds",
        type=float,
        default=4.0 if scaling else 3.0,
        help="seconds per ladder step",
    )
    p.add_argument(
        "--warmup", type=int, default=200 if scaling else 500, help="warm-up calls (not measured)"
    )
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
        default=0.2 if scaling else None,
        help="put each server process in a cgroup of its own capped at SHARE of one core "
        "(e.g. 0.25), so that the server and not the machine limits the ladder (root); "
        + ("default 0.2, 0: no cap" if scaling else "0: no cap (the default)"),
    )
    p.add_argument(
        "--cpu-period",
        type=float,
        metavar="MS",
        default=PERIOD_US / 1000,
        help="the CFS period of those cgroups in ms (1-1000, default %(default)g): a capped "
        "process that used its share waits for the next period",
    )
    p.add_argument(
        "--per-call-sockets",
        action=argparse.BooleanOptionalAction,
        default=scaling,
        help="SIPp's caller sends each call from its own socket (sipp -t un: many source "
        "ports, as from many phones) instead of one"
        + (" (default on)" if scaling else " (default off)"),
    )
    p.add_argument("--no-install", action="store_true", help="do not apt-get missing packages")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    return p


def _settings(p: argparse.ArgumentParser, argv: list[str]) -> tuple[Settings, str | None] | int:
    """The settings of a ``calls`` or ``scaling`` run and the --json file, from the command
    line, after checking it and installing what is missing; or the exit status when it
    cannot run."""
    a = p.parse_args(argv)
    for s in a.servers:
        if s not in SERVER_KINDS:
            p.error(f"unknown server {s!r}")
    for s in a.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}")
    if a.workers < 1 or a.rounds < 1:
        p.error("--workers and --rounds must be >= 1")
    if a.cpu_cap == 0:
        a.cpu_cap = None
    if a.cpu_cap is not None:
        try:
            quota_us(a.cpu_cap, round(a.cpu_period * 1000))
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
    if not a.servers:
        print("no server left to measure", file=sys.stderr)
        return 2

    st = Settings(
        servers=a.servers, scenarios=a.scenarios, workers=a.workers, rate=a.rate,
        duration=a.duration, ladder=sorted(a.ladder), step_seconds=a.step_seconds,
        warmup_calls=a.warmup, rounds=a.rounds,
        keep=a.keep, cpu_cap=a.cpu_cap, cpu_period_us=round(a.cpu_period * 1000),
        per_call_sockets=a.per_call_sockets,
    )  # fmt: skip
    if a.smoke:
        st.rate, st.duration, st.ladder, st.step_seconds, st.warmup_calls = (
            20.0,
            1.0,
            [20.0],
            1.0,
            0,
        )
    return st, a.json


def main_calls(argv: list[str], scaling: bool = False) -> int:
    """``calls`` (the benchmark) or, with ``scaling``, the worker-scaling run."""
    parsed = _settings(_parser(scaling), argv)
    if isinstance(parsed, int):
        return parsed
    st, json_path = parsed
    st.count_handoffs = scaling
    started = time.monotonic()
    print(f"# siprouter benchmark {datetime.datetime.now().isoformat(timespec='seconds')}: "
          f"python -m bench {'scaling ' if scaling else ''}{' '.join(argv)}")  # fmt: skip
    results = (run_scaling if scaling else run_suite)(st, lambda line: print(line, flush=True))
    print()
    cap = (f"; each server process capped at {st.cpu_cap:g} of a core (CFS period "
           f"{st.cpu_period_us / 1000:g} ms)" if st.cpu_cap else "")  # fmt: skip
    sockets = "; SIPp caller: one socket per call" if st.per_call_sockets else ""
    took = time.monotonic() - started
    workers = f"1 and {st.workers}" if scaling else str(st.workers)
    print(f"workers = children = {workers}; fixed-rate run {st.duration:g} s; ladder steps "
          f"{st.step_seconds:g} s{cap}{sockets}; {took:.0f} s in all\n")  # fmt: skip
    print(scaling_table(results, st) if scaling else table(results, st.servers, st.rate))
    problems = [r for r in results if r.errors]
    for r in problems:
        print(f"\n## {r.scenario} / {r.server} / {r.workers}w: problems\n{r.errors}")
    if json_path:
        with open(json_path, "w") as f:
            f.write(to_json(results, st, by_workers if scaling else lambda r: r.server))
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
    if args and args[0] == "scaling":
        return main_calls(args[1:], scaling=True)
    if args and args[0] == "calls":
        args = args[1:]
    return main_calls(args)


if __name__ == "__main__":
    sys.exit(main())
