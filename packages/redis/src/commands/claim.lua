-- claim: promote due delayed tasks, return expired leases to ready (marked
-- lost), then lease up to max ready tasks, highest priority first, then FIFO.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] max  ARGV[4] leaseMillis  ARGV[5] worker
-- Returns { nextAt, then per delivery: id token message retries xw xs xe xa }
--   nextAt: the earliest delayed due time or lease deadline ("" if none);
--   xw == "" means the previous lease was not lost.
local tag, nowS = ARGV[1], ARGV[2]
local now = tonumber(nowS)
local max = tonumber(ARGV[3])
local worker = ARGV[5]
local LIMIT = 1000

local due = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", nowS, "LIMIT", 0, LIMIT)
for _, id in ipairs(due) do
  redis.call("ZADD", KEYS[1], readyScore(tag, redis.call("HGET", taskKey(tag, id), "p"), false), id)
end
if #due > 0 then
  redis.call("ZREM", KEYS[2], unpack(due))
end

local expired = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", nowS, "WITHSCORES", "LIMIT", 0, LIMIT)
-- walk backwards: each goes to the front, so the oldest ends up first
for i = #expired - 1, 1, -2 do
  local id, deadline = expired[i], expired[i + 1]
  local key = taskKey(tag, id)
  local f = redis.call("HMGET", key, "lw", "ls", "la", "p")
  redis.call("HSET", key, "xw", f[1] or "", "xs", f[2] or "", "xe", deadline, "xa", f[3] or "0",
    "state", "PENDING", "updatedAt", nowS)
  redis.call("HDEL", key, "lw", "ls", "la")
  redis.call("ZREM", KEYS[3], id)
  redis.call("ZADD", KEYS[1], readyScore(tag, f[4], true), id)
end

local out = { "" }
if max > 0 then
  local deadline = fmt(now + tonumber(ARGV[4]))
  local popped = redis.call("ZPOPMIN", KEYS[1], max)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = taskKey(tag, id)
    local f = redis.call("HMGET", key, "m", "retries", "xw", "xs", "xe", "xa")
    if f[1] then
      local token = redis.call("HINCRBY", key, "tok", 1)
      redis.call("HSET", key, "state", "RECEIVED", "updatedAt", nowS, "lw", worker)
      redis.call("ZADD", KEYS[3], deadline, id)
      if f[3] then
        redis.call("HDEL", key, "xw", "xs", "xe", "xa")
      end
      local n = #out
      out[n + 1] = id
      out[n + 2] = tostring(token)
      out[n + 3] = f[1]
      out[n + 4] = f[2] or "0"
      out[n + 5] = f[3] or ""
      out[n + 6] = f[4] or ""
      out[n + 7] = f[5] or ""
      out[n + 8] = f[6] or "0"
    end
  end
end

local nextAt = nil
local d = redis.call("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
if d[2] then nextAt = tonumber(d[2]) end
local l = redis.call("ZRANGE", KEYS[3], 0, 0, "WITHSCORES")
if l[2] and (nextAt == nil or tonumber(l[2]) < nextAt) then nextAt = tonumber(l[2]) end
if nextAt ~= nil then out[1] = fmt(nextAt) end
return out
