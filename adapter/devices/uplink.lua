-- KEYS: devices, devices_online, devices_offline, peris, peris_online, peris_offline, device_callbacks,
--       peripheral_callbacks, client, stream, presence_log, ...seen
-- ARGV: mode, sn, received_at, revtime, ...mode_args, ...forward, routed, seen_ttl
-- include: delivery/fanout.lua, commands/wake.lua, targets/forward.lua
-- What a device says about itself (docs/design.md §3), applied atomically to its record.
--
-- After fanout.lua, wake.lua and forward.lua (devices/calls.py `uplink_call` builds its KEYS and ARGV).
-- KEYS  1..11 as device.lua (the index shards, the enabled callbacks of each type, 9 the client hash,
--       10 the device's delivery stream, 11 its presence log), 12 the message's seen key (only when it is
--       routed: n > 0)
-- ARGV  1 mode: mark | active | report | heartbeat | peripherals
--       2 sn (= the publishing client id)  3 received_at (ms)  4 revtime (s)
--       report: 5 field (procs|sys|versions)  6 JSON string
--       heartbeat: 5 bootTime  6 dur, then the wake arguments
--       mark: the wake arguments
--       wake arguments: the device's active commands set, the prefix of its shard's command hashes, its
--                       shard's due set
--       peripherals: 5 the prefix of the device's peripheral hash keys, 6 the prefix of its shard's
--                    per-gateway sets, 7 the prefix of the per-device last-seen sets, 8 the most peripherals
--                    a device keeps, 9 how long (s) an unreported peripheral is kept, 10 its shard's metrics
--                    hash, then groups of 4: nId, gwId, online "1"/"0", msg
--       then, when the message is routed, its forwarding (forward.lua: message id, body head, route ids),
--       then the number n of route ids (0 when none)
--       last: the seen TTL (a constant)
-- Every key is in the device's slot on a cluster: the prefixes carry its tag.
-- Returns the number of transitions (device and peripherals).

local PRUNE_MAX = 100  -- stale peripherals removed per report at most
local key, sn, mode = KEYS[9], ARGV[2], ARGV[1]
local received_at, revtime = tonumber(ARGV[3]), ARGV[4]
local routed = tonumber(ARGV[#ARGV - 1])
local last = #ARGV - 2  -- the mode's last argument
if routed > 0 then
  last = last - 2 - routed
  forward(KEYS[12], KEYS[10], ARGV[#ARGV], sn, last + 1, routed)
end
local transitions = 0
-- what this message is stamped against (`<stamp>_at`: the newest message applied of its kind)
local stamp = mode
if mode == 'report' then
  stamp = ARGV[5]
end
-- one read of what every mode looks at
local known = redis.call('HMGET', key, 'device', 'activeTime', stamp .. '_at')
local writes = {}  -- fields of the client hash, written at once at the end

-- a client becomes a device; when it is connected, that is the device coming online
local function mark()
  if known[1] == '1' then
    return
  end
  redis.call('HSET', key, 'device', '1')
  redis.call('ZADD', KEYS[1], 0, sn)
  if redis.call('HGET', key, 'online') == '1' then
    redis.call('ZADD', KEYS[2], 0, sn)
    redis.call('ZREM', KEYS[3], sn)
    local v = redis.call('HINCRBY', key, 'version', 1)
    local since = tonumber(redis.call('HGET', key, 'online_time')) or received_at
    transitions = transitions + 1
    log_presence(KEYS[11], since, true, 'connected')
    fanout(KEYS[7], KEYS[10], sn, device_event(key, sn, true, since, 'connected', v))
  else
    redis.call('ZADD', KEYS[3], 0, sn)
    redis.call('ZREM', KEYS[2], sn)
  end
end

-- true when this message is not older than the last one of its kind applied
local function newest()
  local at = tonumber(known[3])
  if at ~= nil and at > received_at then
    return false
  end
  table.insert(writes, stamp .. '_at')
  table.insert(writes, ARGV[3])
  return true
end

local function write(...)
  for _, v in ipairs({...}) do
    table.insert(writes, v)
  end
end

-- the device's waiting commands, if it has any (ARGV[i..i+2]: active set, command prefix, due set)
local function wake(i)
  if redis.call('EXISTS', ARGV[i]) == 1 then
    local t = redis.call('TIME')
    wake_commands(ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  end
end

local function active()
  local was = tonumber(known[2])
  if was == nil or was < tonumber(revtime) then
    write('activeTime', revtime)
  end
end

local function flush()
  if #writes > 0 then
    redis.call('HSET', key, unpack(writes))
  end
end

if mode == 'active' then
  if known[1] == '1' then
    active()
    flush()
  end
  return 0
end

mark()
active()
if mode == 'mark' then
  wake(5)
end
if mode == 'report' then
  if newest() then
    write(ARGV[5], ARGV[6])
  end
elseif mode == 'heartbeat' then
  wake(7)
  if newest() then
    write('bootTime', ARGV[5], 'dur', ARGV[6])
  end
elseif mode == 'peripherals' and newest() then
  local prefix, gw_prefix, seen = ARGV[5], ARGV[6], ARGV[7] .. sn
  local cap, ttl, metrics = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
  local now_s = tonumber(revtime)
  local gw_online = redis.call('HGET', key, 'online') == '1'
  -- the peripherals this device has not reported for `ttl` s go, PRUNE_MAX at most per report (bounded work;
  -- the rest go with the next reports); they leave every index, so the counts stay right
  local pruned = 0
  for _, nid in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', now_s - ttl, 'LIMIT', 0, PRUNE_MAX)) do
    local member = sn .. '/' .. nid
    local pkey = prefix .. sn .. ':' .. nid
    local gw = redis.call('HGET', pkey, 'gwId')
    if gw then
      redis.call('ZREM', gw_prefix .. gw, member)
    end
    redis.call('DEL', pkey)
    redis.call('ZREM', KEYS[4], member)
    redis.call('ZREM', KEYS[5], member)
    redis.call('ZREM', KEYS[6], member)
    redis.call('ZREM', seen, nid)
    pruned = pruned + 1
  end
  local count = redis.call('ZCARD', seen)
  local dropped = 0  -- new peripherals past the cap: not stored
  for i = 11, last, 4 do
    local nid, gw, on, msg = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local member = sn .. '/' .. nid
    local pkey = prefix .. sn .. ':' .. nid
    if not gw_online then
      on = '0'
    end
    local old_gw = redis.call('HGET', pkey, 'gwId')
    if not old_gw and count >= cap then
      dropped = dropped + 1
    else
      if redis.call('ZADD', seen, now_s, nid) == 1 then
        count = count + 1
      end
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
        transitions = transitions + 1
        fanout(KEYS[8], KEYS[10], sn, {type = 'peripheral', sn = sn, nId = nid, gwId = gw, online = on == '1',
                time = tonumber(revtime), reason = 'report', version = v,
                onlineTime = tonumber(redis.call('HGET', pkey, 'onlineTime')) or 0,
                offlineTime = tonumber(redis.call('HGET', pkey, 'offlineTime')) or 0,
                eventId = 'p:' .. sn .. '/' .. nid .. ':' .. v})
      end
    end
  end
  if pruned > 0 then
    redis.call('HINCRBY', metrics, 'peripherals_pruned_total', pruned)
  end
  if dropped > 0 then
    redis.call('HINCRBY', metrics, 'peripherals_dropped_total', dropped)
  end
end
flush()
return transitions
