-- include: delivery/entries.lua
-- Shared by device.lua and uplink.lua (their `-- include:`): one delivery per enabled callback
-- of a transition's type, appended to the device's delivery stream in the same atomic step as the state
-- change (docs/design.md §4). The caller passes the stream as a KEY (`Keys.delivery_stream` of
-- `Keys.stream_partition(sn)`, in the device's slot on a cluster) and the enabled set as the replica of the
-- device's shard (`Keys.callbacks_enabled_in`). Stream entry fields: t target, k ordering key, id delivery id,
-- b body (JSON), n attempts made.

-- a device's presence transition, newest first, in its bounded log (`Keys.presence_log`, what its chart draws):
-- "<time ms> <1|0> <reason>"; the oldest beyond PRESENCE_LOG_MAX go (adapter/devices/presence_log.py)
local PRESENCE_LOG_MAX = 48
local function log_presence(log_key, time_ms, online, reason)
  redis.call('LPUSH', log_key, string.format('%d %d %s', time_ms, online and 1 or 0, reason))
  redis.call('LTRIM', log_key, 0, PRESENCE_LOG_MAX - 1)
end

local function fanout(enabled_key, stream, k, item)
  local ids = redis.call('SMEMBERS', enabled_key)
  if #ids == 0 then
    return
  end
  local body = cjson.encode(item)
  for _, id in ipairs(ids) do
    local target = 'callback:' .. id
    add_entry(stream, nil, target, k, item.eventId .. ':' .. target, body, '0')
  end
end

-- the body of a device transition: docs/design.md §5 and docs/callbacks.md
local function device_event(client_key, sn, online, time_ms, reason, version)
  local h = redis.call('HMGET', client_key, 'online_time', 'offline_time')
  return {type = 'device', sn = sn, online = online, time = math.floor(time_ms / 1000), reason = reason,
          version = version, onlineTime = math.floor((tonumber(h[1]) or 0) / 1000),
          offlineTime = math.floor((tonumber(h[2]) or 0) / 1000), eventId = 'd:' .. sn .. ':' .. version}
end
