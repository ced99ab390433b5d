-- release: give back leased tasks that never started: ready now, at the
-- front of their priority, state PENDING, no attempt counted.
-- KEYS[1] ready  KEYS[2] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name
-- then per lease: id token
-- Returns per lease: 1 released, 0 stale.
local tag, nowS = ARGV[1], ARGV[2]
local seq = sequence(tag, (#ARGV - 4) / 2)
-- a fast-lane task is released as a hash (see common.lua)
materializeAll(tag, 5, 2)
local out, ready, moved = {}, {}, {}
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local key = taskKey(tag, id)
  local f = redis.call("HMGET", key, "tok", "lw", "p")
  if f[1] == ARGV[i + 1] and f[2] then
    redis.call("HSET", key, "state", "PENDING", "updatedAt", nowS)
    redis.call("HDEL", key, "lw", "ls", "la", "lp")
    push2(ready, readyScore(f[3], true, seq()), id)
    moved[#moved + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #moved > 0 then
  zremMany(KEYS[2], moved)
  zaddMany(KEYS[1], ready)
  -- waiting claims of several queues are woken unless parked ones took it all (enqueue.lua)
  if not handOff(tag, nowS) then redis.call("PUBLISH", ARGV[3], ARGV[4]) end
end
return out
