-- retry: reschedule failed attempts: retries + 1, state RETRY, due at dueAt.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name
-- then per task, 5 values: id token dueAt error attempt
-- Returns per task: 1 rescheduled, 0 stale.
local tag, nowS = ARGV[1], ARGV[2]
local now = tonumber(nowS)
local seq = sequence(tag, (#ARGV - 4) / 5)
-- a fast-lane task is rescheduled as a hash (see common.lua)
materializeAll(tag, 5, 5)
local out, ready, fifo, delayed, moved = {}, {}, {}, {}, {}
for i = 5, #ARGV, 5 do
  local id, dueAt = ARGV[i], ARGV[i + 2]
  local key = taskKey(tag, id)
  local f = redis.call("HMGET", key, "tok", "lw", "history", "retries", "p")
  if f[1] == ARGV[i + 1] and f[2] then
    redis.call("HSET", key, "state", "RETRY", "updatedAt", nowS, "error", ARGV[i + 3],
      "retries", tostring((tonumber(f[4]) or 0) + 1), "history", appendHistory(f[3], ARGV[i + 4]))
    redis.call("HDEL", key, "lw", "ls", "la", "lp", "xw", "xs", "xe", "xa")
    if tonumber(dueAt) <= now then
      addReady(ready, fifo, f[5], false, seq, id)
    else
      push2(delayed, dueAt, id)
    end
    moved[#moved + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #moved > 0 then
  zremMany(KEYS[3], moved)
  flushReady(tag, KEYS[1], ready, fifo)
  zaddMany(KEYS[2], delayed)
  -- waiting claims of several queues are woken unless parked ones took it all (enqueue.lua)
  if not handOff(tag, nowS, delayed) or #delayed > 0 then redis.call("PUBLISH", ARGV[3], ARGV[4]) end
end
return out
