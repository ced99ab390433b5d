-- claim: promote due delayed tasks, return expired leases to ready (marked
-- lost, state PENDING), then lease up to max ready tasks, highest priority
-- first, then FIFO. The lost marker stays on the task until a lease starts,
-- reschedules or ends it, so it survives a claimer that dies before handling
-- it. The first `start` leased tasks that carry no lost marker and are not
-- flagged revoked are also started, as start.lua with ackEarly "0" would
-- (state STARTED, ls = now), in the same HSET.
-- Fast-lane tasks are leased as `leaseReady` (park.lua) says; an expired
-- claim's tasks are first turned into hashes, then handled as any expired
-- lease.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased  KEYS[4] fast  KEYS[5] fastLease
-- ARGV[1] tag  ARGV[2] now  ARGV[3] max  ARGV[4] leaseMillis  ARGV[5] worker
-- ARGV[6] start (how many to start; absent: 0)
-- ARGV[7] parkId, ARGV[8] until (absent: no parking): a claim that leases
--   nothing parks until `until` or the next due time, if sooner (park.lua)
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
local parkId = ARGV[7]
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
    local f = redis.call("HMGET", key, "lw", "ls", "la", "p", "xw", "lp")
    if untaken(tag, f[6]) then
      -- handed to a parked claim whose worker never took it (park.lua): back
      -- as it was, no attempt lost
      redis.call("HSET", key, "state", "PENDING", "updatedAt", nowS)
    elseif f[2] or not f[5] then
      redis.call("HSET", key, "xw", f[1] or "", "xs", f[2] or "", "xe", deadline, "xa", f[3] or "0",
        "state", "PENDING", "updatedAt", nowS)
    else
      -- it expired before its attempt started: the earlier lost attempt,
      -- not yet handled, stays the one reported
      redis.call("HSET", key, "state", "PENDING", "updatedAt", nowS)
    end
    redis.call("HDEL", key, "lw", "ls", "la", "lp")
    push2(ready, readyScore(f[4], true, seq()), id)
    ids[#ids + 1] = id
  end
  zremMany(KEYS[3], ids)
  zaddMany(KEYS[1], ready)
end

dropUntaken(tag)

local out = leaseReady(tag, nowS, max, tonumber(ARGV[4]), worker, toStart)

local nextAt = nil
local d = redis.call("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
if d[2] then nextAt = tonumber(d[2]) end
local l = redis.call("ZRANGE", KEYS[3], 0, 0, "WITHSCORES")
if l[2] and (nextAt == nil or tonumber(l[2]) < nextAt) then nextAt = tonumber(l[2]) end
local c = redis.call("ZRANGE", tag .. ":claimAt", 0, 0, "WITHSCORES")
if c[2] and (nextAt == nil or tonumber(c[2]) < nextAt) then nextAt = tonumber(c[2]) end
if nextAt ~= nil then out[1] = fmt(nextAt) end
-- nothing leased: park until the claim's wait ends or the next task is due
-- (see park.lua)
if #out == 3 and parkId then
  local untilAt = tonumber(ARGV[8])
  if nextAt ~= nil and nextAt < untilAt then untilAt = nextAt end
  if untilAt > now then park(tag, parkId, fmt(untilAt), max, toStart, fmt(math.ceil(tonumber(ARGV[4]))), worker) end
end
return out
