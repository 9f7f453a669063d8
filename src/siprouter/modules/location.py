"""Location service: address-of-record -> bindings (RFC 3261 §10; Kamailio's usrloc).

Theory of operation
-------------------
* Memory is authoritative. ``Location`` keeps ``dict[aor, list[Binding]]``; every read on the hot
  path (``lookup``) is one dict access plus a filter on ``expires`` -- no database read after
  :meth:`Location.load` at start.
* Every change goes to the :class:`~siprouter.storage.location_store.LocationStore` *first*, in one
  transaction, and only then to memory. If the store fails, :class:`StoreError` propagates and
  memory is unchanged, so the registrar answers 500 and nothing was acknowledged that a restart
  could lose. A table made without a store (``--db memory://``) is held in memory only: nothing
  is written anywhere, as with Kamailio's usrloc ``db_mode=0``.
* Each AoR's list is kept sorted by q descending, then most recently modified first, so a lookup
  returns bindings in forking order without sorting.
* Bindings are replaced, never mutated, once stored: a list a caller got from :meth:`lookup` is
  never changed under it.
* Times are Unix wall-clock seconds, because they are persisted (see ``storage.location_store``).

AoR normalisation (Kamailio usrloc): an AoR key is ``user@host`` -- scheme, password, port, URI
parameters and headers dropped, ``%XX`` escapes in the user part resolved, the host lower-cased
(host names are case-insensitive, RFC 3261 §19.1.4; the user part is case-sensitive and is kept as
is). With ``use_domain=False`` (usrloc's default ``use_domain=0``) the key is the user part only,
so one user name is one AoR across all domains.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Sequence
from typing import Final

from mypy_extensions import mypyc_attr

from siprouter.modules.aor import normalize_aor
from siprouter.storage.location_store import Binding, LocationStore, StoreError

__all__ = ["Binding", "Location", "StoreError", "normalize_aor"]

log = logging.getLogger(__name__)


# expiries beyond this (year 5138) are not indexed
_FAR: Final = 1e11


def _order_key(b: Binding) -> tuple[float, float]:
    return (-b.q, -b.last_modified)


@mypyc_attr(allow_interpreted_subclasses=True)  # runtime.ipc.ReplicatedLocation
class Location:
    """The in-memory, persisted location table (one per worker process)."""

    __slots__ = ("_bucket_keys", "_buckets", "_count", "_records", "store", "use_domain")

    def __init__(self, store: LocationStore | None = None, *, use_domain: bool = False) -> None:
        # None: the table is held in memory only (``--db memory://``), nothing is persisted
        self.store: LocationStore | None = store
        self.use_domain = use_domain
        self._records: dict[str, list[Binding]] = {}
        self._count = 0
        # the expiry index: whole second of a binding's expiry -> the AoRs stored with a binding
        # expiring in that second (a refreshed or removed binding leaves its AoR behind, found
        # to have nothing due when its second comes), and those seconds as a min-heap; a sweep
        # visits what is due instead of every binding (at 1,000,000 bindings a full walk took
        # ~32 ms of CPU, once a second)
        self._buckets: dict[int, list[str]] = {}
        self._bucket_keys: list[int] = []

    # -- start -------------------------------------------------------------------------------------
    def load(self, now: float) -> int:
        """Replace memory with the store's unexpired bindings (expired rows are deleted there).
        Returns the number of bindings loaded. Raises :class:`StoreError`."""
        if self.store is None:
            return 0
        bindings = self.store.load_all(now)
        records: dict[str, list[Binding]] = {}
        for b in bindings:
            records.setdefault(b.aor, []).append(b)
        for lst in records.values():
            lst.sort(key=_order_key)
        self._records = records
        self._count = len(bindings)
        self._buckets = {}
        self._bucket_keys = []
        for b in bindings:
            self._index_expiry(b)
        return self._count

    # -- reads (hot path) --------------------------------------------------------------------------
    def normalize_aor(self, text: str) -> str:
        """:func:`normalize_aor` with this table's ``use_domain``."""
        return normalize_aor(text, self.use_domain)

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Unexpired bindings of ``aor``, q descending then most recent first.

        ``aor`` may be a key (``user@host``) or any URI text naming it; an AoR that cannot be
        normalised has no bindings."""
        lst = self._records.get(aor)
        if lst is None:
            try:
                key = normalize_aor(aor, self.use_domain)
            except ValueError:
                return []
            if key == aor:
                return []
            lst = self._records.get(key)
            if lst is None:
                return []
        if len(lst) == 1:  # the common case, without a comprehension frame
            b = lst[0]
            return [b] if b.expires > now else []
        return [b for b in lst if b.expires > now]

    def get(self, aor: str) -> list[Binding]:
        """Every stored binding of the AoR key ``aor``, expired or not (for the registrar)."""
        lst = self._records.get(aor)
        return [] if lst is None else list(lst)

    def count(self) -> int:
        """Number of bindings held (including expired ones not yet swept)."""
        return self._count

    def __len__(self) -> int:
        return self._count

    def aor_count(self) -> int:
        return len(self._records)

    def aors(self) -> list[str]:
        return list(self._records)

    def dump(self, now: float | None = None) -> dict[str, list[dict[str, object]]]:
        """AoR -> bindings as dicts (for ``ul.dump``); with ``now``, only unexpired bindings
        and an extra ``expires_in`` (seconds left) per binding."""
        out: dict[str, list[dict[str, object]]] = {}
        for aor, lst in self._records.items():
            rows: list[dict[str, object]] = []
            for b in lst:
                if now is not None and b.expires <= now:
                    continue
                d = b.as_dict()
                if now is not None:
                    d["expires_in"] = int(b.expires - now)
                rows.append(d)
            if rows:
                out[aor] = rows
        return out

    # -- writes ------------------------------------------------------------------------------------
    def change(self, upserts: Sequence[Binding], deletes: Sequence[Binding]) -> None:
        """Atomically delete ``deletes`` and insert-or-replace ``upserts`` (matched on
        ``(aor, contact)``): first in the store, in one transaction, then in memory.
        Raises :class:`StoreError` with memory unchanged."""
        if not upserts and not deletes:
            return
        if self.store is not None:
            self.store.apply(upserts, deletes)
        self._apply_memory(upserts, deletes)

    def save(self, binding: Binding) -> None:
        """Insert ``binding``, replacing a binding of the same AoR and contact."""
        self.change((binding,), ())

    def update(self, binding: Binding) -> None:
        """Replace the existing binding of the same AoR and contact (``KeyError`` if none)."""
        if self._find(binding.aor, binding.contact) is None:
            raise KeyError(f"no binding {binding.contact!r} for {binding.aor!r}")
        self.change((binding,), ())

    def remove(self, aor: str, contact: str) -> Binding | None:
        """Remove one binding; returns it, or None if there was none."""
        old = self._find(aor, contact)
        if old is not None:
            self.change((), (old,))
        return old

    def remove_all(self, aor: str) -> list[Binding]:
        """Remove every binding of ``aor``; returns them."""
        old = self.get(aor)
        if old:
            self.change((), old)
        return old

    def apply_replicated(self, upserts: Sequence[Binding], deletes: Sequence[Binding]) -> None:
        """Apply a change another worker already persisted: memory only, no store write.

        Same matching as :meth:`change` (``(aor, contact)``); idempotent, so a change applied
        twice, or one already loaded from the store, leaves the table as it was."""
        if upserts or deletes:
            self._apply_memory(upserts, deletes)

    def expired(self, now: float) -> list[Binding]:
        """The bindings whose ``expires <= now`` (not removed), from a walk over every AoR."""
        return [b for lst in self._records.values() for b in lst if b.expires <= now]

    def due(self, now: float) -> list[Binding]:
        """What :meth:`expired` gives, found through the expiry index: only the AoRs filed under
        a second up to ``now`` are looked at. The index forgets the seconds before ``now``'s,
        so call it to remove what it returns (as :meth:`sweep` does)."""
        buckets = self._buckets
        keys = self._bucket_keys
        cut = math.floor(now)
        aors: list[str] = []
        while keys and keys[0] < cut:
            aors.extend(buckets.pop(heapq.heappop(keys)))
        current = buckets.get(cut)  # kept: what falls due later in this second is found then
        if current is not None:
            aors.extend(current)
        out: list[Binding] = []
        seen: set[str] = set()
        records = self._records
        for aor in aors:
            if aor in seen:
                continue
            seen.add(aor)
            lst = records.get(aor)
            if lst is not None:
                for b in lst:
                    if b.expires <= now:
                        out.append(b)
        return out

    def sweep(self, now: float) -> list[Binding]:
        """Remove every expired binding (``expires <= now``) from memory and the store.

        Visits the AoRs the expiry index files under the seconds up to ``now`` (usrloc's timer
        walks the whole table instead). A store failure here is logged, not raised: the
        bindings are dead anyway and ``load_all`` drops them."""
        expired = self.due(now)
        if not expired:
            return expired
        try:
            if self.store is not None:
                self.store.apply((), expired)
        except StoreError as exc:
            log.warning("location sweep: could not delete %d expired bindings: %s",
                        len(expired), exc)
        self._apply_memory((), expired)
        return expired

    # -- internals ---------------------------------------------------------------------------------
    def _index_expiry(self, b: Binding) -> None:
        exp = b.expires
        if not exp < _FAR:  # no expiry to speak of (or NaN): a walk with expired() finds it
            return
        second = math.floor(exp)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = []
            heapq.heappush(self._bucket_keys, second)
        bucket.append(b.aor)

    def _find(self, aor: str, contact: str) -> Binding | None:
        lst = self._records.get(aor)
        if lst is not None:
            for b in lst:
                if b.contact == contact:
                    return b
        return None

    def _apply_memory(self, upserts: Sequence[Binding], deletes: Sequence[Binding]) -> None:
        records = self._records
        touched: set[str] = set()
        for d in deletes:
            lst = records.get(d.aor)
            if lst is None:
                continue
            for i, b in enumerate(lst):
                if b.contact == d.contact:
                    del lst[i]
                    self._count -= 1
                    touched.add(d.aor)
                    break
        for u in upserts:
            self._index_expiry(u)
            lst = records.get(u.aor)
            if lst is None:
                lst = records[u.aor] = []
            for i, b in enumerate(lst):
                if b.contact == u.contact:
                    lst[i] = u
                    break
            else:
                lst.append(u)
                self._count += 1
            touched.add(u.aor)
        for aor in touched:
            lst = records[aor]
            if lst:
                if len(lst) > 1:
                    lst.sort(key=_order_key)
            else:
                del records[aor]
