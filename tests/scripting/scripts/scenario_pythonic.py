"""The shared routing scenario in the Pythonic API."""


def request_route(req):
    if req.process_maxfwd(10) == -1:
        req.reply(483, "Too Many Hops")
        return
    if req.method == "OPTIONS" and req.is_myself():
        req.reply(200, "Keepalive", headers=[("X-Engine", "same")])
        return
    if req.has_to_tag:
        if req.loose_route() > 0:
            req.relay()
            return
        req.reply(404, "Not here")
        return
    if req.method == "REGISTER":
        req.save("location")
        return
    if req.method in ("INVITE", "SUBSCRIBE"):
        req.record_route()
    from siprouter.sip.headers import parse_name_addr
    from siprouter.sip.uri import parse_uri
    req.add_header("X-Caller", parse_uri(parse_name_addr(req.header("From")).uri).user)
    if req.lookup("location") < 0:
        req.reply(404, "Not Found")
        return
    req.on_failure(failure_next)
    req.on_branch(branch_mark)
    req.relay()


def branch_mark(req):
    req.add_header("X-Branch", str(req.branch_index))


def failure_next(req):
    if req.rc is not None and req.rc.cancelled:
        return
    if req.vars["__failure_reply"].status == 486:
        req.dst_uri = "sip:127.0.0.1:5090"
        req.relay()
