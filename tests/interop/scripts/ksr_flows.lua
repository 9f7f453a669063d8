-- KSR coverage script for the SIPp-driven tests (tests/interop/test_ksr_sipp.py).
-- ksr_flows.py does the same in Kamailio's app_python3 style; both must give the same answers.
--
-- The Request-URI user selects the flow:
--   REGISTER        registrar save (bflag 1 set, so the contact keeps it)
--   pv              a probe: answers 200 with X-* headers made of PV values, kx getters and
--                   the results of the core / hdr / textops / siputils checks
--   unreg           unregister the AoR in X-AoR; answers with registered() before and after
--   bob             relay to the registered contact with record-route, header edits, branch /
--                   onreply / failure callbacks
--   serial          serial forking over the registered contacts by q (t_load_contacts /
--                   t_next_contacts); the failure callback tries the next group
--   ring            relay to a callee that never answers (the caller CANCELs)
--   direct          t_relay_to_proto_addr to the port in X-Port, with record_route_preset
--   stateless       forward() to the port in X-Port
--   tx              t_newtran + t_set_fr + t_reply
--   err             sl_reply_error
-- In-dialog requests are loose-routed (check_route_param, is_direction).

local function s(v)
  if v == nil then return "<nil>" end
  return tostring(v)
end

local function b(v)
  -- booleans and Kamailio int codes as 1 / 0
  if v == true or (type(v) == "number" and v > 0) then return "1" end
  return "0"
end

local function reply_hdr(name, value)
  KSR.hdr.append_to_reply(name .. ": " .. value .. "\r\n")
end

function ksr_htable_event(evname)
  KSR.info("ksr-event " .. evname .. "\n")
  KSR.pv.seti("$sht(ksrtest=>init)", 1)
end

function ksr_request_route()
  if KSR.maxfwd.process_maxfwd(10) < 0 then
    KSR.sl.sl_send_reply(483, "Too Many Hops")
    KSR.x.exit()
  end
  if KSR.siputils.is_request() < 0 then
    KSR.x.exit()
  end
  KSR.force_rport()

  if not KSR.is_ACK() then
    if KSR.tmx.t_precheck_trans() > 0 then
      KSR.tm.t_check_trans()
      KSR.x.exit()
    end
    if KSR.tm.t_check_trans() == 0 then
      KSR.x.exit()
    end
  end

  if KSR.siputils.has_totag() > 0 then
    ksr_within_dialog()
    KSR.x.exit()
  end
  if KSR.is_ACK() then
    if KSR.tm.t_check_trans() > 0 then
      KSR.tm.t_relay()
    end
    KSR.x.exit()
  end

  if KSR.is_REGISTER() then
    KSR.setbflag(1)
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end

  local user = KSR.pv.gete("$rU")
  if user == "" then
    -- keepalive OPTIONS to the server itself
    if KSR.is_OPTIONS() and KSR.is_myself_ruri() then
      KSR.sl.sl_send_reply(200, "Keepalive")
    else
      KSR.sl.send_reply(404, "Not Found")
    end
    KSR.x.exit()
  end

  if user == "pv" then ksr_probe() end
  if user == "unreg" then ksr_unreg() end
  if user == "err" then
    KSR.sl.sl_reply_error()
    KSR.x.exit()
  end
  if user == "tx" then
    KSR.tm.t_newtran()
    KSR.tm.t_set_fr(5000, 2000)
    KSR.tm.t_on_failure("ksr_failure_serial")
    reply_hdr("X-Tx", b(KSR.tm.t_is_set("failure_route")) .. b(KSR.tm.t_is_set("branch_route")))
    KSR.tm.t_reply(202, "Accepted Here")
    KSR.x.exit()
  end
  if user == "direct" then
    KSR.rr.record_route_preset("127.0.0.1:" .. KSR.kx.get_rcvport() .. ";ksr=preset", "")
    KSR.tm.t_relay_to_proto_addr("udp", "127.0.0.1", KSR.pv.getvn("$hdr(X-Port)", 0) + 0)
    KSR.x.exit()
  end
  if user == "stateless" then
    KSR.setdsturi("sip:127.0.0.1:" .. KSR.hdr.get("X-Port"))
    KSR.hdr.append("X-Stateless: " .. b(KSR.isdsturiset()) .. "\r\n")
    KSR.forward()
    KSR.x.exit()
  end

  -- calls
  if KSR.is_method_in("I") then
    KSR.rr.record_route()
    KSR.rr.add_rr_param(";ksr=rr")
  end
  if user == "serial" then
    if KSR.registrar.lookup("location") < 0 then
      KSR.sl.send_reply(404, "Not Found")
      KSR.x.exit()
    end
    KSR.tm.t_load_contacts()
    KSR.tm.t_next_contacts()
    KSR.tm.t_on_failure("ksr_failure_serial")
    KSR.tm.t_on_branch_failure("ksr_branch_failure")
    KSR.tm.t_on_branch("ksr_branch")
    KSR.tm.t_relay()
    KSR.x.exit()
  end
  if user == "ring" then
    KSR.registrar.lookup("location")
    KSR.tm.t_on_failure("ksr_failure_serial")
    KSR.tm.t_relay()
    KSR.x.exit()
  end

  -- header edits, visible at the callee
  KSR.hdr.append("X-Appended: a\r\n")
  KSR.hdr.insert("X-Inserted: i\r\n")
  KSR.hdr.append_after("X-After-Call-ID: c\r\n", "Call-ID")
  KSR.hdr.insert_before("X-Before-CSeq: q\r\n", "CSeq")
  KSR.hdr.remove("X-Remove-Me")
  KSR.hdr.rmappend("X-Replace-Me", "X-Replaced: r\r\n")
  KSR.textops.append_hf("X-Textops: " .. KSR.pv.get("$fU") .. "\r\n")
  KSR.textops.remove_hf("X-Remove-Too")
  KSR.textops.subst("/^Subject: (.*)$/Subject: [ksr] \\1/")
  KSR.pv.sets("$avp(caller)", KSR.pv.get("$fU"))
  KSR.pv.sets("$xavp(call=>user)", user)
  KSR.setflag(5)

  local rc = KSR.registrar.lookup("location")
  if rc < 0 then
    KSR.sl.send_reply(404, "Not Found " .. rc)
    KSR.x.exit()
  end
  KSR.tm.t_on_branch("ksr_branch")
  KSR.tm.t_on_reply("ksr_onreply")
  KSR.tm.t_on_failure("ksr_failure_serial")
  KSR.tm.t_relay()
