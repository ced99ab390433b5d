-- enqueue: write messages and PENDING records; ready now or delayed.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] dedup  KEYS[4] done  KEYS[5] doneAt
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name
-- then per task, 9 values: id message task submittedAt eta retries priority dueAt dedupId
--   (eta and dedupId: "" when absent)
-- Returns per task: "" (enqueued, or already known by its id: nothing written)
-- or the id of the task it duplicates.
-- The new hash holds only what the message cannot say later: id and queue
-- are in its key, history starts absent (empty), and retries 0 and priority 5
-- are not written (absent means those); readers default them.
local tag, nowS, queue = ARGV[1], ARGV[2], ARGV[4]
local now = tonumber(nowS)
local count = (#ARGV - 4) / 9
local seq = sequence(tag, count)
local out, ready, delayed = {}, {}, {}

-- An id that is already known is not enqueued again: a producer retrying a
-- submit whose first try did reach Redis must not reset or rerun the task.
-- One variadic EXISTS answers for the whole batch when every id is new (the
-- usual case); only when some key exists is each one checked. Likewise one
-- HMGET of the done hash finds the ids that ended as done records.
local keys = {}
for k = 1, count do keys[k] = taskKey(tag, ARGV[5 + (k - 1) * 9]) end
local anyKnown = false
for k = 1, count, CHUNK do
  if redis.call("EXISTS", unpack(keys, k, math.min(k + CHUNK - 1, count))) > 0 then
    anyKnown = true
    break
  end
end
local lean = {} -- lean[k]: the k-th id has a done record (maybe expired)
if redis.call("EXISTS", KEYS[4]) == 1 then
  local ids = {}
  for k = 1, count do ids[k] = ARGV[5 + (k - 1) * 9] end
  for k = 1, count, CHUNK do
    local got = redis.call("HMGET", KEYS[4], unpack(ids, k, math.min(k + CHUNK - 1, count)))
    for j = 1, #got do lean[k + j - 1] = got[j] end
  end
end

-- Whether id, the k-th, still has a done record (called when lean[k], which
-- is rare): one whose time is up is forgotten now, and the id is new again.
local forgotten = {}
local function doneRecord(k, id)
  if forgotten[id] then return false end
  local expiresAt = redis.call("ZSCORE", KEYS[5], id)
  if expiresAt and tonumber(expiresAt) <= now then
    redis.call("HDEL", KEYS[4], id)
    redis.call("ZREM", KEYS[5], id)
    forgotten[id] = true
    return false
  end
  return true
end
local written = {} -- ids written by this call (an id may repeat within a batch)

for k = 1, count do
  local i = 5 + (k - 1) * 9
  local id, dedupId, key = ARGV[i], ARGV[i + 8], keys[k]
  local duplicateOf = ""
  if not written[id] and not (anyKnown and redis.call("EXISTS", key) == 1) and not (lean[k] and doneRecord(k, id)) then
    if dedupId ~= "" then
      local existing = redis.call("HGET", KEYS[3], dedupId)
      if existing then
        duplicateOf = existing
      else
        redis.call("HSET", KEYS[3], dedupId, id)
      end
    end
    if duplicateOf == "" then
      local retries, priority, dueAt = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
      local fields = {
        "m", ARGV[i + 1], "state", "PENDING", "task", ARGV[i + 2], "submittedAt", ARGV[i + 3], "updatedAt", nowS
      }
      if retries ~= "0" then push2(fields, "retries", retries) end
      if priority ~= "5" then push2(fields, "p", priority) end
      if ARGV[i + 4] ~= "" then push2(fields, "eta", ARGV[i + 4]) end
      if dedupId ~= "" then push2(fields, "dd", dedupId) end
      redis.call("HSET", key, unpack(fields))
      written[id] = true
      if tonumber(dueAt) <= now then
        push2(ready, readyScore(priority, false, seq()), id)
      else
        push2(delayed, dueAt, id)
      end
    end
  end
  out[k] = duplicateOf
end
zaddMany(KEYS[1], ready)
zaddMany(KEYS[2], delayed)
if #ready > 0 or #delayed > 0 then
  redis.call("PUBLISH", ARGV[3], queue)
end
return out
