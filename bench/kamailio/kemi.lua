-- Lua KEMI routing equivalent to native.cfg and to siprouter's default script
-- (src/siprouter/scripts/default.py). The defines WITH_RELAY (record-route and relay every
-- initial request to its Request-URI, like bench/scripts/relay.py) and WITH_AUTH (digest
-- authentication of REGISTER) are read once per process, at the first request.

local FLT_MODE = nil -- "relay" | "auth" | "default"

local function mode()
	if FLT_MODE == nil then
		if KSR.kx.ifdef("WITH_RELAY") then
			FLT_MODE = "relay"
		elseif KSR.kx.ifdef("WITH_AUTH") then
			FLT_MODE = "auth"
		else
			FLT_MODE = "default"
		end
	end
	return FLT_MODE
end

local function relay()
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
end

function ksr_request_route()
	-- per-request sanity (route[REQINIT])
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		return 1
	end
	local method = KSR.kx.get_method()
	if method == "OPTIONS" and KSR.is_myself_ruri() and KSR.pv.is_null("$rU") then
		KSR.sl.sl_send_reply(200, "Keepalive")
		return 1
	end

	-- CANCEL and retransmissions: the transaction layer
	if method == "CANCEL" then
		if KSR.tm.t_check_trans() > 0 then
			KSR.tm.t_relay()
		end
		return 1
	end
	if method ~= "ACK" then
		if KSR.tmx.t_precheck_trans() > 0 then
			KSR.tm.t_check_trans()
			return 1
		end
		KSR.tm.t_check_trans()
	end

	-- in-dialog requests (route[WITHINDLG])
	if KSR.siputils.has_totag() > 0 then
		if KSR.rr.loose_route() > 0 then
			if method == "INVITE" then
				KSR.rr.record_route()
			end
			relay()
			return 1
		end
		if method == "ACK" then
			if KSR.tm.t_check_trans() > 0 then
				KSR.tm.t_relay()
			end
			return 1
		end
		KSR.sl.sl_send_reply(404, "Not here")
		return 1
	end

	if method == "ACK" then
		return 1
	end

	local m = mode()
	if m == "relay" then
		KSR.rr.record_route()
		relay()
		return 1
	end

	if method == "INVITE" or method == "SUBSCRIBE" or method == "REFER" or method == "NOTIFY" then
		KSR.rr.record_route()
	end

	if not KSR.is_myself_ruri() then
		KSR.sl.sl_send_reply(403, "Not relaying")
		return 1
	end

	if method == "REGISTER" then
		if m == "auth" then
			if KSR.auth_db.auth_check(KSR.kx.get_fhost(), "subscriber", 1) < 0 then
				KSR.auth.auth_challenge(KSR.kx.get_fhost(), 0)
				return 1
			end
			KSR.auth.consume_credentials()
		end
		if KSR.registrar.save("location", 0) < 0 then
			KSR.sl.sl_reply_error()
		end
		return 1
	end

	if KSR.pv.is_null("$rU") then
		KSR.sl.sl_send_reply(484, "Address Incomplete")
		return 1
	end

	-- route[LOCATION]
	local rc = KSR.registrar.lookup("location")
	if rc < 0 then
		if rc == -1 or rc == -3 then
			KSR.sl.sl_send_reply(404, "Not Found")
		else
			KSR.sl.sl_send_reply(405, "Method Not Allowed")
		end
		return 1
	end
	relay()
	return 1
end
