"""The location store interface: what a backend must do to persist registrations.

The location service (``siprouter.modules.location``) keeps every binding in process memory and
answers lookups from there; a :class:`LocationStore` only makes the bindings survive a restart and,
later, shares them between workers and nodes. The interface is deliberately small so that a new
backend (PostgreSQL, Redis, ...) needs three methods:

* :meth:`LocationStore.load_all` -- once at start: drop expired rows and return the rest;
* :meth:`LocationStore.apply` -- one atomic write per REGISTER (or per sweep): bindings to insert or
  replace and bindings to delete, identified by ``(aor, contact)``;
* :meth:`LocationStore.close`.

A binding is identified in a store by ``(aor, contact)`` -- at most one row per contact URI of an
address-of-record, as in Kamailio's usrloc table ``location``. When a binding changes its contact
(RFC 5626: same ``+sip.instance``/``reg-id``, new contact) the location service deletes the old row
and inserts the new one in the same :meth:`~LocationStore.apply` call.

Times are Unix wall-clock seconds (``time.time()``): they are written to disk and must stay
meaningful after a restart, so a monotonic clock cannot be used here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from siprouter.storage.binding import Binding, BindingRow

__all__ = ["Binding", "BindingRow", "LocationStore", "StoreError"]


class StoreError(Exception):
    """A backend could not read or write (disk full, database gone, ...).

    Backends wrap their driver's errors in this type so callers need not know the driver; the
    location service then leaves its memory unchanged and the registrar answers 500.
    """

@runtime_checkable
class LocationStore(Protocol):
    """Persistence of location bindings. Every method raises :class:`StoreError` when the backend
    fails; a failed :meth:`apply` changes nothing."""

    def load_all(self, now: float) -> list[Binding]:
        """Delete rows whose ``expires <= now`` and return every remaining binding."""
        ...

    def apply(self, upserts: Sequence[Binding], deletes: Sequence[Binding]) -> None:
        """In one transaction: delete the rows of ``deletes`` (matched on ``(aor, contact)``),
        then insert or replace ``upserts``. Returns only once the change is durable as the
        backend promises (see each backend)."""
        ...

    def close(self) -> None:
        """Release the backend's resources; the store is not used afterwards."""
        ...
