"""Named in-memory hash tables (Kamailio ``htable``): ``KSR.htable`` and ``$sht(table=>key)``.

Tables are declared in the configuration, either in Kamailio's modparam syntax or as TOML
tables (both may be used)::

    [modules.htable]
    htable = ["ipban=>size=8;autoexpire=300;"]      # Kamailio's "htable" modparam strings
    db_url = "sqlite:///siprouter.sqlite"           # default: [database] url

    [modules.htable.tables.counters]                # the same attributes as TOML keys
    size = 8; autoexpire = 0; initval = 0; dbtable = "counters"; dbmode = 1

Attributes (Kamailio's): ``size`` (2^size buckets in Kamailio; kept for compatibility and range
checked, a Python dict needs no buckets), ``autoexpire`` (seconds without update after which an
item is gone; 0 = never), ``initval`` (the integer a missing key reads as, and the base that
``sht_inc`` / ``sht_dec`` start from), ``updateexpire`` (1: an update restarts the expiry),
``dbtable`` (load the table from that database table at start) and ``dbmode`` (1: write the
table back at stop).

Time is wall-clock seconds passed in by the caller (``now``); an expired item is invisible at
once and removed by :meth:`Htables.sweep` (the runtime calls it about once a second) or when
it is next touched. Everything is synchronous and in process memory.

KSR return codes follow Kamailio's KEMI functions: ``sht_sets`` / ``sht_seti`` / ``sht_rm`` /
``sht_rm_name_re`` / ``sht_reset`` 1 on success, -1 for an unknown table (or a bad regexp);
``sht_inc`` / ``sht_dec`` the new value, -255 when there is no integer to change (unknown
table, string item, or a missing key in a table without ``initval``); ``sht_match_name`` 1 if
a key matches, -1 if none does; ``sht_get`` the value, the table's ``initval`` for a missing
key, else None; ``sht_gete`` "" instead of None.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .modparam import ModparamError, load_modparams

__all__ = [
    "HTable",
    "HtableParams",
    "Htables",
    "TableSpec",
    "htables_for",
    "parse_table_definition",
    "sht_pv",
]

log = logging.getLogger("siprouter.htable")

#: Kamailio's KSR_HT_KEMI_NOINTVAL: sht_inc / sht_dec found no integer to change
NOINTVAL = -255


@dataclass(slots=True)
class TableSpec:
    """One table's attributes (Kamailio's names and defaults)."""

    name: str
    size: int = 4  # Kamailio clamps to 2..31 (2^size buckets)
    autoexpire: int = 0  # seconds; 0 = items never expire
    initval: int | None = None  # value of a missing key; None = $null
    updateexpire: bool = True  # an update restarts the expiry time (Kamailio default 1)
    dbtable: str = ""  # load from this database table at start
    dbmode: int = 0  # 1 = write the table back at stop


@dataclass(slots=True)
class HtableParams:
    """``[modules.htable]`` (Kamailio modparam names)."""

    htable: list[str] = field(default_factory=list)  # "name=>size=8;autoexpire=300;"
    tables: dict[str, Any] = field(default_factory=dict)  # name -> TOML table of attributes
    db_url: str = ""  # default: the [database] url
    timer_interval: int = 20  # Kamailio: seconds between expiry sweeps (siprouter sweeps each s)
    # the script function called with "htable:mod-init" at start (Kamailio's event_callback;
    # scripting.events checks the name at load and raises the event)
    event_callback: str = ""
    # Kamailio (default 0): 0 after module init, 1 in the first worker; here both mean once per
    # worker at start, before its first message (each worker holds its own tables)
    event_callback_mode: int = 0


_ATTRS: dict[str, type] = {
    "size": int, "autoexpire": int, "initval": int, "updateexpire": int, "dbtable": str,
    "dbmode": int,
}
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _spec_from(name: str, attrs: Mapping[str, Any], where: str) -> TableSpec:
    if not _NAME.fullmatch(name):
        raise ModparamError(f"{where}: bad table name {name!r}")
    spec = TableSpec(name)
    for key, value in attrs.items():
        kind = _ATTRS.get(key)
        if kind is None:
            if key in ("dmqreplicate", "reloadat", "cols", "coldelim", "colnull"):
                raise ModparamError(f"{where}: attribute {key!r} is not supported")
            raise ModparamError(
                f"{where}: unknown attribute {key!r} (known: {', '.join(_ATTRS)})")
        if kind is int:
            if isinstance(value, str):
                try:
                    value = int(value.strip())
                except ValueError:
                    raise ModparamError(
                        f"{where}: {key}: expected an integer, got {value!r}") from None
            if not isinstance(value, int) or isinstance(value, bool):
                raise ModparamError(f"{where}: {key}: expected an integer, got {value!r}")
        elif not isinstance(value, str):
            raise ModparamError(f"{where}: {key}: expected a string, got {value!r}")
        if key == "size":
            if not 2 <= value <= 31:
                raise ModparamError(f"{where}: size: must be between 2 and 31, got {value}")
            spec.size = value
        elif key == "autoexpire":
            if value < 0:
                raise ModparamError(f"{where}: autoexpire: must be at least 0, got {value}")
            spec.autoexpire = value
        elif key == "initval":
            spec.initval = value
        elif key == "updateexpire":
            spec.updateexpire = bool(value)
        elif key == "dbmode":
            if value not in (0, 1):
                raise ModparamError(f"{where}: dbmode: must be 0 or 1, got {value}")
            spec.dbmode = value
        else:
            if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", value):
                raise ModparamError(f"{where}: dbtable: bad table name {value!r}")
            spec.dbtable = value
    return spec


def parse_table_definition(text: str) -> TableSpec:
    """Kamailio's ``"name=>size=8;autoexpire=300;"`` (ModparamError when malformed)."""
    where = f"[modules.htable] htable {text!r}"
    name, sep, rest = text.partition("=>")
    if not sep:
        raise ModparamError(f"{where}: expected NAME=>attr=value;...")
    attrs: dict[str, Any] = {}
    for part in rest.split(";"):
        part = part.strip()
        if not part:
            continue
        k, eq, v = part.partition("=")
        if not eq:
            raise ModparamError(f"{where}: expected attr=value, got {part!r}")
        attrs[k.strip()] = v.strip()
    return _spec_from(name.strip(), attrs, where)


