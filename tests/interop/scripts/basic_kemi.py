"""Routing logic of the basic-KEMI interop tests, in Kamailio's app_python3 style.

The same roles and KSR calls as basic_kemi.lua (see there for the list); where that script
reads values with KSR.kx and the htable functions, this one uses pseudo-variables ($si, $fd,
$sht(ipban=>$si) ...). A step returns STOP (-255) when the request is dealt with; the caller
passes it up and the route ends.
"""
import KSR

STOP = -255

FL_ACC = 1
FL_ACC_MISSED = 2
FL_ACC_FAILED = 3
FL_NATED = 5
BFL_NATED = 6
BFL_NAT_PING = 7

SCANNERS = ("friendly", "scanner", "sipcli", "sipvicious", "VaxSIPUserAgent", "pplsip")


def mod_init():
    KSR.info("basic-kemi: script loaded\n")
    return BasicRouting()


def source_text():
    return "{} from {} ({}:{})".format(KSR.pv.get("$rm"), KSR.pv.get("$fu"),
                                       KSR.pv.get("$si"), KSR.pv.get("$sp"))


class BasicRouting:
    def __init__(self):
        self.rank = None

    def child_init(self, rank):
        self.rank = rank
        return 0

    # -- entry points ----------------------------------------------------------------------
    def ksr_request_route(self, msg):
        for step in (self.screen, self.detect_nat):
            if step(msg) == STOP:
                return 1

        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                self.forward(msg)
            return 1

        if self.in_dialog(msg) == STOP:
            return 1

        if KSR.tmx.t_precheck_trans() > 0:
            KSR.tm.t_check_trans()
            return 1
        if KSR.tm.t_check_trans() == 0:
            return 1

        if self.identify(msg) == STOP:
            return 1

        KSR.hdr.remove("Route")
        if KSR.is_method_in("IS"):
            KSR.rr.record_route()
        if KSR.pv.get("$rm") == "INVITE":
            KSR.setflag(FL_ACC)

        for step in (self.to_foreign_domain, self.registrar):
            if step(msg) == STOP:
                return 1

        if KSR.corex.has_ruri_user() < 0:
            KSR.sl.sl_send_reply(484, "Address Incomplete")
            return 1

        self.location(msg)
        return 1

    def on_branch(self, msg):
        KSR.dbg("branch {} to {}\n".format(KSR.pv.get("$T_branch_idx"), KSR.pv.get("$ru")))
        self.media_anchor(msg)
        return 1

    def on_reply(self, msg):
        code = KSR.pv.get("$rs")
        if 100 < code < 299:
            self.media_anchor(msg)
        return 1

    def on_failure(self, msg):
        if self.media_anchor(msg) == STOP:
            return 1
        if KSR.tm.t_is_canceled() > 0:
            return 1
        return 1

    def ksr_reply_route(self, msg):
        if KSR.sanity.sanity_check(17604, 6) < 0:
            KSR.err("malformed reply from {}:{}\n".format(KSR.pv.get("$si"), KSR.pv.get("$sp")))
            KSR.set_drop()
            return STOP
        return 1

    # -- steps -----------------------------------------------------------------------------
    def forward(self, msg):
        if KSR.is_method_in("IBSU") and KSR.tm.t_is_set("branch_route") < 0:
            KSR.tm.t_on_branch("on_branch")
        if KSR.is_method_in("ISU") and KSR.tm.t_is_set("onreply_route") < 0:
            KSR.tm.t_on_reply("on_reply")
        if KSR.is_INVITE() and KSR.tm.t_is_set("failure_route") < 0:
            KSR.tm.t_on_failure("on_failure")
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()
        return STOP

    def screen(self, msg):
        if not KSR.is_myself(KSR.pv.get("$si")):
            if not KSR.pv.is_null("$sht(ipban=>$si)"):
                KSR.dbg("banned source: " + source_text() + "\n")
                return STOP
            if KSR.pike.pike_check_req() < 0:
                KSR.err("flood detected, banning: " + source_text() + "\n")
                KSR.pv.seti("$sht(ipban=>$si)", 1)
                return STOP
        if KSR.corex.has_user_agent() > 0:
            ua = KSR.pv.gete("$ua")
            if any(name in ua for name in SCANNERS):
                KSR.sl.sl_send_reply(200, "Processed")
                return STOP
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return STOP
        if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.corex.has_ruri_user() < 0:
            KSR.sl.sl_send_reply(200, "Keepalive")
            return STOP
        if KSR.sanity.sanity_check(17895, 7) < 0:
            KSR.err("malformed request: " + source_text() + "\n")
            return STOP
        return 1

    def detect_nat(self, msg):
        KSR.force_rport()
        if KSR.nathelper.nat_uac_test(19) > 0:
            if KSR.is_REGISTER():
                KSR.nathelper.fix_nated_register()
            elif KSR.siputils.is_first_hop() > 0:
                KSR.nathelper.set_contact_alias()
            KSR.setflag(FL_NATED)
        return 1

    def in_dialog(self, msg):
        if KSR.siputils.has_totag() < 0:
            return 1
        if KSR.rr.loose_route() > 0:
            if not KSR.isdsturiset():
                KSR.nathelper.handle_ruri_alias()
            if KSR.is_BYE():
                KSR.setflag(FL_ACC)
                KSR.setflag(FL_ACC_FAILED)
            elif KSR.is_ACK():
                if self.media_anchor(msg) == STOP:
                    return STOP
            elif KSR.is_NOTIFY():
                KSR.rr.record_route()  # RFC 6665 section 4.3
            return self.forward(msg)
        if KSR.is_ACK():
            # an ACK for a negative answer of ours or of a downstream hop
            if KSR.tm.t_check_trans() > 0:
                self.forward(msg)
            return STOP
        KSR.sl.sl_send_reply(404, "Not here")
        return STOP

    def identify(self, msg):
        registering = KSR.is_REGISTER()
        if not registering and KSR.permissions.allow_source_address(1) > 0:
            return 1  # trusted peer
        local_caller = KSR.is_myself_furi()
        if registering or local_caller:
            realm = KSR.pv.get("$fd")
            if KSR.auth_db.auth_check(realm, "subscriber", 1) < 0:
                KSR.auth.auth_challenge(realm, 0)
                return STOP
            if not KSR.is_method_in("RP"):
                KSR.auth.consume_credentials()
        if not local_caller and not KSR.is_myself_ruri():
            KSR.sl.sl_send_reply(403, "Not relaying")
            return STOP
        return 1

    def to_foreign_domain(self, msg):
        if KSR.is_myself_ruri():
            return 1
        KSR.hdr.append("P-Hint: outbound\r\n")
        return self.forward(msg)

    def registrar(self, msg):
        if not KSR.is_REGISTER():
            return 1
        if KSR.isflagset(FL_NATED):
            KSR.setbflag(BFL_NATED)
            KSR.setbflag(BFL_NAT_PING)
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()
        return STOP

    def location(self, msg):
        rc = KSR.registrar.lookup("location")
        if rc < 0:
            KSR.tm.t_newtran()
            if rc == -2:
                KSR.sl.send_reply(405, "Method Not Allowed")
            else:
                KSR.sl.send_reply(404, "Not Found")
            return STOP
        if KSR.is_INVITE():
            KSR.setflag(FL_ACC_MISSED)
        return self.forward(msg)

    def media_anchor(self, msg):
        # media anchoring is only done when a relay module is loaded (none is in these tests)
        rtpproxy = getattr(KSR, "rtpproxy", None)
        if rtpproxy is None:
            return 1
        if (KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() > 0
                and KSR.rr.check_route_param("nat=yes") > 0):
            KSR.setbflag(BFL_NATED)
        if not (KSR.isflagset(FL_NATED) or KSR.isbflagset(BFL_NATED)):
            return 1
        rtpproxy.rtpproxy_manage("co")
        if (KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() < 0
                and KSR.tmx.t_is_branch_route() > 0):
            KSR.rr.add_rr_param(";nat=yes")
        if KSR.siputils.is_reply() > 0 and KSR.isbflagset(BFL_NATED):
            KSR.nathelper.set_contact_alias()
        return 1
