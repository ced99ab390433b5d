-- recordStale: append the late outcome of a superseded attempt to the history.
-- KEYS[1] task hash
-- ARGV[1] attempt JSON
-- Returns 1 recorded, 0 unknown task.
local f = redis.call("HMGET", KEYS[1], "state", "history")
if not f[1] then return 0 end
redis.call("HSET", KEYS[1], "history", appendHistory(f[2], ARGV[1]))
return 1
