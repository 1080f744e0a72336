-- Device bookkeeping, appended to presence.lua (wrapped as `presence(KEYS, ARGV)`) by device_store.py.
-- One atomic step per event: the presence rules, then the device indexes, the peripherals of a gateway
-- that went offline, and the transitions into the outbox (only while some callback is enabled).
--
-- KEYS  1 client hash  2 devices  3 devices:online  4 devices:offline  5 peris  6 peris:online
--       7 peris:offline  8 outbox  9 the enabled-callbacks set (gate of the outbox)
-- ARGV  1..5 as presence.lua; 6 the prefix of peripheral hash keys ("<prefix>:peri:")

local function outbox(item)
  if redis.call('EXISTS', KEYS[9]) == 1 then
    redis.call('RPUSH', KEYS[8], cjson.encode(item))
  end
end

local function peripherals_offline(sn, time, reason)
  local members = redis.call('ZRANGEBYLEX', KEYS[5], '[' .. sn .. '/', '[' .. sn .. '/\255')
  for _, m in ipairs(members) do
    local nid = string.sub(m, #sn + 2)
    local pkey = ARGV[6] .. sn .. ':' .. nid
    if redis.call('HGET', pkey, 'online') == '1' then
      local v = redis.call('HINCRBY', pkey, 'version', 1)
      redis.call('HSET', pkey, 'online', '0', 'offlineTime', tostring(math.floor(time / 1000)))
      redis.call('ZREM', KEYS[6], m)
      redis.call('ZADD', KEYS[7], 0, m)
      outbox({type = 'peripheral', sn = sn, nId = nid, gwId = redis.call('HGET', pkey, 'gwId') or '',
              online = false, time = time, reason = reason, version = v,
              eventId = 'p:' .. sn .. '/' .. nid .. ':' .. v})
    end
  end
end

local t = presence({KEYS[1]}, ARGV)
if t == nil then
  return nil
end
if redis.call('HGET', KEYS[1], 'device') ~= '1' then
  return t
end
local sn = ARGV[2]
local online = t[1] == 1
if online then
  redis.call('ZADD', KEYS[3], 0, sn)
  redis.call('ZREM', KEYS[4], sn)
else
  redis.call('ZADD', KEYS[4], 0, sn)
  redis.call('ZREM', KEYS[3], sn)
  peripherals_offline(sn, t[2], 'gateway_offline')
end
outbox({type = 'device', sn = sn, online = online, time = t[2], reason = t[3], version = t[4],
        eventId = 'd:' .. sn .. ':' .. t[4]})
return t
