-- The delivery stream entry, spelled once (model.ENTRY_FIELDS, pinned by tests/unit/test_delivery_calls.py), and
-- the partition of an ordering key; included by every script that writes entries (`-- include:`).
-- add_entry: t target, k ordering key, id delivery id, b body (JSON), n attempts made; `maxlen` trims the stream
-- (~) when given; `r` (released from a hold list: 1, or 2 for a batch's last) only when given.

local function add_entry(stream, maxlen, t, k, id, b, n, r)
  if not maxlen then
    return redis.call('XADD', stream, '*', 't', t, 'k', k, 'id', id, 'b', b, 'n', n)
  elseif r then
    return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 't', t, 'k', k, 'id', id, 'b', b, 'n', n, 'r', r)
  end
  return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 't', t, 'k', k, 'id', id, 'b', b, 'n', n)
end

-- as model.partition_of: sha1(key)[:8] mod partitions
local function partition_of(key, partitions)
  return tonumber(string.sub(redis.sha1hex(key), 1, 8), 16) % tonumber(partitions)
end
