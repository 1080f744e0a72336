-- KEYS: hold, held, state, stream, metrics
-- ARGV: group, entry_id, delivery, released, max_held, held_max_age, now, target, delivery_id
-- Park a delivery behind the one of its target and key that is being retried (model.hold_call builds the call),
-- then keep the target's held deliveries within their caps: beyond the count, or older than the age, the
-- oldest held delivery of the target (over all its hold lists of the partition) is dropped, a few per call.
-- Every key is in the slot of the delivery's partition on Redis Cluster.
-- KEYS  1 the hold list  2 the target's index of hold lists (zset: list -> hold time of its oldest, ms)
--       3 the target's engine state (hash: held, heldDropped)  4 the partition stream  5 the metrics hash
-- ARGV  1 group  2 entry id  3 the delivery (JSON, with `h` its hold time in ms)  4 "1": a delivery of a
--       released batch held again (it goes before the `rel` mark, ahead of what was never released)
--       5 max held  6 held max age (ms)  7 now (ms)  8 target name  9 delivery id
-- Returns {1, mark}: held; {0, mark}: not held, because nothing holds the chain in Redis (the pump's memory was
-- behind: it sends the delivery instead; the entry stays pending); {-1, mark}: the entry is no longer pending (done
-- already: a retried call whose first answer was lost).
-- `mark` is the chain's mark (outcome.lua), what the pump keeps in memory.
local now = tonumber(ARGV[7])
local top = redis.call('LINDEX', KEYS[1], 0) or ''
local mark = (string.sub(top, 1, 1) ~= '{') and top or ''
if #redis.call('XPENDING', KEYS[4], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return {-1, mark}
end
local holding = (string.sub(mark, 1, 5) == 'head:' and mark ~= 'head:' .. ARGV[9]) or (mark == 'rel' and ARGV[4] ~= '1')
if not holding then
  return {0, mark}
end
if ARGV[4] ~= '1' or redis.call('LINSERT', KEYS[1], 'BEFORE', 'rel', ARGV[3]) <= 0 then
  redis.call('RPUSH', KEYS[1], ARGV[3])
end
redis.call('ZADD', KEYS[2], 'NX', now, KEYS[1])
local held = redis.call('HINCRBY', KEYS[3], 'held', 1)
local max, oldest_allowed = tonumber(ARGV[5]), now - tonumber(ARGV[6])
for _ = 1, 4 do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #oldest == 0 then
    break
  end
  local reason = held > max and 'held_cap' or (tonumber(oldest[2]) < oldest_allowed and 'held_age')
  if not reason then
    break
  end
  local list, at = oldest[1], nil
  for i, raw in ipairs(redis.call('LRANGE', list, 0, 2)) do
    if string.sub(raw, 1, 1) == '{' then
      at = i - 1
      break
    end
  end
  if at == nil then
    redis.call('ZREM', KEYS[2], list)
  else
    redis.call('LSET', list, at, 'drop')
    redis.call('LREM', list, 1, 'drop')
    held = redis.call('HINCRBY', KEYS[3], 'held', -1)
    redis.call('HINCRBY', KEYS[3], 'heldDropped', 1)
    redis.call('HINCRBY', KEYS[5], 'delivery_dropped_total{target="' .. ARGV[8] .. '",reason="' .. reason .. '"}', 1)
    local nxt = nil
    for _, raw in ipairs(redis.call('LRANGE', list, 0, 2)) do
      if string.sub(raw, 1, 1) == '{' then
        nxt = cjson.decode(raw)
        break
      end
    end
    if nxt then
      redis.call('ZADD', KEYS[2], tonumber(nxt.h) or now, list)
    else
      redis.call('ZREM', KEYS[2], list)
    end
  end
end
redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[4], ARGV[2])
return {1, mark}
