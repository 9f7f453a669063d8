"""SIP utility checks (Kamailio ``siputils``): ``KSR.siputils``.

More ``siputils`` functions may be declared by other files with ``declare("siputils", ...)``;
declarations of one table add up.
"""

from __future__ import annotations

from typing import Any

from .exports import INT, Export, declare

__all__: list[str] = []


def _has_totag(msg: Any) -> int:
    return 1 if msg.msg.to_tag is not None else -1


def _is_request(msg: Any) -> int:
    return 1 if msg.is_request else -1


def _is_reply(msg: Any) -> int:
    return -1 if msg.is_request else 1


def _is_first_hop(msg: Any) -> int:
    # Kamailio: a request with a single Via came straight from its UAC; a reply with two Vias
    # (ours and the UAC's) is at the UAC's first hop
    try:
        n = len(msg.msg.vias)
    except ValueError:
        return -1
    return 1 if n == (1 if msg.is_request else 2) else -1


declare("siputils", (
    Export("has_totag", _has_totag, (), INT, "1 if the To header has a tag, else -1."),
    Export("is_request", _is_request, (), INT, "1 for a request, -1 for a reply."),
    Export("is_reply", _is_reply, (), INT, "1 for a reply, -1 for a request."),
    Export("is_first_hop", _is_first_hop, (), INT,
           "1 if the message comes straight from its UAC (one Via on a request)."),
), doc="SIP utility checks (Kamailio siputils).")
