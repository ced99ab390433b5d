-- complete: end tasks with SUCCESS / FAILURE / REVOKED. The message is
-- dropped, except for FAILURE: it stays with the record (same TTL) for
-- redeliver. A lean item (a SUCCESS whose result is not stored) keeps only
-- its state: its hash is deleted and a one-field record goes into the done
-- hash (see common.lua), expiring by the doneAt set instead of a PEXPIRE;
-- a call that writes done records also trims expired ones (a bounded number).
-- A fast-lane task (see common.lua) under its current fast lease ends the
-- same way when its item is lean (nothing else to keep), and its claim is
-- counted down; any other outcome first turns it into a hash.
-- KEYS[1] leased  KEYS[2] done  KEYS[3] doneAt  KEYS[4] fast  KEYS[5] fastLease
-- ARGV[1] tag  ARGV[2] now  ARGV[3] ttl (ms, 0: keep)  ARGV[4] done channel
-- then per task, 6 values: id token state result error attempt
--   (result and error: JSON, "" when absent; attempt "" marks a lean item:
--   a SUCCESS that keeps its state only. A lean item's result and error
--   may carry the task's submittedAt and task name as its claim delivered
--   them, which a fast-lane task's done record then takes instead of reading
--   its entry; "" "" when the caller does not know them)
-- Returns per task: 1 done, 0 stale.
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

local out, done = {}, {}
local lean, leanIds = {}, {} -- done hash: id value; the ids written
-- every done record of the call expires at once (see common.lua)
local expiresAt = ttl > 0 and fmt(now + ttl) or ""
local leanHead = "@" .. expiresAt .. "|" .. nowS .. "|0|"

-- the items' fast leases, in one HMGET (none when the queue has none)
local fastLeases = {}
if redis.call("EXISTS", KEYS[5]) == 1 then
  local ids = {}
  for i = 5, #ARGV, 6 do ids[#ids + 1] = ARGV[i] end
  fastLeases = hmgetMany(KEYS[5], ids)
end
local fastDone, claims, leasedDone = {}, {}, {}

for i = 5, #ARGV, 6 do
  local id, tok = ARGV[i], ARGV[i + 1]
  local l = fastLeases[(i - 5) / 6 + 1]
  -- the usual fast lease: its claim's bare token
  local current = l and (l == tok or tokenOf(l) == tok)
  if l and (not current or ARGV[i + 5] == "") then
    -- a fast lease: not this attempt's (stale), or a lean end
    if current then
      local submittedAt, task = ARGV[i + 3], ARGV[i + 4]
      if submittedAt == "" then
        local _
        _, submittedAt, task = parseFast(redis.call("HGET", KEYS[4], id))
      end
      -- inline, not push2 / leanRecord: a Lua call per task costs more
      -- than the rest of this branch's Lua
      local n = #lean
      lean[n + 1], lean[n + 2] = id, leanHead .. submittedAt .. "||" .. task
      leanIds[#leanIds + 1] = id
      fastDone[#fastDone + 1] = id
      claims[tok] = (claims[tok] or 0) + 1
      done[#done + 1] = id
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  elseif ARGV[i + 5] == "" then
    local key = taskKey(tag, id)
    local f = redis.call("HMGET", key, "tok", "lw", "dd", "retries", "submittedAt", "eta", "task")
    if f[1] == tok and f[2] then
      releaseDedup(tag, id, f[3])
      redis.call("DEL", key)
      push2(lean, id, leanRecord(expiresAt, nowS, f[4], f[5], f[6], f[7]))
      leanIds[#leanIds + 1] = id
      done[#done + 1] = id
      leasedDone[#leasedDone + 1] = id
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  else
    -- any other end of a fast-lane task: as a hash
    if l then materialize(tag, id) end
    local key = taskKey(tag, id)
    local f = redis.call("HMGET", key, "tok", "lw", "history", "dd")
    if f[1] == tok and f[2] then
      local fields = { "state", ARGV[i + 2], "updatedAt", nowS, "history", appendHistory(f[3], ARGV[i + 5]) }
      if ARGV[i + 3] ~= "" then push2(fields, "result", ARGV[i + 3]) end
      if ARGV[i + 4] ~= "" then push2(fields, "error", ARGV[i + 4]) end
      redis.call("HSET", key, unpack(fields))
      if ARGV[i + 2] == "FAILURE" then
        -- a failed task keeps its message (until the record expires), so
        -- redeliver can run it again
        redis.call("HDEL", key, "lw", "ls", "la", "xw", "xs", "xe", "xa", "revoked", "dd")
      elseif ARGV[i + 4] ~= "" then
        redis.call("HDEL", key, "m", "lw", "ls", "la", "xw", "xs", "xe", "xa", "revoked", "dd")
      else
        -- the final error is this attempt's: a success after retries has none
        redis.call("HDEL", key, "m", "lw", "ls", "la", "xw", "xs", "xe", "xa", "revoked", "dd", "error")
      end
      releaseDedup(tag, id, f[4])
      if ttl > 0 then redis.call("PEXPIRE", key, ttl) end
      done[#done + 1] = id
      leasedDone[#leasedDone + 1] = id
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
end
if #fastDone > 0 then
  callMany("HDEL", KEYS[5], fastDone)
  callMany("HDEL", KEYS[4], fastDone)
  leftClaims(tag, claims)
end
if #lean > 0 then
  -- the two keys live at least as long as their entries: a queue nobody
  -- completes tasks on any more does not keep its expired done records
  local pDone = redis.call("PTTL", KEYS[2])
  callMany("HSET", KEYS[2], lean)
  keepFor(KEYS[2], pDone, ttl)
  if ttl > 0 then
    -- one doneAt entry for the call's records: their ids, newline-separated
    local pAt = redis.call("PTTL", KEYS[3])
    redis.call("ZADD", KEYS[3], expiresAt, table.concat(leanIds, "\n"))
    keepFor(KEYS[3], pAt, ttl)
  end
  -- trim: forget done records whose time is up (more than one call's
  -- worth, so the trimming keeps ahead of the writing). Only calls that
  -- write done records trim: when they stop, the keys expire. An entry's
  -- id whose record was written again since (a newer expiry) keeps it.
  local entries = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", nowS, "LIMIT", 0, 16)
  if #entries > 0 then
    local budget, gone, trimmed = 2 * #leanIds + 100, {}, {}
    for _, entry in ipairs(entries) do
      if budget <= 0 then break end
      local ids = {}
      for id in string.gmatch(entry, "[^\n]+") do ids[#ids + 1] = id end
      local values = hmgetMany(KEYS[2], ids)
      for k = 1, #ids do
        local v = values[k]
        if v and not (hasExpiry(v) and (tonumber(string.match(v, "^@(%d*)|")) or now + 1) > now) then
          gone[#gone + 1] = ids[k]
        end
      end
      budget = budget - #ids
      trimmed[#trimmed + 1] = entry
    end
    callMany("HDEL", KEYS[2], gone)
    zremMany(KEYS[3], trimmed)
  end
end
if #leasedDone > 0 then zremMany(KEYS[1], leasedDone) end
if #done > 0 then redis.call("PUBLISH", ARGV[4], table.concat(done, "\n")) end
return out
