-- deadLetter: move messages to the dead set (kept for redeliver), state FAILURE.
-- KEYS[1] dead  KEYS[2] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] done channel
-- then per task, 4 values: id token error attempt
-- Returns per task: 1 dead-lettered, 0 stale.
-- A dead letter's record does not expire: it holds the message until
-- redeliver brings it back.
local tag, nowS = ARGV[1], ARGV[2]
local out, done, dead = {}, {}, {}
-- a fast-lane task is dead-lettered as a hash (see common.lua)
materializeAll(tag, 4, 4)
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  local key = taskKey(tag, id)
  local f = redis.call("HMGET", key, "tok", "lw", "history", "dd")
  if f[1] == ARGV[i + 1] and f[2] then
    redis.call("HSET", key, "state", "FAILURE", "updatedAt", nowS, "error", ARGV[i + 2],
      "history", appendHistory(f[3], ARGV[i + 3]))
    redis.call("HDEL", key, "lw", "ls", "la", "lp", "xw", "xs", "xe", "xa", "revoked", "dd")
    releaseDedup(tag, id, f[4])
    push2(dead, nowS, id)
    done[#done + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #done > 0 then
  zremMany(KEYS[2], done)
  zaddMany(KEYS[1], dead)
  redis.call("PUBLISH", ARGV[3], table.concat(done, "\n"))
end
return out
