"""`siprouter run` refuses to start, with one clear line and a non-zero exit, when its script or
configuration cannot be used; nothing is bound and no traceback is shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "siprouter", "run", "--listen", "udp:127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "source,expected",
    [
        ("def request_route(req):\n    return 1 +\n", ":2: invalid syntax"),
        ("x = 1\n", "defines no request_route"),
        ("raise RuntimeError('no db')\n", "RuntimeError: no db"),
    ],
)
def test_bad_script_stops_start(tmp_path: Path, source: str, expected: str) -> None:
    script = tmp_path / "route.py"
    script.write_text(source)
    p = run("--script", str(script), "--db", f"sqlite:///{tmp_path}/x.sqlite")
    assert p.returncode == 1
    assert expected in p.stderr
    assert "Traceback" not in p.stderr
    assert str(script) in p.stderr


def test_bad_config_value_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('[registrar]\nmin_expires = "soon"\n')
    p = run("--config", str(cfg))
    assert p.returncode == 1
    assert "[registrar] min_expires" in p.stderr and "Traceback" not in p.stderr


def test_unknown_config_key(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text("[timers]\nt9 = 1\n")
    p = run("--config", str(cfg))
    assert p.returncode == 1
    assert "t9" in p.stderr and "Traceback" not in p.stderr
