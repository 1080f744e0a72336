-- KEYS: retry, ...stream
-- ARGV: now, limit, stream_prefix, partitions, maxlen
-- include: delivery/entries.lua
-- Move due retries back to their streams (model.move_due_call builds the call).
-- KEYS  1 the retry set  2 (cluster) the partition's stream; absent: the stream is ARGV 3 .. the key's partition
-- ARGV  1 now (ms)  2 at most this many  3 stream prefix (one Redis)  4 partitions (one Redis)  5 stream MAXLEN
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, raw in ipairs(due) do
  local d = cjson.decode(raw)
  local stream = KEYS[2]
  if not stream then
    stream = ARGV[3] .. partition_of(d.k, ARGV[4])
  end
  add_entry(stream, ARGV[5], d.t, d.k, d.id, d.b, tostring(d.n))
  redis.call('ZREM', KEYS[1], raw)
end
return #due
