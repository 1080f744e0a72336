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
-- another (12 KEYS and 19 ARGV each); it answers one mark per outcome, in order. What no outcome of the call reads
-- back (attempt records, counters, the entries' XDEL) is gathered and written once per key at the end, and
-- what they all read unchanged (the breaker's fields once cleared, whether a counts hash exists) is read once per
-- key: a success among many of one target costs Redis two commands (XACK, the hold list's top) and a share of the
-- call's few.

-- the outcome being written is KEYS[k + 1 .. k + 12] and ARGV[a + 1 .. a + 19]
local k, a

-- gathered writes of the call, flushed in first-seen order (the script's effects are the same on every replica)
local order, pushes, kept = {}, {}, {}
local function gather(kind, key)
  local id = kind .. key
  if not pushes[id] then
    pushes[id] = {}
    order[#order + 1] = {kind, key, id}
  end
  return pushes[id]
end
-- whether the call wrote yet. Its first write is one Redis refuses when it is out of memory (LPUSH, or a deferred
-- outcome's ZADD), so that such a call writes nothing and is sent again (a script that wrote once runs to its end,
-- full or not); `unacked`: the outcome being written was found pending before that write and is acknowledged after
local wrote, unacked = false, false
-- the breaker's fields known absent (state key -> true) and counts hashes known to exist or not, for this call
local clean, exists = {}, {}

-- the mark on top of a hold list, or "" (none: empty, or held deliveries that nothing holds any more)
local function mark_of(top)
  if top and string.sub(top, 1, 1) ~= '{' then
    return top
  end
  return ''
end

local function mark(list)
  return mark_of(redis.call('LINDEX', list, 0))
end

local function dropped(metrics, target, reason, n)
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
local function release(list, now)
  local state = KEYS[k + 10]
  if mark(list) ~= '' then
    redis.call('LPOP', list)
  end
  local batch, max_age = tonumber(ARGV[a + 11]), tonumber(ARGV[a + 18])
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
    redis.call('ZADD', KEYS[k + 9], tonumber(first.h) or now, list)
  else
    redis.call('DEL', list)
    redis.call('SREM', KEYS[k + 8], list)
    redis.call('ZREM', KEYS[k + 9], list)
  end
  for i, d in ipairs(items) do
    local flag = (i == #items and left > 0) and '2' or '1'
    add_entry(KEYS[k + 1], ARGV[a + 17], d.t, d.k, d.id, d.b, tostring(d.n), flag)
  end
  if #items + aged > 0 then
    redis.call('HINCRBY', state, 'held', -(#items + aged))
  end
  if aged > 0 then
    redis.call('HINCRBY', state, 'heldDropped', aged)
    dropped(KEYS[k + 12], ARGV[a + 16], 'held_age', aged)
  end
  return left
end

-- a dead letter, then the oldest beyond the count cap or the age cap go (a few per call)
local function dead_letter(now)
  local index = KEYS[k + 11]
  redis.call('HSET', KEYS[k + 6], ARGV[a + 6], ARGV[a + 7])
  local newest, score = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES'), now
  if newest[2] and tonumber(newest[2]) >= now then
    score = tonumber(newest[2]) + 0.001  -- deaths in one millisecond keep their order
  end
  redis.call('ZADD', index, score, ARGV[a + 6])
  local over = redis.call('ZCARD', index) - tonumber(ARGV[a + 12])
  for _ = 1, 10 do
    local oldest = redis.call('ZRANGE', index, 0, 0, 'WITHSCORES')
    if #oldest == 0 then
      break
    end
    local reason = over > 0 and 'dead_cap' or (tonumber(oldest[2]) < now - tonumber(ARGV[a + 13]) and 'dead_age')
    if not reason then
      break
    end
    redis.call('ZREM', index, oldest[1])
    redis.call('HDEL', KEYS[k + 6], oldest[1])
    redis.call('HINCRBY', KEYS[k + 10], 'deadDropped', 1)
    dropped(KEYS[k + 12], ARGV[a + 16], reason, 1)
    over = over - 1
  end
end

-- a counter of a hash, added to at the end (a counts hash only while it exists: the state hash always)
local function count(key, field, always)
  if not always then
    if exists[key] == nil then
      exists[key] = redis.call('EXISTS', key) == 1
    end
    if not exists[key] then
      return
    end
  end
  local c = gather('c', key)
  c[field] = (c[field] or 0) + 1
end

local function one()
  local stream, hold, state = KEYS[k + 1], KEYS[k + 5], KEYS[k + 10]
  local outcome, now = ARGV[a + 3], tonumber(ARGV[a + 10])
  local entry, head = ARGV[a + 2], 'head:' .. ARGV[a + 6]

  -- an entry no longer pending (its outcome is written already) changes nothing. Acknowledged here once the call
  -- wrote (XACK answers whether it was pending); the call's first outcome only looks (XPENDING) and is acknowledged
  -- after its first write (the loop below)
  if wrote then
    if redis.call('XACK', stream, ARGV[a + 1], entry) == 0 then
      return mark(hold)
    end
  elseif #redis.call('XPENDING', stream, ARGV[a + 1], entry, entry, 1) == 0 then
    return mark(hold)
  else
    unacked = true
  end
  local del = gather('x', stream)
  del[#del + 1] = entry

  if outcome ~= 'deferred' then
    local list = KEYS[k + 3]
    kept[list] = tonumber(ARGV[a + 5])
    if wrote then
      local records = gather('a', list)
      records[#records + 1] = ARGV[a + 4]
    else
      redis.call('LPUSH', list, ARGV[a + 4])  -- the call's first write: see `wrote`
      gather('a', list)
    end
  end
  wrote = true
  if outcome == 'success' then
    if not clean[state] then
      local f = redis.call('HMGET', state, 'failures', 'breaker')
      if f[1] or f[2] then
        redis.call('HDEL', state, 'failures', 'breaker', 'openedAt', 'probeAt')
      end
      clean[state] = true
    end
  elseif outcome == 'retry' or outcome == 'dead' then
    clean[state] = nil
    local metrics, target = KEYS[k + 12], ARGV[a + 16]
    if redis.call('HINCRBY', state, 'failures', 1) >= tonumber(ARGV[a + 14]) then
      if redis.call('HGET', state, 'breaker') ~= 'open' then
        redis.call('HSET', state, 'breaker', 'open', 'openedAt', math.floor(now / 1000))
        redis.call('HINCRBY', metrics, 'delivery_breaker_opened_total{target="' .. target .. '"}', 1)
      end
      redis.call('HSET', state, 'probeAt', now + tonumber(ARGV[a + 15]))
    end
  end

  if outcome == 'retry' or outcome == 'deferred' then
    redis.call('ZADD', KEYS[k + 4], ARGV[a + 8], ARGV[a + 7])
    if redis.call('LINDEX', hold, 0) ~= head then
      redis.call('LPUSH', hold, head)
    end
    redis.call('SADD', KEYS[k + 8], hold)
    return head
  end
  -- the chain's end of a hold (its head, or the last of a released batch) releases what waits behind it; so does
  -- any end of the chain while deliveries wait with no mark above them (left so by a lost write: a failover)
  local top = redis.call('LINDEX', hold, 0)
  local released = false
  if top == head or (ARGV[a + 9] == '2' and top == 'rel') or (top and string.sub(top, 1, 1) == '{') then
    release(hold, now)
    released = true
  end
  if outcome ~= 'dropped' then
    local counter, stat = 'succCount', 'succ'
    if outcome ~= 'success' then
      counter, stat = 'failedCount', 'failed'
      dead_letter(now)
    end
    count(KEYS[k + 2], counter, KEYS[k + 2] == state)
    if ARGV[a + 19] == '1' then
      count(KEYS[k + 7], stat, true)
    end
  end
  if released then
    return mark(hold)
  end
  return mark_of(top)
end

local marks = {}
for i = 0, #KEYS / 12 - 1 do
  k, a = i * 12, i * 19
  marks[i + 1] = one()
  if unacked then
    redis.call('XACK', KEYS[k + 1], ARGV[a + 1], ARGV[a + 2])
    unacked = false
  end
end

-- the gathered writes: attempt records (newest first, as one LPUSH each would leave them), counters, XDEL
for _, item in ipairs(order) do
  local kind, key, values = item[1], item[2], pushes[item[3]]
  if kind == 'a' then
    if #values > 0 then
      redis.call('LPUSH', key, unpack(values))
    end
    redis.call('LTRIM', key, 0, kept[key] - 1)
  elseif kind == 'c' then
    for _, field in ipairs({'succCount', 'failedCount', 'succ', 'failed'}) do
      if values[field] then
        redis.call('HINCRBY', key, field, values[field])
      end
    end
  else
    redis.call('XDEL', key, unpack(values))
  end
end
return marks
