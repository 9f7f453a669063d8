"""In-memory storage backends, for tests and for deployments that accept losing state on restart.

``MemoryLocationStore`` keeps rows (plain tuples, not the caller's objects) so that it behaves like
a real backend: what comes back from :meth:`load_all` is a fresh copy, never an object the location
service still holds.
"""

from __future__ import annotations

from collections.abc import Sequence

from mypy_extensions import mypyc_attr

from siprouter.storage.binding import Binding, BindingRow

__all__ = ["MemoryLocationStore"]


@mypyc_attr(allow_interpreted_subclasses=True)  # tests make failing stores from it
class MemoryLocationStore:
    """A :class:`~siprouter.storage.location_store.LocationStore` held in a dict."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], BindingRow] = {}
        self.closed = False
        self.writes = 0  # number of apply() calls, for tests

    def load_all(self, now: float) -> list[Binding]:
        self._check_open()
        for key in [k for k, row in self._rows.items() if row[2] <= now]:
            del self._rows[key]
        return [Binding.from_row(row) for row in self._rows.values()]

    def apply(self, upserts: Sequence[Binding], deletes: Sequence[Binding]) -> None:
        self._check_open()
        # Build the rows first so a bad binding leaves the store untouched (all or nothing).
        rows = [b.to_row() for b in upserts]
        for b in deletes:
            self._rows.pop((b.aor, b.contact), None)
        for row in rows:
            self._rows[(row[0], row[1])] = row
        self.writes += 1

    def close(self) -> None:
        self.closed = True

    def __len__(self) -> int:
        return len(self._rows)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("location store is closed")
