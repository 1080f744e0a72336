-- KEYS: devices, devices_online, devices_offline, peris, peris_online, peris_offline, device_callbacks,
--       peripheral_callbacks, client, stream, presence_log
-- ARGV: kind, clientid, connected_at, disconnected_at, reason, peripheral_prefix
-- include: delivery/fanout.lua, devices/presence.lua as presence
-- Device bookkeeping, after presence.lua (wrapped as `presence(KEYS, ARGV)`) and fanout.lua
-- (devices/calls.py `device_call` builds its KEYS and ARGV). One atomic step per event: the presence rules,
-- then the device indexes, the peripherals of a gateway that went offline, and one delivery per enabled
-- callback of each transition. Every key is in the device's slot on a cluster (the index shards, the enabled
-- sets' replicas and the stream of its partition).
--
-- KEYS  1 devices  2 devices:online  3 devices:offline  4 peris  5 peris:online  6 peris:offline
--       (the index shards of the device's shard)
--       7 enabled device callbacks  8 enabled peripheral callbacks  9 the client hash  10 the delivery stream
--       11 the device's presence log
-- ARGV  1..5 as presence.lua; 6 the prefix of the device's peripheral hash keys ("<prefix>:peri:")

local function peripherals_offline(sn, time, reason)
  local members = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. sn .. '/', '[' .. sn .. '/\255')
  for _, m in ipairs(members) do
    local nid = string.sub(m, #sn + 2)
    local pkey = ARGV[6] .. sn .. ':' .. nid
    if redis.call('HGET', pkey, 'online') == '1' then
      local v = redis.call('HINCRBY', pkey, 'version', 1)
      redis.call('HSET', pkey, 'online', '0', 'offlineTime', tostring(math.floor(time / 1000)))
      redis.call('ZREM', KEYS[5], m)
      redis.call('ZADD', KEYS[6], 0, m)
      fanout(KEYS[8], KEYS[10], sn, {type = 'peripheral', sn = sn, nId = nid, gwId = redis.call('HGET', pkey, 'gwId') or '',
              online = false, time = math.floor(time / 1000), reason = reason, version = v,
              onlineTime = tonumber(redis.call('HGET', pkey, 'onlineTime')) or 0,
              offlineTime = math.floor(time / 1000), eventId = 'p:' .. sn .. '/' .. nid .. ':' .. v})
    end
  end
end

local t = presence({KEYS[9]}, ARGV)
if t == nil then
  return nil
end
if redis.call('HGET', KEYS[9], 'device') ~= '1' then
  return t
end
local sn = ARGV[2]
local online = t[1] == 1
log_presence(KEYS[11], t[2], online, t[3])
if online then
  redis.call('ZADD', KEYS[2], 0, sn)
  redis.call('ZREM', KEYS[3], sn)
else
  redis.call('ZADD', KEYS[3], 0, sn)
  redis.call('ZREM', KEYS[2], sn)
  peripherals_offline(sn, t[2], 'gateway_offline')
end
fanout(KEYS[7], KEYS[10], sn, device_event(KEYS[9], sn, online, t[2], t[3], t[4]))
return t
