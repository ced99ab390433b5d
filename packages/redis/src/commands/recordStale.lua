-- recordStale: append the late outcome of a superseded attempt to the history.
-- KEYS[1] task hash
-- ARGV[1] attempt JSON
-- Returns 1 recorded, 0 unknown task.
local h = redis.call("HGET", KEYS[1], "history")
if not h then return 0 end
redis.call("HSET", KEYS[1], "history", appendHistory(h, ARGV[1]))
return 1
