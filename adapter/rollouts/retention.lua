-- KEYS: rollouts, active, ro, sns, execs, results, inflight, driver
-- ARGV: rid, cutoff
-- Retention of ended rollouts (docs/rollouts.md "Retention"): rollout `rid` goes with every key of its own when it
-- has ended (not in the active set, its state final) at or before `cutoff` (ms); an id whose hash is gone leaves
-- the index. All of a rollout's keys are in `{ro}` on Redis Cluster. Answers 1 (gone) or 0 (kept).
local rollouts, active, ro = KEYS[1], KEYS[2], KEYS[3]
local rid, cutoff = ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', active, rid) == 1 then
  return 0
end
local f = redis.call('HMGET', ro, 'state', 'finished')
if f[1] == 'queued' or f[1] == 'running' or f[1] == 'paused' then
  return 0
end
if f[1] and (tonumber(f[2]) or 0) > cutoff then
  return 0
end
redis.call('DEL', ro, KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
redis.call('ZREM', rollouts, rid)
return 1
