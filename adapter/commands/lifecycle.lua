-- KEYS: due, expiry, all, metrics
-- ARGV: cmd_prefix, resp_prefix, active_prefix, sn_prefix, from_prefix, from_sn_prefix, mode, ...mode_args
-- include: commands/wake.lua
-- Remote control commands (docs/design.md §7, docs/commands.md): every change of a command, atomically.
--
-- One call is of one partition (on Redis Cluster: one slot; on one Redis the only one), and so is every key
-- below; the callers build KEYS and ARGV by name in adapter/commands/calls.py.
-- KEYS  1 due (ids by when the runner looks at them next, ms)  2 expiry ([id, from, sn] JSON by expiry, ms)
--       3 the index of every command  4 the metrics hash
-- ARGV  1..6 prefixes of: the command hash, its response, a device's active set, the per-sn index,
--            the per-from index, the per-from-and-sn index
--       7 mode: create | claim | record | respond | delivered | wake | cancel | prune
--       8.. the mode's own arguments (below)
--
-- A command hash holds the v1 fields (state 0 ready, 1 in progress, 2 success, 3 failed) and `phase`:
-- '' idle (waiting to be due, or for its device to come online), 'sending' (claimed by a runner, a publish
-- in flight), 'waiting' (published, waiting for the answer until the ack timeout), 'answered' (the device
-- answered while its publish was in flight: the answer counted that send, and its record counts nothing more;
-- a resend it asked for goes once the runner records the send, or once its lease ends); `recorded` the token of
-- the last send whose outcome was recorded. Fields that are still
-- zero or empty are not written at creation (tryTimes, publishTime, finishTime, failedTime, deliverTime,
-- reason, phase, errors, rewake, recorded), which makes creating 10,000 at once a third cheaper. Time is Redis's clock;
-- nothing here ever writes a command hash that has expired (every change first reads its state).

local due, expiry, all, metrics = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local P_CMD, P_RESP, P_ACTIVE, P_SN, P_FROM, P_FROM_SN = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local mode = ARGV[7]
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now = now_s * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function count(name, n)
  redis.call('HINCRBY', metrics, name, n or 1)
end

local function final(state)
  return state == '2' or state == '3'
end

local function sends_allowed(max_retries)
  return math.max(tonumber(max_retries) or 1, 1)
end

-- success ('2') or failure ('3' with a reason); the command leaves the queues
local function finish(id, sn, state, reason)
  local key = P_CMD .. id
  if state == '2' then
    redis.call('HSET', key, 'state', '2', 'finishTime', now_s, 'phase', '')
    reason = 'success'
  else
    redis.call('HSET', key, 'state', '3', 'reason', reason, 'failedTime', now_s, 'phase', '')
  end
  redis.call('ZREM', due, id)
  redis.call('ZREM', P_ACTIVE .. sn, id)
  count('commands_finished_total{result="' .. reason .. '"}')
end

