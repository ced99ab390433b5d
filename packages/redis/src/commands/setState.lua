-- setState: set a (custom) state and meta unless the task already ended.
-- A fast-lane task (see common.lua) becomes a hash first.
-- KEYS[1] task hash
-- ARGV[1] now  ARGV[2] state  ARGV[3] meta JSON ("" to leave meta alone)  ARGV[4] tag  ARGV[5] id
-- Returns 1 set, 0 final or unknown.
materialize(ARGV[4], ARGV[5])
local state = redis.call("HGET", KEYS[1], "state")
if (not state) or isFinal(state) then return 0 end
redis.call("HSET", KEYS[1], "state", ARGV[2], "updatedAt", ARGV[1])
if ARGV[3] ~= "" then redis.call("HSET", KEYS[1], "meta", ARGV[3]) end
return 1
