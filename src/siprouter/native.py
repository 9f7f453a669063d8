"""The optional C helpers built with the compiled hot path (``sip._scan``, ``transport._udpio``).

A pure Python install has none of them; each user keeps a Python path for that case.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["native"]


def native(module: str, name: str) -> Any:
    """``module.name`` when the C module ``module`` is built, else None.

    Assign the result to a ``Final`` module name: in a compiled module that is a C static, where
    a plain module name would be a dict lookup at every use."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(mod, name)
