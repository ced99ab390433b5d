-- complete: end tasks with SUCCESS / FAILURE / REVOKED. The message is
-- dropped, except for FAILURE: it stays with the record (same TTL) for
-- redeliver. A lean item (a SUCCESS whose result is not stored) keeps only
-- its state: its hash is deleted and a one-field record goes into the done
-- hash (see common.lua), expiring with the call's other records; a call
-- that writes done records also trims expired ones (a bounded number).
-- A fast-lane task (see common.lua) under its current fast lease ends the
-- same way when its item is lean (nothing else to keep), or as a done
-- record with its result and attempt when it succeeded with its result
-- stored, and its claim is counted down; any other outcome first turns it
-- into a hash. A SUCCESS that keeps no record (Task.keepRecord false) is
-- forgotten instead: its hash or fast-lane entry goes and nothing is
-- written.
-- KEYS[1] leased  KEYS[2] done  KEYS[3] doneAt  KEYS[4] fast  KEYS[5] fastLease
-- ARGV[1] tag  ARGV[2] now  ARGV[3] ttl (ms, 0: keep)  ARGV[4] done channel
-- ARGV[5] how many items follow, 6 values each: id token state result error
--   attempt (result and error: JSON, "" when absent; attempt "" marks a
--   lean item, whose result and error are not read)
-- then groups of lean items, each: token submittedAt task count, then
--   `count` ids: items that share their lease token and, as their claim
--   delivered them, their submit time and task name, which a fast-lane
--   task's done record takes ("" "": unknown, read from its entry). Most of
--   a worker's acks form a handful of groups, so a task costs one value.
--   A group whose count is "=count" holds SUCCESS items whose result is
--   stored, three values each: id result attempt (result "" when none).
--   One whose count is "-count" holds SUCCESS items that keep no record
--   (Task.keepRecord false), one value each, their ids: each is forgotten
--   as it ends (its hash or fast-lane entry deleted, no done record), and
--   its submit time and task are not read ("" "").
-- Returns the positions (1-based: the items, then the grouped ids) of
-- those that were stale, not ended (none, usually): a reply that does not
-- grow with the batch.
local tag, nowS, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = tonumber(nowS)

-- Makes key (which had PTTL before this call) live at least ttl more (with
-- some slack, so it is not extended on every call); ttl 0: an entry is kept
-- forever, so the key is. A key that had no expiry already holds such
-- entries and keeps none.
local function keepFor(key, before, ttl)
  if ttl == 0 then
    if before >= 0 then redis.call("PERSIST", key) end
  elseif before == -2 or (before >= 0 and before < ttl) then
    redis.call("PEXPIRE", key, fmt(ttl + math.floor(ttl / 8)))
  end
end

