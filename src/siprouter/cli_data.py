"""``siprouter subscriber ...`` and ``siprouter address ...``: the operator's data commands.

``subscriber add USER@DOMAIN PASSWORD | passwd USER@DOMAIN PASSWORD | rm USER@DOMAIN | list``
(Kamailio's ``kamctl add / passwd / rm``) write the subscriber table of ``[modules.auth_db]
db_url`` (default ``[database] url``); ``address add GROUP IP[/MASK] [PORT] [TAG] |
rm GROUP IP[/MASK] [PORT] | list`` the address table of ``[modules.permissions]``. Both take
``--config`` and ``--db`` like ``siprouter run``. A running server sees subscriber changes at the
next request and address changes after a reload.

Exit codes: 0 done, 1 the database refused (exists, not found, unreachable) or the configuration
is unusable, 2 bad arguments (one line on stderr each time).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .storage.addresses import AddressRow, open_address_store, parse_address
from .storage.credentials import make_subscriber, open_credential_store
from .storage.location_store import StoreError

__all__ = ["add_data_commands", "parse_user_domain"]

Fail = Callable[[str], None]


class _BadInput(ValueError):
    pass


def parse_user_domain(text: str) -> tuple[str, str]:
    """``alice@example.com`` or ``sip:alice@example.com`` -> (user, domain); ValueError."""
    from .sip.uri import parse_uri

    t = text.strip()
    if not t.lower().startswith(("sip:", "sips:")):
        t = "sip:" + t
    try:
        u = parse_uri(t)
    except ValueError as exc:
        raise ValueError(f"invalid SIP URI {text!r}: {exc}") from None
    if not u.user or not u.host or u.port is not None or u.params or u.headers or u.password:
        raise ValueError(f"invalid subscriber {text!r}: expected USER@DOMAIN")
    return u.user, u.host.lower()


def add_data_commands(sub: Any, add_config_options: Callable[[argparse.ArgumentParser], None]
                      ) -> None:
    """Add the ``subscriber`` and ``address`` sub-commands to ``sub`` (argparse subparsers)."""
    s = sub.add_parser("subscriber", help="manage digest credentials (subscriber table)",
                       description="Add, change, remove and list subscribers.")
    s_sub = s.add_subparsers(dest="action", metavar="ACTION")
    for name, helptext, pw in (("add", "add a subscriber", True),
                               ("passwd", "change a subscriber's password", True),
                               ("rm", "remove a subscriber", False)):
        p = s_sub.add_parser(name, help=helptext)
        _common(p, add_config_options)
        p.add_argument("aor", metavar="USER@DOMAIN")
        if pw:
            p.add_argument("password", metavar="PASSWORD")
        p.set_defaults(func=_cmd_subscriber, data_action=name)
    p = s_sub.add_parser("list", help="list subscribers")
    _common(p, add_config_options)
    p.set_defaults(func=_cmd_subscriber, data_action="list")
    _common(s, add_config_options)
    s.set_defaults(func=_missing_action, data_what="subscriber")

    a = sub.add_parser("address", help="manage trusted addresses (address table)",
                       description="Add, remove and list trusted addresses (permissions).")
    a_sub = a.add_subparsers(dest="action", metavar="ACTION")
    p = a_sub.add_parser("add", help="add an address or subnet to a group")
    _common(p, add_config_options)
    p.add_argument("group", metavar="GROUP")
    p.add_argument("ip", metavar="IP[/MASK]")
    p.add_argument("port", metavar="PORT", nargs="?", default="0")
    p.add_argument("tag", metavar="TAG", nargs="?")
    p.set_defaults(func=_cmd_address, data_action="add")
    p = a_sub.add_parser("rm", help="remove an address or subnet from a group")
    _common(p, add_config_options)
    p.add_argument("group", metavar="GROUP")
    p.add_argument("ip", metavar="IP[/MASK]")
    p.add_argument("port", metavar="PORT", nargs="?")
    p.set_defaults(func=_cmd_address, data_action="rm")
    p = a_sub.add_parser("list", help="list the address table")
    _common(p, add_config_options)
    p.set_defaults(func=_cmd_address, data_action="list")
    _common(a, add_config_options)
    a.set_defaults(func=_missing_action, data_what="address")


def _common(p: argparse.ArgumentParser, add_config_options: Callable[[argparse.ArgumentParser],
            None]) -> None:
    if any("--db" in act.option_strings for act in p._actions):
        return
    add_config_options(p)
    p.add_argument("--db", metavar="URL", help="database URL (default: from the configuration)")


def _missing_action(args: argparse.Namespace) -> int:
    from .cli import PROG

    actions = "add, passwd, rm or list" if args.data_what == "subscriber" else "add, rm or list"
    print(f"{PROG} {args.data_what}: an action is required: {actions} (see --help)",
          file=sys.stderr)
    return 2


def _db_url(args: argparse.Namespace, module: str) -> str | None:
    from .cli import _fail, _load

    settings = _load(args)
    if settings is None:
        return None
    if args.db:
        return str(args.db)
    table = settings.modules.get(module) or {}
    url = table.get("db_url")
    if url is not None and not isinstance(url, str):
        _fail(f"[modules.{module}] db_url: expected a string")
        return None
    return url or settings.database.url


def _int(text: str, what: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise _BadInput(f"bad {what} {text!r}: a number {low}..{high}")
    return int(text)


def _cmd_subscriber(args: argparse.Namespace) -> int:
    from .cli import _fail

    act = args.data_action
    try:
        if act != "list":
            user, domain = parse_user_domain(args.aor)
            if act != "rm" and not args.password:
                raise _BadInput("the password must not be empty")
    except ValueError as exc:
        _fail(f"subscriber {act}: {exc}")
        return 2
    url = _db_url(args, "auth_db")
    if url is None:
        return 1
    try:
        store = open_credential_store(url)
    except ValueError as exc:
        _fail(f"subscriber {act}: {exc}")
        return 1
    try:
        if act == "list":
            for s in store.list():
                print(f"{s.username}@{s.domain}")
            return 0
        if act == "add":
            store.add(make_subscriber(user, domain, args.password))
        elif act == "passwd":
            if not store.update(make_subscriber(user, domain, args.password)):
                _fail(f"subscriber passwd: no subscriber {user}@{domain}")
                return 1
        elif not store.remove(user, domain):
            _fail(f"subscriber rm: no subscriber {user}@{domain}")
            return 1
    except StoreError as exc:
        _fail(f"subscriber {act}: {exc}")
        return 1
    except ValueError as exc:  # exists already
        _fail(f"subscriber {act}: {exc}")
        return 1
    finally:
        store.close()
    return 0


def _cmd_address(args: argparse.Namespace) -> int:
    from .cli import _fail

    act = args.data_action
    try:
        if act != "list":
            group = _int(args.group, "group", 0, 2**31 - 1)
            ip, mask = parse_address(args.ip)
            port = _int(args.port, "port", 0, 65535) if args.port is not None else None
    except ValueError as exc:
        _fail(f"address {act}: {exc}")
        return 2
    url = _db_url(args, "permissions")
    if url is None:
        return 1
    try:
        store = open_address_store(url)
    except ValueError as exc:
        _fail(f"address {act}: {exc}")
        return 1
    try:
        if act == "list":
            for r in store.list():
                print(f"{r.grp} {r.ip_addr}/{r.mask} {r.port} {r.tag or ''}".rstrip())
            return 0
        if act == "add":
            store.add(AddressRow(group, ip, mask, port or 0, args.tag))
            return 0
        if not any(r.grp == group for r in store.list()):
            _fail(f"address rm: unknown group {group}")
            return 1
        if store.remove(group, ip, mask, port) == 0:
            _fail(f"address rm: group {group} has no entry {ip}/{mask}"
                  + (f" port {port}" if port is not None else ""))
            return 1
    except StoreError as exc:
        _fail(f"address {act}: {exc}")
        return 1
    except ValueError as exc:  # exists already
        _fail(f"address {act}: {exc}")
        return 1
    finally:
        store.close()
    return 0
