-- KEYS: ro, execs, results, inflight, driver, active
-- ARGV: mode, rid, ...mode_args
-- Rollouts (docs/rollouts.md): every change of a rollout's state, atomically. Every key is the rollout's own
-- (all in `{ro}` on Redis Cluster); adapter/rollouts/calls.py builds KEYS and ARGV.
-- KEYS  1 the rollout hash  2 execs (sn by dispatch ms)  3 results (sn -> "idStr outcome [settled ms]")
--       4 in flight (sn by deadline ms)  5 the driver lease (a job id, with a TTL)  6 the active rollouts set
-- ARGV  1 mode: control | commit | written;  2 the rollout id
--   control  3 action: pause | resume | cancel.  Answers the new state, 'not_found', or 'conflict:<state>'.
--   commit   3 the driver's job id  4 now (ms)  5 lease (ms)  6 the state to end in ('' none; succeeded | failed |
--            aborted), 7 n settled, then n (sn, outcome); then m, then m (sn, idStr, deadline ms) to dispatch;
--            then k, then k (field, value) of the hash to set. Only the lease holder commits ('fenced'
--            otherwise); a dispatch happens only while the rollout runs; the dispatched ones are the `pending`
--            batch until `written`. Answers {state, done ('1' when the driver may stop: the rollout has ended, or
--            is paused, and nothing is in flight), dispatched sns…}.
--   written  3 the driver's job id: the pending batch's commands are written.
--   handoff  3 the driver's job id  4 its successor's  5 the successor's lease (ms): answers 1, or 0 if not ours.
local ro, execs, results, inflight, driver, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local mode, rid = ARGV[1], ARGV[2]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ACTIVE = {queued = true, running = true, paused = true}

local state = redis.call('HGET', ro, 'state')
if not state then
  return 'not_found'
end

if mode == 'control' then
  local action = ARGV[3]
  if action == 'pause' and (state == 'running' or state == 'queued') then
    redis.call('HSET', ro, 'state', 'paused', 'updated', now)
    return 'paused'
  elseif action == 'resume' and state == 'paused' then
    redis.call('HSET', ro, 'state', 'running', 'updated', now)
    return 'running'
  elseif action == 'cancel' and ACTIVE[state] then
    redis.call('HSET', ro, 'state', 'cancelled', 'updated', now, 'finished', now)
    return 'cancelled'
  end
  return 'conflict:' .. state
end

if redis.call('GET', driver) ~= ARGV[3] then
  return {'fenced', '0'}
end

if mode == 'handoff' then
  redis.call('SET', driver, ARGV[4], 'PX', tonumber(ARGV[5]))
  return '1'
end

if mode == 'written' then
  redis.call('HDEL', ro, 'pending')
  return {state, '0'}
end

-- commit
local at = tonumber(ARGV[4])
redis.call('PEXPIRE', driver, tonumber(ARGV[5]))
local ending = ARGV[6]
local i = 7
local n = tonumber(ARGV[i])
for j = 1, n do
  local sn, outcome = ARGV[i + 2 * j - 1], ARGV[i + 2 * j]
  if redis.call('ZREM', inflight, sn) == 1 then
    local was = redis.call('HGET', results, sn) or ''
    redis.call('HSET', results, sn, (string.match(was, '^(%S+)') or '') .. ' ' .. outcome .. ' ' .. now)
    redis.call('HINCRBY', ro, outcome, 1)
  end
end
i = i + 2 * n + 1
local m = tonumber(ARGV[i])
local sent, pending = {}, {}
if state == 'queued' then
  state = 'running'
  redis.call('HSET', ro, 'state', state, 'started', now)
end
if state == 'running' and ending == '' then
  for j = 0, m - 1 do
    local sn, id, deadline = ARGV[i + 3 * j + 1], ARGV[i + 3 * j + 2], ARGV[i + 3 * j + 3]
    if not redis.call('ZSCORE', execs, sn) then
      redis.call('ZADD', execs, at, sn)
      redis.call('HSET', results, sn, id .. ' inFlight')
      redis.call('ZADD', inflight, deadline, sn)
      sent[#sent + 1] = sn
      pending[#pending + 1] = {sn, id}
    end
  end
  if #sent > 0 then
    redis.call('HINCRBY', ro, 'dispatched', #sent)
    redis.call('HSET', ro, 'pending', cjson.encode(pending), 'lastDispatch', at)
    redis.call('HSETNX', ro, 'firstDispatch', at)
  end
end
i = i + 3 * m + 1
local k = tonumber(ARGV[i])
for j = 0, k - 1 do
  redis.call('HSET', ro, ARGV[i + 2 * j + 1], ARGV[i + 2 * j + 2])
end
if ending ~= '' and ACTIVE[state] then
  state = ending
  redis.call('HSET', ro, 'state', state, 'finished', now)
end
redis.call('HSET', ro, 'updated', now)
local done = '0'
local idle = redis.call('ZCARD', inflight) == 0 and not redis.call('HGET', ro, 'pending')
if idle and not ACTIVE[state] then
  redis.call('SREM', active, rid)
  redis.call('DEL', driver)
  done = '1'
elseif idle and state == 'paused' then  -- nothing to settle: the driver stops until a resume starts one
  redis.call('DEL', driver)
  done = '1'
end
local out = {state, done}
for _, sn in ipairs(sent) do
  out[#out + 1] = sn
end
return out
