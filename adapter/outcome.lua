-- What one delivery attempt's outcome writes, atomically (delivery.py builds the call).
-- KEYS  1 the partition stream  2 the target hash  3 its attempts list  4 the retry set  5 the hold list
--       6 the target's dead letters  7 the callback type's stats hash ("" when not a callback)
--       8 the partition's set of hold lists (what a pump taking the partition over loads)
-- ARGV  1 group  2 entry id  3 outcome: success | retry | failed | dead | dropped  4 attempt record (JSON)
--       5 kept attempts  6 delivery id  7 retried delivery (JSON) or dead letter (JSON)  8 due (ms)
local outcome = ARGV[3]
local head = 'head:' .. ARGV[6]
redis.call('LPUSH', KEYS[3], ARGV[4])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
if outcome == 'retry' then
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
  if redis.call('LINDEX', KEYS[5], 0) ~= head then
    redis.call('LPUSH', KEYS[5], head)
  end
  redis.call('SADD', KEYS[8], KEYS[5])
else
  if redis.call('LINDEX', KEYS[5], 0) == head then
    local held = redis.call('LRANGE', KEYS[5], 1, -1)
    redis.call('DEL', KEYS[5])
    redis.call('SREM', KEYS[8], KEYS[5])
    for _, raw in ipairs(held) do
      local d = cjson.decode(raw)
      redis.call('XADD', KEYS[1], '*', 't', d.t, 'k', d.k, 'id', d.id, 'b', d.b, 'n', tostring(d.n))
    end
  end
  if outcome ~= 'dropped' then
    local counter, stat = 'succCount', 'succ'
    if outcome ~= 'success' then
      counter, stat = 'failedCount', 'failed'
      redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
    end
    if redis.call('EXISTS', KEYS[2]) == 1 then
      redis.call('HINCRBY', KEYS[2], counter, 1)
    end
    if KEYS[7] ~= '' then
      redis.call('HINCRBY', KEYS[7], stat, 1)
    end
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