-- ARGV 8 from, 9 command, 10 method, 11 d (JSON), 12 detached, 13 expires (s), 14 maxRetries,
--      15 publishNow ('1'/'0'), 16 onlyNew ('1': skip an id written already, a retried job),
--      then groups of 4: id, ordinal, sn, client (the device's client hash key).
-- A command is due at once when publishNow is set or its device is online; else it waits for online.
local function create()
  local from, expires, publish_now, only_new = ARGV[8], ARGV[13], ARGV[15], ARGV[16] == '1'
  local expire_at = now + tonumber(expires) * 1000
  local n = 0
  for i = 17, #ARGV, 4 do
    local id, ord, sn, client = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local key = P_CMD .. id
    if not (only_new and redis.call('EXISTS', key) == 1) then
      redis.call('HSET', key, 'id', id, 'sn', sn, 'from', from, 'command', ARGV[9], 'method', ARGV[10],
        'd', ARGV[11], 'detached', ARGV[12], 'expires', expires, 'maxRetries', ARGV[14],
        'publishNow', publish_now, 'state', '0', 'createTime', now_s, 'expireAt', expire_at)
      redis.call('PEXPIREAT', key, expire_at)
      redis.call('ZADD', all, ord, id)
      redis.call('ZADD', P_FROM .. from, ord, id)
      redis.call('ZADD', P_SN .. sn, ord, id)
      redis.call('ZADD', P_FROM_SN .. from .. ':' .. sn, ord, id)
      redis.call('ZADD', P_ACTIVE .. sn, ord, id)
      redis.call('ZADD', expiry, expire_at, cjson.encode({id, from, sn}))
      if publish_now == '1' or redis.call('HGET', client, 'online') == '1' then
        redis.call('ZADD', due, now, id)
      end
      n = n + 1
    end
  end
  count('commands_created_total', n)
  return {now_s, expire_at}
end

-- ARGV 8 limit, 9 lease (ms). Takes the due commands: gone, finished or expired ones (and a member that is
-- not a command id at all: 18 digits) leave the queue; one
-- whose last send went unanswered with no send left fails; every other one is leased for a send (due
-- again after the lease, should this runner die). Returns groups of 9: id, sn, from, command, method, d,
-- detached, expires, errors (publish errors in a row).
local function claim()
  local lease = tonumber(ARGV[9])
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))) do
    local key = P_CMD .. id
    local f = redis.call('HMGET', key, 'state', 'phase', 'tryTimes', 'maxRetries', 'expireAt', 'sn')
    if #id ~= 18 or id:find('%D') or not f[1] or final(f[1]) or (tonumber(f[5]) or 0) <= now then
      redis.call('ZREM', due, id)
    elseif f[2] == 'waiting' and tonumber(f[3] or 0) >= sends_allowed(f[4]) then
      finish(id, f[6], '3', 'retries_exhausted')
    else
      redis.call('HSET', key, 'phase', 'sending', 'rewake', '0')
      redis.call('ZADD', due, now + lease, id)
      local p = redis.call('HMGET', key, 'from', 'command', 'method', 'd', 'detached', 'expires', 'errors')
      table.insert(out, id)
      table.insert(out, f[6])
      for j = 1, 7 do
        table.insert(out, p[j] or '0')
      end
    end
  end
  return out
end

-- ARGV 8 ack (the ack timeout, ms), 9 send (a token of this publish: a call sent again after a lost reply applies
-- nothing twice), then groups of 3: id, outcome (sent | no_subscribers | retry | rejected),
-- at (for retry: when to try again, ms). An outcome only moves a command that is still this send's
-- ('sending'); a send always counts in tryTimes, even when the command has finished meanwhile (canceled), but
-- once only: a send the device answered while it was in flight ('answered') was counted by its answer, which
-- also said what comes next (whatever the runner saw: a timeout, say, of a publish that did go out).
local function record()
  local ack, send = tonumber(ARGV[8]), ARGV[9]
  for i = 10, #ARGV, 3 do
    local id, outcome, at = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local key = P_CMD .. id
    local f = redis.call('HMGET', key, 'state', 'phase', 'sn', 'rewake', 'recorded')
    if f[1] and f[5] ~= send then
      redis.call('HSET', key, 'recorded', send)
      local mine = not final(f[1]) and f[2] == 'sending'
      count('commands_sends_total{outcome="' .. outcome .. '"}')
      if f[2] == 'answered' then
        redis.call('HSET', key, 'phase', '', 'errors', '0')
        if not final(f[1]) then
          redis.call('ZADD', due, now, id)  -- the resend its answer asked for
        end
      elseif outcome == 'sent' then
        redis.call('HINCRBY', key, 'tryTimes', 1)
        redis.call('HSET', key, 'publishTime', now_s, 'errors', '0')
        if not final(f[1]) then
          redis.call('HSET', key, 'state', '1')
        end
        if mine then
          redis.call('HSET', key, 'phase', 'waiting')
          redis.call('ZADD', due, now + ack, id)
        end
      elseif outcome == 'rejected' then
        if not final(f[1]) then
          finish(id, f[3], '3', 'rejected')
        end
      elseif mine and outcome == 'no_subscribers' then
        -- not sent: waits for its device to come online, unless it did while this send was in flight
        redis.call('HSET', key, 'phase', '', 'errors', '0', 'rewake', '0')
        if f[4] == '1' then
          redis.call('ZADD', due, now, id)
        else
          redis.call('ZREM', due, id)
        end
      elseif mine then
        redis.call('HINCRBY', key, 'errors', 1)
        redis.call('HSET', key, 'phase', '')
        redis.call('ZADD', due, tonumber(at), id)
      end
    end
  end
  return 1
end

