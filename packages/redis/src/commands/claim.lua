-- claim: promote due delayed tasks, return expired leases to ready (marked
-- lost, state PENDING), then lease up to max ready tasks, highest priority
-- first, then FIFO. The lost marker stays on the task until a lease starts,
-- reschedules or ends it, so it survives a claimer that dies before handling
-- it. The first `start` leased tasks that carry no lost marker and are not
-- flagged revoked are also started, as start.lua with ackEarly "0" would
-- (state STARTED, ls = now), in the same HSET.
-- Fast-lane tasks (see common.lua) are leased together, under one claim of
-- the fast lane with one token from the queue's counter (they carry no lost
-- marker and no revoked flag: both live on hashes only); an expired claim's
-- tasks are first turned into hashes, then handled as any expired lease.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased  KEYS[4] fast  KEYS[5] fastLease
-- ARGV[1] tag  ARGV[2] now  ARGV[3] max  ARGV[4] leaseMillis  ARGV[5] worker
-- ARGV[6] start (how many to start; absent: 0)
-- Returns { nextAt, token, started, then per delivery either
--   id entry                                       (a fast-lane task), or
--   id "" token message retries xw xs xe xa started (any other) }
--   nextAt: the earliest delayed due time or lease deadline ("" if none);
--   token: the fast-lane claim's token ("" if none); started: how many of
--   the fast-lane deliveries, the first ones, this claim started;
--   entry: the task's fast-lane entry as stored (never "");
--   xw == "" means the previous lease was not lost;
--   started: "1" when this claim started the attempt (at now), else "".
local tag, nowS = ARGV[1], ARGV[2]
local now = tonumber(nowS)
local max = tonumber(ARGV[3])
local worker = ARGV[5]
local toStart = tonumber(ARGV[6]) or 0
local LIMIT = 1000

expireClaims(tag, nowS, 100)
local due = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", nowS, "LIMIT", 0, LIMIT)
local expired = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", nowS, "WITHSCORES", "LIMIT", 0, LIMIT)
local seq = sequence(tag, #due + #expired / 2)

if #due > 0 then
  local ready, fifo = {}, {}
  for _, id in ipairs(due) do
    addReady(ready, fifo, redis.call("HGET", taskKey(tag, id), "p"), false, seq, id)
  end
  flushReady(tag, KEYS[1], ready, fifo)
  zremMany(KEYS[2], due)
end

if #expired > 0 then
  local ready, ids = {}, {}
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

local out = { "", "", 0 }

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
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = id, "", token, f[1], f[2] or "0"
  if f[4] and f[4] ~= "" then
    -- a lost marker (rare): the rest of it
    local x = redis.call("HMGET", key, "xs", "xe", "xa")
    out[n + 6], out[n + 7], out[n + 8], out[n + 9] = f[4], x[1] or "", x[2] or "", x[3] or "0"
  else
    out[n + 6], out[n + 7], out[n + 8], out[n + 9] = "", "", "", "0"
  end
  out[n + 10] = started
end

if max > 0 then
  local deadline = fmt(now + tonumber(ARGV[4]))
  -- in ready order (see common.lua): the set's members before priority 5's
  -- normal inserts (taken and removed by rank), the list, the rest of the set
  local popped = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", "(" .. fmt(readyScore(5, false, 0)), "LIMIT", 0, max)
  if #popped > 0 then redis.call("ZREMRANGEBYRANK", KEYS[1], 0, #popped - 1) end
  popFifo(tag, popped, max)
  popFirst(KEYS[1], popped, max)
  local leased = {}
  -- the popped ids' fast-lane messages, in one HMGET (false: a hash task)
  local fast = {}
  if #popped > 0 and redis.call("EXISTS", KEYS[4]) == 1 then fast = hmgetMany(KEYS[4], popped) end
  -- the claim's fast-lane tasks: its token, bare for a task it starts and
  -- with "|" for one it does not, is each task's lease (see common.lua)
  local fastToken, received, fastLeases, fastIds = nil, nil, {}, {}
  for i = 1, #popped do
    local id = popped[i]
    local v = fast[i]
    if v then
      if not fastToken then
        fastToken = tostring(redis.call("INCR", tag .. ":tok"))
        received = fastToken .. "|"
      end
      if toStart > 0 then
        toStart = toStart - 1
        out[3] = out[3] + 1
        push2(fastLeases, id, fastToken)
      else
        push2(fastLeases, id, received)
      end
      fastIds[#fastIds + 1] = id
      local n = #out
      out[n + 1], out[n + 2] = id, v
    else
      leaseHash(id, deadline, leased)
    end
  end
  if fastToken then
    out[2] = fastToken
    callMany("HSET", KEYS[5], fastLeases)
    redis.call("HSET", tag .. ":claim", fastToken, nowS .. "|" .. worker)
    redis.call("HSET", tag .. ":claimIds", fastToken, table.concat(fastIds, "\n"))
    redis.call("HSET", tag .. ":claimLeft", fastToken, #fastIds)
    redis.call("ZADD", tag .. ":claimAt", deadline, fastToken)
  end
  zaddMany(KEYS[3], leased)
end

local nextAt = nil
local d = redis.call("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
if d[2] then nextAt = tonumber(d[2]) end
local l = redis.call("ZRANGE", KEYS[3], 0, 0, "WITHSCORES")
if l[2] and (nextAt == nil or tonumber(l[2]) < nextAt) then nextAt = tonumber(l[2]) end
local c = redis.call("ZRANGE", tag .. ":claimAt", 0, 0, "WITHSCORES")
if c[2] and (nextAt == nil or tonumber(c[2]) < nextAt) then nextAt = tonumber(c[2]) end
if nextAt ~= nil then out[1] = fmt(nextAt) end
return out
