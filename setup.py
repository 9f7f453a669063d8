"""Optional compiled hot path and Lua binding.

A plain install (``pip install -e .``) is pure Python. With ``SIPROUTER_MYPYC=1`` in the
environment the hot-path modules below are compiled with mypyc into extension modules next to
their sources, and the C header scanner ``siprouter.sip._scan`` and the UDP system calls
``siprouter.transport._udpio`` are built with them; the build
needs mypy and a C compiler in the build environment, so run it as
``SIPROUTER_MYPYC=1 pip install --no-build-isolation -e .`` from a venv that has mypy,
setuptools and wheel. With ``SIPROUTER_LUART=1`` the Lua binding
``siprouter.scripting._luart`` (C, docs/lua.md) is built too; it needs Lua 5.4's headers and
library (Debian: liblua5.4-dev). scripts/common.sh sets both when it can. The metadata stays
in pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from setuptools import Extension, setup

# Modules compiled when asked (the hot path of a proxied call); each one is mypy --strict clean
# and the test suite passes against the compiled build. scripts/common.sh hashes these files.
HOT_PATH = [
    "src/siprouter/sip/types.py",
    "src/siprouter/sip/charset.py",
    "src/siprouter/sip/framing.py",
    "src/siprouter/sip/uri.py",
    "src/siprouter/sip/headers.py",
    "src/siprouter/sip/message.py",
    "src/siprouter/sip/validate.py",
    "src/siprouter/sip/build.py",
    "src/siprouter/transaction/base.py",
    "src/siprouter/transaction/timers.py",
    "src/siprouter/transaction/client.py",
    "src/siprouter/transaction/server.py",
    "src/siprouter/transaction/layer.py",
    "src/siprouter/proxy/routing.py",
    "src/siprouter/proxy/core.py",
    "src/siprouter/runtime/core.py",
    "src/siprouter/transport/manager.py",
    "src/siprouter/scripting/api.py",
    "src/siprouter/modules/registrar.py",
    "src/siprouter/modules/aor.py",
    "src/siprouter/modules/location.py",
    "src/siprouter/storage/binding.py",
    "src/siprouter/storage/memory.py",
]

SCAN_SOURCE = "src/siprouter/sip/_scan.c"
UDPIO_SOURCE = "src/siprouter/transport/_udpio.c"

ext_modules = []
if os.environ.get("SIPROUTER_MYPYC") == "1":
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        raise SystemExit(
            "SIPROUTER_MYPYC=1 needs mypy in the build environment: "
            "pip install mypy setuptools wheel, then pip install --no-build-isolation -e ."
        ) from exc

    ext_modules = mypycify(["--config-file=pyproject.toml", *HOT_PATH], opt_level="3")
    # the header-line index in C, used by the compiled sip/message.py (and by the pure one
    # when present)
    ext_modules.append(Extension("siprouter.sip._scan", [SCAN_SOURCE],
                                 extra_compile_args=["-O2"]))
    # recvmmsg/sendto of the UDP listeners (transport/manager.py; asyncio's datagram
    # transport without it)
    ext_modules.append(Extension("siprouter.transport._udpio", [UDPIO_SOURCE],
                                 extra_compile_args=["-O2"]))

LUART_SOURCE = "src/siprouter/scripting/_luart.c"


def _lua54_flags() -> tuple[list[str], list[str], list[str]]:
    """(include dirs, library dirs, libraries) of Lua 5.4, from pkg-config when it knows it."""
    if shutil.which("pkg-config"):
        for name in ("lua5.4", "lua-5.4", "lua54"):
            try:
                cflags = subprocess.run(["pkg-config", "--cflags", name], check=True,
                                        capture_output=True, text=True).stdout.split()
                libs = subprocess.run(["pkg-config", "--libs", name], check=True,
                                      capture_output=True, text=True).stdout.split()
            except subprocess.CalledProcessError:
                continue
            return ([f[2:] for f in cflags if f.startswith("-I")],
                    [f[2:] for f in libs if f.startswith("-L")],
                    [f[2:] for f in libs if f.startswith("-l")])
    if os.path.exists("/usr/include/lua5.4/lua.h"):
        return ["/usr/include/lua5.4"], [], ["lua5.4"]
    raise SystemExit("SIPROUTER_LUART=1 needs Lua 5.4's headers and library "
                     "(Debian: apt install liblua5.4-dev pkg-config)")


if os.environ.get("SIPROUTER_LUART") == "1":
    inc, libdirs, libs = _lua54_flags()
    ext_modules.append(Extension("siprouter.scripting._luart", [LUART_SOURCE],
                                 include_dirs=inc, library_dirs=libdirs, libraries=libs,
                                 extra_compile_args=["-O2"]))

setup(ext_modules=ext_modules)
