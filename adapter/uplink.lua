-- What a device says about itself (DESIGN §3), applied atomically to its record.
--
-- KEYS  as device.lua (1 devices ... 8 the enabled-callbacks set, 9 the client hash)
-- ARGV  1 mode: mark | active | report | heartbeat | peripherals
--       2 sn (= the publishing client id)  3 received_at (ms)  4 revtime (s)
--       report: 5 field (procs|sys|versions)  6 JSON string
--       heartbeat: 5 bootTime  6 dur
--       peripherals: 5 the prefix of peripheral hash keys, 6 the prefix of the per-gateway sets,
--                    then groups of 4: nId, gwId, online "1"/"0", msg
-- Returns the number of transitions written (device and peripherals).

local key, sn, mode = KEYS[9], ARGV[2], ARGV[1]
local received_at, revtime = tonumber(ARGV[3]), ARGV[4]
local transitions = 0

local function outbox(item)
  transitions = transitions + 1
  if redis.call('EXISTS', KEYS[8]) == 1 then
    redis.call('RPUSH', KEYS[7], cjson.encode(item))
  end
end

-- a client becomes a device; when it is connected, that is the device coming online
local function mark()
  if redis.call('HGET', key, 'device') == '1' then
    return
  end
  redis.call('HSET', key, 'device', '1')
  redis.call('ZADD', KEYS[1], 0, sn)
  if redis.call('HGET', key, 'online') == '1' then
    redis.call('ZADD', KEYS[2], 0, sn)
    redis.call('ZREM', KEYS[3], sn)
    local v = redis.call('HINCRBY', key, 'version', 1)
    local since = tonumber(redis.call('HGET', key, 'online_time')) or received_at
    outbox({type = 'device', sn = sn, online = true, time = since, reason = 'connected', version = v,
            eventId = 'd:' .. sn .. ':' .. v})
  else
    redis.call('ZADD', KEYS[3], 0, sn)
    redis.call('ZREM', KEYS[2], sn)
  end
end

-- true when this message is not older than the last one applied to `field`
local function newest(field)
  local at = tonumber(redis.call('HGET', key, field .. '_at'))
  if at ~= nil and at > received_at then
    return false
  end
  redis.call('HSET', key, field .. '_at', ARGV[3])
  return true
end

local function active()
  local was = tonumber(redis.call('HGET', key, 'activeTime'))
  if was == nil or was < tonumber(revtime) then
    redis.call('HSET', key, 'activeTime', revtime)
  end
end

if mode == 'active' then
  if redis.call('HGET', key, 'device') == '1' then
    active()
  end
  return 0
end

mark()
active()
if mode == 'report' then
  if newest(ARGV[5]) then
    redis.call('HSET', key, ARGV[5], ARGV[6])
  end
elseif mode == 'heartbeat' then
  if newest('heartbeat') then
    redis.call('HSET', key, 'bootTime', ARGV[5], 'dur', ARGV[6])
  end
elseif mode == 'peripherals' and newest('peripherals') then
  local prefix, gw_prefix = ARGV[5], ARGV[6]
  local gw_online = redis.call('HGET', key, 'online') == '1'
  for i = 7, #ARGV, 4 do
    local nid, gw, on, msg = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local member = sn .. '/' .. nid
    local pkey = prefix .. sn .. ':' .. nid
    if not gw_online then
      on = '0'
    end
    local old_gw = redis.call('HGET', pkey, 'gwId')
    if old_gw and old_gw ~= gw then
      redis.call('ZREM', gw_prefix .. old_gw, member)
    end
    local was = redis.call('HGET', pkey, 'online')
    redis.call('HSET', pkey, 'nId', nid, 'gwId', gw, 'sn', sn, 'online', on, 'activeTime', revtime,
               'revTime', revtime, 'msg', msg)
    redis.call('ZADD', KEYS[4], 0, member)
    redis.call('ZADD', gw_prefix .. gw, 0, member)
    if on == '1' then
      redis.call('ZADD', KEYS[5], 0, member)
      redis.call('ZREM', KEYS[6], member)
    else
      redis.call('ZADD', KEYS[6], 0, member)
      redis.call('ZREM', KEYS[5], member)
    end
    if (was == '1') ~= (on == '1') and not (was == false and on == '0') then
      local v = redis.call('HINCRBY', pkey, 'version', 1)
      local field = 'offlineTime'
      if on == '1' then
        field = 'onlineTime'
      end
      redis.call('HSET', pkey, field, revtime)
      outbox({type = 'peripheral', sn = sn, nId = nid, gwId = gw, online = on == '1', time = received_at,
              reason = 'report', version = v, eventId = 'p:' .. sn .. '/' .. nid .. ':' .. v})
    end
  end
end
return transitions
