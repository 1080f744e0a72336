-- include: delivery/entries.lua
-- A message's routes (forwarding.py), once per message id (EMQX redelivers events): one delivery entry per
-- matched route on the stream of the publishing client's partition. Used alone (forwarded.lua) and inside the
-- uplink script, so that a device's message and its forwarding are one script call.
-- k the ordering key (clientid); ARGV[first] the message id, ARGV[first + 1] the body up to the route id
-- (`{...,"routeId":`), ARGV[first + 2 .. first + 1 + n] the matched route ids, in order.
-- Each entry: t `route:<id>`, k, id `m:<message id>:route:<id>`, b the body, n 0 attempts.
-- Returns the number of entries written.
local function forward(seen_key, stream, ttl, k, first, n)
  if n == 0 or not redis.call('SET', seen_key, '1', 'NX', 'EX', ttl) then
    return 0
  end
  local message_id, head = ARGV[first], ARGV[first + 1]
  for i = first + 2, first + 1 + n do
    local route = ARGV[i]
    add_entry(stream, nil, 'route:' .. route, k, 'm:' .. message_id .. ':route:' .. route, head .. route .. '}', '0')
  end
  return n
end
