-- The shared routing scenario (Lua): also written in scenario_kemi.py and scenario_pythonic.py.
function ksr_request_route()
  local rc = KSR.maxfwd.process_maxfwd(10)
  if rc == -1 then
    KSR.sl.sl_send_reply(483, "Too Many Hops")
    KSR.x.exit()
  end
  if KSR.is_OPTIONS() and KSR.is_myself_ruri() then
    KSR.hdr.append_to_reply("X-Engine: same\r\n")
    KSR.sl.sl_send_reply(200, "Keepalive")
    KSR.x.exit()
  end
  if KSR.siputils.has_totag() > 0 then
    if KSR.rr.loose_route() > 0 then
      KSR.tm.t_relay()
      KSR.x.exit()
    end
    KSR.sl.sl_send_reply(404, "Not here")
    KSR.x.exit()
  end
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end
  if KSR.is_method_in("IS") then
    KSR.rr.record_route()
  end
  KSR.hdr.append("X-Caller: " .. KSR.pv.get("$fU") .. "\r\n")
  local lr = KSR.registrar.lookup("location")
  if lr < 0 then
    KSR.sl.send_reply(404, "Not Found")
    KSR.x.exit()
  end
  KSR.tm.t_on_failure("failure_next")
  KSR.tm.t_on_branch("branch_mark")
  KSR.tm.t_relay()
end

function branch_mark()
  KSR.hdr.append("X-Branch: " .. KSR.pv.get("$T_branch_idx") .. "\r\n")
end

function failure_next()
  if KSR.tm.t_is_canceled() > 0 then
    return
  end
  if KSR.pv.get("$T_reply_code") == 486 then
    KSR.setdsturi("sip:127.0.0.1:5090")
    KSR.tm.t_relay()
  end
end
