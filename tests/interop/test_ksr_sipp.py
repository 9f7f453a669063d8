"""KSR scripts under SIPp: every function issue 4 lists, driven over the wire.

The same server runs tests/interop/scripts/ksr_flows.lua and ksr_flows.py (Kamailio's
app_python3 style); each test runs once per script. The scripts write what they compute (PV
values, check results) into reply headers or edit the requests they forward; the assertions
read the messages SIPp captured (``-trace_msg``) and the server log (KSR.info & co). All traffic
stays on 127.0.0.1; every SIPp run and wait is bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import LOOPBACK, SippResult, SippRunner, SiprouterServer, free_port

pytestmark = pytest.mark.interop

SCRIPTS = Path(__file__).parent / "scripts"
MODULES = ("tm", "tmx", "sl", "rr", "pv", "maxfwd", "usrloc", "registrar", "textops",
           "siputils", "sanity", "corex", "kex", "xlog", "htable")
CONFIG = f"""\
[server]
modules = [{", ".join(f'"{m}"' for m in MODULES)}]

[modules.htable]
htable = ["ksrtest=>size=4;"]
event_callback = "ksr_htable_event"
"""


class KsrServer(SiprouterServer):
    """The interop server with a KSR script, its configuration and one worker."""

    def __init__(self, workdir: Path, script: Path) -> None:
        super().__init__(workdir)
        self.script = script
        self.config = workdir / "ksr.toml"
        self.config.write_text(CONFIG)

    def command(self) -> list[str]:
        argv = list(super().command())
        if "--workers" not in argv:
            argv += ["--workers", "1"]
        return [*argv, "--config", str(self.config), "--script", str(self.script),
                "--define", "KSRTEST"]


@pytest.fixture(params=["ksr_flows.lua", "ksr_flows.py"], ids=["lua", "python"])
def ksr_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KsrServer]:
    server = KsrServer(tmp_path, SCRIPTS / request.param)
    server.start()
    try:
        yield server
    finally:
        try:
            if server.alive():
                server.stop_cleanly()
        finally:
            print(server.log_tail(60))


# -- SIPp message logs ------------------------------------------------------------------------
_SEPARATOR = re.compile(r"^-{20,}[^\n]*\n", re.MULTILINE)


def messages(result: SippResult, direction: str = "received") -> list[str]:
    """The SIP messages SIPp logged as ``direction`` ("received" / "sent"), in order."""
    assert result.message_log is not None, "run SIPp with trace_msg=True"
    text = result.message_log.read_text(errors="replace").replace("\r\n", "\n")
    out = []
    for chunk in _SEPARATOR.split(text):
        head, _, body = chunk.partition("\n")
        if direction in head and "message" in head:
            out.append(body.strip("\n") + "\n")
    return out


def header(msg: str, name: str) -> str:
    m = re.search(rf"^{re.escape(name)}:[ \t]*(.*)$", msg, re.MULTILINE | re.IGNORECASE)
    assert m, f"no {name} header in:\n{msg}"
    return m.group(1).strip()


def first(msgs: list[str], start: str) -> str:
    for m in msgs:
        if m.startswith(start):
            return m
    raise AssertionError(f"no message starting with {start!r} among:\n" + "\n".join(msgs))


def ok(result: SippResult, server: SiprouterServer, calls: int = 1) -> None:
    good = (result.returncode, result.successful, result.failed) == (0, calls, 0)
    assert good, f"{result.summary()}\n{server.log_tail(40)}"


def request(sipp: SippRunner, server: SiprouterServer, user: str, method: str = "OPTIONS",
            *, xport: int = 0, aor: str = "sip:none@127.0.0.1",
            local_port: int | None = None) -> SippResult:
    result = sipp.run(
        f"ksr_{method.lower()}.xml", f"{LOOPBACK}:{server.port}",
        "-key", "xport", str(xport), "-key", "aor", aor,
        service=user, timeout=10, trace_msg=True, local_port=local_port,
    )  # fmt: skip
    ok(result, server)
    return result


def register(sipp: SippRunner, server: SiprouterServer, user: str, port: int,
             q: str | None = None) -> None:
    scenario, line = ("reg_many.xml", user) if q is None else ("reg_q.xml", f"{user};{q}")
    result = sipp.run(scenario, f"{LOOPBACK}:{server.port}", local_port=port, users=[line],
                      timeout=10)
    ok(result, server)


def wait_log(server: SiprouterServer, text: str) -> str:
    """The server log once it contains ``text`` (bounded: the log is written at once)."""
    import time

    deadline = time.monotonic() + 3.0
    log = server.log_text()
    while text not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = server.log_text()
    assert text in log, f"{text!r} not in the server log\n{server.log_tail(40)}"
    return log


# -- tests ------------------------------------------------------------------------------------
def test_pv_core_and_kx_values_in_reply_headers(sipp: SippRunner, ksr_server: KsrServer) -> None:
    bob_port = free_port()
    register(sipp, ksr_server, "bob", bob_port)
    port = free_port()
    result = request(sipp, ksr_server, "pv", local_port=port)
    reply = first(messages(result), "SIP/2.0 200 Probe")
    srv = ksr_server.port
    # force_rport: the answer went to the source port and the Via says so
    assert f";rport={port};received=127.0.0.1" in header(reply, "Via")
    call_id = header(reply, "Call-ID")
    from_tag = header(reply, "From").rsplit("tag=", 1)[1]
    assert header(reply, "X-PV-R") == f"sip:pv@127.0.0.1:{srv};x=y|pv|127.0.0.1|{srv}|OPTIONS"
    assert header(reply, "X-PV-F") == f"sip:probe@127.0.0.1|probe|127.0.0.1|Probe User|{from_tag}"
    assert header(reply, "X-PV-T") == "sip:pv@127.0.0.1|pv|127.0.0.1|notag"
    assert header(reply, "X-PV-C") == f"{call_id}|7|SIPp ksr"
    assert header(reply, "X-PV-S") == f"127.0.0.1|{port}|127.0.0.1|{srv}"
    assert header(reply, "X-PV-H") == "hello world"
    # getw / gete / is_null / getvn / getvs of null values
    assert header(reply, "X-PV-Null") == "<null>||1|5|dflt"
    # $var / $avp / $xavp / $sht written and read back, unset, and the htable event's item
    assert header(reply, "X-PV-Vars") == "42|av|xv|7|1|1"
    assert header(reply, "X-PV-TM") == "0|0"
    # is_OPTIONS is_INVITE .. is_MESSAGE, is_method, is_method_in("IO"), ("IB")
    assert header(reply, "X-Is") == "10000000000000110"
    # is_myself(own) (other) _ruri _furi _turi _srcip _suri _duri _nhuri; the server runs with
    # --domain 127.0.0.1 (Kamailio: alias=127.0.0.1), so any port of 127.0.0.1 is myself
    assert header(reply, "X-Myself") == "101111101"
    assert header(reply, "X-Proto") == "10000"
    # isflagset before/after setflag/resetflag, then the same for branch flags
    assert header(reply, "X-Flags") == "010010"
    assert header(reply, "X-Hdr") == "10|hello world||11001100"
    assert header(reply, "X-Kx") == (
        f"sip:pv@127.0.0.1:{srv};x=y|pv|127.0.0.1|sip:probe@127.0.0.1|probe|127.0.0.1|"
        f"sip:pv@127.0.0.1|pv|127.0.0.1|SIPp ksr|127.0.0.1|{port}|127.0.0.1|{srv}|udp|OPTIONS|"
        f"{call_id}||<null>|10")
    assert header(reply, "X-Du") == "01|sip:127.0.0.1:5999|1|0|sip:127.0.0.1:5998"
    # seturi, setuser, sethost, $rU/$rd/$rp writes, lookup_branches
    assert header(reply, "X-Ru") == (
        "sip:carol@127.0.0.1|sip:dave@127.0.0.1|sip:dave@127.0.0.2|sip:erin@127.0.0.3:5097|1|bob")
    assert header(reply, "X-Registered") == "1"
    log = wait_log(ksr_server, f"ksr-log log {call_id}")
    for level in ("info", "warn", "err", "crit", "notice"):
        assert f"ksr-log {level} {call_id}" in log, level
    assert f"ksr-log dbg {call_id}" not in log  # the server logs at info
    assert "ksr-event htable:mod-init" in log


def test_registrar_unregister_and_stateless_errors(sipp: SippRunner,
                                                  ksr_server: KsrServer) -> None:
    register(sipp, ksr_server, "carol", free_port())
    r = first(messages(request(sipp, ksr_server, "unreg", aor="sip:carol@127.0.0.1")),
              "SIP/2.0 200")
    assert header(r, "X-Unreg") == "1|1|0"
    r = first(messages(request(sipp, ksr_server, "unreg", aor="sip:carol@127.0.0.1")),
              "SIP/2.0 200")
    assert header(r, "X-Unreg") == "0|1|0"
    # t_newtran + t_set_fr + t_is_set + t_reply; sl_reply_error
    r = first(messages(request(sipp, ksr_server, "tx", "MESSAGE")), "SIP/2.0 202")
    assert r.startswith("SIP/2.0 202 Accepted Here")
    assert header(r, "X-Tx") == "10"
    r = first(messages(request(sipp, ksr_server, "err", "MESSAGE")), "SIP/2.0 500")


def test_direct_and_stateless_relay(sipp: SippRunner, ksr_server: KsrServer) -> None:
    uas_port = free_port()
    uas = sipp.start("uas_message.xml", calls=1, local_port=uas_port, timeout=10,
                     trace_msg=True)
    res = request(sipp, ksr_server, "direct", "MESSAGE", xport=uas_port)
    assert first(messages(res), "SIP/2.0 200")
    got = uas.wait()
    ok(got, ksr_server)
    m = first(messages(got), "MESSAGE ")
    # t_relay_to_proto_addr sent it here; record_route_preset put its address in
    # (rr's append_fromtag adds the From tag, as in Kamailio)
    from_tag = header(m, "From").rsplit("tag=", 1)[1]
    assert header(m, "Record-Route") == (
        f"<sip:127.0.0.1:{ksr_server.port};ksr=preset;lr;ftag={from_tag}>")
    uas2_port = free_port()
    uas2 = sipp.start("uas_message.xml", calls=1, local_port=uas2_port, timeout=10,
                      trace_msg=True)
    res = request(sipp, ksr_server, "stateless", "MESSAGE", xport=uas2_port)
    assert first(messages(res), "SIP/2.0 200")
    got2 = uas2.wait()
    ok(got2, ksr_server)
    m2 = first(messages(got2), "MESSAGE ")
    assert header(m2, "X-Stateless") == "1"
    assert ".s" in header(m2, "Via").split("branch=", 1)[1]  # forward(): stateless branch


def test_call_with_record_route_header_edits_and_dialog(sipp: SippRunner,
                                                       ksr_server: KsrServer) -> None:
    uas_port = free_port()
    register(sipp, ksr_server, "bob", uas_port)
    uas = sipp.start("uas_answer.xml", calls=1, local_port=uas_port, timeout=20,
                     trace_msg=True)
    uac = sipp.run("ksr_uac_call.xml", f"{LOOPBACK}:{ksr_server.port}", service="bob",
                   timeout=20, trace_msg=True)
    got = uas.wait()
    ok(uac, ksr_server)
    ok(got, ksr_server)
    recv = messages(got)
    inv = first(recv, "INVITE ")
    lines = [ln.split(":", 1)[0].lower() for ln in inv.split("\n\n", 1)[0].split("\n")[1:]]
    srv = ksr_server.port
    assert header(inv, "Record-Route") == f"<sip:127.0.0.1:{srv};lr;ksr=rr>" or \
        header(inv, "Record-Route").startswith(f"<sip:127.0.0.1:{srv};lr")
    assert "ksr=rr" in header(inv, "Record-Route")
    assert header(inv, "X-Appended") == "a"
    assert header(inv, "X-Inserted") == "i"
    assert lines.index("x-after-call-id") == lines.index("call-id") + 1
    assert lines.index("x-before-cseq") == lines.index("cseq") - 1
    assert "x-remove-me" not in lines and "x-remove-too" not in lines
    assert "x-replace-me" not in lines and header(inv, "X-Replaced") == "r"
    assert header(inv, "X-Textops") == "caller"
    assert header(inv, "Subject") == "[ksr] interop call"
    # the branch route: $T_branch_idx, t_is_branch_route, the avp/xavp/flag set before t_relay
    assert header(inv, "X-Branch") == "0|10|caller|bob|1"
    assert int(header(inv, "Max-Forwards")) == 69
    # in-dialog BYE: loose_route, is_direction, check_route_param
    bye = first(recv, "BYE ")
    assert header(bye, "X-Dir") == "110"
    log = wait_log(ksr_server, f"ksr-dialog bye {header(bye, 'Call-ID')}")
    assert "ksr-onreply 180 Ringing 11" in log
    assert "ksr-onreply 200 OK 11" in log


def test_serial_forking_failure_callback_tries_next_contact(
        sipp: SippRunner, ksr_server: KsrServer) -> None:
    busy_port, answer_port = free_port(), free_port()
    register(sipp, ksr_server, "serial", busy_port, q="1.0")
    register(sipp, ksr_server, "serial", answer_port, q="0.5")
    busy = sipp.start("uas_busy.xml", calls=1, local_port=busy_port, timeout=20, trace_msg=True)
    answer = sipp.start("uas_answer.xml", calls=1, local_port=answer_port, timeout=20,
                        trace_msg=True)
    uac = sipp.run("uac_call.xml", f"{LOOPBACK}:{ksr_server.port}", service="serial",
                   timeout=20, trace_msg=True)
    ok(uac, ksr_server)
    b_res, a_res = busy.wait(), answer.wait()
    ok(b_res, ksr_server)
    ok(a_res, ksr_server)
    inv1 = first(messages(b_res), "INVITE ")
    inv2 = first(messages(a_res), "INVITE ")
    assert f"127.0.0.1:{busy_port}" in inv1.split("\n", 1)[0]
    assert f"127.0.0.1:{answer_port}" in inv2.split("\n", 1)[0]
    # the first branch ran the branch route; the failure route's relay armed none
    assert header(inv1, "X-Branch").startswith("0|10|")
    assert "X-Branch" not in inv2
    # the caller never saw the 486
    assert not any(m.startswith("SIP/2.0 486") for m in messages(uac))
    log = wait_log(ksr_server, "ksr-failure 486 1")
    assert "ksr-branch-failure 486" in log
    assert "ksr-reply-route 486 Busy Here" in log


def test_cancel_reaches_callee_and_failure_route_sees_it(sipp: SippRunner,
                                                         ksr_server: KsrServer) -> None:
    uas_port = free_port()
    register(sipp, ksr_server, "ring", uas_port)
    uas = sipp.start("uas_ring_no_answer.xml", calls=1, local_port=uas_port, timeout=20,
                     trace_msg=True)
    uac = sipp.run("uac_cancel.xml", f"{LOOPBACK}:{ksr_server.port}", service="ring",
                   timeout=20, trace_msg=True)
    got = uas.wait()
    ok(uac, ksr_server)
    ok(got, ksr_server)
    assert first(messages(got), "CANCEL ")
    assert first(messages(uac), "SIP/2.0 487")
    call_id = header(first(messages(uac), "SIP/2.0 487"), "Call-ID")
    wait_log(ksr_server, f"ksr-failure canceled {call_id}")


def test_scripts_call_every_listed_function() -> None:
    """Both scripts name each function of the issue's list (the tests above run them)."""
    listed = """
    is_INVITE is_ACK is_BYE is_CANCEL is_REGISTER is_OPTIONS is_SUBSCRIBE is_PUBLISH
    is_NOTIFY is_REFER is_INFO is_UPDATE is_PRACK is_MESSAGE is_method is_method_in
    is_myself is_myself_ruri is_myself_duri is_myself_nhuri is_myself_furi is_myself_turi
    is_myself_suri is_myself_srcip is_UDP is_TCP is_TLS is_WS is_WSS setflag resetflag
    isflagset setbflag resetbflag isbflagset seturi setuser sethost setdsturi resetdsturi
    isdsturiset force_rport forward info dbg warn err crit notice log
    pv.get pv.gete pv.getvn pv.getvs pv.getw pv.seti pv.sets pv.unset pv.is_null
    hdr.append hdr.append_after hdr.insert hdr.insert_before hdr.remove hdr.rmappend
    hdr.is_present hdr.append_to_reply hdr.get hdr.gete
    tm.t_relay tm.t_relay_to_proto_addr tm.t_check_trans tm.t_newtran tm.t_reply
    tm.t_on_branch tm.t_on_reply tm.t_on_failure tm.t_on_branch_failure tm.t_is_set
    tm.t_is_canceled tm.t_set_fr tm.t_load_contacts tm.t_next_contacts
    tmx.t_precheck_trans tmx.t_is_branch_route tmx.t_is_failure_route tmx.t_is_reply_route
    sl.sl_send_reply sl.send_reply sl.sl_reply_error
    rr.record_route rr.record_route_preset rr.loose_route rr.add_rr_param
    rr.check_route_param rr.is_direction
    registrar.save registrar.lookup registrar.lookup_branches registrar.registered
    registrar.unregister
    textops.search textops.subst textops.append_hf textops.remove_hf textops.is_present_hf
    textops.has_body maxfwd.process_maxfwd
    siputils.has_totag siputils.is_first_hop siputils.is_request siputils.is_reply
    """.split()
    pvs = """$ru $rU $rd $rp $rm $rs $rr $du $fu $fU $fd $fn $ft $tu $tU $td $tt $ci $cs $ua
    $si $sp $Ri $Rp $hdr( $var( $avp( $xavp( $sht( $T_branch_idx $T_reply_code""".split()
    for name in ("ksr_flows.lua", "ksr_flows.py"):
        text = (SCRIPTS / name).read_text()
        missing = [f for f in listed if f"KSR.{f}(" not in text]
        assert not missing, f"{name} does not call {missing}"
        assert "KSR.kx.get_" in text
        assert ("KSR.x.exit()" if name.endswith(".lua") else "return -255") in text
        missing_pv = [p for p in pvs if f'"{p}' not in text]
        assert not missing_pv, f"{name} does not use {missing_pv}"
