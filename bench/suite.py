"""The SIPp benchmark: scenarios x servers, CPU per call at a fixed rate, and a rate ladder.

For each scenario the servers run one after the other (alternating order between rounds),
each freshly started: warm-up, then (a) a fixed-rate run whose server CPU time (utime + stime
of every process of the server's process group, from /proc) divided by the successful calls
gives CPU per call, then (b) a bounded rate ladder: the highest step with under 0.1% of its
calls failed or missing is the server's maximum passing rate.

:func:`run_scaling` runs the same blocks with 1 and with N workers per server (usually with
each server process capped at a share of a core and SIPp's caller on one socket per call) and
:func:`scaling_table` sets the highest passing rates side by side.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.cgroups import PERIOD_US
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
# For servers capped at a share of a core (``scaling``): 100 to 4,000/s, steps 13-17% apart.
SCALING_LADDER = (
    100.0, 120.0, 140.0, 160.0, 180.0, 210.0, 240.0, 280.0, 320.0, 370.0, 430.0, 500.0, 580.0,
    670.0, 770.0, 890.0, 1000.0, 1150.0, 1350.0, 1550.0, 1800.0, 2050.0, 2350.0, 2700.0,
    3100.0, 3550.0, 4000.0,
)  # fmt: skip


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
    cpu_period_us: int = PERIOD_US  # the CFS period of those cgroups
    # SIPp's caller with one socket per call (many source ports) instead of one socket
    per_call_sockets: bool = False
    # the ladder starts at the first step >= this rate (None: the fixed rate)
    ladder_start: float | None = None
    # siprouter logs its workers' hand-off counters (at info), read into Result.handoffs
    count_handoffs: bool = False


@dataclass
class Step:
    rate: float
    calls: int
    successful: int
    failed: int
    passed: bool
    cpu_us: float | None = None  # server CPU per successful call at this step
    cpu_shares: list[float] = field(default_factory=list)  # as Result.cpu_shares


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
    # each process's share of the server's CPU time in the fixed-rate run, largest first
    cpu_shares: list[float] = field(default_factory=list)
    calls_sent: int = 0  # calls of the whole block: warm-up, fixed-rate run and ladder
    handoffs: dict[str, dict[str, int]] = field(default_factory=dict)  # per worker, at stop
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


def _cpu_used(before: dict[int, int], after: dict[int, int]) -> tuple[int, list[float]]:
    """Clock ticks the server's processes used between two :meth:`Server.cpu_by_process`
    readings, and each process's share of them, largest first."""
    used = sorted((t - before.get(pid, 0) for pid, t in after.items()), reverse=True)
    total = sum(used)
    return total, [round(t / total, 3) for t in used] if total > 0 else []


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


def climb(
    steps: list[float], start: float, step: Callable[[float], bool], alive: Callable[[], bool]
) -> float:
    """The highest passing rate of a ladder: run ``step`` at the first step >= ``start`` (the
    last step if none is), then climb while steps pass, else descend until one passes. At most
    one run per step; stops early when ``alive()`` says the server died. 0.0: none passed."""
    steps = sorted(steps)
    first = next((i for i, r in enumerate(steps) if r >= start), len(steps) - 1)
    best = 0.0
    if step(steps[first]):
        best = steps[first]
        for rate in steps[first + 1 :]:
            if not alive() or not step(rate):
                break
            best = rate
    else:
        for rate in reversed(steps[:first]):
            if not alive():
                break
            if step(rate):
                best = rate
                break
    return best


@dataclass
class Workspace:
    """The work directory of a run and the injection files its blocks share."""

    workdir: Path
    users: list[tuple[str, str]]
    inf: Path  # distinct users for the measured runs
    warm_inf: Path  # other users for the warm-up


