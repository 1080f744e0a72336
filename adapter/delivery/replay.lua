-- KEYS: dead, dead_index, ...stream
-- ARGV: stream_prefix, partitions, target, maxlen, how, limit, offset, ...ids
-- include: delivery/entries.lua
-- Dead letters back onto the delivery streams (dead_letters.replay_call builds the call).
-- KEYS 1 dead hash 2 dead index 3 (cluster) the partition's stream; absent: the stream is ARGV 1 .. sha1 partition
-- of the letter's key. ARGV 1 stream prefix 2 partitions 3 target 4 stream MAXLEN 5 "first" (the oldest `limit`
-- from `offset`) or "ids" (ARGV 8..) 6 limit 7 offset. Returns {moved, skipped (no body), missing (ids only),
-- looked at}.
local ids = {}
if ARGV[5] == 'first' then
  ids = redis.call('ZRANGE', KEYS[2], tonumber(ARGV[7]), tonumber(ARGV[7]) + tonumber(ARGV[6]) - 1)
else
  for i = 8, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local moved, skipped, missing = 0, 0, 0
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[1], id)
  local ok, d = false, nil
  if raw then ok, d = pcall(cjson.decode, raw) end
  if not raw then
    missing = missing + 1
    redis.call('ZREM', KEYS[2], id)
  elseif not ok or type(d) ~= 'table' or (type(d.body) ~= 'string' and type(d.body) ~= 'table') then
    skipped = skipped + 1
  else
    local body = type(d.body) == 'string' and d.body or cjson.encode(d.body)
    local k = type(d.key) == 'string' and d.key or ''
    local stream = KEYS[3]
    if not stream then
      stream = ARGV[1] .. partition_of(k, ARGV[2])
    end
    add_entry(stream, ARGV[4], ARGV[3], k, id, body, '0')
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    moved = moved + 1
  end
end
return {moved, skipped, missing, #ids}