class HTable:
    """One named table: key -> [value, expires] (expires 0 = never).

    With ``bus`` set (worker processes, :meth:`Htables.replicate`) every write is published on
    the ``htable`` topic as the operation and its arguments, ``now`` included, so every worker
    replays it to the same result; every read first drains the bus (``bus.sync()``). The
    private ``_``-methods change memory only and never drain (they run inside a drain)."""

    __slots__ = ("bus", "items", "spec")

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.items: dict[str, list[Any]] = {}
        self.bus: Any = None  # runtime.ipc.Peers of the node's workers, None in one process

    def _live(self, key: str, now: float) -> list[Any] | None:
        if self.bus is not None:
            self.bus.sync()
        return self._item(key, now)

    def _item(self, key: str, now: float) -> list[Any] | None:
        it = self.items.get(key)
        if it is None:
            return None
        if it[1] and it[1] <= now:
            del self.items[key]
            return None
        return it

    def _expiry(self, now: float) -> float:
        ae = self.spec.autoexpire
        return now + ae if ae else 0.0

    def _publish(self, *op: Any) -> None:
        self.bus.publish("htable", (self.spec.name, *op))

    def get(self, key: str, now: float) -> str | int | None:
        it = self._live(key, now)
        if it is None:
            return self.spec.initval
        v: str | int = it[0]
        return v

    def has(self, key: str, now: float) -> bool:
        """Whether ``key`` holds an unexpired item."""
        return self._live(key, now) is not None

    def set(self, key: str, value: str | int, now: float, expires: float | None = None) -> None:
        if self.bus is not None:
            self.bus.sync()
            self._set(key, value, now, expires)
            self._publish("s", key, value, now, expires)
        else:
            self._set(key, value, now, expires)

    def _set(self, key: str, value: str | int, now: float, expires: float | None) -> None:
        it = self._item(key, now)
        if expires is not None:
            exp = now + expires if expires > 0 else 0.0
        elif it is not None and not self.spec.updateexpire:
            exp = it[1]
        else:
            exp = self._expiry(now)
        self.items[key] = [value, exp]

    def set_expires(self, key: str, expires: float, now: float) -> bool:
        """Expire an existing item ``expires`` seconds from ``now`` (0: never); False if none."""
        if self.bus is not None:
            self.bus.sync()
            if not self._set_expires(key, expires, now):
                return False
            self._publish("x", key, expires, now)
            return True
        return self._set_expires(key, expires, now)

    def _set_expires(self, key: str, expires: float, now: float) -> bool:
        it = self._item(key, now)
        if it is None:
            return False
        it[1] = now + expires if expires > 0 else 0.0
        return True

    def add(self, key: str, delta: int, now: float) -> int | None:
        """Add ``delta`` to an integer item (a missing one starts at initval); None if none."""
        if self.bus is not None:
            self.bus.sync()
            v = self._add(key, delta, now)
            if v is not None:  # deltas commute: concurrent increments on two workers add up
                self._publish("a", key, delta, now)
            return v
        return self._add(key, delta, now)

    def _add(self, key: str, delta: int, now: float) -> int | None:
        it = self._item(key, now)
        if it is None:
            if self.spec.initval is None:
                return None
            value = self.spec.initval + delta
            self.items[key] = [value, self._expiry(now)]
            return value
        if not isinstance(it[0], int):
            return None
        it[0] += delta
        if self.spec.updateexpire:
            it[1] = self._expiry(now)
        n: int = it[0]
        return n

    def remove(self, key: str) -> bool:
        if self.bus is not None:
            self.bus.sync()
            self._publish("d", key)
        return self.items.pop(key, None) is not None

    def remove_matching(self, pattern: re.Pattern[str]) -> int:
        if self.bus is not None:
            self.bus.sync()
            self._publish("r", pattern.pattern, pattern.flags)
        return self._remove_matching(pattern)

    def _remove_matching(self, pattern: re.Pattern[str]) -> int:
        gone = [k for k in self.items if pattern.search(k)]
        for k in gone:
            del self.items[k]
        return len(gone)

    def match_name(self, op: str, value: str, now: float) -> bool:
        """Kamailio sht_match_name: op eq / ne / re / sw against the live keys."""
        if op == "eq":
            return self._live(value, now) is not None
        pred: Callable[[str], object]
        if op == "ne":
            pred = value.__ne__
        elif op == "sw":
            pred = operator.methodcaller("startswith", value)
        elif op == "re":
            pred = re.compile(value).search
        else:
            raise ValueError(f"unknown match operator {op!r} (eq, ne, re, sw)")
        if self.bus is not None:
            self.bus.sync()
        return any(pred(k) and (not it[1] or it[1] > now) for k, it in self.items.items())

    def reset(self) -> None:
        if self.bus is not None:
            self.bus.sync()
            self._publish("z")
        self.items.clear()

    def sweep(self, now: float) -> int:
        """Drop expired items (every worker sweeps its own copy: expiry times are equal)."""
        if self.bus is not None:
            self.bus.sync()
        gone = [k for k, it in self.items.items() if it[1] and it[1] <= now]
        for k in gone:
            del self.items[k]
        return len(gone)

    def dump(self, now: float) -> Iterator[tuple[str, str | int, float]]:
        if self.bus is not None:
            self.bus.sync()
        for k, (v, exp) in list(self.items.items()):
            if not exp or exp > now:
                yield k, v, exp

    def apply_replicated(self, op: str, args: Sequence[Any]) -> None:
        """Replay a write another worker published (memory only, no publish, no drain).
        ``ValueError`` for an unknown operation or malformed arguments."""
        try:
            if op == "s":
                key, value, now, expires = args
                self._set(key, value, now, expires)
            elif op == "a":
                key, delta, now = args
                self._add(key, delta, now)
            elif op == "x":
                key, expires, now = args
                self._set_expires(key, expires, now)
            elif op == "d":
                self.items.pop(args[0], None)
            elif op == "r":
                self._remove_matching(re.compile(args[0], args[1]))
            elif op == "z":
                self.items.clear()
            elif op == "m":  # a snapshot for a restarted worker: (key, value, expires) rows
                for key, value, exp in args[0]:
                    self.items[key] = [value, exp]
            else:
                raise ValueError(f"unknown htable operation {op!r}")
        except (TypeError, IndexError, re.error) as e:
            raise ValueError(f"bad htable operation {op!r}: {e}") from None

    def __len__(self) -> int:
        if self.bus is not None:
            self.bus.sync()
        return len(self.items)


