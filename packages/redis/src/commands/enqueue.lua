-- enqueue: write messages and PENDING records; ready now or delayed.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] dedup
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name
-- then per task, 9 values: id message task submittedAt eta retries priority dueAt dedupId
--   (eta and dedupId: "" when absent)
-- Returns per task: "" (enqueued) or the id of the task it duplicates.
local tag, nowS = ARGV[1], ARGV[2]
local now = tonumber(nowS)
local out = {}
local woke = false
for i = 5, #ARGV, 9 do
  local id, msg, task, submittedAt, eta = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local retries, priority, dueAt, dedupId = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local duplicateOf = ""
  if dedupId ~= "" then
    local existing = redis.call("HGET", KEYS[3], dedupId)
    if existing then
      duplicateOf = existing
    else
      redis.call("HSET", KEYS[3], dedupId, id)
    end
  end
  if duplicateOf == "" then
    local key = taskKey(tag, id)
    redis.call("HSET", key,
      "id", id, "task", task, "queue", ARGV[4], "state", "PENDING", "retries", retries,
      "submittedAt", submittedAt, "updatedAt", nowS, "history", "[]", "m", msg, "p", priority)
    if eta ~= "" then redis.call("HSET", key, "eta", eta) end
    if dedupId ~= "" then redis.call("HSET", key, "dd", dedupId) end
    if tonumber(dueAt) <= now then
      redis.call("ZADD", KEYS[1], readyScore(tag, priority, false), id)
    else
      redis.call("ZADD", KEYS[2], dueAt, id)
    end
    woke = true
  end
  out[#out + 1] = duplicateOf
end
if woke then
  redis.call("PUBLISH", ARGV[3], ARGV[4])
end
return out
