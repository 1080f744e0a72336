-- Wake a device's waiting commands: they become due now (docs/design.md §7: a device is online for commands once it
-- subscribed to its command topic, or sent a heartbeat). Shared by lifecycle.lua and uplink.lua (their
-- `-- include:`). Finished or expired ones leave the device's active set; one
-- being published is marked to be looked at again once its publish is recorded.
local function wake_commands(active, cmd_prefix, due, now)
  local woken = 0
  for _, id in ipairs(redis.call('ZRANGE', active, 0, -1)) do
    local f = redis.call('HMGET', cmd_prefix .. id, 'state', 'phase', 'expireAt')
    if not f[1] or f[1] == '2' or f[1] == '3' or tonumber(f[3]) <= now then
      redis.call('ZREM', active, id)
    elseif not f[2] or f[2] == '' then
      redis.call('ZADD', due, 'LT', now, id)  -- added, or moved earlier (a broker-error backoff)
      woken = woken + 1
    elseif f[2] == 'sending' then
      redis.call('HSET', cmd_prefix .. id, 'rewake', '1')
    end
  end
  return woken
end