class Htables:
    """All tables of one server (the module instance), with optional persistence."""

    def __init__(self, specs: list[TableSpec] | None = None, store: Any = None) -> None:
        self.tables: dict[str, HTable] = {}
        self.store = store
        self.peers: Any = None  # runtime.ipc.Peers once replicated
        #: this instance writes ``dbmode=1`` tables back at stop (one worker of a node does)
        self.saves_store = True
        for spec in specs or []:
            if spec.name in self.tables:
                raise ModparamError(f"[modules.htable] table {spec.name!r} declared twice")
            self.tables[spec.name] = HTable(spec)

    @classmethod
    def from_settings(cls, table: Mapping[str, Any] | None, default_db_url: str = "",
                      store: Any = None) -> Htables:
        """Build from ``[modules.htable]``; opens the store when a table has a dbtable."""
        params = load_modparams(HtableParams, "htable", table)
        specs = [parse_table_definition(t) for t in params.htable]
        for name, attrs in params.tables.items():
            if not isinstance(attrs, dict):
                raise ModparamError(f"[modules.htable.tables.{name}]: expected a table")
            specs.append(_spec_from(str(name), attrs, f"[modules.htable.tables.{name}]"))
        if store is None and any(s.dbtable for s in specs):
            from ..storage.htable_store import open_htable_store

            url = params.db_url or default_db_url
            try:
                store = open_htable_store(url)
            except ValueError as e:
                raise ModparamError(f"[modules.htable] db_url: {e}") from None
        return cls(specs, store)

    # -- persistence --------------------------------------------------------------------------
    def load(self, now: float) -> int:
        """Load every table that has a ``dbtable`` (at start); returns the item count."""
        n = 0
        if self.store is None:
            return 0
        for t in self.tables.values():
            if not t.spec.dbtable:
                continue
            for key, value, exp in self.store.load(t.spec.dbtable, now):
                t.items[key] = [value, exp]
                n += 1
        return n

    def save(self, now: float) -> int:
        """Write back the tables with ``dbmode=1`` (at stop); returns the item count."""
        n = 0
        if self.store is None or not self.saves_store:
            return 0
        for t in self.tables.values():
            if t.spec.dbtable and t.spec.dbmode == 1:
                items = list(t.dump(now))
                self.store.replace(t.spec.dbtable, items)
                n += len(items)
        return n

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def sweep(self, now: float) -> int:
        return sum(t.sweep(now) for t in self.tables.values())

    # -- worker processes ---------------------------------------------------------------------
    def replicate(self, peers: Any, *, saves_store: bool = False) -> None:
        """Keep every table equal on all workers of the node through ``peers``
        (:class:`~siprouter.runtime.ipc.Peers`): from now on changes of the other workers are
        applied, and a restarted worker gets a snapshot from the lowest-indexed other worker;
        from :meth:`publish_writes` on, this worker's writes are published on the ``htable``
        topic and its reads drain the bus first. Only the instance given ``saves_store``
        writes tables back at stop."""
        self.peers = peers
        self.saves_store = saves_store
        peers.subscribe("htable", self._on_remote_change)
        peers.on_peer_start(self._send_snapshot)

    def publish_writes(self) -> None:
        """Start publishing writes (after the ``htable:mod-init`` event: every worker runs it,
        so what it writes stays local, and a restarted worker's initial values never
        overwrite the node's live ones -- the snapshot it receives does the reverse)."""
        if self.peers is not None:
            for t in self.tables.values():
                t.bus = self.peers

    def _on_remote_change(self, payload: Any) -> None:
        if not isinstance(payload, tuple) or len(payload) < 2:
            log.error("htable: malformed replicated change dropped")
            return
        t = self.tables.get(payload[0])
        if t is None:
            log.error("htable: replicated change for unknown table %r", payload[0])
            return
        try:
            t.apply_replicated(payload[1], payload[2:])
        except ValueError as e:
            log.error("htable: replicated change dropped: %s", e)

    def _send_snapshot(self, peer: int) -> None:
        peers = self.peers
        if peers.index != (1 if peer == 0 else 0):
            return  # the lowest-indexed worker other than the restarted one answers
        peers.sync()
        for t in self.tables.values():
            rows: list[tuple[str, str | int, float]] = []
            size = 0
            for key, value, exp in t.dump(0.0):
                rows.append((key, value, exp))
                size += len(key) + (len(value) if isinstance(value, str) else 8) + 24
                if size > _SNAPSHOT_BYTES:
                    peers.publish_to(peer, "htable", (t.spec.name, "m", rows))
                    rows, size = [], 0
            if rows:
                peers.publish_to(peer, "htable", (t.spec.name, "m", rows))

    def get_table(self, name: str) -> HTable | None:
        return self.tables.get(name)


