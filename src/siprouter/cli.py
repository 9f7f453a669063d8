"""Command line: ``siprouter run | check``.

Exit codes: 0 success, 1 the configuration (or script) cannot be used or the server could not
start, 2 bad command-line usage, 130 interrupted. Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .config import LOG_LEVELS, ConfigError, Settings, load_settings

__all__ = ["TRACE", "main"]

PROG = "siprouter"

#: log level below DEBUG for full message dumps (they carry personal data)
TRACE = 5


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line instead of argparse's usage block; main() turns it into exit code 2
        raise _UsageError(f"{self.prog}: {message} (see --help)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="SIP proxy, registrar and location server.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the server", description="Run the SIP server.")
    _add_config_options(run)
    run.add_argument(
        "-l",
        "--listen",
        action="extend",
        nargs="+",
        metavar="PROTO:HOST:PORT",
        help="listen on this address (repeatable; replaces [server] listen)",
    )
    run.add_argument(
        "-w",
        "--workers",
        type=int,
        metavar="N",
        help="worker processes on the SIP ports (replaces [server] workers; 0 = one per core)",
    )
    run.add_argument("--db", metavar="URL", help="database URL (e.g. sqlite:///siprouter.sqlite)")
    run.add_argument(
        "-d",
        "--domain",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="local SIP domain served (repeatable; replaces [server] domains)",
    )
    run.add_argument(
        "--log-level", metavar="LEVEL", type=str.lower, choices=LOG_LEVELS, help="log level"
    )
    run.add_argument(
        "-A",
        "--define",
        action="extend",
        nargs="+",
        metavar="NAME[=VALUE]",
        help="define a name for the script (repeatable)",
    )
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser(
        "check",
        help="check the configuration and script",
        description="Load the configuration and the routing script and report errors.",
    )
    _add_config_options(check)
    check.set_defaults(func=_cmd_check)

    reload = sub.add_parser(
        "reload",
        help="reload the routing script of a running server",
        description="Send SIGHUP to a running server: it reloads its routing script and keeps "
        "the old one if the new one does not load (the reason is in its log).",
    )
    _add_config_options(reload)
    reload.add_argument("--pid", type=int, metavar="PID", help="process id of the server")
    reload.set_defaults(func=_cmd_reload)

    from .cli_data import add_data_commands  # siprouter subscriber ... / address ...

    add_data_commands(sub, _add_config_options)
    return parser


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("-s", "--script", metavar="FILE", help="routing script (.py or .lua)")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "server": {
            "listen": getattr(args, "listen", None),
            "script": args.script,
            "domains": getattr(args, "domain", None),
            "log_level": getattr(args, "log_level", None),
            "workers": getattr(args, "workers", None),
            "defines": getattr(args, "define", None),
        },
        "database": {"url": getattr(args, "db", None)},
    }


def _fail(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _load(args: argparse.Namespace) -> Settings | None:
    try:
        return load_settings(args.config, _overrides(args))
    except ConfigError as exc:
        _fail(str(exc))
        return None


def _setup_logging(level_name: str) -> None:
    logging.addLevelName(TRACE, "TRACE")
    level = TRACE if level_name == "trace" else logging.getLevelName(level_name.upper())
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger().setLevel(level)


def _check_script(path: str) -> str | None:
    """An error message if the routing script cannot be used, else None."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".py", ".lua"):
        return f"script {path}: expected a .py or .lua file"
    try:
        source = p.read_bytes()
    except OSError as exc:
        return f"script {path}: cannot read: {exc.strerror or exc}"
    if suffix == ".py":
        try:
            compile(source, path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            return f"script {path}:{exc.lineno or 0}: {exc.msg}"
        except ValueError as exc:  # e.g. NUL bytes in the source
            return f"script {path}: {exc}"
    return None


def _load_script(settings: Settings) -> str | None:
    """Load the script as ``run`` does (engine, callback and KSR function names, event
    callbacks of the module settings); an error message, or None when it loads."""
    server = importlib.import_module("siprouter.runtime.server")
    loader = importlib.import_module("siprouter.scripting.loader")
    try:
        server.load_configured_script(settings)
    except loader.ScriptError as exc:
        return f"cannot load the routing script: {exc}"
    return None


def _cmd_check(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 1
    problem = _check_script(settings.server.script) or _load_script(settings)
    if problem is not None:
        _fail(problem)
        return 1
    where = args.config if args.config else "defaults"
    print(f"{PROG}: configuration OK ({where}; script {settings.server.script})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 1
    problem = _check_script(settings.server.script)
    if problem is not None:
        _fail(problem)
        return 1
    _setup_logging(settings.server.log_level)
    # the event loop and everything it needs are imported only when running
    # (importlib keeps this module type-clean while runtime/server.py is being written)
    try:
        server = importlib.import_module("siprouter.runtime.server")
    except ModuleNotFoundError as exc:
        _fail(f"cannot start: server runtime not available ({exc})")
        return 1
    try:
        code: int = server.run(settings)
        return code
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        _fail(str(exc))
        return 1
    except OSError as exc:  # e.g. a port already in use
        _fail(f"cannot start: {exc}")
        return 1


def _cmd_reload(args: argparse.Namespace) -> int:
    import os
    import signal

    pid = args.pid
    if pid is None:
        settings = _load(args)
        if settings is None:
            return 1
        pid_file = settings.server.pid_file
        if not pid_file:
            _fail("reload: give --pid or set [server] pid_file")
            return 1
        try:
            pid = int(Path(pid_file).read_text().strip())
        except (OSError, ValueError) as exc:
            _fail(f"reload: cannot read the pid file {pid_file}: {exc}")
            return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        _fail(f"reload: cannot signal process {pid}: {exc.strerror or exc}")
        return 1
    print(f"{PROG}: reload requested (process {pid})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``siprouter`` command; returns the exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    if args.command is None:
        print(f"{PROG}: a command is required: run, check or reload (see --help)",
              file=sys.stderr)
        return 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
