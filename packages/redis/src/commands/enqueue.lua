-- enqueue: write messages and PENDING records; ready now or delayed.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] dedup
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name
-- then per task, 9 values: id message task submittedAt eta retries priority dueAt dedupId
--   (eta and dedupId: "" when absent)
-- Returns per task: "" (enqueued, or already known by its id: nothing written)
-- or the id of the task it duplicates.
local tag, nowS, queue = ARGV[1], ARGV[2], ARGV[4]
local now = tonumber(nowS)
local seq = sequence(tag, (#ARGV - 4) / 9)
local out, ready, delayed = {}, {}, {}
for i = 5, #ARGV, 9 do
  local id, dedupId = ARGV[i], ARGV[i + 8]
  local key = taskKey(tag, id)
  local duplicateOf = ""
  -- an id that is already known is not enqueued again: a producer retrying a
  -- submit whose first try did reach Redis must not reset or rerun the task
  if redis.call("EXISTS", key) == 0 then
    if dedupId ~= "" then
      local existing = redis.call("HGET", KEYS[3], dedupId)
      if existing then
        duplicateOf = existing
      else
        redis.call("HSET", KEYS[3], dedupId, id)
      end
    end
    if duplicateOf == "" then
      local priority, dueAt = ARGV[i + 6], ARGV[i + 7]
      local fields = {
        "id", id, "m", ARGV[i + 1], "task", ARGV[i + 2], "queue", queue, "state", "PENDING",
        "retries", ARGV[i + 5], "submittedAt", ARGV[i + 3], "updatedAt", nowS, "history", "[]", "p", priority
      }
      if ARGV[i + 4] ~= "" then push(fields, "eta", ARGV[i + 4]) end
      if dedupId ~= "" then push(fields, "dd", dedupId) end
      redis.call("HSET", key, unpack(fields))
      if tonumber(dueAt) <= now then
        push(ready, readyScore(priority, false, seq()), id)
      else
        push(delayed, dueAt, id)
      end
    end
  end
  out[#out + 1] = duplicateOf
end
zaddMany(KEYS[1], ready)
zaddMany(KEYS[2], delayed)
if #ready > 0 or #delayed > 0 then
  redis.call("PUBLISH", ARGV[3], queue)
end
return out
