"""Optional compiled hot path.

A plain install (``pip install -e .``) is pure Python. With ``SIPROUTER_MYPYC=1`` in the
environment the hot-path modules below are compiled with mypyc into extension modules next to
their sources; the build needs mypy and a C compiler in the build environment, so run it as
``SIPROUTER_MYPYC=1 pip install --no-build-isolation -e .`` from a venv that has mypy,
setuptools and wheel. The metadata stays in pyproject.toml.
"""

from __future__ import annotations

import os

from setuptools import setup

# Modules compiled when asked (the hot path of a proxied call); each one is mypy --strict clean
# and the test suite passes against the compiled build. scripts/common.sh hashes these files.
HOT_PATH = [
    "src/siprouter/sip/types.py",
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
]

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

setup(ext_modules=ext_modules)
