-- redeliver: bring a dead letter, or a task that ended FAILURE (its message
-- is kept with its record), back to its queue, ready now, state PENDING.
-- KEYS[1] ready  KEYS[2] dead
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name  ARGV[5] id
-- Returns 1 redelivered, 0 no such dead letter or failed task.
local tag, nowS, id = ARGV[1], ARGV[2], ARGV[5]
local key = taskKey(tag, id)
if redis.call("ZREM", KEYS[2], id) == 0 then
  local f = redis.call("HMGET", key, "state", "m", "lw")
  if f[1] ~= "FAILURE" or not f[2] or f[3] then return 0 end
end
redis.call("HSET", key, "state", "PENDING", "updatedAt", nowS)
redis.call("PERSIST", key)
local seq = sequence(tag, 1)
local ready, fifo = {}, {}
addReady(ready, fifo, redis.call("HGET", key, "p"), false, seq, id)
flushReady(tag, KEYS[1], ready, fifo)
-- waiting claims of several queues are woken unless a parked one took it (enqueue.lua)
if not handOff(tag, nowS) then redis.call("PUBLISH", ARGV[3], ARGV[4]) end
return 1
