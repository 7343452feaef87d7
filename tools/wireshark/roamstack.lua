-- Roamstack dissector for Wireshark and tshark (Lua; Wireshark 3.6 or later).
--
--   tshark -X lua_script:tools/wireshark/roamstack.lua -o roamstack.link.udp_ports:7100-7102 -r FILE
--   (Wireshark: copy or link it into ~/.local/lib/wireshark/plugins/; the .deb installs it
--   in /usr/share/roamstack/wireshark/)
--
-- What it shows, by docs/PROTOCOL.md section:
--   roamstack.link  1.1 and 3.8: the IP-in-UDP link (each datagram one raw IP packet, handed
--                   to Wireshark's ip/ipv6 dissectors) and the link rebind datagram (0x1A).
--                   UDP ports: preference udp_ports (the link has no default port), plus a
--                   heuristic that takes a datagram only when it is a whole IPv4 packet with
--                   a valid header checksum, a whole IPv6 packet, or a well-formed rebind.
--   roamstack.chan  2: the control channel on the userspace channel port (default 7001):
--                   the u16 length framing, the three Noise XX handshake messages, and
--                   transport frames (counter, ciphertext, tag). Payloads are encrypted, so
--                   the message in a transport frame is only inferred from its length and
--                   direction (roamstack.chan.guess, roamstack.acm.*, roamstack.register.*).
--   roamstack.ctl   4.0: the server-to-server control port (kernel TCP, no default port:
--                   preference tcp_ports): its handshake records and encrypted records.
--   roamstack.opt   6, 7, 9: the TCP options of kind 253 with ExID 0x5248 (NAT handover),
--                   0x5253 (segment MAC) and 0x524F (owner proof); other kind-253 options go
--                   to Wireshark's own experimental-option dissector.
-- Tags and MACs are shown, not verified: their keys never appear on the wire.

local OPT_KIND = 253
local EXID_HANDOVER, EXID_SEGMAC, EXID_OWNER = 0x5248, 0x5253, 0x524F
local LINK_REBIND_TYPE = 0x1A
local TAG_LEN = 16 -- Poly1305
local COUNTER_LEN = 8
local DH_LEN = 32

---------------------------------------------------------------------------------------------
-- TCP options (kind 253)

local p_opt = Proto.new("roamstack.opt", "Roamstack TCP option")
local exid_names = {
  [EXID_HANDOVER] = "NAT handover (RH)",
  [EXID_SEGMAC] = "segment MAC (RS)",
  [EXID_OWNER] = "owner proof (RO)",
}
local handover_kinds = { [1] = "SYN", [2] = "SYN-ACK", [3] = "window update" }
local of = {
  kind = ProtoField.uint8("roamstack.opt.kind", "Kind"),
  length = ProtoField.uint8("roamstack.opt.length", "Length"),
  exid = ProtoField.uint16("roamstack.opt.exid", "ExID", base.HEX, exid_names),
  handover = ProtoField.none("roamstack.opt.handover", "NAT handover option"),
  ho_conn_id = ProtoField.uint64("roamstack.opt.handover.conn_id", "Connection id", base.HEX),
  ho_rcv_nxt = ProtoField.uint32("roamstack.opt.handover.rcv_nxt", "Sender's rcv_nxt"),
  ho_tag = ProtoField.bytes("roamstack.opt.handover.tag", "Tag (BLAKE2b, 12 bytes)"),
  ho_kind = ProtoField.uint8("roamstack.opt.handover.kind", "Tag kind (from the TCP flags)", base.DEC,
                             handover_kinds),
  segmac = ProtoField.none("roamstack.opt.segmac", "Segment MAC option"),
  sm_tag = ProtoField.bytes("roamstack.opt.segmac.tag", "Tag (SipHash-2-4-128, 12 bytes)"),
  owner = ProtoField.none("roamstack.opt.owner", "Owner proof option"),
  ow_channel_tag = ProtoField.bytes("roamstack.opt.owner.channel_tag", "Channel tag"),
  ow_mac = ProtoField.bytes("roamstack.opt.owner.mac", "MAC"),
}
p_opt.fields = of
local e_opt_length = ProtoExpert.new("roamstack.opt.bad_length", "Wrong length for this ExID",
                                     expert.group.MALFORMED, expert.severity.ERROR)
local e_opt_placement = ProtoExpert.new("roamstack.opt.misplaced", "Option in a segment that ignores it",
                                        expert.group.PROTOCOL, expert.severity.WARN)
p_opt.experts = { e_opt_length, e_opt_placement }

local f_tcp_flags = Field.new("tcp.flags")
local tcp_option_table = DissectorTable.get("tcp.option")
local builtin_experimental = tcp_option_table:get_dissector(OPT_KIND)

local function tcp_flags()
  local all = { f_tcp_flags() }
  local last = all[#all]
  if last == nil then return nil end
  return last.value
end

local function handover_kind(flags)
  if flags == nil then return nil end
  local syn, ack = bit.band(flags, 0x02) ~= 0, bit.band(flags, 0x10) ~= 0
  if syn and not ack then return 1 end
  if syn and ack then return 2 end
  if ack then return 3 end
  return nil
end

local wanted_length = { [EXID_HANDOVER] = 28, [EXID_SEGMAC] = 16, [EXID_OWNER] = 20 }

function p_opt.dissector(tvb, pinfo, tree)
  local exid = tvb:len() >= 4 and tvb(2, 2):uint() or nil
  if exid == nil or wanted_length[exid] == nil then
    if builtin_experimental ~= nil then return builtin_experimental:call(tvb, pinfo, tree) end
    return 0
  end
  local item = tree:add(p_opt, tvb(), "TCP Option - Roamstack " .. exid_names[exid])
  item:add(of.kind, tvb(0, 1))
  item:add(of.length, tvb(1, 1))
  item:add(of.exid, tvb(2, 2))
  if tvb(1, 1):uint() ~= wanted_length[exid] or tvb:len() ~= wanted_length[exid] then
    item:add_proto_expert_info(e_opt_length, string.format("length %d, expected %d", tvb(1, 1):uint(),
                                                           wanted_length[exid]))
    return tvb:len()
  end
  local flags = tcp_flags()
  if exid == EXID_HANDOVER then
    local sub = item:add(of.handover, tvb())
    sub:add(of.ho_conn_id, tvb(4, 8))
    sub:add(of.ho_rcv_nxt, tvb(12, 4))
    sub:add(of.ho_tag, tvb(16, 12))
    local kind = handover_kind(flags)
    if kind ~= nil then sub:add(of.ho_kind, kind):set_generated() end
    pinfo.cols.info:append(" [Roamstack handover " .. (handover_kinds[kind] or "?") .. "]")
  elseif exid == EXID_SEGMAC then
    local sub = item:add(of.segmac, tvb())
    sub:add(of.sm_tag, tvb(4, 12))
    pinfo.cols.info:append(" [Roamstack MAC]")
  else
    local sub = item:add(of.owner, tvb())
    sub:add(of.ow_channel_tag, tvb(4, 8))
    sub:add(of.ow_mac, tvb(12, 8))
    if flags ~= nil and handover_kind(flags) ~= 1 then
      sub:add_proto_expert_info(e_opt_placement, "owner proofs count only in a SYN without ACK")
    end
    pinfo.cols.info:append(" [Roamstack owner proof]")
  end
  return tvb:len()
end

tcp_option_table:add(OPT_KIND, p_opt)

---------------------------------------------------------------------------------------------
-- Noise-framed TCP streams: the control channel (section 2) and the control port (4.0).
-- Both are `u16 length | body` records; the first record in each direction belongs to the
-- XX handshake (initiator: msg1, msg3; responder: msg2). Which record is which follows from
-- its place in its direction, counted on the first pass and remembered per frame.

local f_tcp_stream = Field.new("tcp.stream")

local function last_value(field)
  local all = { field() }
  local last = all[#all]
  return last and last.value or nil
end

-- streams[key] = { [true] = {count, first_len}, [false] = {...} }; ordinals[frame:offset] = n
local function new_noise_state()
  return { streams = {}, ordinals = {} }
end

local function record_ordinal(state, pinfo, offset, initiator_to_responder, length)
  local stream = last_value(f_tcp_stream) or -1
  local key = string.format("%d:%d:%d", pinfo.number, stream, offset)
  local known = state.ordinals[key]
  if known ~= nil then return known.n, known.handshake end
  local s = state.streams[stream]
  if s == nil then
    s = { [true] = { count = 0 }, [false] = { count = 0 }, handshake = nil }
    state.streams[stream] = s
  end
  local d = s[initiator_to_responder]
  d.count = d.count + 1
  local n = d.count
  -- The handshake is recognized only from its start: msg1 is exactly 32 bytes. A capture
  -- that began later sees transport records only.
  if s.handshake == nil then
    s.handshake = initiator_to_responder and n == 1 and length == DH_LEN
  end
  known = { n = n, handshake = s.handshake }
  state.ordinals[key] = known
  return n, s.handshake
end

-- Runs `each(tvb_of_record, offset)` over complete records; asks TCP for more otherwise.
local function for_each_record(tvb, pinfo, each)
  local offset = 0
  local total = tvb:len()
  while offset < total do
    if total - offset < 2 then
      pinfo.desegment_offset = offset
      pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
      return total
    end
    local length = tvb(offset, 2):uint()
    if total - offset < 2 + length then
      pinfo.desegment_offset = offset
      pinfo.desegment_len = 2 + length - (total - offset)
      return total
    end
    each(tvb(offset, 2 + length):tvb(), offset)
    offset = offset + 2 + length
  end
  return total
end

-- The (lo, hi) pairs of a port preference such as "7000,7100-7110".
local function port_ranges(range_text)
  local ranges = {}
  for part in string.gmatch(range_text or "", "[^,%s]+") do
    local lo, hi = string.match(part, "^(%d+)%-(%d+)$")
    if lo == nil then lo = string.match(part, "^(%d+)$"); hi = lo end
    if lo ~= nil then ranges[#ranges + 1] = { tonumber(lo), tonumber(hi) } end
  end
  return ranges
end

local function port_in(range_text, port)
  for _, r in ipairs(port_ranges(range_text)) do
    if port >= r[1] and port <= r[2] then return true end
  end
  return false
end

-- At most 1024 ports per range: a typo like "1-65535" must not register every port.
local function add_port_range(table_name, range_text, proto)
  local t = DissectorTable.get(table_name)
  for _, r in ipairs(port_ranges(range_text)) do
    for port = r[1], math.min(r[2], r[1] + 1023) do t:add(port, proto) end
  end
end

local function remove_port_range(table_name, range_text, proto)
  local t = DissectorTable.get(table_name)
  for _, r in ipairs(port_ranges(range_text)) do
    for port = r[1], math.min(r[2], r[1] + 1023) do t:remove(port, proto) end
  end
end

---------------------------------------------------------------------------------------------
-- The control channel (section 2, userspace TCP, default port 7001)

local p_chan = Proto.new("roamstack.chan", "Roamstack control channel")
local message_names = { [1] = "msg1 (-> e)", [2] = "msg2 (<- e, ee, s, es)", [3] = "msg3 (-> s, se)" }
local cf = {
  length = ProtoField.uint16("roamstack.chan.length", "Length"),
  direction = ProtoField.string("roamstack.chan.direction", "Direction"),
  handshake = ProtoField.uint8("roamstack.chan.handshake", "Handshake message", base.DEC, message_names),
  ephemeral = ProtoField.bytes("roamstack.chan.ephemeral", "Ephemeral public key"),
  static_enc = ProtoField.bytes("roamstack.chan.static", "Static public key (encrypted)"),
  payload_enc = ProtoField.bytes("roamstack.chan.payload", "HELLO (encrypted)"),
  hello_host_id_len = ProtoField.uint8("roamstack.chan.hello.host_id_length", "HELLO host id length"),
  hello_credential = ProtoField.bool("roamstack.chan.hello.credential", "HELLO carries a pool certificate"),
  counter = ProtoField.uint64("roamstack.chan.counter", "Counter"),
  ciphertext = ProtoField.bytes("roamstack.chan.ciphertext", "Ciphertext"),
  plaintext_len = ProtoField.uint16("roamstack.chan.plaintext_length", "Plaintext length"),
  tag = ProtoField.bytes("roamstack.chan.tag", "Tag (Poly1305)"),
  guess = ProtoField.string("roamstack.chan.guess", "Message (inferred from length and direction)"),
  acm_ids = ProtoField.uint16("roamstack.acm.ids", "ACM connection ids (inferred)"),
  acm_token = ProtoField.bool("roamstack.acm.token", "ACM carries a handover token (assumed)"),
  acm_credential = ProtoField.bool("roamstack.acm.credential", "ACM carries a pool certificate (inferred)"),
  register_ids = ProtoField.uint16("roamstack.register.ids", "REGISTER connection ids (inferred)"),
  link_key_version = ProtoField.uint8("roamstack.link_key.ip_version", "LINK_KEY inner address version (inferred)"),
}
p_chan.fields = cf
local e_chan_zero = ProtoExpert.new("roamstack.chan.zero_length", "Zero-length frame (fatal: the receiver resets)",
                                    expert.group.MALFORMED, expert.severity.ERROR)
local e_chan_short = ProtoExpert.new("roamstack.chan.short", "Transport frame shorter than 24 bytes (forged)",
                                     expert.group.MALFORMED, expert.severity.ERROR)
local e_chan_counter = ProtoExpert.new("roamstack.chan.counter_max", "Counter 2^64-1 is never used (forged)",
                                       expert.group.SECURITY, expert.severity.ERROR)
local e_chan_guess = ProtoExpert.new("roamstack.chan.inferred", "Message type inferred from the length only",
                                     expert.group.COMMENTS_GROUP, expert.severity.NOTE)
p_chan.experts = { e_chan_zero, e_chan_short, e_chan_counter, e_chan_guess }
p_chan.prefs.port = Pref.uint("Channel port", 7001, "userspace TCP port of the control channel (--channel-port)")
p_chan.prefs.assume_token = Pref.bool("ACMs carry a token", true,
  "infer ACM id counts assuming a 32-byte handover token (servers send one unless --handover off)")

local chan_state = new_noise_state()
local CERT_LEN = 137

-- HELLO = 9 + host id (1..64) + credential (0 or 137): its length tells both apart.
local function hello_shape(hello_len)
  if hello_len - 9 - CERT_LEN >= 1 and hello_len - 9 - CERT_LEN <= 64 then return hello_len - 9 - CERT_LEN, true end
  if hello_len - 9 >= 1 and hello_len - 9 <= 64 then return hello_len - 9, false end
  return nil, nil
end

-- The message inside a transport frame, from its plaintext length, its direction and the
-- family of the channel's own connection (an ACM's old address is its server's address).
local function guess_message(plain, to_server, ipv6)
  if plain == 10 then return "ACK" end
  if to_server then
    if plain >= 11 and (plain - 3) % 8 == 0 then return "REGISTER", { register_ids = (plain - 3) / 8 } end
    return "ERROR or ACM (client move)"
  end
  if plain == 38 then return "LINK_KEY", { link_key_version = 4 } end
  if plain == 50 then return "LINK_KEY", { link_key_version = 6 } end
  local base_len = ipv6 and 75 or 51
  for _, credential in ipairs({ true, false }) do
    local rest = plain - base_len - (credential and CERT_LEN or 0)
    if p_chan.prefs.assume_token then rest = rest - 32 end
    if rest >= 0 and rest % 8 == 0 and rest / 8 <= 4096 then
      return "ACM", { acm_ids = rest / 8, acm_credential = credential, acm_token = p_chan.prefs.assume_token }
    end
  end
  return "ERROR"
end

local function dissect_chan_record(rec, pinfo, tree, to_server, ordinal, handshake, ipv6)
  local length = rec(0, 2):uint()
  local item = tree:add(p_chan, rec())
  item:add(cf.length, rec(0, 2))
  item:add(cf.direction, to_server and "client to server" or "server to client"):set_generated()
  if length == 0 then
    item:add_proto_expert_info(e_chan_zero)
    item:append_text(": zero-length frame")
    return "zero"
  end
  local message = nil
  if handshake and to_server and ordinal == 1 then message = 1 end
  if handshake and not to_server and ordinal == 1 then message = 2 end
  if handshake and to_server and ordinal == 2 then message = 3 end
  if message ~= nil then
    item:add(cf.handshake, message):set_generated()
    item:append_text(", handshake " .. message_names[message])
    local body = rec(2, length)
    if message == 1 then
      item:add(cf.ephemeral, body)
    else
      local at = 0
      if message == 2 then
        item:add(cf.ephemeral, body(0, DH_LEN)); at = DH_LEN
      end
      if length >= at + DH_LEN + TAG_LEN then
        item:add(cf.static_enc, body(at, DH_LEN + TAG_LEN)); at = at + DH_LEN + TAG_LEN
        if length > at then
          item:add(cf.payload_enc, body(at))
          local host_len, credential = hello_shape(length - at - TAG_LEN)
          if host_len ~= nil then
            item:add(cf.hello_host_id_len, host_len):set_generated()
            item:add(cf.hello_credential, credential):set_generated()
          end
        end
      end
    end
    return "handshake " .. message
  end
  if length < COUNTER_LEN + TAG_LEN then
    item:add_proto_expert_info(e_chan_short)
    return "short"
  end
  local counter_range = rec(2, COUNTER_LEN)
  local counter = counter_range:uint64()
  item:add(cf.counter, counter_range)
  if counter == UInt64.max() then item:add_proto_expert_info(e_chan_counter) end
  local plain = length - COUNTER_LEN - TAG_LEN
  if plain > 0 then item:add(cf.ciphertext, rec(2 + COUNTER_LEN, plain)) end
  item:add(cf.plaintext_len, plain):set_generated()
  item:add(cf.tag, rec(2 + length - TAG_LEN, TAG_LEN))
  local name, extra = guess_message(plain, to_server, ipv6)
  local guess = item:add(cf.guess, name)
  guess:set_generated()
  guess:add_proto_expert_info(e_chan_guess)
  for key, value in pairs(extra or {}) do
    guess:add(cf[key], value):set_generated()
  end
  if name == "ACM" and extra.acm_ids == 0 then name = "ACM (scope global)" end
  item:append_text(string.format(", transport frame %s, %s?", tostring(counter), name))
  return name
end

function p_chan.dissector(tvb, pinfo, tree)
  local to_server = pinfo.dst_port == p_chan.prefs.port
  local ipv6 = string.find(tostring(pinfo.dst), ":", 1, true) ~= nil
  pinfo.cols.protocol = "RS-CHAN"
  local names = {}
  local consumed = for_each_record(tvb, pinfo, function(rec, offset)
    local ordinal, handshake = record_ordinal(chan_state, pinfo, offset, to_server, rec(0, 2):uint())
    names[#names + 1] = dissect_chan_record(rec, pinfo, tree, to_server, ordinal, handshake, ipv6)
  end)
  if #names > 0 then pinfo.cols.info = "Roamstack channel: " .. table.concat(names, ", ") end
  return consumed
end

function p_chan.init()
  chan_state = new_noise_state()
end

local chan_registered_port = nil
local function register_chan_port()
  local t = DissectorTable.get("tcp.port")
  if chan_registered_port ~= nil then t:remove(chan_registered_port, p_chan) end
  chan_registered_port = p_chan.prefs.port
  if chan_registered_port ~= 0 then t:add(chan_registered_port, p_chan) end
end

function p_chan.prefs_changed()
  register_chan_port()
end
register_chan_port()

---------------------------------------------------------------------------------------------
-- Carrier connections (section 1.1, default port 7000): the application's own bytes, shown
-- as such (the port is otherwise Wireshark's Gryphon).

local p_carrier = Proto.new("roamstack.carrier", "Roamstack carrier")
local carrier_bytes = ProtoField.bytes("roamstack.carrier.data", "Application bytes")
p_carrier.fields = { carrier_bytes }
p_carrier.prefs.port = Pref.uint("Carrier port", 7000, "userspace TCP port of the carrier app (--listen)")

function p_carrier.dissector(tvb, pinfo, tree)
  local item = tree:add(p_carrier, tvb(), string.format("Roamstack carrier: %d application bytes", tvb:len()))
  item:add(carrier_bytes, tvb())
  return tvb:len()
end

local carrier_registered_port = nil
local function register_carrier_port()
  local t = DissectorTable.get("tcp.port")
  if carrier_registered_port ~= nil then t:remove(carrier_registered_port, p_carrier) end
  carrier_registered_port = p_carrier.prefs.port
  if carrier_registered_port ~= 0 then t:add(carrier_registered_port, p_carrier) end
end
p_carrier.prefs_changed = register_carrier_port
register_carrier_port()

---------------------------------------------------------------------------------------------
-- The control port (section 4.0, kernel TCP, --control IP:PORT; no default port)

local p_ctl = Proto.new("roamstack.ctl", "Roamstack control port")
local tf = {
  length = ProtoField.uint16("roamstack.ctl.length", "Length"),
  direction = ProtoField.string("roamstack.ctl.direction", "Direction"),
  handshake = ProtoField.uint8("roamstack.ctl.handshake", "Handshake message", base.DEC, message_names),
  ephemeral = ProtoField.bytes("roamstack.ctl.ephemeral", "Ephemeral public key"),
  static_enc = ProtoField.bytes("roamstack.ctl.static", "Static public key (encrypted)"),
  payload_enc = ProtoField.bytes("roamstack.ctl.payload", "Credential (encrypted)"),
  credential_len = ProtoField.uint16("roamstack.ctl.credential_length", "Credential length"),
  nonce = ProtoField.uint64("roamstack.ctl.nonce", "Implicit nonce (record index in this direction)"),
  ciphertext = ProtoField.bytes("roamstack.ctl.ciphertext", "Ciphertext"),
  tag = ProtoField.bytes("roamstack.ctl.tag", "Tag (Poly1305)"),
}
p_ctl.fields = tf
local e_ctl_zero = ProtoExpert.new("roamstack.ctl.zero_length", "Zero-length record (ends the connection)",
                                   expert.group.MALFORMED, expert.severity.ERROR)
p_ctl.experts = { e_ctl_zero }
p_ctl.prefs.tcp_ports = Pref.string("Control ports", "",
  "kernel TCP ports of roam-server --control (comma-separated ports or ranges, e.g. 7010,7020-7021)")

local ctl_state = new_noise_state()

local function dissect_ctl_record(rec, tree, to_responder, ordinal, handshake)
  local length = rec(0, 2):uint()
  local item = tree:add(p_ctl, rec())
  item:add(tf.length, rec(0, 2))
  item:add(tf.direction, to_responder and "initiator to responder" or "responder to initiator"):set_generated()
  if length == 0 then
    item:add_proto_expert_info(e_ctl_zero)
    return "zero"
  end
  local message = nil
  if handshake and to_responder and ordinal == 1 then message = 1 end
  if handshake and not to_responder and ordinal == 1 then message = 2 end
  if handshake and to_responder and ordinal == 2 then message = 3 end
  local body = rec(2, length)
  if message ~= nil then
    item:add(tf.handshake, message):set_generated()
    item:append_text(", handshake " .. message_names[message])
    if message == 1 then
      item:add(tf.ephemeral, body)
    else
      local at = 0
      if message == 2 then item:add(tf.ephemeral, body(0, DH_LEN)); at = DH_LEN end
      if length >= at + DH_LEN + TAG_LEN * 2 then
        item:add(tf.static_enc, body(at, DH_LEN + TAG_LEN)); at = at + DH_LEN + TAG_LEN
        item:add(tf.payload_enc, body(at))
        item:add(tf.credential_len, length - at - TAG_LEN):set_generated()
      end
    end
    return "handshake " .. message
  end
  -- Transport: the nonce is the record's index among this direction's transport records.
  -- (after msg1 and msg3 out, after msg2 back; unknown when the capture missed the handshake)
  local index = nil
  if handshake then index = to_responder and ordinal - 3 or ordinal - 2 end
  if index ~= nil then item:add(tf.nonce, UInt64(index)):set_generated() end
  if length > TAG_LEN then item:add(tf.ciphertext, body(0, length - TAG_LEN)) end
  if length >= TAG_LEN then item:add(tf.tag, body(length - TAG_LEN, TAG_LEN)) end
  item:append_text(string.format(", encrypted record, %d bytes of frames", math.max(0, length - TAG_LEN)))
  return "record"
end

function p_ctl.dissector(tvb, pinfo, tree)
  local to_responder = port_in(p_ctl.prefs.tcp_ports, pinfo.dst_port)
  pinfo.cols.protocol = "RS-CTL"
  local names = {}
  local consumed = for_each_record(tvb, pinfo, function(rec, offset)
    local ordinal, handshake = record_ordinal(ctl_state, pinfo, offset, to_responder, rec(0, 2):uint())
    names[#names + 1] = dissect_ctl_record(rec, tree, to_responder, ordinal, handshake)
  end)
  if #names > 0 then pinfo.cols.info = "Roamstack control port: " .. table.concat(names, ", ") end
  return consumed
end

function p_ctl.init()
  ctl_state = new_noise_state()
end

local ctl_registered = ""
function p_ctl.prefs_changed()
  remove_port_range("tcp.port", ctl_registered, p_ctl)
  ctl_registered = p_ctl.prefs.tcp_ports
  add_port_range("tcp.port", ctl_registered, p_ctl)
end

---------------------------------------------------------------------------------------------
-- The IP-in-UDP link (section 1.1) and the link rebind datagram (3.8)

local p_link = Proto.new("roamstack.link", "Roamstack UDP link")
local lf = {
  inner_version = ProtoField.uint8("roamstack.link.inner_version", "Inner IP version"),
  rebind = ProtoField.none("roamstack.link.rebind", "Link rebind"),
  rb_type = ProtoField.uint8("roamstack.link.rebind.type", "Type", base.HEX),
  rb_format = ProtoField.uint8("roamstack.link.rebind.format", "Format"),
  rb_version = ProtoField.uint8("roamstack.link.rebind.ip_version", "Inner address IP version"),
  rb_reserved = ProtoField.uint8("roamstack.link.rebind.reserved", "Reserved"),
  rb_inner4 = ProtoField.ipv4("roamstack.link.rebind.inner", "Inner address"),
  rb_inner6 = ProtoField.ipv6("roamstack.link.rebind.inner6", "Inner address"),
  rb_counter = ProtoField.uint64("roamstack.link.rebind.counter", "Counter"),
  rb_time = ProtoField.absolute_time("roamstack.link.rebind.time", "Counter as Unix time (microseconds)",
                                     base.UTC),
  rb_mac = ProtoField.bytes("roamstack.link.rebind.mac", "MAC (HMAC-SHA-512-256)"),
}
p_link.fields = lf
local e_rebind_malformed = ProtoExpert.new("roamstack.link.rebind.malformed", "Malformed link rebind (dropped)",
                                           expert.group.MALFORMED, expert.severity.ERROR)
local e_link_unknown = ProtoExpert.new("roamstack.link.not_ip", "Neither an IP packet nor a rebind (dropped)",
                                       expert.group.MALFORMED, expert.severity.WARN)
p_link.experts = { e_rebind_malformed, e_link_unknown }
p_link.prefs.udp_ports = Pref.string("UDP link ports", "",
  "UDP ports of --link udp:IP:PORT sockets (comma-separated ports or ranges, e.g. 7100-7102)")
p_link.prefs.heuristic = Pref.bool("Heuristic", true,
  "also take UDP datagrams on other ports that are whole IPv4 packets (valid header checksum), "
  .. "whole IPv6 packets, or well-formed rebinds")

local ip_dissector = Dissector.get("ip")
local ipv6_dissector = Dissector.get("ipv6")

local function dissect_rebind(tvb, pinfo, tree)
  pinfo.cols.protocol = "RS-REBIND"
  local item = tree:add(p_link, tvb(), "Roamstack link rebind")
  local sub = item:add(lf.rebind, tvb())
  local len = tvb:len()
  sub:add(lf.rb_type, tvb(0, 1))
  if len >= 2 then sub:add(lf.rb_format, tvb(1, 1)) end
  if len >= 3 then sub:add(lf.rb_version, tvb(2, 1)) end
  if len >= 4 then sub:add(lf.rb_reserved, tvb(3, 1)) end
  local version = len >= 3 and tvb(2, 1):uint() or 0
  local want = (version == 4 and 48) or (version == 6 and 60) or nil
  if want == nil or len ~= want or tvb(1, 1):uint() ~= 1 or tvb(3, 1):uint() ~= 0 then
    sub:add_proto_expert_info(e_rebind_malformed, string.format("%d bytes, format %d, ip version %d",
      len, len >= 2 and tvb(1, 1):uint() or -1, version))
    pinfo.cols.info = "Roamstack link rebind (malformed)"
    return len
  end
  local alen = version == 4 and 4 or 16
  local inner = tvb(4, alen)
  if version == 4 then sub:add(lf.rb_inner4, inner) else sub:add(lf.rb_inner6, inner) end
  local counter_range = tvb(4 + alen, 8)
  local counter = counter_range:uint64()
  sub:add(lf.rb_counter, counter_range)
  local seconds = (counter / 1000000):tonumber()
  local micros = (counter % 1000000):tonumber()
  sub:add(lf.rb_time, counter_range, NSTime.new(seconds, micros * 1000)):set_generated()
  sub:add(lf.rb_mac, tvb(12 + alen, 32))
  local address = version == 4 and tostring(inner:ipv4()) or tostring(inner:ipv6())
  pinfo.cols.info = "Roamstack link rebind for " .. address .. ", counter " .. tostring(counter)
  return len
end

function p_link.dissector(tvb, pinfo, tree)
  local len = tvb:len()
  if len == 0 then return 0 end
  local first = tvb(0, 1):uint()
  if first == LINK_REBIND_TYPE then return dissect_rebind(tvb, pinfo, tree) end
  local version = bit.rshift(first, 4)
  local item = tree:add(p_link, tvb(), "Roamstack link: IP-in-UDP")
  if version ~= 4 and version ~= 6 then
    item:add_proto_expert_info(e_link_unknown)
    pinfo.cols.protocol = "RS-LINK"
    return len
  end
  item:add(lf.inner_version, version):set_generated()
  item:append_text(string.format(", IPv%d packet, %d bytes", version, len))
  if version == 4 then ip_dissector:call(tvb, pinfo, tree) else ipv6_dissector:call(tvb, pinfo, tree) end
  return len
end

local function ipv4_checksum_ok(tvb, header_len)
  local sum = 0
  for i = 0, header_len - 2, 2 do sum = sum + tvb(i, 2):uint() end
  while sum > 0xffff do sum = bit.band(sum, 0xffff) + bit.rshift(sum, 16) end
  return sum == 0xffff
end

local function looks_like_link(tvb)
  local len = tvb:len()
  if len < 1 then return false end
  local first = tvb(0, 1):uint()
  if first == LINK_REBIND_TYPE then
    return (len == 48 or len == 60) and tvb(1, 1):uint() == 1 and tvb(3, 1):uint() == 0
      and tvb(2, 1):uint() == (len == 48 and 4 or 6)
  end
  local version = bit.rshift(first, 4)
  if version == 4 and len >= 20 then
    local header_len = bit.band(first, 0x0f) * 4
    return header_len >= 20 and header_len <= len and tvb(2, 2):uint() == len and ipv4_checksum_ok(tvb, header_len)
  end
  if version == 6 and len >= 40 then
    return tvb(4, 2):uint() + 40 == len
  end
  return false
end

local function heuristic(tvb, pinfo, tree)
  if not p_link.prefs.heuristic or not looks_like_link(tvb) then return false end
  p_link.dissector(tvb, pinfo, tree)
  return true
end
p_link:register_heuristic("udp", heuristic)

local link_registered = ""
function p_link.prefs_changed()
  remove_port_range("udp.port", link_registered, p_link)
  link_registered = p_link.prefs.udp_ports
  add_port_range("udp.port", link_registered, p_link)
end
