-- KEYS: stream, counts, attempts, retry, hold, dead, stats, holds, held, state, dead_index, metrics
-- ARGV: group, entry_id, outcome, record, attempts_kept, delivery_id, parked, due, released, now, release_batch,
--       max_dead, dead_max_age, breaker_threshold, breaker_probe, target, maxlen, held_max_age, count_stats
-- include: delivery/entries.lua
-- What delivery attempts' outcomes write, atomically (model.outcome_call builds one, model.outcomes merges them). Every key is in the
-- slot of the delivery's partition on Redis Cluster (docs/delivery.md "On Redis Cluster").
-- KEYS  1 the partition stream  2 the hash its succCount/failedCount count in (the target hash, counted only
--       while it exists; on the cluster the state hash, key 10)  3 its attempts list  4 the retry set
--       5 the hold list  6 the target's dead letters  7 the callback type's stats hash (counted when ARGV 19
--       is "1"; a route: "" on one Redis, key 10 on the cluster)
--       8 the partition's set of hold lists (what a pump taking the partition over loads)
--       9 the target's index of hold lists (held.lua)  10 the target's engine state  11 the dead-letter index
--       12 the metrics hash
-- ARGV  1 group  2 entry id  3 outcome: success | retry | deferred | failed | dead | dropped
--       4 attempt record (JSON)  5 kept attempts  6 delivery id  7 retried delivery (JSON) or dead letter (JSON)
--       8 due (ms)  9 released flag of the entry (0, 1, 2: the last of a released batch, more wait)  10 now (ms)
--       11 release batch  12 max dead letters  13 dead-letter max age (ms)  14 breaker threshold
--       15 breaker probe interval (ms)  16 target name  17 stream MAXLEN  18 held max age (ms)
--       19 "1": count in the stats hash (key 7)
-- `deferred`: not an attempt (its target's breaker is open): parked like a retry, the attempt count unchanged.
-- Idempotent: an entry that is no longer pending (its outcome is written already: a retried call whose first answer
-- was lost, or another pump's) changes nothing.
-- Returns the chain's mark after the call, what the pump keeps in memory (Redis is the truth): `head:<id>` (a
-- delivery of the chain is parked for a retry; the others wait behind it), `rel` (a released batch is under way,
-- more wait), or "" (the chain is free).
-- Many outcomes to a call: the KEYS and ARGV below are one outcome's, and a call carries any number of them one after
-- another (12 KEYS and 19 ARGV each); it answers one mark per outcome, in order.
local function one(KEYS, ARGV)
  local outcome, now = ARGV[3], tonumber(ARGV[10])
  local head = 'head:' .. ARGV[6]
  local state, metrics, target = KEYS[10], KEYS[12], ARGV[16]

  -- the mark on top of a hold list, or "" (none: empty, or held deliveries that nothing holds any more)
  local function mark(list)
    local top = redis.call('LINDEX', list, 0)
    if top and string.sub(top, 1, 1) ~= '{' then
      return top
    end
    return ''
  end

  if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
    return mark(KEYS[5])
  end

  local function dropped(reason, n)
    redis.call('HINCRBY', metrics, 'delivery_dropped_total{target="' .. target .. '",reason="' .. reason .. '"}', n)
  end

  -- the first held delivery of the hold list (past the marks `head:<id>` and `rel`): its JSON, or nil
  local function first_held(list)
    for _, raw in ipairs(redis.call('LRANGE', list, 0, 2)) do
      if string.sub(raw, 1, 1) == '{' then
        return raw
      end
    end
    return nil
  end

  -- move up to a batch of the hold list's deliveries to the stream, in order; what is left waits behind a
  -- `rel` mark for the batch's last delivery (flag 2) to end, whose outcome moves the next batch
  local function release(list)
    if mark(list) ~= '' then
      redis.call('LPOP', list)
    end
    local batch, max_age = tonumber(ARGV[11]), tonumber(ARGV[18])
    local items, aged, pops = {}, 0, 0
    while #items < batch and pops < 4 * batch do
      local raw = redis.call('LPOP', list)
      if not raw then
        break
      end
      pops = pops + 1
      if string.sub(raw, 1, 1) == '{' then
        local d = cjson.decode(raw)
        if (tonumber(d.h) or now) < now - max_age and (#items > 0 or pops < 4 * batch) then
          aged = aged + 1
        else
          items[#items + 1] = d
        end
      end
    end
    while true do
      local top = redis.call('LINDEX', list, 0)
      if top and string.sub(top, 1, 1) ~= '{' then
        redis.call('LPOP', list)
      else
        break
      end
    end
    local left = redis.call('LLEN', list)
    if left > 0 then
      redis.call('LPUSH', list, 'rel')
      local first = cjson.decode(first_held(list))
      redis.call('ZADD', KEYS[9], tonumber(first.h) or now, list)
    else
      redis.call('DEL', list)
      redis.call('SREM', KEYS[8], list)
      redis.call('ZREM', KEYS[9], list)
    end
    for i, d in ipairs(items) do
      local flag = (i == #items and left > 0) and '2' or '1'
      add_entry(KEYS[1], ARGV[17], d.t, d.k, d.id, d.b, tostring(d.n), flag)
    end
    if #items + aged > 0 then
      redis.call('HINCRBY', state, 'held', -(#items + aged))
    end
    if aged > 0 then
      redis.call('HINCRBY', state, 'heldDropped', aged)
      dropped('held_age', aged)
    end
    return left
  end

  -- a dead letter, then the oldest beyond the count cap or the age cap go (a few per call)
  local function dead_letter()
    redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
    local newest, score = redis.call('ZRANGE', KEYS[11], -1, -1, 'WITHSCORES'), now
    if newest[2] and tonumber(newest[2]) >= now then
      score = tonumber(newest[2]) + 0.001  -- deaths in one millisecond keep their order
    end
    redis.call('ZADD', KEYS[11], score, ARGV[6])
    local over = redis.call('ZCARD', KEYS[11]) - tonumber(ARGV[12])
    for _ = 1, 10 do
      local oldest = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
      if #oldest == 0 then
        break
      end
      local reason = over > 0 and 'dead_cap' or (tonumber(oldest[2]) < now - tonumber(ARGV[13]) and 'dead_age')
      if not reason then
        break
      end
      redis.call('ZREM', KEYS[11], oldest[1])
      redis.call('HDEL', KEYS[6], oldest[1])
      redis.call('HINCRBY', state, 'deadDropped', 1)
      dropped(reason, 1)
      over = over - 1
    end
  end

  if outcome ~= 'deferred' then
    redis.call('LPUSH', KEYS[3], ARGV[4])
    redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
  end
  if outcome == 'success' then
    local f = redis.call('HMGET', state, 'failures', 'breaker')
    if f[1] or f[2] then
      redis.call('HDEL', state, 'failures', 'breaker', 'openedAt', 'probeAt')
    end
  elseif outcome == 'retry' or outcome == 'dead' then
    if redis.call('HINCRBY', state, 'failures', 1) >= tonumber(ARGV[14]) then
      if redis.call('HGET', state, 'breaker') ~= 'open' then
        redis.call('HSET', state, 'breaker', 'open', 'openedAt', math.floor(now / 1000))
        redis.call('HINCRBY', metrics, 'delivery_breaker_opened_total{target="' .. target .. '"}', 1)
      end
      redis.call('HSET', state, 'probeAt', now + tonumber(ARGV[15]))
    end
  end

  if outcome == 'retry' or outcome == 'deferred' then
    redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
    if redis.call('LINDEX', KEYS[5], 0) ~= head then
      redis.call('LPUSH', KEYS[5], head)
    end
    redis.call('SADD', KEYS[8], KEYS[5])
  else
    -- the chain's end of a hold (its head, or the last of a released batch) releases what waits behind it; so does
    -- any end of the chain while deliveries wait with no mark above them (left so by a lost write: a failover)
    local top = redis.call('LINDEX', KEYS[5], 0)
    if top == head or (ARGV[9] == '2' and top == 'rel') or (top and string.sub(top, 1, 1) == '{') then
      release(KEYS[5])
    end
    if outcome ~= 'dropped' then
      local counter, stat = 'succCount', 'succ'
      if outcome ~= 'success' then
        counter, stat = 'failedCount', 'failed'
        dead_letter()
      end
      if KEYS[2] == state or redis.call('EXISTS', KEYS[2]) == 1 then
        redis.call('HINCRBY', KEYS[2], counter, 1)
      end
      if ARGV[19] == '1' then
        redis.call('HINCRBY', KEYS[7], stat, 1)
      end
    end
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
  return mark(KEYS[5])
end

local marks = {}
for i = 0, #KEYS / 12 - 1 do
  marks[i + 1] = one({unpack(KEYS, i * 12 + 1, i * 12 + 12)}, {unpack(ARGV, i * 19 + 1, i * 19 + 19)})
end
return marks