local items = tonumber(ARGV[5])
local groupsFrom = 6 + items * 6
local stale, done = {}, {}
-- lean: the done hash's new fields (id value); fastDone: the fast-lane
-- tasks ended (each has a done record); leanIds: the hash tasks that ended
-- as done records; done: the hash tasks ended (leanIds among them). The
-- fast-lane ids are in one table only: the done records and the done
-- channel take them from there with the others.
local lean, leanIds = {}, {}
-- how many values lean, leanIds, fastDone and done hold (counters, not
-- `#t`: a table's length is a search in Lua 5.1)
local nLean, nLeanIds, nFastDone, nDone = 0, 0, 0, 0
-- every done record of the call expires at once (see common.lua)
local expiresAt = ttl > 0 and fmt(now + ttl) or ""
local leanHead = "@" .. expiresAt .. "|" .. nowS .. "|0|"
local fastDone, claims, leasedDone = {}, {}, {}
-- the fast-lane tasks forgotten as they ended (no done record)
local forgot, nForgot = {}, 0

-- The ids of a (na of them) and b (nb), newline-separated.
local function joined(a, na, b, nb)
  if nb == 0 then return table.concat(a, "\n") end
  if na == 0 then return table.concat(b, "\n") end
  return table.concat(a, "\n") .. "\n" .. table.concat(b, "\n")
end

-- A group's count, values per item, and whether its items keep no record
-- (see above).
local function groupSize(c)
  local b = string.byte(c, 1)
  if b == 61 then return tonumber(string.sub(c, 2)), 3, false end
  if b == 45 then return tonumber(string.sub(c, 2)), 1, true end
  return tonumber(c), 1, false
end

-- the fast leases of the items, then of the grouped ids, in one HMGET (none
-- when the queue has none)
local fastLeases = {}
if redis.call("EXISTS", KEYS[5]) == 1 then
  local ids, n = {}, 0
  for i = 6, groupsFrom - 1, 6 do
    n = n + 1
    ids[n] = ARGV[i]
  end
  local g = groupsFrom
  while g <= #ARGV do
    local count, step = groupSize(ARGV[g + 3])
    for i = g + 4, g + 3 + count * step, step do
      n = n + 1
      ids[n] = ARGV[i]
    end
    g = g + 4 + count * step
  end
  fastLeases = hmgetMany(KEYS[5], ids)
end

-- A lean end of id under token tok that is not under a current fast lease:
-- a hash (one the fast lane handed over included) or stale. keep false:
-- forgotten, no done record.
local function leanHash(id, tok, keep)
  local key = taskKey(tag, id)
  local f = redis.call("HMGET", key, "tok", "lw", "dd", "retries", "submittedAt", "eta", "task")
  if f[1] == tok and f[2] then
    releaseDedup(tag, id, f[3])
    redis.call("DEL", key)
    if keep then
      lean[nLean + 1], lean[nLean + 2] = id, leanRecord(expiresAt, nowS, f[4], f[5], f[6], f[7])
      nLean = nLean + 2
      nLeanIds = nLeanIds + 1
      leanIds[nLeanIds] = id
    end
    nDone = nDone + 1
    done[nDone] = id
    leasedDone[#leasedDone + 1] = id
    return 1
  end
  return 0
end

-- A SUCCESS of fast-lane task id under its current fast lease tok, its
-- submit time and task given ("" "": unknown, read from its entry): a done
-- record, lean, or with its result and attempt when `attempt` is given (see
-- common.lua). (The lean groups' loop writes the lean case out: a Lua call
-- per task costs about as much as the rest of this.)
local function endFast(id, tok, submittedAt, task, result, attempt)
  if submittedAt == "" then
    local _
    _, submittedAt, task = parseFast(redis.call("HGET", KEYS[4], id))
  end
  lean[nLean + 1], lean[nLean + 2] = id, attempt and resultRecord(expiresAt, nowS, submittedAt, task, result, attempt) or
    leanHead .. submittedAt .. "||" .. task
  nLean = nLean + 2
  nFastDone = nFastDone + 1
  fastDone[nFastDone] = id
  claims[tok] = (claims[tok] or 0) + 1
end

-- Any other end of task id under token tok (fast lease l, if any): as a
-- hash, a fast-lane task turned into one first. 1 done, 0 stale.
local function endHash(id, tok, l, state, result, error, attempt)
  if l then materialize(tag, id) end
  local key = taskKey(tag, id)
  local f = redis.call("HMGET", key, "tok", "lw", "history", "dd")
  if f[1] ~= tok or not f[2] then return 0 end
  local fields = { "state", state, "updatedAt", nowS, "history", appendHistory(f[3], attempt) }
  if result ~= "" then push2(fields, "result", result) end
  if error ~= "" then push2(fields, "error", error) end
  redis.call("HSET", key, unpack(fields))
  if state == "FAILURE" then
    -- a failed task keeps its message (until the record expires), so
    -- redeliver can run it again
    redis.call("HDEL", key, "lw", "ls", "la", "lp", "xw", "xs", "xe", "xa", "revoked", "dd")
  elseif error ~= "" then
    redis.call("HDEL", key, "m", "lw", "ls", "la", "lp", "xw", "xs", "xe", "xa", "revoked", "dd")
  else
    -- the final error is this attempt's: a success after retries has none
    redis.call("HDEL", key, "m", "lw", "ls", "la", "lp", "xw", "xs", "xe", "xa", "revoked", "dd", "error")
  end
  releaseDedup(tag, id, f[4])
  if ttl > 0 then redis.call("PEXPIRE", key, ttl) end
  nDone = nDone + 1
  done[nDone] = id
  leasedDone[#leasedDone + 1] = id
  return 1
end

local k = 0 -- the item's or grouped id's place in fastLeases
for i = 6, groupsFrom - 1, 6 do
  k = k + 1
  local id, tok = ARGV[i], ARGV[i + 1]
  local l = fastLeases[k]
  local current = l and (l == tok or tokenOf(l) == tok)
  if l and not current then
    -- a fast lease, not this attempt's
    stale[#stale + 1] = k
  elseif ARGV[i + 5] == "" then
    if current then
      endFast(id, tok, "", "")
    elseif leanHash(id, tok, true) == 0 then
      stale[#stale + 1] = k
    end
  elseif current and ARGV[i + 2] == "SUCCESS" and ARGV[i + 4] == "" then
    -- a fast-lane task that succeeded, its result stored: no hash
    endFast(id, tok, "", "", ARGV[i + 3], ARGV[i + 5])
  elseif endHash(id, tok, l, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]) == 0 then
    stale[#stale + 1] = k
  end
end

local g = groupsFrom
while g <= #ARGV do
  local tok, submittedAt, task = ARGV[g], ARGV[g + 1], ARGV[g + 2]
  local count, step, forget = groupSize(ARGV[g + 3])
  if step == 3 then
    for i = g + 4, g + 3 + count * 3, 3 do
      k = k + 1
      local id = ARGV[i]
      local l = fastLeases[k]
      if l == tok or (l and tokenOf(l) == tok) then
        endFast(id, tok, submittedAt, task, ARGV[i + 1], ARGV[i + 2])
      elseif l then
        stale[#stale + 1] = k
      elseif endHash(id, tok, nil, "SUCCESS", ARGV[i + 1], "", ARGV[i + 2]) == 0 then
        stale[#stale + 1] = k
      end
    end
    g = g + 4 + count * 3
  else
    -- lean items, or forgotten ones (`forget`: no done record)
    local head = leanHead .. submittedAt .. "||" .. task
    local ended = 0
    for i = g + 4, g + 3 + count do
      k = k + 1
      local id = ARGV[i]
      local l = fastLeases[k]
      if l == tok or (l and tokenOf(l) == tok) then
        -- the usual cases, written out (see endFast)
        if forget then
          nForgot = nForgot + 1
          forgot[nForgot] = id
          ended = ended + 1
        elseif submittedAt == "" then
          endFast(id, tok, "", "")
        else
          lean[nLean + 1], lean[nLean + 2] = id, head
          nLean = nLean + 2
          nFastDone = nFastDone + 1
          fastDone[nFastDone] = id
          ended = ended + 1
        end
      elseif l then
        stale[#stale + 1] = k
      elseif leanHash(id, tok, not forget) == 0 then
        stale[#stale + 1] = k
      end
    end
    if ended > 0 then claims[tok] = (claims[tok] or 0) + ended end
    g = g + 4 + count
  end
end
-- the fast-lane tasks ended, with a done record or forgotten: their leases
-- and entries go, and their claims are counted down
local function dropFast(ids, n)
  if n == 0 then return end
  callMany("HDEL", KEYS[5], ids)
  callMany("HDEL", KEYS[4], ids)
end
dropFast(fastDone, nFastDone)
dropFast(forgot, nForgot)
if nFastDone + nForgot > 0 then leftClaims(tag, claims) end
if nLean > 0 then
  -- the two keys live at least as long as their entries: a queue nobody
  -- completes tasks on any more does not keep its expired done records
  local pDone = redis.call("PTTL", KEYS[2])
  callMany("HSET", KEYS[2], lean)
  keepFor(KEYS[2], pDone, ttl)
  if ttl > 0 then
    -- one doneAt entry for the call's records: their ids, newline-separated
    local pAt = redis.call("PTTL", KEYS[3])
    redis.call("ZADD", KEYS[3], expiresAt, joined(fastDone, nFastDone, leanIds, nLeanIds))
    keepFor(KEYS[3], pAt, ttl)
  end
  -- trim: forget done records whose time is up (more than one call's
  -- worth, so the trimming keeps ahead of the writing). Only calls that
  -- write done records trim: when they stop, the keys expire. An expired
  -- entry's ids are deleted unread: each has the record its call wrote, or
  -- none (a record that goes earlier takes its id out of its entry:
  -- `unlist`, done.lua); an entry of an earlier version is one id.
  local entries = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", nowS, "LIMIT", 0, 16)
  if #entries > 0 then
    local budget, gone, nGone, trimmed = 2 * (nFastDone + nLeanIds) + 100, {}, 0, {}
    for _, entry in ipairs(entries) do
      if budget <= 0 then break end
      local before = nGone
      for id in string.gmatch(entry, "[^\n]+") do
        nGone = nGone + 1
        gone[nGone] = id
      end
      budget = budget - (nGone - before)
      trimmed[#trimmed + 1] = entry
    end
    callMany("HDEL", KEYS[2], gone)
    zremMany(KEYS[3], trimmed)
  end
end
if #leasedDone > 0 then zremMany(KEYS[1], leasedDone) end
-- the done channel wakes waiters of every task ended here, in one message
-- (a forgotten one's waiter then finds no record)
local ended = {}
if nFastDone > 0 then ended[#ended + 1] = table.concat(fastDone, "\n") end
if nDone > 0 then ended[#ended + 1] = table.concat(done, "\n") end
if nForgot > 0 then ended[#ended + 1] = table.concat(forgot, "\n") end
if #ended > 0 then redis.call("PUBLISH", ARGV[4], table.concat(ended, "\n")) end
return stale
