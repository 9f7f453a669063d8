"""The SIPp benchmark: scenarios x servers, CPU per call at a fixed rate, and a rate ladder.

For each scenario the servers run one after the other (alternating order between rounds),
each freshly started: warm-up, then (a) a fixed-rate run whose server CPU time (utime + stime
of every process of the server's process group, from /proc) divided by the successful calls
gives CPU per call, then (b) a bounded rate ladder: the highest step with under 0.1% of its
calls failed or missing is the server's maximum passing rate.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    CLK_TCK,
    LOOPBACK,
    Server,
    SippRun,
    SippUas,
    free_port,
    make_server,
    register_contact,
    run_client,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str  # server mode: 'default' | 'relay' | 'auth'
    client: str  # SIPp client scenario file
    unit: str  # what one SIPp "call" is
    call: bool = False  # needs a SIPp UAS
    location: bool = False  # the callee registers at the proxy first
    users: bool = False  # injection file of distinct users
    persist: bool = True  # bindings written through to SQLite (False: memory only, both)
    pending: dict[str, str] = field(default_factory=dict)  # server kind -> why not measured


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("register", "default", "register.xml", "REGISTER", users=True),
        Scenario("register-mem", "default", "register.xml", "REGISTER", users=True, persist=False),
        Scenario("register-auth", "auth", "register_auth.xml", "REGISTER", users=True),
        Scenario("call-direct", "relay", "uac_call.xml", "call", call=True),
        Scenario("call-location", "default", "uac_call.xml", "call", call=True, location=True),
    )
}  # fmt: skip


DEFAULT_LADDER = (100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 6000.0)


@dataclass
class Settings:
    servers: list[str]
    scenarios: list[str]
    workers: int = 1
    rate: float = 1000.0  # fixed rate of the CPU measurement
    duration: float = 10.0  # seconds of the CPU measurement
    ladder: list[float] = field(default_factory=lambda: list(DEFAULT_LADDER))
    step_seconds: float = 3.0
    warmup_calls: int = 500
    rounds: int = 1
    keep: bool = False
    # each server process capped at this share of one core (bench/cgroups.py); None: no cap
    cpu_cap: float | None = None
    # SIPp's caller with one socket per call (many source ports) instead of one socket
    per_call_sockets: bool = False


@dataclass
class Step:
    rate: float
    calls: int
    successful: int
    failed: int
    passed: bool
    cpu_us: float | None = None  # server CPU per successful call at this step


@dataclass
class Result:
    server: str
    scenario: str
    round: int
    workers: int
    rate: float = 0.0
    calls: int = 0
    successful: int = 0
    failed: int = 0
    cpu_seconds: float = 0.0
    cpu_us: float | None = None  # server CPU per successful call
    processes: int = 0
    ladder: list[Step] = field(default_factory=list)
    max_rate: float | None = None  # highest passing ladder step (0 = none passed)
    note: str = ""
    errors: str = ""  # SIPp error lines / server log tail when something failed


def _write_users(path: Path, prefix: str, count: int) -> list[tuple[str, str]]:
    users = [(f"{prefix}{i:07d}", f"pw{i:07d}") for i in range(count)]
    with path.open("w") as f:
        f.write("SEQUENTIAL\n")
        for u, p in users:
            # field0: user name; field1: SIPp's digest credentials for that user
            f.write(f"{u};[authentication username={u} password={p}]\n")
    return users


def _describe_failure(run: SippRun, server: Server) -> str:
    parts = [
        f"sipp exit {run.returncode}: {run.successful}/{run.calls} ok, {run.failed} failed",
    ]
    if run.errors:
        parts.append("sipp errors:\n" + run.errors.strip())
    tail = server.log_tail(15)
    if tail:
        parts.append(f"{server.kind} log tail:\n{tail}")
    if not server.alive():
        parts.append(f"{server.kind} is no longer running")
    return "\n".join(parts)


def run_block(
    kind: str, sc: Scenario, st: Settings, workdir: Path, round_no: int,
    users: list[tuple[str, str]], inf: Path, warm_inf: Path, say: Callable[[str], None],
) -> Result:  # fmt: skip
    """Start one server, measure one scenario on it, stop it."""
    res = Result(kind, sc.name, round_no, st.workers)
    if kind in sc.pending:
        res.note = sc.pending[kind]
        return res
    server = make_server(
        kind, workdir / f"{sc.name}-{kind}-r{round_no}", st.workers, sc.mode,
        persist=sc.persist, cpu_cap=st.cpu_cap,
    )  # fmt: skip
    uas: SippUas | None = None
    base = server.workdir
    try:
        server.start(users)
        res.note = server.note
        keys: dict[str, str] = {}
        if sc.call:
            uas_port = free_port()
            if sc.location:
                status = register_contact(server.port, "bob", uas_port)
                if status != 200:
                    raise RuntimeError(f"REGISTER of the callee answered {status}")
                keys["ruri"] = f"sip:bob@{LOOPBACK}:{server.port}"
            else:
                keys["ruri"] = f"sip:callee@{LOOPBACK}:{uas_port}"
            uas = SippUas(base / "uas", uas_port)
            uas.start()

        def client(tag: str, rate: float, calls: int, users_file: Path | None) -> SippRun:
            return run_client(
                sc.client, server.port, base / tag, rate=rate, calls=calls, keys=keys,
                inf=users_file if sc.users else None, per_call_sockets=st.per_call_sockets,
            )  # fmt: skip

        if st.warmup_calls > 0:
            client("warmup", min(st.rate, 500.0), st.warmup_calls, warm_inf)
        server.wait_idle()
        calls = max(1, int(st.rate * st.duration))
        c0, _ = server.cpu()
        run = client("cpu", st.rate, calls, inf)
        c1, nproc = server.cpu()
        res.rate, res.calls = st.rate, calls
        res.successful, res.failed = run.successful, run.failed
        res.cpu_seconds = (c1 - c0) / CLK_TCK
        res.processes = nproc
        if run.successful > 0:
            res.cpu_us = res.cpu_seconds * 1e6 / run.successful
        if not run.passed:
            res.errors = _describe_failure(run, server)
        say(
            f"  {kind:16s} {sc.name:14s} cpu run: {run.successful}/{calls} ok at {st.rate:g}/s, "
            f"cpu {res.cpu_seconds:.2f}s -> "
            + (f"{res.cpu_us:.0f} us/{sc.unit}" if res.cpu_us is not None else "n/a")
        )
        res.max_rate = 0.0

        def step(rate: float) -> bool:
            server.wait_idle()  # the previous run's stragglers must not count here
            n = max(1, int(rate * st.step_seconds))
            t0, _ = server.cpu()
            r = client(f"step-{rate:g}", rate, n, inf)
            t1, _ = server.cpu()
            cpu = (t1 - t0) * 1e6 / CLK_TCK / r.successful if r.successful else None
            res.ladder.append(Step(rate, n, r.successful, r.failed, r.passed, cpu))
            say(f"  {kind:16s} {sc.name:14s} step {rate:g}/s: {r.successful}/{n} ok"
                + (f", {cpu:.0f} us/{sc.unit}" if cpu is not None else "")
                + ("" if r.passed else "  (fails)"))  # fmt: skip
            if not r.passed and not res.errors and rate <= st.rate:
                res.errors = _describe_failure(r, server)
            return r.passed

        # Start at the first step >= the fixed rate; climb while steps pass, else descend
        # until one passes. Bounded by the number of steps.
        steps = sorted(st.ladder)
        first = next((i for i, r in enumerate(steps) if r >= st.rate), len(steps) - 1)
        if step(steps[first]):
            res.max_rate = steps[first]
            for rate in steps[first + 1 :]:
                if not server.alive() or not step(rate):
                    break
                res.max_rate = rate
        else:
            for rate in reversed(steps[:first]):
                if not server.alive():
                    break
                if step(rate):
                    res.max_rate = rate
                    break
    except (RuntimeError, OSError, TimeoutError) as exc:
        res.errors = f"{type(exc).__name__}: {exc}"
        say(f"  {kind:16s} {sc.name:14s} ERROR {exc}")
    finally:
        if uas is not None:
            uas.stop()
        exit_status = server.stop()
        if exit_status not in (0, None) and kind == "siprouter":
            res.note = (res.note + "; " if res.note else "") + f"exit {exit_status} on SIGTERM"
    return res


def run_suite(st: Settings, say: Callable[[str], None] = print) -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="siprouter-bench-"))
    results: list[Result] = []
    try:
        need = max([int(st.rate * st.duration)] + [int(r * st.step_seconds) for r in st.ladder])
        inf = workdir / "users.csv"
        users = _write_users(inf, "u", need)
        warm_inf = workdir / "warm.csv"
        _write_users(warm_inf, "w", max(1, st.warmup_calls))
        say(f"workdir {workdir}; {len(users)} users; workers/children {st.workers}")
        for rnd in range(st.rounds):
            for si, name in enumerate(st.scenarios):
                sc = SCENARIOS[name]
                order = list(st.servers)
                if (rnd + si) % 2 == 1:
                    order.reverse()  # alternate which server goes first
                for kind in order:
                    results.append(run_block(kind, sc, st, workdir, rnd, users, inf, warm_inf, say))
    finally:
        if st.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


# ---------------------------------------------------------------------------------------------
# summary


def summarize(results: list[Result]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> server -> figures (medians over rounds):

    - ``cpu_us``: CPU per call of the fixed-rate run; ``cpu_overloaded``: that run had more
      than 0.1% failed calls (its CPU then includes retransmissions and aborted calls);
    - ``max_rate``: the highest passing ladder step; ``cpu_us_at_max``: CPU per call there;
    - ``note``: why a server was not measured, or what differed.
    """
    acc: dict[str, dict[str, dict[str, list[float]]]] = {}
    notes: dict[tuple[str, str], str] = {}
    for r in results:
        d = acc.setdefault(r.scenario, {}).setdefault(
            r.server, {"cpu": [], "bad": [], "max": [], "atmax": []}
        )
        if r.cpu_us is not None:
            d["cpu"].append(r.cpu_us)
            d["bad"].append(0.0 if r.successful >= r.calls * 0.999 else 1.0)
        if r.max_rate is not None:
            d["max"].append(r.max_rate)
            at = [s.cpu_us for s in r.ladder if s.rate == r.max_rate and s.cpu_us is not None]
            d["atmax"] += at
        if r.note:
            notes[(r.scenario, r.server)] = r.note

    def med(v: list[float]) -> float | None:
        return statistics.median(v) if v else None

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario, per in acc.items():
        for server, d in per.items():
            out.setdefault(scenario, {})[server] = {
                "cpu_us": med(d["cpu"]),
                "cpu_overloaded": bool(d["bad"]) and max(d["bad"]) > 0,
                "max_rate": med(d["max"]),
                "cpu_us_at_max": med(d["atmax"]),
                "note": notes.get((scenario, server), ""),
            }
    return out


