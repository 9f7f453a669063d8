"""Max-Forwards (Kamailio ``maxfwd``, RFC 3261 §16.6 step 3): ``KSR.maxfwd``."""

from __future__ import annotations

from typing import Any

from .exports import INT, Export, declare

__all__: list[str] = []


def _process_maxfwd(msg: Any, limit: int) -> int:
    if not msg.is_request:
        return -1
    rc: int = msg.process_maxfwd(int(limit))
    return rc


def _is_maxfwd_lt(msg: Any, limit: int) -> int:
    v = msg.msg.get("max-forwards")
    if v is None:
        return -1
    if not v.isdigit():
        return -2
    return 1 if int(v) < int(limit) else -1


declare("maxfwd", (
    Export("process_maxfwd", _process_maxfwd, (INT,), INT,
           "Decrement Max-Forwards (add it with the limit when absent): 2 added, 1 decremented, "
           "-1 it was 0 (reply 483), -2 malformed."),
    Export("is_maxfwd_lt", _is_maxfwd_lt, (INT,), INT,
           "1 if Max-Forwards is below the limit, -1 if not or absent, -2 malformed."),
), doc="Max-Forwards handling (Kamailio maxfwd).")
