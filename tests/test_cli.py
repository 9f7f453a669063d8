"""The command line: exit codes, one-line errors, settings handed to the runtime."""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from siprouter.cli import main
from siprouter.config import Settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Install a stand-in siprouter.runtime.server whose run() records its settings."""
    calls: list[Settings] = []
    mod = types.ModuleType("siprouter.runtime.server")

    def run(settings: Settings) -> int:
        calls.append(settings)
        return 0

    mod.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "siprouter.runtime.server", mod)
    return calls


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "a command is required" in one_line_error(capsys)


@pytest.mark.parametrize(
    "argv",
    [["frobnicate"], ["run", "--bogus"], ["run", "--log-level", "loud"], ["check", "--listen"]],
)
def test_bad_usage_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert one_line_error(capsys).startswith("siprouter")


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "run" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("siprouter ")


def test_check_defaults_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_check_bad_config_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[timers]\nt1 = "abc"\n')
    assert main(["check", "--config", str(cfg)]) == 1
    assert one_line_error(capsys) == (
        f'siprouter: {cfg}: [timers] t1: expected a number, got "abc"\n'
    )


def test_check_missing_config_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(tmp_path / "none.toml")]) == 1
    assert "no such file" in one_line_error(capsys)


def test_check_script_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def ksr_request_route(msg):\n    return (\n")
    assert main(["check", "--script", str(bad)]) == 1
    assert f"script {bad}:" in one_line_error(capsys)
    assert main(["check", "--script", str(tmp_path / "missing.py")]) == 1
    assert "cannot read" in one_line_error(capsys)
    txt = tmp_path / "route.txt"
    txt.write_text("")
    assert main(["check", "--script", str(txt)]) == 1
    assert "expected a .py or .lua file" in one_line_error(capsys)
    good = tmp_path / "good.py"
    good.write_text("def ksr_request_route(msg):\n    return 1\n")
    assert main(["check", "-s", str(good)]) == 0


def test_run_passes_overridden_settings(
    tmp_path: Path, fake_runtime: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nlisten = ["udp:0.0.0.0:5060"]\ndomains = ["a.example"]\n')
    script = tmp_path / "r.py"
    script.write_text("")
    argv = [
        "run",
        "--config",
        str(cfg),
        "--listen",
        "udp:127.0.0.1:5080",
        "tcp:[::1]:5080",
        "--listen",
        "tcp:127.0.0.1:5080",
        "--script",
        str(script),
        "--db",
        "sqlite:///t.db",
        "--domain",
        "b.example",
        "--log-level",
        "WARNING",
        "-A",
        "WITH_AUTH",
        "--define",
        "N=2",
    ]
    assert main(argv) == 0
    (s,) = fake_runtime
    assert s.server.listen == ["udp:127.0.0.1:5080", "tcp:[::1]:5080", "tcp:127.0.0.1:5080"]
    assert s.server.script == str(script)
    assert s.database.url == "sqlite:///t.db"
    assert s.server.domains == ["b.example"]
    assert s.server.log_level == "warning"
    assert s.server.defines == ["WITH_AUTH", "N=2"]


def test_run_bad_listen_exit_1(
    fake_runtime: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--listen", "udp:0.0.0.0:abc"]) == 1
    assert "[server] listen" in one_line_error(capsys)
    assert fake_runtime == []


def test_run_runtime_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = types.ModuleType("siprouter.runtime.server")

    def run(settings: Settings) -> int:
        raise OSError(98, "cannot listen on udp:0.0.0.0:5060: Address already in use")

    mod.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "siprouter.runtime.server", mod)
    assert main(["run"]) == 1
    assert "cannot start: " in one_line_error(capsys)


def test_subprocess_python_m(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[tcp]\nmax_connections = 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "siprouter", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == f"siprouter: {cfg}: [tcp] max_connections: must be at least 1, got 0\n"
    proc = subprocess.run(
        [sys.executable, "-m", "siprouter", "run", "--nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--nope" in proc.stderr
