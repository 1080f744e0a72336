-- KEYS: ...buckets
-- ARGV: mode, ...limits
-- Attempts at an expensive check (a password, a device secret), counted BEFORE the check runs (throttle.py),
-- so that concurrent attempts cannot race past a limit.
-- KEYS  the buckets, hashes: n = attempts counted since the last lock, s = locks so far, u = locked until (ms).
--       The first is the identity's own (user at an address, a device sn), the others are shared (an address).
-- ARGV  1 take | clear | refund
--       then per bucket: 2 limit  3 first lock (ms)  4 longest lock (ms)  5 kept while idle (ms)
-- Time is Redis's own (TIME), so that attempts from many processes agree on when a lock ends.
-- take   {1, 0}: counted in every bucket, go ahead. {0, wait ms}: a bucket is locked, or this attempt would
--        pass a bucket's limit (that bucket locks now: n starts again, the lock doubles up to the longest).
-- clear  the check succeeded: the first bucket is forgotten, the others give their count back.
-- refund the check did not run: every bucket gives its count back.
local mode = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function give_back(from)
  for i = from, #KEYS do
    if tonumber(redis.call('HGET', KEYS[i], 'n') or '0') > 0 then
      redis.call('HINCRBY', KEYS[i], 'n', -1)
    end
  end
end

if mode == 'clear' then
  redis.call('DEL', KEYS[1])
  give_back(2)
  return {1, 0}
elseif mode == 'refund' then
  give_back(1)
  return {1, 0}
end

local function bucket(i)  -- bucket i's ARGV: limit, first lock, longest lock, kept while idle (ms)
  local o = 1 + (i - 1) * 4
  return tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
end

local function locked_for()  -- ms until the last of the buckets' locks ends (0: none is locked)
  local wait = 0
  for i = 1, #KEYS do
    wait = math.max(wait, tonumber(redis.call('HGET', KEYS[i], 'u') or '0') - now)
  end
  return wait
end

local function lock_full()  -- lock every bucket this attempt would pass; ms of the longest of those locks
  local wait = 0
  for i = 1, #KEYS do
    local limit, first, longest, idle = bucket(i)
    if tonumber(redis.call('HGET', KEYS[i], 'n') or '0') >= limit then
      local locks = redis.call('HINCRBY', KEYS[i], 's', 1)
      local lock = math.floor(math.min(first * 2 ^ math.min(locks - 1, 40), longest))
      redis.call('HSET', KEYS[i], 'n', 0, 'u', now + lock)
      redis.call('PEXPIRE', KEYS[i], lock + idle)
      wait = math.max(wait, lock)
    end
  end
  return wait
end

local wait = locked_for()
if wait == 0 then wait = lock_full() end
if wait > 0 then
  return {0, wait}
end

for i = 1, #KEYS do
  local _, _, _, idle = bucket(i)
  redis.call('HINCRBY', KEYS[i], 'n', 1)
  if redis.call('PTTL', KEYS[i]) < idle then
    redis.call('PEXPIRE', KEYS[i], idle)
  end
end
return {1, 0}
