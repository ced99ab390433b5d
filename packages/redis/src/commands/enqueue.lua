-- enqueue: write messages and PENDING records; ready now or delayed.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] dedup  KEYS[4] done  KEYS[5] doneAt
-- KEYS[6] fast
-- ARGV[1] tag  ARGV[2] now  ARGV[3] wake channel  ARGV[4] queue name
-- ARGV[5] how many regular tasks follow  ARGV[6] "1": every id is fresh (made
--   for this submit, first sent now: nobody can know it, so it is not looked
--   up), else "0"
-- then per regular task, 9 values:
--   id message task submittedAt eta retries priority dueAt dedupId
--   (eta and dedupId: "" when absent)
-- then per fast-lane task (see common.lua; ready now), 2 values:
--   id entry (its priority, a digit, is the entry's second byte)
-- Returns per regular task: "" (enqueued, or already known by its id:
-- nothing written) or the id of the task it duplicates. A fast-lane task
-- has no dedup id, so its answer is always "" and is left out.
-- The new hash holds only what the message cannot say later: id and queue
-- are in its key, history starts absent (empty), and retries 0 and priority 5
-- are not written (absent means those); readers default them. A fast-lane
-- task is one field of the fast hash and its ready entry.
local tag, nowS, queue = ARGV[1], ARGV[2], ARGV[4]
local now = tonumber(nowS)
local regular = tonumber(ARGV[5])
local fresh = ARGV[6] == "1"
local fastFrom = 7 + regular * 9
local count = regular + (#ARGV - fastFrom + 1) / 2
local seq = sequence(tag, count)
local out, ready, fifo, delayed = {}, {}, {}, {}

-- the k-th task's first ARGV
local function at(k)
  if k <= regular then return 7 + (k - 1) * 9 end
  return fastFrom + (k - regular - 1) * 2
end

-- An id that is already known is not enqueued again: a producer retrying a
-- submit whose first try did reach Redis must not reset or rerun the task.
-- One variadic EXISTS answers for the whole batch when every id is new (the
-- usual case); only when some key exists is each one checked. Likewise one
-- HMGET of the done hash finds the ids that ended as done records, and one
-- of the fast hash those in the fast lane. Ids made for this submit
-- (`fresh`) are not looked up at all: nobody can know them yet.
-- (Per-task loops here and below are written out, without helper calls: a
-- Lua call per task costs about as much as the rest of the loop's Lua.)
local ids, keys = {}, {}
local hashPrefix = tag .. ":t:"
for k = 1, regular do
  local id = ARGV[7 + (k - 1) * 9]
  ids[k], keys[k] = id, hashPrefix .. id
end
if not fresh then
  for k = regular + 1, count do
    local id = ARGV[fastFrom + (k - regular - 1) * 2]
    ids[k], keys[k] = id, hashPrefix .. id
  end
end
local anyKnown = false
if not fresh then
  for k = 1, count, CHUNK do
    if redis.call("EXISTS", unpack(keys, k, math.min(k + CHUNK - 1, count))) > 0 then
      anyKnown = true
      break
    end
  end
end
-- fields of hash `key` for every id of the batch (false: none), when it
-- exists and the ids may be known
local function fieldsOf(key)
  if not fresh and redis.call("EXISTS", key) == 1 then return hmgetMany(key, ids) end
  return {}
end
local lean = fieldsOf(KEYS[4]) -- lean[k]: the k-th id has a done record (maybe expired)
local inFast = fieldsOf(KEYS[6]) -- inFast[k]: the k-th id is in the fast lane

-- Whether the k-th id still has a done record (asked only when it has one,
-- maybe expired, which is rare): one whose time is up is forgotten now, and
-- the id is new again.
local forgotten = {}
local function doneRecord(k, id)
  if forgotten[id] then return false end
  local expiresAt = leanExpiry(KEYS[5], id, lean[k])
  if expiresAt and tonumber(expiresAt) <= now then
    redis.call("HDEL", KEYS[4], id)
    unlist(KEYS[5], id, expiresAt)
    forgotten[id] = true
    return false
  end
  return true
end

-- whether the k-th task's id is already known (and so not written again)
local function known(k, id)
  return (anyKnown and redis.call("EXISTS", keys[k]) == 1) or inFast[k] or (lean[k] and doneRecord(k, id))
end
local written = {} -- ids written by this call (an id may repeat within a batch)

for k = 1, regular do
  local i = at(k)
  local id, dedupId, key = ARGV[i], ARGV[i + 8], keys[k]
  local duplicateOf = ""
  if not written[id] and not known(k, id) then
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
        addReady(ready, fifo, priority, false, seq, id)
      else
        push2(delayed, dueAt, id)
      end
    end
  end
  out[k] = duplicateOf
end
-- Pins the fast hash (see common.lua) when it is made, and writes the
-- queue's name beside it then, which a fast-lane message made whole again
-- takes (fast.lua): only this script makes the hash, and the pin keeps it,
-- so the name is there as long as the hash is.
local function pinFast()
  if pinHash(KEYS[6]) then redis.call("SET", tag .. ":queue", queue) end
end

-- fast-lane entries answer nothing ("" for them is implied): the reply is
-- the regular entries' answers only
local lastArg = #ARGV
if fresh then
  -- ids nobody can know yet, each once: every entry is written, straight
  -- from ARGV (id entry pairs), with no table of them built here
  for i = fastFrom, lastArg, 2 do
    -- "~p|...": the priority is a digit, byte 53 is "5", the list's
    local p = string.byte(ARGV[i + 1], 2)
    if p == 53 then fifo[#fifo + 1] = ARGV[i] else addReady(ready, fifo, p - 48, false, seq, ARGV[i]) end
  end
  if fastFrom <= lastArg then pinFast() end
  for i = fastFrom, lastArg, CHUNK do
    redis.call("HSET", KEYS[6], unpack(ARGV, i, math.min(i + CHUNK - 1, lastArg)))
  end
else
  local fast, n = {}, 0
  local k = regular
  for i = fastFrom, lastArg, 2 do
    k = k + 1
    local id = ARGV[i]
    if not written[id] and not inFast[k] and not (anyKnown and redis.call("EXISTS", keys[k]) == 1) and
      not (lean[k] and doneRecord(k, id)) then
      local entry = ARGV[i + 1]
      fast[n + 1], fast[n + 2] = id, entry
      n = n + 2
      written[id] = true
      local p = string.byte(entry, 2)
      if p == 53 then fifo[#fifo + 1] = id else addReady(ready, fifo, p - 48, false, seq, id) end
    end
  end
  if n > 0 then
    pinFast()
    callMany("HSET", KEYS[6], fast)
  end
end
-- A submit of fresh fast-lane tasks of priority 5 only (the list holds
-- them in ARGV order): handOff may give them to parked claims from ARGV,
-- and lists the rest itself.
local given = nil
if fresh and regular == 0 and #ready == 0 and #fifo > 0 then
  given = { ids = fifo, from = fastFrom, at = 1 }
else
  flushReady(tag, KEYS[1], ready, fifo)
end
zaddMany(KEYS[2], delayed)
if given or #ready > 0 or #fifo > 0 or #delayed > 0 then
  -- parked claims take their tasks now, and are nudged by delayed ones due
  -- before they would claim again (park.lua); waiting claims of several
  -- queues are woken, unless the parked ones took every ready task and
  -- none is delayed (they would wake to nothing)
  if not handOff(tag, nowS, delayed, given) or #delayed > 0 then
    redis.call("PUBLISH", ARGV[3], queue)
  end
end
return out
