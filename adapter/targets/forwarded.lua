-- KEYS: seen, stream
-- ARGV: seen_ttl, key, ...forward
-- include: targets/forward.lua
-- A message's routes alone (forwarding.py `forward_call`), for a message with no script call of its own to carry
-- them (a rejected uplink): `forward` (ARGV 3..: the message id, the body head, the route ids).
return forward(KEYS[1], KEYS[2], ARGV[1], ARGV[2], 3, #ARGV - 4)
