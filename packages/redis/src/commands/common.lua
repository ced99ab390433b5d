-- Shared helpers, prepended to every step script when it is loaded.
--
-- A task lives in one hash, <tag>:t:<id>, in its queue's hash slot. Record
-- fields: id task queue state retries submittedAt updatedAt eta result error
-- meta revoked history. Internal fields: m (message JSON), p (priority),
-- tok (fencing token), lw/ls/la (current lease: worker, startedAt, ackEarly),
-- xw/xs/xe/xa (lost-lease marker: worker, startedAt, expiredAt, ackedEarly),
-- dd (dedup id).
--
-- Ready order: one sorted set, score = (9 - priority) * BAND + MID +/- seq, so
-- ZPOPMIN gives the highest priority first, then FIFO; "front" inserts
-- (release, lost leases) use MID - seq and come before every normal insert
-- of their priority. All scores stay below 2^53.

local BAND = 10000000000000
local MID = 5000000000000

local function fmt(n)
  return string.format("%.0f", n)
end

local function taskKey(tag, id)
  return tag .. ":t:" .. id
end

local function readyScore(tag, p, front)
  -- like the memory broker: integers clamped to 0..9, anything else is 5
  p = tonumber(p)
  if p == nil or p ~= math.floor(p) then p = 5 elseif p < 0 then p = 0 elseif p > 9 then p = 9 end
  local n = redis.call("INCR", tag .. ":seq")
  if front then
    return fmt((9 - p) * BAND + MID - n)
  end
  return fmt((9 - p) * BAND + MID + n)
end

-- Is this lease the current one: same token, and the task is still leased?
local function isCurrent(key, leased, id, token)
  return redis.call("HGET", key, "tok") == token and redis.call("ZSCORE", leased, id) ~= false
end

local function appendHistory(key, attempt)
  local h = redis.call("HGET", key, "history")
  if (not h) or h == "" or h == "[]" then
    h = "[" .. attempt .. "]"
  else
    h = string.sub(h, 1, -2) .. "," .. attempt .. "]"
  end
  redis.call("HSET", key, "history", h)
end

-- Frees the dedup id held by this task, if it still holds it.
local function releaseDedup(tag, key, id)
  local dd = redis.call("HGET", key, "dd")
  if dd then
    local dedup = tag .. ":dedup"
    if redis.call("HGET", dedup, dd) == id then
      redis.call("HDEL", dedup, dd)
    end
    redis.call("HDEL", key, "dd")
  end
end

-- A task reached a final state: drop the message and lease fields, free the
-- dedup id, and let the record expire after ttl ms (0: keep it).
local function finalize(tag, key, id, ttl, keepMessage)
  releaseDedup(tag, key, id)
  redis.call("HDEL", key, "lw", "ls", "la", "xw", "xs", "xe", "xa", "revoked")
  if not keepMessage then
    redis.call("HDEL", key, "m")
  end
  if tonumber(ttl) > 0 then
    redis.call("PEXPIRE", key, ttl)
  end
end

local function isFinal(state)
  return state == "SUCCESS" or state == "FAILURE" or state == "REVOKED"
end
