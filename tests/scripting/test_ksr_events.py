"""Event callbacks named in module settings, and ``siprouter check`` running the load checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprouter.cli import main
from siprouter.modules.htable import Htables
from siprouter.scripting.events import check_event_callbacks, raise_event
from siprouter.scripting.loader import ScriptError, load_script
from siprouter.testing.harness import Harness

MODULES = ["tm", "sl", "pv", "htable"]
LUA = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "ok " .. KSR.pv.getvs("$sht(t=>init)", "none"))
end
function ksr_htable_event(evname)
  KSR.pv.sets("$sht(t=>init)", evname)
  KSR.x.exit()
end
"""
PY = """
import KSR
def mod_init():
    return Obj()
class Obj:
    def ksr_request_route(self, msg):
        KSR.sl.sl_send_reply(200, "ok " + KSR.pv.getvs("$sht(t=>init)", "none"))
        return -255
    def ksr_htable_event(self, evname):
        KSR.pv.sets("$sht(t=>init)", evname)
        return 1
"""
SETTINGS = {"htable": {"htable": ["t=>size=4;"], "event_callback": "ksr_htable_event"}}


@pytest.mark.parametrize(("name", "text"), [("s.lua", LUA), ("s.py", PY)], ids=["lua", "py"])
def test_htable_mod_init_event_runs_the_named_function(tmp_path: Path, name: str,
                                                       text: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    script = load_script(str(p), modules=MODULES)
    assert check_event_callbacks(script, SETTINGS) == {"htable": "ksr_htable_event"}
    h = Harness(script)
    h.core.modules = {"htable": Htables.from_settings(SETTINGS["htable"])}
    assert raise_event(h.core, "htable", "htable:mod-init", SETTINGS)
    assert not raise_event(h.core, "tm", "tm:local-request", SETTINGS)  # none configured
    h.receive("OPTIONS sip:x@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\n"
              "From: <sip:a@127.0.0.1>;tag=1\nTo: <sip:x@127.0.0.1>\nCall-ID: e1\n"
              "CSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n")
    [(_, reply)] = h.take()
    assert reply.reason == "ok htable:mod-init"


def test_missing_or_bad_event_callback_is_a_load_error(tmp_path: Path) -> None:
    p = tmp_path / "s.lua"
    p.write_text(LUA)
    script = load_script(str(p), modules=MODULES)
    with pytest.raises(ScriptError, match=r"\[modules.tm\] event_callback names 'ksr_tm_event'"):
        check_event_callbacks(script, {"tm": {"event_callback": "ksr_tm_event"}})
    with pytest.raises(ScriptError, match="expected a function name"):
        check_event_callbacks(script, {"htable": {"event_callback": 3}})
    assert check_event_callbacks(script, {"htable": {"event_callback": ""}}) == {}


def test_check_runs_the_load_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "cb.lua": ('function ksr_request_route()\n  KSR.tm.t_on_failure("nope")\nend\n',
                   "callback 'nope' given to t_on_failure"),
        "fn.lua": ("function ksr_request_route()\n  KSR.tm.t_relay_later()\nend\n",
                   "fn.lua:2: KSR.tm.t_relay_later"),
        "fn.py": ("import KSR\ndef ksr_request_route(msg):\n    KSR.is_INVIET()\n",
                  "fn.py:3: KSR.is_INVIET"),
        "cb.py": ("import KSR\ndef ksr_request_route(msg):\n    KSR.tm.t_on_branch('bm')\n",
                  "callback 'bm'"),
    }
    for name, (text, message) in cases.items():
        p = tmp_path / name
        p.write_text(text)
        assert main(["check", "--script", str(p)]) == 1, name
        err = capsys.readouterr().err
        assert message in err, (name, err)
        assert "Traceback" not in err
    good = tmp_path / "good.lua"
    good.write_text(LUA)
    assert main(["check", "--script", str(good)]) == 0
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nmodules = ["tm", "sl", "pv", "htable"]\n'
                   '[modules.htable]\nhtable = ["t=>size=4;"]\nevent_callback = "ksr_ht_evnet"\n')
    assert main(["check", "--config", str(cfg), "--script", str(good)]) == 1
    assert "'ksr_ht_evnet', which is not a function of the script" in capsys.readouterr().err