@contextmanager
def workspace(st: Settings, say: Callable[[str], None]) -> Iterator[Workspace]:
    """A temporary work directory with the users the runs of ``st`` need; removed afterwards
    unless ``st.keep``."""
    workdir = Path(tempfile.mkdtemp(prefix="siprouter-bench-"))
    try:
        need = max([int(st.rate * st.duration)] + [int(r * st.step_seconds) for r in st.ladder])
        inf = workdir / "users.csv"
        users = _write_users(inf, "u", need)
        warm_inf = workdir / "warm.csv"
        _write_users(warm_inf, "w", max(1, st.warmup_calls))
        say(f"workdir {workdir}; {len(users)} users")
        yield Workspace(workdir, users, inf, warm_inf)
    finally:
        if st.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_block(
    kind: str, sc: Scenario, st: Settings, ws: Workspace, round_no: int,
    say: Callable[[str], None],
) -> Result:  # fmt: skip
    """Start one server, measure one scenario on it, stop it."""
    res = Result(kind, sc.name, round_no, st.workers)
    if kind in sc.pending:
        res.note = sc.pending[kind]
        return res
    users, inf, warm_inf = ws.users, ws.inf, ws.warm_inf
    server = make_server(
        kind, ws.workdir / f"{sc.name}-{kind}-w{st.workers}-r{round_no}", st.workers, sc.mode,
        persist=sc.persist, cpu_cap=st.cpu_cap, count_handoffs=st.count_handoffs,
        cpu_period_us=st.cpu_period_us,
    )  # fmt: skip
    tag = f"{kind:16s} {sc.name:14s} {st.workers}w"
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
            res.calls_sent += calls
            return run_client(
                sc.client, server.port, base / tag, rate=rate, calls=calls, keys=keys,
                inf=users_file if sc.users else None, per_call_sockets=st.per_call_sockets,
            )  # fmt: skip

        if st.warmup_calls > 0:
            client("warmup", min(st.rate, 500.0), st.warmup_calls, warm_inf)
        server.wait_idle()
        calls = max(1, int(st.rate * st.duration))
        m0 = server.cpu_by_process()
        run = client("cpu", st.rate, calls, inf)
        m1 = server.cpu_by_process()
        ticks, res.cpu_shares = _cpu_used(m0, m1)
        res.rate, res.calls = st.rate, calls
        res.successful, res.failed = run.successful, run.failed
        res.cpu_seconds = ticks / CLK_TCK
        res.processes = len(m1)
        if run.successful > 0:
            res.cpu_us = res.cpu_seconds * 1e6 / run.successful
        if not run.passed:
            res.errors = _describe_failure(run, server)
        say(
            f"  {tag} cpu run: {run.successful}/{calls} ok at {st.rate:g}/s, "
            f"cpu {res.cpu_seconds:.2f}s -> "
            + (f"{res.cpu_us:.0f} us/{sc.unit}" if res.cpu_us is not None else "n/a")
        )
        res.max_rate = 0.0

        def step(rate: float) -> bool:
            server.wait_idle()  # the previous run's stragglers must not count here
            n = max(1, int(rate * st.step_seconds))
            t0 = server.cpu_by_process()
            r = client(f"step-{rate:g}", rate, n, inf)
            ticks, shares = _cpu_used(t0, server.cpu_by_process())
            cpu = ticks * 1e6 / CLK_TCK / r.successful if r.successful else None
            res.ladder.append(Step(rate, n, r.successful, r.failed, r.passed, cpu, shares[:4]))
            say(f"  {tag} step {rate:g}/s: {r.successful}/{n} ok"
                + (f", {cpu:.0f} us/{sc.unit}" if cpu is not None else "")
                + (f" (busiest process {shares[0]:.0%})" if len(shares) > 1 else "")
                + ("" if r.passed else "  (fails)"))  # fmt: skip
            if not r.passed and not res.errors and rate <= st.rate:
                res.errors = _describe_failure(r, server)
            return r.passed

        start = st.rate if st.ladder_start is None else st.ladder_start
        res.max_rate = climb(st.ladder, start, step, server.alive)
    except (RuntimeError, OSError, TimeoutError) as exc:
        res.errors = f"{type(exc).__name__}: {exc}"
        say(f"  {tag} ERROR {exc}")
    finally:
        if uas is not None:
            uas.stop()
        exit_status = server.stop()
        if exit_status not in (0, None) and kind == "siprouter":
            res.note = (res.note + "; " if res.note else "") + f"exit {exit_status} on SIGTERM"
        res.handoffs = server.handoffs()
    return res


def run_suite(st: Settings, say: Callable[[str], None] = print) -> list[Result]:
    results: list[Result] = []
    with workspace(st, say) as ws:
        say(f"workers/children {st.workers}")
        for rnd in range(st.rounds):
            for si, name in enumerate(st.scenarios):
                sc = SCENARIOS[name]
                order = list(st.servers)
                if (rnd + si) % 2 == 1:
                    order.reverse()  # alternate which server goes first
                for kind in order:
                    results.append(run_block(kind, sc, st, ws, rnd, say))
    return results


def run_scaling(st: Settings, say: Callable[[str], None] = print) -> list[Result]:
    """Each scenario with 1 worker, then with ``st.workers``, on every server (the servers'
    order alternating between scenarios, worker counts and rounds), each block as in
    :func:`run_suite`. The ladder of the second count starts at what the same server carried
    with one worker in that scenario and round (or at the fixed rate, if higher): both climb
    the same steps, the second skips those the first already passed."""
    results: list[Result] = []
    counts = [1] if st.workers == 1 else [1, st.workers]
    with workspace(st, say) as ws:
        say(f"workers/children {' and '.join(map(str, counts))}")
        for rnd in range(st.rounds):
            for si, name in enumerate(st.scenarios):
                sc = SCENARIOS[name]
                carried: dict[str, float] = {}
                for ci, workers in enumerate(counts):
                    order = list(st.servers)
                    if (rnd + si + ci) % 2 == 1:
                        order.reverse()
                    for kind in order:
                        start = max(st.rate, carried.get(kind, 0.0))
                        block = replace(st, workers=workers, ladder_start=start)
                        res = run_block(kind, sc, block, ws, rnd, say)
                        carried[kind] = res.max_rate or 0.0
                        results.append(res)
    return results


# ---------------------------------------------------------------------------------------------
# summary


