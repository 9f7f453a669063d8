-- Routing logic of the basic-KEMI interop tests (tests/interop/test_interop_basic_kemi.py),
-- written for siprouter's Lua engine against the KSR API.
--
-- It plays the roles of Kamailio's basic KEMI configuration, with the same KSR calls:
--   screen      ipban htable + pike for foreign sources, scanner user agents, Max-Forwards,
--               OPTIONS keepalive to the server itself, sanity checks
--   nat         nathelper detection (fix_nated_register / set_contact_alias)
--   in-dialog   loose_route + record_route, stateful ACKs, 404 for the rest
--   identity    permissions (group 1) or digest auth (auth_check / auth_challenge),
--               consume_credentials, 403 "Not relaying" when neither side is local
--   registrar   save("location") with the NAT branch flags
--   location    lookup("location"), 404 / 405 on failure
--   relay       t_relay with branch, reply and failure callbacks
-- KSR.x.exit() ends the whole route from any depth.

local FL_ACC, FL_ACC_MISSED, FL_ACC_FAILED, FL_NATED = 1, 2, 3, 5
local BFL_NATED, BFL_NAT_PING = 6, 7

local SCANNERS = { "friendly", "scanner", "sipcli", "sipvicious", "VaxSIPUserAgent", "pplsip" }

local function source_text()
	return KSR.kx.get_method() .. " from " .. KSR.kx.get_furi() .. " (" ..
		KSR.kx.get_srcip() .. ":" .. KSR.kx.get_srcport() .. ")"
end

-- media anchoring is only done when a relay module is loaded (none is in these tests)
local function media_anchor()
	if KSR.rtpproxy == nil and KSR.rtpengine == nil then
		return
	end
	if KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() > 0
			and KSR.rr.check_route_param("nat=yes") > 0 then
		KSR.setbflag(BFL_NATED)
	end
	if not KSR.isflagset(FL_NATED) and not KSR.isbflagset(BFL_NATED) then
		return
	end
	local sdp_private = KSR.nathelper.nat_uac_test(8) > 0
	if KSR.rtpengine ~= nil and KSR.kx.ifdef("WITH_RTPENGINE") then
		local how = "replace-origin replace-session-connection"
		if sdp_private then how = how .. " SIP-source-address" end
		KSR.rtpengine.rtpengine_manage(how)
	elseif KSR.rtpproxy ~= nil then
		KSR.rtpproxy.rtpproxy_manage(sdp_private and "co" or "cor")
	end
	if KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() < 0
			and KSR.tmx.t_is_branch_route() > 0 then
		KSR.rr.add_rr_param(";nat=yes")
	end
	if KSR.siputils.is_reply() > 0 and KSR.isbflagset(BFL_NATED) then
		KSR.nathelper.set_contact_alias()
	end
end

local function forward()
	local arm = {
		{ "IBSU", "branch_route", KSR.tm.t_on_branch, "on_branch" },
		{ "ISU", "onreply_route", KSR.tm.t_on_reply, "on_reply" },
		{ "I", "failure_route", KSR.tm.t_on_failure, "on_failure" },
	}
	for _, a in ipairs(arm) do
		if KSR.is_method_in(a[1]) and KSR.tm.t_is_set(a[2]) < 0 then
			a[3](a[4])
		end
	end
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
	KSR.x.exit()
end

local function screen()
	KSR.set_reply_no_connect()
	KSR.force_rport()
	if not KSR.is_myself_srcip() then
		local ip = KSR.kx.get_srcip()
		if KSR.htable.sht_match_name("ipban", "eq", ip) > 0 then
			KSR.dbg("banned source: " .. source_text() .. "\n")
			KSR.x.exit()
		end
		if KSR.pike.pike_check_req() < 0 then
			KSR.err("flood detected, banning: " .. source_text() .. "\n")
			KSR.htable.sht_seti("ipban", ip, 1)
			KSR.x.exit()
		end
	end
	local ua = KSR.kx.gete_ua()
	for _, name in ipairs(SCANNERS) do
		if string.find(ua, name, 1, true) then
			KSR.sl.sl_send_reply(200, "OK")
			KSR.x.exit()
		end
	end
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		KSR.x.exit()
	end
	if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.corex.has_ruri_user() < 0 then
		KSR.sl.sl_send_reply(200, "Keepalive")
		KSR.x.exit()
	end
	if KSR.sanity.sanity_check(17895, 7) < 0 then
		KSR.err("malformed request: " .. source_text() .. "\n")
		KSR.x.exit()
	end
end

