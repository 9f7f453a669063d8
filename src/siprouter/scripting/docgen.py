"""Generate docs/scripting.md's KSR reference from the modules' export declarations.

``python -m siprouter.scripting.docgen > docs/scripting.md``; a test checks the file is current.
"""

from __future__ import annotations

import sys

from ..modules.exports import load_declarations

__all__ = ["render"]

GUIDE = """# Routing scripts

A routing script is Lua (`.lua`, embedded Lua 5.4) or Python (`.py`), chosen by extension:
`siprouter run --script FILE`.

- **KEMI scripts** (ported from Kamailio) define `ksr_request_route` and may define
  `ksr_reply_route`, `ksr_onsend_route` and the callbacks named in `KSR.tm.t_on_branch`,
  `t_on_reply`, `t_on_failure`, `t_on_branch_failure`. Python scripts may use the app_python3
  style (`mod_init()` returns an object with those methods, `child_init(self, rank)`) or the
  app_python3s style (global functions). Exit a route with `KSR.x.exit()` (Lua) or by returning
  -255 up the call chain (Python); `KSR.x.drop()` drops and exits; `KSR.drop()` /
  `KSR.set_drop()` only mark.
- **Pythonic scripts** define `request_route(req)` (and optionally `reply_route(rep)`); `req` is
  a `siprouter.scripting.api.Request`: `req.relay()`, `req.reply(404)`, `req.lookup()`,
  `req.save()`, `req.record_route()`, `req.loose_route()`, `req.on_failure(fn)` ... with
  booleans and enums instead of Kamailio's integer codes.

`KSR.<module>` exists only for the modules `[server] modules` loads (nil / None otherwise, so
`if not KSR.auth then` works). Callback names and `KSR.<module>.<function>` names are checked
when the script loads (`siprouter check --script FILE` runs the same checks). Event callbacks
are named in module settings as in Kamailio: `[modules.htable] event_callback = "ksr_htable_event"`
calls `ksr_htable_event(evname)` (a method in app_python3 style; `fn(req, evname)` in the
Pythonic API) with `"htable:mod-init"` at start; `[modules.tm] event_callback` is checked but
`tm:local-request` is not raised yet. A named function the script lacks is a load error.
`KSR.kx.ifdef(NAME)` answers from `[server] defines` and `--define`.
The script is reloaded on SIGHUP or `siprouter reload` (in-flight transactions finish with the
old one; a script that fails to load is not used).

Return types: `int` (>0 true, <0 false, 0 stop), `bool`, `xval` (string, integer or
nil/None).

# KSR reference
"""


def render() -> str:
    out = [GUIDE]
    decl = load_declarations()
    for name in sorted(decl, key=lambda n: (n != "", n)):
        me = decl[name]
        title = "KSR" if name == "" else f"KSR.{name}"
        loaded = "always present" if me.core else f"module `{me.module_name}`"
        out.append(f"\n## {title}\n\n{me.doc} ({loaded})\n\n| function | returns | doc |\n"
                   "|---|---|---|\n")
        for e in sorted(me.exports, key=lambda e: e.name):
            args = ", ".join(e.params)
            doc = e.doc.replace("|", "\\|")
            out.append(f"| `{title}.{e.name}({args})` | {e.returns} | {doc} |\n")
    out.append("\n## KSR.x\n\nAlways present.\n\n| function | returns | doc |\n|---|---|---|\n"
               "| `KSR.x.exit()` | none | End the route function. |\n"
               "| `KSR.x.drop()` | none | Mark the message dropped and end the route. |\n")
    return "".join(out)


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render())
