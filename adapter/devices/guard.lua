-- KEYS: devices, devices_online, devices_offline, peris, peris_online, peris_offline, device_callbacks,
--       peripheral_callbacks, client, stream, presence_log
-- ARGV: kind, clientid, connected_at, disconnected_at, reason, peripheral_prefix, seen_device, seen_online,
--       seen_connected_at, seen_ended_through, seen_version
-- include: devices/device.lua as device
-- The guard of a reconciliation's correction (adapter/devices/reconcile.py, GUARDED_PRESENCE in devices/calls.py):
-- device.lua runs only when the client's presence state is what the decision was made on; otherwise a real event
-- came in between and wins: -1, nothing written.
-- KEYS and ARGV 1..6 as device.lua; ARGV 7..11 the client hash's device, online, connected_at, ended_through,
-- version as seen ("\0": absent)
local seen = redis.call('HMGET', KEYS[9], 'device', 'online', 'connected_at', 'ended_through', 'version')
local expected = {ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]}
for i = 1, 5 do
  local have = seen[i]
  if have == false then
    have = '\0'
  end
  if have ~= expected[i] then
    return -1
  end
end
return device(KEYS, ARGV)