local function detect_nat()
	if KSR.nathelper == nil then return end
	if KSR.nathelper.nat_uac_test(19) <= 0 then return end
	if KSR.is_REGISTER() then
		KSR.nathelper.fix_nated_register()
	elseif KSR.siputils.is_first_hop() > 0 then
		KSR.nathelper.set_contact_alias()
	end
	KSR.setflag(FL_NATED)
end

local function in_dialog()
	if KSR.siputils.has_totag() < 0 then return end
	if KSR.rr.loose_route() > 0 then
		if KSR.nathelper ~= nil and not KSR.isdsturiset() then
			KSR.nathelper.handle_ruri_alias()
		end
		if KSR.is_BYE() then
			KSR.setflag(FL_ACC)
			KSR.setflag(FL_ACC_FAILED)
		elseif KSR.is_ACK() then
			media_anchor()
		elseif KSR.is_NOTIFY() then
			KSR.rr.record_route() -- RFC 6665 section 4.3
		end
		forward()
	end
	if KSR.is_ACK() then
		-- an ACK for a negative answer of ours or of a downstream hop
		if KSR.tm.t_check_trans() > 0 then forward() end
		KSR.x.exit()
	end
	KSR.sl.sl_send_reply(404, "Not here")
	KSR.x.exit()
end

local function identify()
	if KSR.auth == nil then return end
	local registering = KSR.is_REGISTER()
	if KSR.permissions ~= nil and not registering
			and KSR.permissions.allow_source_address(1) > 0 then
		return -- trusted peer
	end
	local local_caller = KSR.is_myself_furi()
	if registering or local_caller then
		local realm = KSR.kx.gete_fhost()
		if KSR.auth_db.auth_check(realm, "subscriber", 1) < 0 then
			KSR.auth.auth_challenge(realm, 0)
			KSR.x.exit()
		end
		if not KSR.is_method_in("RP") then
			KSR.auth.consume_credentials()
		end
	end
	if not local_caller and not KSR.is_myself_ruri() then
		KSR.sl.sl_send_reply(403, "Not relaying")
		KSR.x.exit()
	end
end

local function to_foreign_domain()
	if KSR.is_myself_ruri() then return end
	KSR.hdr.append("P-Hint: outbound\r\n")
	forward()
end

local function registrar()
	if not KSR.is_REGISTER() then return end
	if KSR.isflagset(FL_NATED) then
		KSR.setbflag(BFL_NATED)
		KSR.setbflag(BFL_NAT_PING)
	end
	if KSR.registrar.save("location", 0) < 0 then
		KSR.sl.sl_reply_error()
	end
	KSR.x.exit()
end

local function location()
	local rc = KSR.registrar.lookup("location")
	if rc < 0 then
		KSR.tm.t_newtran()
		if rc == -2 then
			KSR.sl.send_reply(405, "Method Not Allowed")
		else
			KSR.sl.send_reply(404, "Not Found")
		end
		KSR.x.exit()
	end
	if KSR.is_INVITE() then
		KSR.setflag(FL_ACC_MISSED)
	end
	forward()
end

function ksr_request_route()
	screen()
	detect_nat()

	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then forward() end
		return 1
	end
	if not KSR.is_ACK() then
		if KSR.tmx.t_precheck_trans() > 0 then
			KSR.tm.t_check_trans()
			return 1
		end
		if KSR.tm.t_check_trans() == 0 then return 1 end
	end

	in_dialog()
	identify()

	KSR.hdr.remove("Route")
	if KSR.is_method_in("IS") then
		KSR.rr.record_route()
	end
	if KSR.is_INVITE() then
		KSR.setflag(FL_ACC)
	end

	to_foreign_domain()
	registrar()
	if KSR.corex.has_ruri_user() < 0 then
		KSR.sl.sl_send_reply(484, "Address Incomplete")
		return 1
	end
	location()
	return 1
end

function on_branch()
	KSR.dbg("branch " .. KSR.pv.get("$T_branch_idx") .. " to " .. KSR.kx.get_ruri() .. "\n")
	media_anchor()
	return 1
end

function on_reply()
	local code = KSR.kx.get_status()
	if code > 100 and code < 299 then
		media_anchor()
	end
	return 1
end

function on_failure()
	media_anchor()
	if KSR.tm.t_is_canceled() > 0 then
		return 1
	end
	return 1
end

function ksr_reply_route()
	if KSR.sanity.sanity_check(17604, 6) < 0 then
		KSR.err("malformed reply from " .. KSR.kx.get_srcip() .. ":" .. KSR.kx.get_srcport() .. "\n")
		KSR.x.drop()
	end
	return 1
end