# -- the module instance of a runtime --------------------------------------------------------------
def htables_for(core: Any) -> Htables:
    """The Htables of ``core`` (``core.modules["htable"]``; an empty set when not configured)."""
    mods = getattr(core, "modules", None)
    if mods is None:
        return _EMPTY
    ht = mods.get("htable")
    if ht is None:
        return _EMPTY
    assert isinstance(ht, Htables)
    return ht


_EMPTY = Htables()
_SNAPSHOT_BYTES = 48_000  # rows per snapshot datagram, well below the bus receive size


def _now(msg: Any) -> float:
    return float(msg.core.wall_clock())


def _table(msg: Any, name: str) -> HTable | None:
    t = htables_for(msg.core).tables.get(name)
    if t is None:
        log.error("htable: no such table %r", name)
    return t


# -- KSR.htable --------------------------------------------------------------------------------
def sht_get(msg: Any, table: str, key: str) -> str | int | None:
    t = _table(msg, table)
    return None if t is None else t.get(key, _now(msg))


def sht_gete(msg: Any, table: str, key: str) -> str | int:
    v = sht_get(msg, table, key)
    return "" if v is None else v


def sht_getw(msg: Any, table: str, key: str) -> str | int:
    v = sht_get(msg, table, key)
    return "<null>" if v is None else v