-- ARGV 8 seen (the seen key of the MQTT message), 9 ttl (its TTL, s), 10 id, 11 clientid (the publisher),
--      12 ok ('1'/'0'), 13 answer (JSON to store).
-- Returns what it did: success | failed | resend, or why it ignored the answer (counted).
local function respond()
  local id, clientid, ok = ARGV[10], ARGV[11], ARGV[12]
  local function ignore(reason)
    count('commands_responses_ignored_total{reason="' .. reason .. '"}')
    return reason
  end
  if not redis.call('SET', ARGV[8], '1', 'NX', 'EX', tonumber(ARGV[9])) then
    return ignore('duplicate')
  end
  local key = P_CMD .. id
  local f = redis.call('HMGET', key, 'state', 'phase', 'sn', 'tryTimes', 'maxRetries', 'expireAt')
  if not f[1] or tonumber(f[6]) <= now then
    return ignore('unknown')
  end
  if f[3] ~= clientid then
    return ignore('foreign_client')
  end
  if final(f[1]) then
    return ignore('finished')
  end
  local in_flight = f[2] == 'sending'
  local tries = tonumber(f[4] or 0)
  if in_flight then
    tries = tries + 1
  end
  if tries == 0 then
    return ignore('not_sent')
  end
  if ok ~= '1' and not in_flight and f[2] ~= 'waiting' then
    return ignore('stale')  -- a failure answered already (a resend is on its way)
  end
  redis.call('SET', P_RESP .. id, ARGV[13], 'PXAT', f[6])
  if in_flight then
    -- the answer is the truth that the device got the publish still in flight: count that send now (its
    -- runner may have died before recording it), and mark it so that its record does not count it again
    redis.call('HSET', key, 'tryTimes', tries, 'publishTime', now_s, 'state', '1')
  end
  local outcome = 'resend'
  if ok == '1' then
    finish(id, f[3], '2')
    outcome = 'success'
  elseif tries >= sends_allowed(f[5]) then
    finish(id, f[3], '3', 'retries_exhausted')
    outcome = 'failed'
  elseif not in_flight then
    redis.call('HSET', key, 'phase', '')
    redis.call('ZADD', due, now, id)
  end
  if in_flight then
    redis.call('HSET', key, 'phase', 'answered')  -- a resend waits for the record (or the lease's end)
  end
  return outcome
end

-- ARGV 8 id, 9 clientid (the client that acknowledged the delivery: message.acked)
local function delivered()
  local key = P_CMD .. ARGV[8]
  if redis.call('HGET', key, 'sn') ~= ARGV[9] then
    return 0
  end
  redis.call('HSET', key, 'deliverTime', now_s)
  return 1
end

-- ARGV 8 sn: the device is online (subscribed to its command topic, or a heartbeat); its idle commands
-- are due now, and one being sent right now goes again at once should that send find no subscriber.
local function wake()
  return wake_commands(P_ACTIVE .. ARGV[8], P_CMD, due, now)
end

-- ARGV 8 id. Returns not_found | finished | canceled.
local function cancel()
  local id = ARGV[8]
  local f = redis.call('HMGET', P_CMD .. id, 'state', 'sn', 'expireAt')
  if not f[1] or tonumber(f[3]) <= now then
    return 'not_found'
  end
  if final(f[1]) then
    return 'finished'
  end
  finish(id, f[2], '3', 'canceled')
  return 'canceled'
end

-- ARGV 8 limit. Removes expired commands from every index and queue (their hashes expire by TTL).
local function prune()
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
  for _, member in ipairs(gone) do
    local m = cjson.decode(member)
    local id, from, sn = m[1], m[2], m[3]
    redis.call('ZREM', all, id)
    redis.call('ZREM', P_FROM .. from, id)
    redis.call('ZREM', P_SN .. sn, id)
    redis.call('ZREM', P_FROM_SN .. from .. ':' .. sn, id)
    redis.call('ZREM', P_ACTIVE .. sn, id)
    redis.call('ZREM', due, id)
    redis.call('DEL', P_CMD .. id, P_RESP .. id)
    redis.call('ZREM', expiry, member)
  end
  if #gone > 0 then
    count('commands_expired_total', #gone)
  end
  return #gone
end

local modes = {create = create, claim = claim, record = record, respond = respond, delivered = delivered,
               wake = wake, cancel = cancel, prune = prune}
return modes[mode]()
