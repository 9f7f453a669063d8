"""Stateless replies (Kamailio ``sl``): ``KSR.sl``."""

from __future__ import annotations

from typing import Any

from .exports import INT, STR, Export, declare

__all__: list[str] = []


def _reply(msg: Any, code: int, reason: str) -> int:
    if not msg.is_request or msg.msg.method == "ACK":
        return -1
    return 1 if msg.reply(int(code), str(reason) or None) else -1


def _reply_error(msg: Any) -> int:
    return _reply(msg, 500, "Server Internal Error")


declare("sl", (
    Export("sl_send_reply", _reply, (INT, STR), INT,
           "Reply statelessly (code, reason): 1, -1 on error or for ACK."),
    Export("send_reply", _reply, (INT, STR), INT,
           "Reply statefully when a transaction exists, else statelessly."),
    Export("sl_reply_error", _reply_error, (), INT, "Reply 500 for the last internal error."),
    Export("send_reply_error", _reply_error, (), INT, "Same as sl_reply_error."),
), doc="Stateless replies (Kamailio sl).")
