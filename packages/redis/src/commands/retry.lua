-- retry: reschedule failed attempts: retries + 1, state RETRY, due at dueAt.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name
-- then per task, 5 values: id token dueAt error attempt
-- Returns per task: 1 rescheduled, 0 stale.
local tag, nowS = ARGV[1], ARGV[2]
local now = tonumber(nowS)
local out = {}
local woke = false
for i = 5, #ARGV, 5 do
  local id, token, dueAt = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = taskKey(tag, id)
  if isCurrent(key, KEYS[3], id, token) then
    redis.call("ZREM", KEYS[3], id)
    redis.call("HINCRBY", key, "retries", 1)
    redis.call("HSET", key, "state", "RETRY", "updatedAt", nowS, "error", ARGV[i + 3])
    redis.call("HDEL", key, "lw", "ls", "la")
    appendHistory(key, ARGV[i + 4])
    if tonumber(dueAt) <= now then
      redis.call("ZADD", KEYS[1], readyScore(tag, redis.call("HGET", key, "p"), false), id)
    else
      redis.call("ZADD", KEYS[2], dueAt, id)
    end
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
