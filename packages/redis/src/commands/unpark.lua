-- unpark: a parked claim stops waiting (see park.lua): its registration is
-- dropped, and whatever was pushed to its inbox meanwhile is taken.
-- KEYS[1] park (declares the queue's slot)
-- ARGV[1] tag  ARGV[2] parkId
-- Returns the inbox's replies, oldest first (none, usually).
local inbox = ARGV[1] .. ":inbox:" .. ARGV[2]
redis.call("HDEL", KEYS[1], ARGV[2])
local replies = redis.call("LRANGE", inbox, 0, -1)
if #replies > 0 then redis.call("DEL", inbox) end
return replies
