-- KEYS: client
-- ARGV: kind, clientid, connected_at, disconnected_at, reason
-- The presence rules of adapter/presence.py, applied atomically to one client's state hash.
-- Keep this file and presence.py in step: tests/integration/test_presence_lua.py holds them side by side.
--
-- KEYS[1]  the client's presence hash
--          (fields: online "1"/"0", connected_at, ended_through, version, online_time, offline_time)
-- ARGV[1]  "c" connected, "d" a disconnect that ends the connection, "k" one that keeps it online
--          (takenover/discarded)
-- ARGV[2]  clientid
-- ARGV[3]  connected_at (ms), "" when unknown
-- ARGV[4]  disconnected_at (ms), "" for a connect
-- ARGV[5]  reason, "" for a connect
-- Returns nil when nothing changed that matters, else {online 1/0, time, reason, version, connected_at or ""}.

local kind = ARGV[1]
if kind == 'k' then
  return nil
end

local function num(v)
  if v == nil or v == false or v == '' then
    return nil
  end
  return tonumber(v)
end

local function at_most(value, bound)
  return bound ~= nil and value <= bound
end

local key = KEYS[1]
local h = redis.call('HMGET', key, 'online', 'connected_at', 'ended_through', 'version')
local online = h[1] == '1'
local current = num(h[2])
local ended = num(h[3])
local version = num(h[4]) or 0
local c_str, d_str, reason = ARGV[3], ARGV[4], ARGV[5]
local c, d = num(c_str), num(d_str)

local t
if kind == 'c' then
  if at_most(c, current) or at_most(c, ended) then
    return nil
  end
  if online then
    redis.call('HSET', key, 'connected_at', c_str)
    return nil
  end
  version = version + 1
  redis.call('HSET', key, 'online', '1', 'connected_at', c_str, 'version', version, 'online_time', c_str)
  t = {1, c, 'connected', version, c_str}
else
  local mark, mark_str = c, c_str
  if mark == nil then
    mark, mark_str = d, d_str
  end
  if at_most(mark, ended) or (current ~= nil and mark < current) then
    return nil
  end
  if not online then
    redis.call('HSET', key, 'ended_through', mark_str)
    return nil
  end
  version = version + 1
  redis.call('HSET', key, 'online', '0', 'ended_through', mark_str, 'version', version, 'offline_time', d_str)
  t = {0, d, reason, version, c_str}
end

return t
