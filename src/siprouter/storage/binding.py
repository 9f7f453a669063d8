"""One location binding (Kamailio's ``ucontact``) and its stored row.

Compiled with the hot path: the registrar makes one per REGISTER, and the location service
and its stores handle them. The store interface is in ``storage.location_store``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["Binding", "BindingRow"]

# One stored row, in the column order of the SQL table (see storage/sqlite.py):
# aor, contact, expires, q, call_id, cseq, received, path ('\n'-joined), user_agent, socket,
# flags, cflags, instance, reg_id, last_modified
BindingRow = tuple[
    str, str, float, float, str, int, str | None, str, str, str | None, int, int,
    str | None, int, float,
]

# Field names in row order.
_FIELDS = (
    "aor", "contact", "expires", "q", "call_id", "cseq", "received", "path", "user_agent",
    "socket", "flags", "cflags", "instance", "reg_id", "last_modified",
)


class Binding:
    """One contact bound to an address-of-record (RFC 3261 §10; Kamailio's ``ucontact``).

    Treated as immutable once handed to the location service: an update creates a new object, so a
    list returned by a lookup is never changed behind the caller's back.
    """

    __slots__ = _FIELDS

    aor: str
    contact: str            # contact URI text as the UA sent it (without <> and header params)
    expires: float          # absolute expiry time, Unix seconds
    q: float                # 0.0 .. 1.0; an absent q counts as 1.0
    call_id: str
    cseq: int
    received: str | None    # source "proto:host:port" of the REGISTER (NAT), Kamailio's received
    path: list[str]         # Path header values, RFC 3327, in the order received
    user_agent: str
    socket: str | None      # the local listener "proto:host:port" the REGISTER came in on
    flags: int
    cflags: int             # branch flags restored at lookup (Kamailio's cflags)
    instance: str | None    # +sip.instance, RFC 5626 / RFC 5627
    reg_id: int             # reg-id, RFC 5626 (0 = none)
    last_modified: float

    def __init__(
        self,
        aor: str,
        contact: str,
        expires: float,
        *,
        q: float | None = 1.0,
        call_id: str = "",
        cseq: int = 0,
        received: str | None = None,
        path: list[str] | None = None,
        user_agent: str = "",
        socket: str | None = None,
        flags: int = 0,
        cflags: int = 0,
        instance: str | None = None,
        reg_id: int = 0,
        last_modified: float = 0.0,
    ) -> None:
        self.aor = aor
        self.contact = contact
        self.expires = expires
        self.q = 1.0 if q is None else q
        self.call_id = call_id
        self.cseq = cseq
        self.received = received
        self.path = [] if path is None else path
        self.user_agent = user_agent
        self.socket = socket
        self.flags = flags
        self.cflags = cflags
        self.instance = instance
        self.reg_id = reg_id
        self.last_modified = last_modified

    def to_row(self) -> BindingRow:
        """The binding as a flat tuple of storable scalars (column order of the SQL table)."""
        return (
            self.aor, self.contact, self.expires, self.q, self.call_id, self.cseq, self.received,
            "\n".join(self.path), self.user_agent, self.socket, self.flags, self.cflags,
            self.instance, self.reg_id, self.last_modified,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Binding:
        """Rebuild a binding from :meth:`to_row` output (or a database row of the same shape).

        Raises ``ValueError`` when the row does not have that shape.
        """
        if len(row) != 15:
            raise ValueError(f"location row has {len(row)} columns, expected 15")
        (aor, contact, expires, q, call_id, cseq, received, path, user_agent, socket, flags,
         cflags, instance, reg_id, last_modified) = row
        try:
            # Header values cannot hold CR or LF once unfolded, so '\n' is a safe separator.
            path_text = str(path or "")
            return cls(
                str(aor), str(contact), float(expires),
                q=float(q),
                call_id=str(call_id),
                cseq=int(cseq),
                received=None if received is None else str(received),
                path=path_text.split("\n") if path_text else [],
                user_agent=str(user_agent or ""),
                socket=None if socket is None else str(socket),
                flags=int(flags),
                cflags=int(cflags),
                instance=None if instance is None else str(instance),
                reg_id=int(reg_id),
                last_modified=float(last_modified),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad location row: {exc}") from None

    def copy(self, **changes: object) -> Binding:
        """A new binding with the same fields except ``changes`` (the path list is copied)."""
        new = Binding(
            self.aor, self.contact, self.expires, q=self.q, call_id=self.call_id,
            cseq=self.cseq, received=self.received, path=list(self.path),
            user_agent=self.user_agent, socket=self.socket, flags=self.flags,
            cflags=self.cflags, instance=self.instance, reg_id=self.reg_id,
            last_modified=self.last_modified,
        )
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    def as_dict(self) -> dict[str, object]:
        """Field name -> value, for management dumps (``ul.dump``) and logs."""
        d: dict[str, object] = {name: getattr(self, name) for name in _FIELDS}
        d["path"] = list(self.path)
        return d

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Binding):
            return NotImplemented
        return self.to_row() == other.to_row()

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value object: not hashable

    def __repr__(self) -> str:
        return (
            f"Binding(aor={self.aor!r}, contact={self.contact!r}, expires={self.expires!r}, "
            f"q={self.q!r}, call_id={self.call_id!r}, cseq={self.cseq!r})"
        )
