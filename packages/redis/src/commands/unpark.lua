-- unpark: a parked claim stops waiting (see park.lua): its registration is
-- dropped, and whatever was pushed to its inbox meanwhile is taken. A claim
-- that stops waiting while its BLPOP may still be blocked (interrupted: a
-- worker shutting down) also wakes that BLPOP with an empty reply, so the
-- connection comes back at once instead of when the BLPOP times out.
-- KEYS[1] park (declares the queue's slot)
-- ARGV[1] tag  ARGV[2] parkId  ARGV[3] wake: how long the empty reply is
--   kept for a BLPOP that already returned (ms; "0": do not wake)
-- Returns the inbox's replies, oldest first (none, usually).
local inbox = ARGV[1] .. ":inbox:" .. ARGV[2]
redis.call("HDEL", KEYS[1], ARGV[2])
local replies = redis.call("LRANGE", inbox, 0, -1)
if #replies > 0 then redis.call("DEL", inbox) end
local wake = tonumber(ARGV[3] or "0")
if wake > 0 then
  redis.call("RPUSH", inbox, "")
  redis.call("PEXPIRE", inbox, wake)
end
return replies
