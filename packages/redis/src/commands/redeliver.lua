-- redeliver: bring a dead letter back to its queue, ready now, state PENDING.
-- KEYS[1] ready  KEYS[2] dead
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name  ARGV[5] id
-- Returns 1 redelivered, 0 no such dead letter.
local tag, nowS, id = ARGV[1], ARGV[2], ARGV[5]
if redis.call("ZREM", KEYS[2], id) == 0 then return 0 end
local key = taskKey(tag, id)
redis.call("HSET", key, "state", "PENDING", "updatedAt", nowS)
redis.call("PERSIST", key)
local seq = sequence(tag, 1)
redis.call("ZADD", KEYS[1], readyScore(redis.call("HGET", key, "p"), false, seq()), id)
redis.call("PUBLISH", ARGV[3], ARGV[4])
return 1