end

function ksr_probe()
  -- PVs
  reply_hdr("X-PV-R", s(KSR.pv.get("$ru")) .. "|" .. s(KSR.pv.get("$rU")) .. "|" ..
            s(KSR.pv.get("$rd")) .. "|" .. s(KSR.pv.get("$rp")) .. "|" .. s(KSR.pv.get("$rm")))
  reply_hdr("X-PV-F", s(KSR.pv.get("$fu")) .. "|" .. s(KSR.pv.get("$fU")) .. "|" ..
            s(KSR.pv.get("$fd")) .. "|" .. s(KSR.pv.get("$fn")) .. "|" .. s(KSR.pv.get("$ft")))
  reply_hdr("X-PV-T", s(KSR.pv.get("$tu")) .. "|" .. s(KSR.pv.get("$tU")) .. "|" ..
            s(KSR.pv.get("$td")) .. "|" .. s(KSR.pv.getvs("$tt", "notag")))
  reply_hdr("X-PV-C", s(KSR.pv.get("$ci")) .. "|" .. s(KSR.pv.get("$cs")) .. "|" ..
            s(KSR.pv.get("$ua")))
  reply_hdr("X-PV-S", s(KSR.pv.get("$si")) .. "|" .. s(KSR.pv.get("$sp")) .. "|" ..
            s(KSR.pv.get("$Ri")) .. "|" .. s(KSR.pv.get("$Rp")))
  reply_hdr("X-PV-H", s(KSR.pv.get("$hdr(X-Probe)")))
  reply_hdr("X-PV-Null", s(KSR.pv.getw("$du")) .. "|" .. s(KSR.pv.gete("$du")) .. "|" ..
            b(KSR.pv.is_null("$du")) .. "|" .. s(KSR.pv.getvn("$var(none)", 5)) .. "|" ..
            s(KSR.pv.getvs("$avp(none)", "dflt")))
  KSR.pv.seti("$var(n)", 41)
  KSR.pv.sets("$avp(s)", "av")
  KSR.pv.sets("$xavp(x=>y)", "xv")
  KSR.pv.seti("$sht(ksrtest=>k)", 7)
  KSR.pv.sets("$var(gone)", "here")
  KSR.pv.unset("$var(gone)")
  reply_hdr("X-PV-Vars", s(KSR.pv.get("$var(n)") + 1) .. "|" .. s(KSR.pv.get("$avp(s)")) ..
            "|" .. s(KSR.pv.get("$xavp(x=>y)")) .. "|" .. s(KSR.pv.get("$sht(ksrtest=>k)")) ..
            "|" .. b(KSR.pv.is_null("$var(gone)")) .. "|" ..
            s(KSR.pv.getvn("$sht(ksrtest=>init)", 0)))
  reply_hdr("X-PV-TM", s(KSR.pv.get("$T_branch_idx")) .. "|" ..
            s(KSR.pv.getvn("$T_reply_code", 0)))
  -- core checks
  reply_hdr("X-Is", b(KSR.is_OPTIONS()) .. b(KSR.is_INVITE()) .. b(KSR.is_ACK()) ..
            b(KSR.is_BYE()) .. b(KSR.is_CANCEL()) .. b(KSR.is_REGISTER()) ..
            b(KSR.is_SUBSCRIBE()) .. b(KSR.is_PUBLISH()) .. b(KSR.is_NOTIFY()) ..
            b(KSR.is_REFER()) .. b(KSR.is_INFO()) .. b(KSR.is_UPDATE()) .. b(KSR.is_PRACK()) ..
            b(KSR.is_MESSAGE()) .. b(KSR.is_method("OPTIONS")) .. b(KSR.is_method_in("IO")) ..
            b(KSR.is_method_in("IB")))
  reply_hdr("X-Myself", b(KSR.is_myself("sip:127.0.0.1:" .. KSR.kx.get_rcvport())) ..
            b(KSR.is_myself("sip:192.0.2.1")) .. b(KSR.is_myself_ruri()) ..
            b(KSR.is_myself_furi()) .. b(KSR.is_myself_turi()) .. b(KSR.is_myself_srcip()) ..
            b(KSR.is_myself_suri()) .. b(KSR.is_myself_duri()) .. b(KSR.is_myself_nhuri()))
  reply_hdr("X-Proto", b(KSR.is_UDP()) .. b(KSR.is_TCP()) .. b(KSR.is_TLS()) ..
            b(KSR.is_WS()) .. b(KSR.is_WSS()))
  local flags = b(KSR.isflagset(3))
  KSR.setflag(3)
  flags = flags .. b(KSR.isflagset(3))
  KSR.resetflag(3)
  flags = flags .. b(KSR.isflagset(3)) .. b(KSR.isbflagset(2))
  KSR.setbflag(2)
  flags = flags .. b(KSR.isbflagset(2))
  KSR.resetbflag(2)
  flags = flags .. b(KSR.isbflagset(2))
  reply_hdr("X-Flags", flags)
  -- hdr / textops / siputils / kx
  reply_hdr("X-Hdr", b(KSR.hdr.is_present("X-Probe")) .. b(KSR.hdr.is_present("X-None")) ..
            "|" .. s(KSR.hdr.get("X-Probe")) .. "|" .. s(KSR.hdr.gete("X-None")) .. "|" ..
            b(KSR.textops.is_present_hf("Subject")) .. b(KSR.textops.search("hello w.rld")) ..
            b(KSR.textops.search("^Nope")) .. b(KSR.textops.has_body()) ..
            b(KSR.siputils.is_first_hop()) .. b(KSR.siputils.is_request()) ..
            b(KSR.siputils.is_reply()) .. b(KSR.siputils.has_totag()))
  reply_hdr("X-Kx", s(KSR.kx.get_ruri()) .. "|" .. s(KSR.kx.get_ruser()) .. "|" ..
            s(KSR.kx.get_rhost()) .. "|" .. s(KSR.kx.get_furi()) .. "|" ..
            s(KSR.kx.get_fuser()) .. "|" .. s(KSR.kx.get_fhost()) .. "|" ..
            s(KSR.kx.get_turi()) .. "|" .. s(KSR.kx.get_tuser()) .. "|" ..
            s(KSR.kx.get_thost()) .. "|" .. s(KSR.kx.get_ua()) .. "|" ..
            s(KSR.kx.get_srcip()) .. "|" .. s(KSR.kx.get_srcport()) .. "|" ..
            s(KSR.kx.get_rcvip()) .. "|" .. s(KSR.kx.get_rcvport()) .. "|" ..
            s(KSR.kx.get_proto()) .. "|" .. s(KSR.kx.get_method()) .. "|" ..
            s(KSR.kx.get_callid()) .. "|" .. s(KSR.kx.gete_duri()) .. "|" ..
            s(KSR.kx.getw_duri()) .. "|" .. b(KSR.kx.ifdef("KSRTEST")) ..
            b(KSR.kx.ifdef("NOT_DEFINED")))
  -- destination URI
  local du = b(KSR.isdsturiset())
  KSR.setdsturi("sip:127.0.0.1:5999")
  du = du .. b(KSR.isdsturiset()) .. "|" .. s(KSR.pv.get("$du")) .. "|" ..
       b(KSR.is_myself_duri())
  KSR.resetdsturi()
  du = du .. "|" .. b(KSR.isdsturiset())
  KSR.pv.sets("$du", "sip:127.0.0.1:5998")
  du = du .. "|" .. s(KSR.kx.get_duri())
  reply_hdr("X-Du", du)
  -- Request-URI rewriting
  KSR.seturi("sip:carol@127.0.0.1")
  local ru = s(KSR.pv.get("$ru"))
  KSR.setuser("dave")
  ru = ru .. "|" .. s(KSR.pv.get("$ru"))
  KSR.sethost("127.0.0.2")
  ru = ru .. "|" .. s(KSR.pv.get("$ru"))
  KSR.pv.sets("$rU", "erin")
  KSR.pv.sets("$rd", "127.0.0.3")
  KSR.pv.seti("$rp", 5097)
  ru = ru .. "|" .. s(KSR.pv.get("$ru"))
  KSR.pv.sets("$ru", "sip:bob@127.0.0.1")
  local lb = KSR.registrar.lookup_branches("location")
  ru = ru .. "|" .. s(lb) .. "|" .. s(KSR.pv.get("$rU"))
  reply_hdr("X-Ru", ru)
  reply_hdr("X-Registered", b(KSR.registrar.registered("location")))
  -- logging (checked in the server log)
  local ci = KSR.pv.get("$ci")
  KSR.info("ksr-log info " .. ci .. "\n")
  KSR.dbg("ksr-log dbg " .. ci .. "\n")
  KSR.warn("ksr-log warn " .. ci .. "\n")
  KSR.err("ksr-log err " .. ci .. "\n")
  KSR.crit("ksr-log crit " .. ci .. "\n")
  KSR.notice("ksr-log notice " .. ci .. "\n")
  KSR.log("info", "ksr-log log " .. ci .. "\n")
  KSR.sl.sl_send_reply(200, "Probe")
  KSR.x.exit()