def _fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def table(results: list[Result], servers: list[str], rate: float) -> str:
    """Markdown: CPU per call at the fixed rate with the ratios siprouter/Kamailio, then the
    highest passing rate and the CPU per call at that rate."""
    summary = summarize(results)
    kams = [s for s in servers if s != "siprouter"]
    mine_in = "siprouter" in servers

    def cell(d: dict[str, Any], key: str) -> str:
        if d.get(key) is None:
            return "pending" if "pending" in d.get("note", "") else "-"
        star = "*" if key == "cpu_us" and d.get("cpu_overloaded") else ""
        return _fmt(d[key]) + star

    head = ["scenario"] + [f"{s} µs" for s in servers]
    if mine_in:
        head += [f"siprouter/{k.removeprefix('kamailio-')}" for k in kams]
    lines = [
        f"CPU per call or REGISTER (µs, all server processes) at {rate:g}/s:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for scenario, per in summary.items():
        row = [scenario] + [cell(per.get(s, {}), "cpu_us") for s in servers]
        if mine_in:
            mine = per.get("siprouter", {}).get("cpu_us")
            for k in kams:
                theirs = per.get(k, {}).get("cpu_us")
                row.append(f"{mine / theirs:.2f}x" if mine and theirs else "-")
        lines.append("| " + " | ".join(row) + " |")
    head2 = ["scenario"] + [f"{s} max/s" for s in servers] + [f"{s} µs at max" for s in servers]
    lines += [
        "",
        "Highest rate step passing with < 0.1% failed calls, and CPU per call at that step:",
        "",
        "| " + " | ".join(head2) + " |",
        "|" + "---|" * len(head2),
    ]
    notes: list[str] = []
    for scenario, per in summary.items():
        row = [scenario] + [cell(per.get(s, {}), "max_rate") for s in servers]
        row += [cell(per.get(s, {}), "cpu_us_at_max") for s in servers]
        lines.append("| " + " | ".join(row) + " |")
        for s in servers:
            d = per.get(s, {})
            if d.get("note"):
                notes.append(f"{scenario} / {s}: {d['note']}")
            if d.get("cpu_overloaded"):
                notes.append(
                    f"{scenario} / {s}: * more than 0.1% of the calls at {rate:g}/s failed "
                    "(overloaded): that CPU figure includes retransmissions and aborted calls"
                )
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def to_json(results: list[Result], st: Settings) -> str:
    return json.dumps(
        {
            "settings": asdict(st),
            "summary": summarize(results),
            "results": [asdict(r) for r in results],
        },
        indent=2,
    )
