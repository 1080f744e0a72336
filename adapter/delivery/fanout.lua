-- Shared by device.lua and uplink.lua (device_store.py puts this first, after the locals
-- `stream_prefix` and `partitions`): one delivery per enabled callback
-- of a transition's type, appended to the delivery stream of the device's partition, in the same atomic
-- step as the state change (docs/design.md §4). Stream entry fields: t target, k ordering key, id delivery id,
-- b body (JSON), n attempts made. The partition is sha1(key)[:8] mod partitions, as in delivery.py.

local function partition_of(k, partitions)
  return tonumber(string.sub(redis.sha1hex(k), 1, 8), 16) % partitions
end

local function fanout(enabled_key, k, item)
  local ids = redis.call('SMEMBERS', enabled_key)
  if #ids == 0 then
    return
  end
  local body = cjson.encode(item)
  local stream = stream_prefix .. partition_of(k, partitions)
  for _, id in ipairs(ids) do
    local target = 'callback:' .. id
    redis.call('XADD', stream, '*', 't', target, 'k', k, 'id', item.eventId .. ':' .. target, 'b', body, 'n', '0')
  end
end

-- the body of a device transition: docs/design.md §5 and docs/callbacks.md
local function device_event(client_key, sn, online, time_ms, reason, version)
  local h = redis.call('HMGET', client_key, 'online_time', 'offline_time')
  return {type = 'device', sn = sn, online = online, time = math.floor(time_ms / 1000), reason = reason,
          version = version, onlineTime = math.floor((tonumber(h[1]) or 0) / 1000),
          offlineTime = math.floor((tonumber(h[2]) or 0) / 1000), eventId = 'd:' .. sn .. ':' .. version}
end
