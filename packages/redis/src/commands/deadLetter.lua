-- deadLetter: move messages to the dead set (kept for redeliver), state FAILURE.
-- KEYS[1] dead  KEYS[2] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] done channel
-- then per task, 4 values: id token error attempt
-- Returns per task: 1 dead-lettered, 0 stale.
-- A dead letter's record does not expire: it holds the message until
-- redeliver brings it back.
local tag, nowS = ARGV[1], ARGV[2]
local out, done = {}, {}
for i = 4, #ARGV, 4 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = taskKey(tag, id)
  if isCurrent(key, KEYS[2], id, token) then
    redis.call("ZREM", KEYS[2], id)
    redis.call("ZADD", KEYS[1], nowS, id)
    redis.call("HSET", key, "state", "FAILURE", "updatedAt", nowS, "error", ARGV[i + 2])
    appendHistory(key, ARGV[i + 3])
    finalize(tag, key, id, 0, true)
    done[#done + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #done > 0 then
  redis.call("PUBLISH", ARGV[3], table.concat(done, "\n"))
end
return out