def sht_sets(msg: Any, table: str, key: str, value: str) -> int:
    t = _table(msg, table)
    if t is None:
        return -1
    t.set(key, str(value), _now(msg))
    return 1


def sht_seti(msg: Any, table: str, key: str, value: int) -> int:
    t = _table(msg, table)
    if t is None:
        return -1
    t.set(key, int(value), _now(msg))
    return 1


def sht_setex(msg: Any, table: str, key: str, expires: int) -> int:
    t = _table(msg, table)
    if t is None:
        return -1
    return 1 if t.set_expires(key, expires, _now(msg)) else -1


def sht_inc(msg: Any, table: str, key: str) -> int:
    t = _table(msg, table)
    if t is None:
        return NOINTVAL
    v = t.add(key, 1, _now(msg))
    return NOINTVAL if v is None else v


def sht_dec(msg: Any, table: str, key: str) -> int:
    t = _table(msg, table)
    if t is None:
        return NOINTVAL
    v = t.add(key, -1, _now(msg))
    return NOINTVAL if v is None else v


def sht_rm(msg: Any, table: str, key: str) -> int:
    t = _table(msg, table)
    if t is None:
        return -1
    t.remove(key)
    return 1


def sht_rm_name_re(msg: Any, table: str, regexp: str) -> int:
    t = _table(msg, table)
    if t is None:
        return -1
    try:
        pattern = re.compile(regexp)
    except re.error as e:
        log.error("htable: bad regular expression %r: %s", regexp, e)
        return -1
    t.remove_matching(pattern)
    return 1


