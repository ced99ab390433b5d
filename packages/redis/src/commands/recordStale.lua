-- recordStale: append the late outcome of a superseded attempt to the history.
-- KEYS[1] task hash
-- ARGV[1] attempt JSON
-- Returns 1 recorded, 0 unknown task.
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
appendHistory(KEYS[1], ARGV[1])
return 1
