-- KEYS: devices, devices_online, devices_offline, peris, peris_online, peris_offline, client, presence_log
-- ARGV: sn, cutoff, peripheral_prefix, gw_prefix
-- Retention (adapter/retention.py): forget one client that has been gone since before a cutoff, with its
-- device index entries and its peripherals, so that every count stays right. Re-checks the state itself:
-- a client that came back (or was seen) after the cutoff is kept.
--
-- KEYS  1 devices  2 devices:online  3 devices:offline  4 peris  5 peris:online  6 peris:offline
--       (the index shards of the client's shard)  7 the client hash  8 its presence log
-- ARGV  1 the client id  2 the cutoff (ms)  3 the prefix of its peripheral hashes  4 the prefix of its shard's
--       per-gateway sets
-- Built by `retention_call` (retention.py); every key is in the client's slot on a cluster.
-- Returns 0 kept, 1 a device removed, 2 a client that never became a device removed.

local key, sn, cutoff = KEYS[7], ARGV[1], tonumber(ARGV[2])
local h = redis.call('HMGET', key, 'online', 'offline_time', 'connected_at', 'ended_through', 'activeTime',
                     'device')
if h[1] == '1' then
  return 0
end
local last = 0
for i = 2, 4 do
  local v = tonumber(h[i])
  if v ~= nil and v > last then
    last = v
  end
end
local active = tonumber(h[5])
if active ~= nil and active * 1000 > last then
  last = active * 1000
end
if last == 0 or last >= cutoff then
  return 0
end
local members = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. sn .. '/', '[' .. sn .. '/\255')
for _, m in ipairs(members) do
  local pkey = ARGV[3] .. sn .. ':' .. string.sub(m, #sn + 2)
  local gw = redis.call('HGET', pkey, 'gwId')
  if gw then
    redis.call('ZREM', ARGV[4] .. gw, m)
  end
  redis.call('ZREM', KEYS[4], m)
  redis.call('ZREM', KEYS[5], m)
  redis.call('ZREM', KEYS[6], m)
  redis.call('DEL', pkey)
end
redis.call('ZREM', KEYS[1], sn)
redis.call('ZREM', KEYS[2], sn)
redis.call('ZREM', KEYS[3], sn)
redis.call('DEL', key, KEYS[8])
if h[6] == '1' then
  return 1
end
return 2
