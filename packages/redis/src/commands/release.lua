-- release: give back leased tasks that never started: ready now, at the
-- front of their priority, state PENDING, no attempt counted.
-- KEYS[1] ready  KEYS[2] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name
-- then per lease: id token
-- Returns per lease: 1 released, 0 stale.
local tag, nowS = ARGV[1], ARGV[2]
local out = {}
local woke = false
for i = 5, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = taskKey(tag, id)
  if isCurrent(key, KEYS[2], id, token) then
    redis.call("ZREM", KEYS[2], id)
    redis.call("HSET", key, "state", "PENDING", "updatedAt", nowS)
    redis.call("HDEL", key, "lw", "ls", "la")
    redis.call("ZADD", KEYS[1], readyScore(tag, redis.call("HGET", key, "p"), true), id)
    woke = true
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if woke then
  redis.call("PUBLISH", ARGV[3], ARGV[4])
end
return out