end

function ksr_unreg()
  local aor = KSR.hdr.get("X-AoR")
  KSR.pv.sets("$ru", aor)
  local before = b(KSR.registrar.registered("location"))
  local rc = KSR.registrar.unregister("location", aor)
  reply_hdr("X-Unreg", before .. "|" .. s(rc) .. "|" .. b(KSR.registrar.registered("location")))
  KSR.sl.sl_send_reply(200, "Unregistered")
  KSR.x.exit()
end

function ksr_within_dialog()
  if KSR.rr.loose_route() > 0 then
    KSR.hdr.append("X-Dir: " .. b(KSR.rr.is_direction("downstream")) ..
                   b(KSR.rr.check_route_param("ksr=rr")) ..
                   b(KSR.rr.check_route_param("nope=1")) .. "\r\n")
    if KSR.is_BYE() then
      KSR.info("ksr-dialog bye " .. KSR.pv.get("$ci") .. "\n")
    end
    KSR.tm.t_relay()
    return
  end
  if KSR.is_ACK() then
    if KSR.tm.t_check_trans() > 0 then
      KSR.tm.t_relay()
    end
    return
  end
  KSR.sl.sl_send_reply(404, "Not here")
end

function ksr_branch()
  KSR.hdr.append("X-Branch: " .. s(KSR.pv.get("$T_branch_idx")) .. "|" ..
                 b(KSR.tmx.t_is_branch_route()) .. b(KSR.tmx.t_is_failure_route()) .. "|" ..
                 s(KSR.pv.getvs("$avp(caller)", "-")) .. "|" ..
                 s(KSR.pv.getvs("$xavp(call=>user)", "-")) .. "|" .. b(KSR.isflagset(5)) ..
                 "\r\n")
end

function ksr_onreply()
  KSR.info("ksr-onreply " .. s(KSR.pv.get("$rs")) .. " " .. s(KSR.pv.get("$rr")) .. " " ..
           b(KSR.tmx.t_is_reply_route()) .. b(KSR.siputils.is_reply()) .. "\n")
end

function ksr_branch_failure()
  KSR.info("ksr-branch-failure " .. s(KSR.pv.get("$T_reply_code")) .. "\n")
end

function ksr_failure_serial()
  if KSR.tm.t_is_canceled() > 0 then
    KSR.info("ksr-failure canceled " .. KSR.pv.get("$ci") .. "\n")
    return
  end
  KSR.info("ksr-failure " .. s(KSR.pv.get("$T_reply_code")) .. " " ..
           b(KSR.tmx.t_is_failure_route()) .. "\n")
  if KSR.tm.t_next_contacts() > 0 then
    KSR.tm.t_on_failure("ksr_failure_serial")
    KSR.tm.t_relay()
  end
end

function ksr_reply_route()
  if KSR.siputils.is_reply() > 0 and KSR.pv.get("$rs") == 486 then
    KSR.info("ksr-reply-route 486 " .. s(KSR.pv.get("$rr")) .. "\n")
  end
end
