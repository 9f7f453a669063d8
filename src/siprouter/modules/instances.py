"""Module instances of a running server: built from ``[modules.<name>]``, ticked, stopped.

The runtime keeps them in ``Core.modules`` (name -> instance); script exports find them there
(``htables_for(core)``, ``pike_for(core)`` ...). Lifecycle, called by ``runtime.server``:

- :func:`build_instances` at start (ModparamError names a bad setting; with the worker
  ``peers`` the htables and pike counts are replicated across the node), then :func:`start`
  (loads persisted htables), then :func:`started` once the start events ran;
- :func:`tick` about once a second (expired htable items, forgotten pike IPs, NAT pings due);
- :func:`stop` at shutdown (htables with ``dbmode=1`` written back, stores closed).
"""

from __future__ import annotations

import logging
from typing import Any

from .auth_db import build_auth
from .htable import Htables
from .nathelper import Nathelper, natping_tick
from .permissions import build_permissions
from .pike import Pike
from .sanity import Sanity

__all__ = ["build_instances", "start", "started", "stop", "tick"]

log = logging.getLogger("siprouter.modules")


def build_instances(settings: Any, peers: Any = None) -> dict[str, Any]:
    """``peers``: this worker's :class:`~siprouter.runtime.ipc.Peers` (None in one process)."""
    mods: dict[str, Any] = getattr(settings, "modules", None) or {}
    db_url = str(getattr(getattr(settings, "database", None), "url", "") or "")
    ht = Htables.from_settings(mods.get("htable"), db_url)
    pk = Pike.from_settings(mods.get("pike"))
    if peers is not None:
        ht.replicate(peers, saves_store=peers.index == 0)
        pk.replicate(peers)
    return {
        **build_auth(mods, db_url),  # "auth", "auth_db"
        "permissions": build_permissions(mods, db_url),
        "htable": ht,
        "pike": pk,
        "sanity": Sanity.from_settings(mods.get("sanity")),
        "nathelper": Nathelper.from_settings(mods.get("nathelper")),
    }


def start(instances: dict[str, Any], wall_now: float) -> None:
    ht = instances.get("htable")
    if isinstance(ht, Htables):
        n = ht.load(wall_now)
        if n:
            log.info("htable: %d items loaded", n)


def started(instances: dict[str, Any]) -> None:
    """After the start events (``htable:mod-init``): replicated htables publish their writes."""
    ht = instances.get("htable")
    if isinstance(ht, Htables):
        ht.publish_writes()


def tick(core: Any, now: float, wall_now: float) -> None:
    """Periodic work: ``now`` monotonic (pike, pings), ``wall_now`` Unix time (htable)."""
    mods = core.modules
    ht = mods.get("htable")
    if isinstance(ht, Htables):
        ht.sweep(wall_now)
    pk = mods.get("pike")
    if isinstance(pk, Pike):
        pk.sweep(now)
    if isinstance(mods.get("nathelper"), Nathelper):
        natping_tick(core, now)


def stop(instances: dict[str, Any], wall_now: float) -> None:
    ht = instances.get("htable")
    if isinstance(ht, Htables):
        try:
            n = ht.save(wall_now)
            if n:
                log.info("htable: %d items written back", n)
        except Exception:
            log.exception("htable: writing the tables back failed")
        finally:
            ht.close()