def _handoffs_per_call(r: Result) -> float | None:
    """Datagrams the workers handed to each other in the block, per call sent."""
    if not r.handoffs or not r.calls_sent:
        return None
    out = sum(c.get("responses_out", 0) + c.get("requests_out", 0) for c in r.handoffs.values())
    return out / r.calls_sent


def summarize(
    results: list[Result], key: Callable[[Result], str] = lambda r: r.server
) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> server (or ``key`` of a result) -> figures (medians over rounds):

    - ``cpu_us``: CPU per call of the fixed-rate run; ``cpu_overloaded``: that run had more
      than 0.1% failed calls (its CPU then includes retransmissions and aborted calls);
    - ``max_rate``: the highest passing ladder step; ``cpu_us_at_max``: CPU per call there;
    - ``busiest_share``: the busiest process's share of the server's CPU in the fixed-rate run;
    - ``handoffs_per_call``: datagrams handed between workers per call (siprouter, N > 1);
    - ``note``: why a server was not measured, or what differed.
    """
    acc: dict[str, dict[str, dict[str, list[float]]]] = {}
    notes: dict[tuple[str, str], str] = {}
    for r in results:
        d = acc.setdefault(r.scenario, {}).setdefault(
            key(r), {"cpu": [], "bad": [], "max": [], "atmax": [], "busiest": [], "handoffs": []}
        )
        if r.cpu_us is not None:
            d["cpu"].append(r.cpu_us)
            d["bad"].append(0.0 if r.successful >= r.calls * 0.999 else 1.0)
        if r.max_rate is not None:
            d["max"].append(r.max_rate)
            at = [s.cpu_us for s in r.ladder if s.rate == r.max_rate and s.cpu_us is not None]
            d["atmax"] += at
        if r.cpu_shares:
            d["busiest"].append(r.cpu_shares[0])
        if (h := _handoffs_per_call(r)) is not None:
            d["handoffs"].append(h)
        if r.note:
            notes[(r.scenario, key(r))] = r.note

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
                "busiest_share": med(d["busiest"]),
                "handoffs_per_call": med(d["handoffs"]),
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


def by_workers(r: Result) -> str:
    """The summary key of a result in a scaling run: "server/workers"."""
    return f"{r.server}/{r.workers}"


def scaling_table(results: list[Result], st: Settings) -> str:
    """Markdown: per scenario and server, the highest passing rate with 1 and with
    ``st.workers`` workers and their ratio, CPU per call at the fixed rate and at the highest
    passing rate, and for N workers the busiest process's share of the CPU and the datagrams
    handed between workers per call."""
    summary = summarize(results, by_workers)
    n, top = st.workers, max(st.ladder)
    head = [
        "scenario", "server", "max/s 1w", f"max/s {n}w", f"{n}w/1w",
        f"µs/call at {st.rate:g}/s 1w", f"{n}w", "µs/call at max 1w", f"{n}w",
        f"busiest process {n}w", f"hand-offs/call {n}w",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for scenario, per in summary.items():
        for server in st.servers:
            one, many = per.get(f"{server}/1", {}), per.get(f"{server}/{n}", {})
            if not one and not many:
                continue

            def rate(d: dict[str, Any]) -> str:
                m = d.get("max_rate")
                return "-" if m is None else f"{m:g}" + ("+" if m >= top else "")

            def cpu(d: dict[str, Any], k: str) -> str:
                star = "*" if k == "cpu_us" and d.get("cpu_overloaded") else ""
                return _fmt(d.get(k)) + star

            m1, mn = one.get("max_rate"), many.get("max_rate")
            ratio = "-"
            if m1 and mn is not None and m1 < top:  # 1 worker at the top: no ratio
                ratio = (">=" if mn >= top else "") + f"{mn / m1:.2f}x"
            share = many.get("busiest_share")
            row = [
                scenario, server, rate(one), rate(many), ratio,
                cpu(one, "cpu_us"), cpu(many, "cpu_us"),
                cpu(one, "cpu_us_at_max"), cpu(many, "cpu_us_at_max"),
                "-" if share is None else f"{share:.0%}",
                _fmt(many.get("handoffs_per_call"), ".2f"),
            ]  # fmt: skip
            lines.append("| " + " | ".join(row) + " |")
            notes += [f"{scenario} / {server}: {d['note']}" for d in (one, many) if d.get("note")]
    lines += [
        "",
        f"max/s: highest ladder step with < 0.1% failed calls; + = the ladder's top step "
        f"({top:g}/s) passed, so the capacity is higher. * = more than 0.1% of the calls at "
        f"{st.rate:g}/s failed. busiest process: its share of all the server's processes' CPU "
        f"in the fixed-rate run.",
    ]
    lines += [f"- {x}" for x in notes]
    return "\n".join(lines)


def to_json(
    results: list[Result], st: Settings, key: Callable[[Result], str] = lambda r: r.server
) -> str:
    return json.dumps(
        {
            "settings": asdict(st),
            "summary": summarize(results, key),
            "results": [asdict(r) for r in results],
        },
        indent=2,
    )
