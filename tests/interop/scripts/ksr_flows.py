"""KSR coverage script for the SIPp-driven tests, in Kamailio's app_python3 style.

The same flows as ksr_flows.lua (see there for the list); both must give the same answers.
"""
import KSR


def mod_init():
    return Flows()


def s(v):
    if v is None:
        return "<nil>"
    return str(v)


def b(v):
    # booleans and Kamailio int codes as 1 / 0
    if v is True or (type(v) is int and v > 0):
        return "1"
    return "0"


def reply_hdr(name, value):
    KSR.hdr.append_to_reply(name + ": " + value + "\r\n")


class Flows:
    def __init__(self):
        self.rank = -1

    def child_init(self, rank):
        self.rank = rank
        return 0

    def ksr_htable_event(self, evname):
        KSR.info("ksr-event " + evname + "\n")
        KSR.pv.seti("$sht(ksrtest=>init)", 1)
        return 1

    def ksr_request_route(self, msg):
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return -255
        if KSR.siputils.is_request() < 0:
            return -255
        KSR.force_rport()

        if not KSR.is_ACK():
            if KSR.tmx.t_precheck_trans() > 0:
                KSR.tm.t_check_trans()
                return -255
            if KSR.tm.t_check_trans() == 0:
                return -255

        if KSR.siputils.has_totag() > 0:
            self.ksr_within_dialog(msg)
            return -255
        if KSR.is_ACK():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return -255

        if KSR.is_REGISTER():
            KSR.setbflag(1)
            KSR.registrar.save("location", 0)
            return -255

        user = KSR.pv.gete("$rU")
        if user == "":
            # keepalive OPTIONS to the server itself
            if KSR.is_OPTIONS() and KSR.is_myself_ruri():
                KSR.sl.sl_send_reply(200, "Keepalive")
            else:
                KSR.sl.send_reply(404, "Not Found")
            return -255

        if user == "pv":
            return self.ksr_probe(msg)
        if user == "unreg":
            return self.ksr_unreg(msg)
        if user == "err":
            KSR.sl.sl_reply_error()
            return -255
        if user == "tx":
            KSR.tm.t_newtran()
            KSR.tm.t_set_fr(5000, 2000)
            KSR.tm.t_on_failure("ksr_failure_serial")
            reply_hdr("X-Tx", b(KSR.tm.t_is_set("failure_route"))
                      + b(KSR.tm.t_is_set("branch_route")))
            KSR.tm.t_reply(202, "Accepted Here")
            return -255
        if user == "direct":
            KSR.rr.record_route_preset(
                "127.0.0.1:" + str(KSR.kx.get_rcvport()) + ";ksr=preset", "")
            KSR.tm.t_relay_to_proto_addr("udp", "127.0.0.1",
                                         int(KSR.pv.getvn("$hdr(X-Port)", 0)))
            return -255
        if user == "stateless":
            KSR.setdsturi("sip:127.0.0.1:" + KSR.hdr.get("X-Port"))
            KSR.hdr.append("X-Stateless: " + b(KSR.isdsturiset()) + "\r\n")
            KSR.forward()
            return -255

        # calls
        if KSR.is_method_in("I"):
            KSR.rr.record_route()
            KSR.rr.add_rr_param(";ksr=rr")
        if user == "serial":
            if KSR.registrar.lookup("location") < 0:
                KSR.sl.send_reply(404, "Not Found")
                return -255
            KSR.tm.t_load_contacts()
            KSR.tm.t_next_contacts()
            KSR.tm.t_on_failure("ksr_failure_serial")
            KSR.tm.t_on_branch_failure("ksr_branch_failure")
            KSR.tm.t_on_branch("ksr_branch")
            KSR.tm.t_relay()
            return -255
        if user == "ring":
            KSR.registrar.lookup("location")
            KSR.tm.t_on_failure("ksr_failure_serial")
            KSR.tm.t_relay()
            return -255

        # header edits, visible at the callee
        KSR.hdr.append("X-Appended: a\r\n")
        KSR.hdr.insert("X-Inserted: i\r\n")
        KSR.hdr.append_after("X-After-Call-ID: c\r\n", "Call-ID")
        KSR.hdr.insert_before("X-Before-CSeq: q\r\n", "CSeq")
        KSR.hdr.remove("X-Remove-Me")
        KSR.hdr.rmappend("X-Replace-Me", "X-Replaced: r\r\n")
        KSR.textops.append_hf("X-Textops: " + KSR.pv.get("$fU") + "\r\n")
        KSR.textops.remove_hf("X-Remove-Too")
        KSR.textops.subst("/^Subject: (.*)$/Subject: [ksr] \\1/")
        KSR.pv.sets("$avp(caller)", KSR.pv.get("$fU"))
        KSR.pv.sets("$xavp(call=>user)", user)
        KSR.setflag(5)

        rc = KSR.registrar.lookup("location")
        if rc < 0:
            KSR.sl.send_reply(404, "Not Found " + str(rc))
            return -255
        KSR.tm.t_on_branch("ksr_branch")
        KSR.tm.t_on_reply("ksr_onreply")
        KSR.tm.t_on_failure("ksr_failure_serial")
        KSR.tm.t_relay()
        return 1

    def ksr_probe(self, msg):
        # PVs
        reply_hdr("X-PV-R", s(KSR.pv.get("$ru")) + "|" + s(KSR.pv.get("$rU")) + "|"
                  + s(KSR.pv.get("$rd")) + "|" + s(KSR.pv.get("$rp")) + "|"
                  + s(KSR.pv.get("$rm")))
        reply_hdr("X-PV-F", s(KSR.pv.get("$fu")) + "|" + s(KSR.pv.get("$fU")) + "|"
                  + s(KSR.pv.get("$fd")) + "|" + s(KSR.pv.get("$fn")) + "|"
                  + s(KSR.pv.get("$ft")))
        reply_hdr("X-PV-T", s(KSR.pv.get("$tu")) + "|" + s(KSR.pv.get("$tU")) + "|"
                  + s(KSR.pv.get("$td")) + "|" + s(KSR.pv.getvs("$tt", "notag")))
        reply_hdr("X-PV-C", s(KSR.pv.get("$ci")) + "|" + s(KSR.pv.get("$cs")) + "|"
                  + s(KSR.pv.get("$ua")))
        reply_hdr("X-PV-S", s(KSR.pv.get("$si")) + "|" + s(KSR.pv.get("$sp")) + "|"
                  + s(KSR.pv.get("$Ri")) + "|" + s(KSR.pv.get("$Rp")))
        reply_hdr("X-PV-H", s(KSR.pv.get("$hdr(X-Probe)")))
        reply_hdr("X-PV-Null", s(KSR.pv.getw("$du")) + "|" + s(KSR.pv.gete("$du")) + "|"
                  + b(KSR.pv.is_null("$du")) + "|" + s(KSR.pv.getvn("$var(none)", 5)) + "|"
                  + s(KSR.pv.getvs("$avp(none)", "dflt")))
        KSR.pv.seti("$var(n)", 41)
        KSR.pv.sets("$avp(s)", "av")
        KSR.pv.sets("$xavp(x=>y)", "xv")
        KSR.pv.seti("$sht(ksrtest=>k)", 7)
        KSR.pv.sets("$var(gone)", "here")
        KSR.pv.unset("$var(gone)")
        reply_hdr("X-PV-Vars", s(KSR.pv.get("$var(n)") + 1) + "|" + s(KSR.pv.get("$avp(s)"))
                  + "|" + s(KSR.pv.get("$xavp(x=>y)")) + "|"
                  + s(KSR.pv.get("$sht(ksrtest=>k)")) + "|" + b(KSR.pv.is_null("$var(gone)"))
                  + "|" + s(KSR.pv.getvn("$sht(ksrtest=>init)", 0)))
        reply_hdr("X-PV-TM", s(KSR.pv.get("$T_branch_idx")) + "|"
                  + s(KSR.pv.getvn("$T_reply_code", 0)))
        # core checks
        reply_hdr("X-Is", b(KSR.is_OPTIONS()) + b(KSR.is_INVITE()) + b(KSR.is_ACK())
                  + b(KSR.is_BYE()) + b(KSR.is_CANCEL()) + b(KSR.is_REGISTER())
                  + b(KSR.is_SUBSCRIBE()) + b(KSR.is_PUBLISH()) + b(KSR.is_NOTIFY())
                  + b(KSR.is_REFER()) + b(KSR.is_INFO()) + b(KSR.is_UPDATE())
                  + b(KSR.is_PRACK()) + b(KSR.is_MESSAGE()) + b(KSR.is_method("OPTIONS"))
                  + b(KSR.is_method_in("IO")) + b(KSR.is_method_in("IB")))
        reply_hdr("X-Myself", b(KSR.is_myself("sip:127.0.0.1:" + str(KSR.kx.get_rcvport())))
                  + b(KSR.is_myself("sip:192.0.2.1")) + b(KSR.is_myself_ruri())
                  + b(KSR.is_myself_furi()) + b(KSR.is_myself_turi())
                  + b(KSR.is_myself_srcip()) + b(KSR.is_myself_suri())
                  + b(KSR.is_myself_duri()) + b(KSR.is_myself_nhuri()))
        reply_hdr("X-Proto", b(KSR.is_UDP()) + b(KSR.is_TCP()) + b(KSR.is_TLS())
                  + b(KSR.is_WS()) + b(KSR.is_WSS()))
        flags = b(KSR.isflagset(3))
        KSR.setflag(3)
        flags += b(KSR.isflagset(3))
        KSR.resetflag(3)
        flags += b(KSR.isflagset(3)) + b(KSR.isbflagset(2))
        KSR.setbflag(2)
        flags += b(KSR.isbflagset(2))
        KSR.resetbflag(2)
        flags += b(KSR.isbflagset(2))
        reply_hdr("X-Flags", flags)
        # hdr / textops / siputils / kx
        reply_hdr("X-Hdr", b(KSR.hdr.is_present("X-Probe")) + b(KSR.hdr.is_present("X-None"))
                  + "|" + s(KSR.hdr.get("X-Probe")) + "|" + s(KSR.hdr.gete("X-None")) + "|"
                  + b(KSR.textops.is_present_hf("Subject"))
                  + b(KSR.textops.search("hello w.rld")) + b(KSR.textops.search("^Nope"))
                  + b(KSR.textops.has_body()) + b(KSR.siputils.is_first_hop())
                  + b(KSR.siputils.is_request()) + b(KSR.siputils.is_reply())
                  + b(KSR.siputils.has_totag()))
        reply_hdr("X-Kx", "|".join(s(v) for v in (
            KSR.kx.get_ruri(), KSR.kx.get_ruser(), KSR.kx.get_rhost(), KSR.kx.get_furi(),
            KSR.kx.get_fuser(), KSR.kx.get_fhost(), KSR.kx.get_turi(), KSR.kx.get_tuser(),
            KSR.kx.get_thost(), KSR.kx.get_ua(), KSR.kx.get_srcip(), KSR.kx.get_srcport(),
            KSR.kx.get_rcvip(), KSR.kx.get_rcvport(), KSR.kx.get_proto(),
            KSR.kx.get_method(), KSR.kx.get_callid(), KSR.kx.gete_duri(),
            KSR.kx.getw_duri())) + "|" + b(KSR.kx.ifdef("KSRTEST"))
            + b(KSR.kx.ifdef("NOT_DEFINED")))
        # destination URI
        du = b(KSR.isdsturiset())
        KSR.setdsturi("sip:127.0.0.1:5999")
        du += b(KSR.isdsturiset()) + "|" + s(KSR.pv.get("$du")) + "|" + b(KSR.is_myself_duri())
        KSR.resetdsturi()
        du += "|" + b(KSR.isdsturiset())
        KSR.pv.sets("$du", "sip:127.0.0.1:5998")
        du += "|" + s(KSR.kx.get_duri())
        reply_hdr("X-Du", du)
        # Request-URI rewriting
        KSR.seturi("sip:carol@127.0.0.1")
        ru = s(KSR.pv.get("$ru"))
        KSR.setuser("dave")
        ru += "|" + s(KSR.pv.get("$ru"))
        KSR.sethost("127.0.0.2")
        ru += "|" + s(KSR.pv.get("$ru"))
        KSR.pv.sets("$rU", "erin")
        KSR.pv.sets("$rd", "127.0.0.3")
        KSR.pv.seti("$rp", 5097)
        ru += "|" + s(KSR.pv.get("$ru"))
        KSR.pv.sets("$ru", "sip:bob@127.0.0.1")
        lb = KSR.registrar.lookup_branches("location")
        ru += "|" + s(lb) + "|" + s(KSR.pv.get("$rU"))
        reply_hdr("X-Ru", ru)
        reply_hdr("X-Registered", b(KSR.registrar.registered("location")))
        # logging (checked in the server log)
        ci = KSR.pv.get("$ci")
        KSR.info("ksr-log info " + ci + "\n")
        KSR.dbg("ksr-log dbg " + ci + "\n")
        KSR.warn("ksr-log warn " + ci + "\n")
        KSR.err("ksr-log err " + ci + "\n")
        KSR.crit("ksr-log crit " + ci + "\n")
        KSR.notice("ksr-log notice " + ci + "\n")
        KSR.log("info", "ksr-log log " + ci + "\n")
        KSR.sl.sl_send_reply(200, "Probe")
        return -255

    def ksr_unreg(self, msg):
        aor = KSR.hdr.get("X-AoR")
        KSR.pv.sets("$ru", aor)
        before = b(KSR.registrar.registered("location"))
        rc = KSR.registrar.unregister("location", aor)
        reply_hdr("X-Unreg", before + "|" + s(rc) + "|"
                  + b(KSR.registrar.registered("location")))
        KSR.sl.sl_send_reply(200, "Unregistered")
        return -255

    def ksr_within_dialog(self, msg):
        if KSR.rr.loose_route() > 0:
            KSR.hdr.append("X-Dir: " + b(KSR.rr.is_direction("downstream"))
                           + b(KSR.rr.check_route_param("ksr=rr"))
                           + b(KSR.rr.check_route_param("nope=1")) + "\r\n")
            if KSR.is_BYE():
                KSR.info("ksr-dialog bye " + KSR.pv.get("$ci") + "\n")
            KSR.tm.t_relay()
            return 1
        if KSR.is_ACK():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        KSR.sl.sl_send_reply(404, "Not here")
        return 1

    def ksr_branch(self, msg):
        KSR.hdr.append("X-Branch: " + s(KSR.pv.get("$T_branch_idx")) + "|"
                       + b(KSR.tmx.t_is_branch_route()) + b(KSR.tmx.t_is_failure_route())
                       + "|" + s(KSR.pv.getvs("$avp(caller)", "-")) + "|"
                       + s(KSR.pv.getvs("$xavp(call=>user)", "-")) + "|"
                       + b(KSR.isflagset(5)) + "\r\n")
        return 1

    def ksr_onreply(self, msg):
        KSR.info("ksr-onreply " + s(KSR.pv.get("$rs")) + " " + s(KSR.pv.get("$rr")) + " "
                 + b(KSR.tmx.t_is_reply_route()) + b(KSR.siputils.is_reply()) + "\n")
        return 1

    def ksr_branch_failure(self, msg):
        KSR.info("ksr-branch-failure " + s(KSR.pv.get("$T_reply_code")) + "\n")
        return 1

    def ksr_failure_serial(self, msg):
        if KSR.tm.t_is_canceled() > 0:
            KSR.info("ksr-failure canceled " + KSR.pv.get("$ci") + "\n")
            return 1
        KSR.info("ksr-failure " + s(KSR.pv.get("$T_reply_code")) + " "
                 + b(KSR.tmx.t_is_failure_route()) + "\n")
        if KSR.tm.t_next_contacts() > 0:
            KSR.tm.t_on_failure("ksr_failure_serial")
            KSR.tm.t_relay()
        return 1

    def ksr_reply_route(self, msg):
        if KSR.siputils.is_reply() > 0 and KSR.pv.get("$rs") == 486:
            KSR.info("ksr-reply-route 486 " + s(KSR.pv.get("$rr")) + "\n")
        return 1
