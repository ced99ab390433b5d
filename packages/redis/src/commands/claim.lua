-- claim: promote due delayed tasks, return expired leases to ready (marked
-- lost, state PENDING), then lease up to max ready tasks, highest priority
-- first, then FIFO. The lost marker stays on the task until a lease starts,
-- reschedules or ends it, so it survives a claimer that dies before handling
-- it. The first `start` leased tasks that carry no lost marker and are not
-- flagged revoked are also started, as start.lua with ackEarly "0" would
-- (state STARTED, ls = now), in the same HSET.
-- Fast-lane tasks (see common.lua) are leased in the fast lease hash, all
-- of one claim under one token from the queue's counter (they carry no lost
-- marker and no revoked flag: both live on hashes only); an expired fast
-- lease is first turned into a hash, then handled as any other.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased  KEYS[4] fast  KEYS[5] fastLease
-- ARGV[1] tag  ARGV[2] now  ARGV[3] max  ARGV[4] leaseMillis  ARGV[5] worker
-- ARGV[6] start (how many to start; absent: 0)
-- Returns { nextAt, then per delivery: id token message retries xw xs xe xa started }
--   nextAt: the earliest delayed due time or lease deadline ("" if none);
--   xw == "" means the previous lease was not lost;
--   started: "1" when this claim started the attempt (at now), else "".
local tag, nowS = ARGV[1], ARGV[2]
local now = tonumber(nowS)
local max = tonumber(ARGV[3])
local worker = ARGV[5]
local toStart = tonumber(ARGV[6]) or 0
local LIMIT = 1000

local due = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", nowS, "LIMIT", 0, LIMIT)
local expired = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", nowS, "WITHSCORES", "LIMIT", 0, LIMIT)
local seq = sequence(tag, #due + #expired / 2)

if #due > 0 then
  local ready = {}
  for _, id in ipairs(due) do
    push2(ready, readyScore(redis.call("HGET", taskKey(tag, id), "p"), false, seq()), id)
  end
  zaddMany(KEYS[1], ready)
  zremMany(KEYS[2], due)
end

if #expired > 0 then
  local ready, ids = {}, {}
  if redis.call("EXISTS", KEYS[5]) == 1 then
    for i = 1, #expired, 2 do materialize(tag, expired[i]) end
  end
  -- walk backwards: each goes to the front, so the oldest ends up first
  for i = #expired - 1, 1, -2 do
    local id, deadline = expired[i], expired[i + 1]
    local key = taskKey(tag, id)
    local f = redis.call("HMGET", key, "lw", "ls", "la", "p", "xw")
    if f[2] or not f[5] then
      redis.call("HSET", key, "xw", f[1] or "", "xs", f[2] or "", "xe", deadline, "xa", f[3] or "0",
        "state", "PENDING", "updatedAt", nowS)
    else
      -- it expired before its attempt started: the earlier lost attempt,
      -- not yet handled, stays the one reported
      redis.call("HSET", key, "state", "PENDING", "updatedAt", nowS)
    end
    redis.call("HDEL", key, "lw", "ls", "la")
    push2(ready, readyScore(f[4], true, seq()), id)
    ids[#ids + 1] = id
  end
  zremMany(KEYS[3], ids)
  zaddMany(KEYS[1], ready)
end

local out = { "" }

-- leases the hash task id (not in the fast lane), appending its delivery
local function leaseHash(id, deadline, leased)
  local key = taskKey(tag, id)
  local f = redis.call("HMGET", key, "m", "retries", "tok", "xw", "revoked")
  if not f[1] then return end
  local token = tostring((tonumber(f[3]) or 0) + 1)
  local started = ""
  if toStart > 0 and (not f[4] or f[4] == "") and f[5] ~= "1" then
    toStart = toStart - 1
    started = "1"
    -- la absent means "0" (not acknowledged early)
    redis.call("HSET", key, "tok", token, "state", "STARTED", "updatedAt", nowS, "lw", worker, "ls", nowS)
    -- an empty marker (never written by these scripts) is cleared as start.lua would
    if f[4] then redis.call("HDEL", key, "xw", "xs", "xe", "xa") end
  else
    redis.call("HSET", key, "tok", token, "state", "RECEIVED", "updatedAt", nowS, "lw", worker)
  end
  push2(leased, deadline, id)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, token, f[1], f[2] or "0"
  if f[4] and f[4] ~= "" then
    -- a lost marker (rare): the rest of it
    local x = redis.call("HMGET", key, "xs", "xe", "xa")
    out[n + 5], out[n + 6], out[n + 7], out[n + 8] = f[4], x[1] or "", x[2] or "", x[3] or "0"
  else
    out[n + 5], out[n + 6], out[n + 7], out[n + 8] = "", "", "", "0"
  end
  out[n + 9] = started
end

if max > 0 then
  local deadline = fmt(now + tonumber(ARGV[4]))
  -- the first max ids, then removed by rank: ZPOPMIN would also format
  -- every score as a string, which costs more than the rest of a pop
  local popped = redis.call("ZRANGE", KEYS[1], 0, max - 1)
  if #popped > 0 then redis.call("ZREMRANGEBYRANK", KEYS[1], 0, #popped - 1) end
  local leased = {}
  -- the popped ids' fast-lane messages, in one HMGET (false: a hash task)
  local fast = {}
  if #popped > 0 and redis.call("EXISTS", KEYS[4]) == 1 then fast = hmgetMany(KEYS[4], popped) end
  local fastToken, fastLeases = nil, {}
  for i = 1, #popped do
    local id = popped[i]
    local v = fast[i]
    if v then
      fastToken = fastToken or tostring(redis.call("INCR", tag .. ":tok"))
      local _, submittedAt, task, m = parseFast(v)
      local started, startedAt = "", ""
      if toStart > 0 then
        toStart = toStart - 1
        started, startedAt = "1", nowS
      end
      push2(fastLeases, id, fastLease(fastToken, startedAt, nowS, submittedAt, task, worker))
      push2(leased, deadline, id)
      local n = #out
      out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = id, fastToken, m, "0", ""
      out[n + 6], out[n + 7], out[n + 8], out[n + 9] = "", "", "0", started
    else
      leaseHash(id, deadline, leased)
    end
  end
  callMany("HSET", KEYS[5], fastLeases)
  zaddMany(KEYS[3], leased)
end

local nextAt = nil
local d = redis.call("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
if d[2] then nextAt = tonumber(d[2]) end
local l = redis.call("ZRANGE", KEYS[3], 0, 0, "WITHSCORES")
if l[2] and (nextAt == nil or tonumber(l[2]) < nextAt) then nextAt = tonumber(l[2]) end
if nextAt ~= nil then out[1] = fmt(nextAt) end
return out
