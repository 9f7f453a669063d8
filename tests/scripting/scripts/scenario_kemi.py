"""The shared routing scenario in Kamailio's app_python3 style."""
import KSR


def mod_init():
    return Router()


class Router:
    def child_init(self, rank):
        return 0

    def ksr_request_route(self, msg):
        rc = KSR.maxfwd.process_maxfwd(10)
        if rc == -1:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return -255
        if KSR.is_OPTIONS() and KSR.is_myself_ruri():
            KSR.hdr.append_to_reply("X-Engine: same\r\n")
            KSR.sl.sl_send_reply(200, "Keepalive")
            return -255
        if KSR.siputils.has_totag() > 0:
            if KSR.rr.loose_route() > 0:
                KSR.tm.t_relay()
                return -255
            KSR.sl.sl_send_reply(404, "Not here")
            return -255
        if KSR.is_REGISTER():
            KSR.registrar.save("location", 0)
            return -255
        if KSR.is_method_in("IS"):
            KSR.rr.record_route()
        KSR.hdr.append("X-Caller: " + KSR.pv.get("$fU") + "\r\n")
        if KSR.registrar.lookup("location") < 0:
            KSR.sl.send_reply(404, "Not Found")
            return -255
        KSR.tm.t_on_failure("failure_next")
        KSR.tm.t_on_branch("branch_mark")
        KSR.tm.t_relay()
        return 1

    def branch_mark(self, msg):
        KSR.hdr.append("X-Branch: " + str(KSR.pv.get("$T_branch_idx")) + "\r\n")
        return 1

    def failure_next(self, msg):
        if KSR.tm.t_is_canceled() > 0:
            return 1
        if KSR.pv.get("$T_reply_code") == 486:
            KSR.setdsturi("sip:127.0.0.1:5090")
            KSR.tm.t_relay()
        return 1