def sht_match_name(msg: Any, table: str, op: str, value: str) -> int:
    t = _table(msg, table)
    if t is None:
        return -1
    try:
        return 1 if t.match_name(op, value, _now(msg)) else -1
    except (ValueError, re.error) as e:
        log.error("htable: sht_match_name: %s", e)
        return -1


def sht_is_null(msg: Any, table: str, key: str) -> int:
    """Kamailio: 1 null, -2 not null, -1 missing but the table has an initval, 2 no table."""
    t = htables_for(msg.core).tables.get(table)
    if t is None:
        return 2
    if t.has(key, _now(msg)):
        return -2
    return -1 if t.spec.initval is not None else 1


def sht_reset(msg: Any, table: str) -> int:
    t = _table(msg, table)
    if t is None:
        return -1
    t.reset()
    return 1


# -- $sht(table=>key) --------------------------------------------------------------------------
def sht_pv(inner: str) -> tuple[Any, Any]:
    """Getter and setter of ``$sht(inner)`` for the pv module (``inner`` = "table=>key").

    Reading gives the value (or the table's initval, or None); assigning an int or a str sets
    the item, assigning None removes it (Kamailio ``$sht(t=>k) = $null``).
    """
    table, sep, key = inner.partition("=>")
    if not sep or not table.strip():
        raise ValueError(f"$sht({inner}): expected $sht(table=>key)")
    table = table.strip()

    def get(msg: Any) -> str | int | None:
        t = htables_for(msg.core).tables.get(table)
        return None if t is None else t.get(key, _now(msg))

    def set_(msg: Any, value: Any) -> None:
        t = htables_for(msg.core).tables.get(table)
        if t is None:
            raise ValueError(f"$sht: no such table {table!r}")
        if value is None:
            t.remove(key)
        elif isinstance(value, int) and not isinstance(value, bool):
            t.set(key, value, _now(msg))
        else:
            t.set(key, str(value), _now(msg))

    return get, set_


def _declare() -> None:
    from .exports import INT, STR, XVAL, Export, declare

    try:
        from .pv import register_pv_class
    except ImportError:  # pragma: no cover - pv not present: $sht is unavailable
        pass
    else:
        register_pv_class("sht", sht_pv)
    declare("htable", (
        Export("sht_get", sht_get, (STR, STR), XVAL,
               "Value of an item: str or int, the table's initval if missing, else None."),
        Export("sht_gete", sht_gete, (STR, STR), XVAL, "Like sht_get, \"\" instead of None."),
        Export("sht_getw", sht_getw, (STR, STR), XVAL,
               "Like sht_get, \"<null>\" instead of None."),
        Export("sht_sets", sht_sets, (STR, STR, STR), INT, "Set a string item: 1, -1 no table."),
        Export("sht_seti", sht_seti, (STR, STR, INT), INT,
               "Set an integer item: 1, -1 no table."),
        Export("sht_setex", sht_setex, (STR, STR, INT), INT,
               "Set the expiry (seconds from now) of an item: 1, -1 no item."),
        Export("sht_inc", sht_inc, (STR, STR), INT,
               "Add 1 to an integer item; the new value, -255 when there is none to change."),
        Export("sht_dec", sht_dec, (STR, STR), INT,
               "Subtract 1 from an integer item; the new value, -255 when there is none."),
        Export("sht_rm", sht_rm, (STR, STR), INT, "Remove an item: 1, -1 no table."),
        Export("sht_rm_name_re", sht_rm_name_re, (STR, STR), INT,
               "Remove the items whose key matches a regular expression: 1, -1 error."),
        Export("sht_match_name", sht_match_name, (STR, STR, STR), INT,
               "1 if a key matches (op eq, ne, re, sw), else -1."),
        Export("sht_is_null", sht_is_null, (STR, STR), INT,
               "1 the item is null, -2 it is set, -1 missing but initval, 2 no table."),
        Export("sht_reset", sht_reset, (STR,), INT, "Remove every item of a table: 1, -1."),
    ), doc="Named in-memory hash tables (Kamailio htable); $sht(table=>key).")


_declare()
