-- Helpers for done records (see the layout in common.lua), prepended after
-- common.lua to the scripts that read or write them only: every helper
-- defined costs every call of a script that has it.

-- A done record's value (see common.lua): its expiry time ("": kept
-- forever), then the record; absent fields read as their defaults.
local function leanRecord(expiresAt, updatedAt, retries, submittedAt, eta, task)
  return "@" .. expiresAt .. "|" .. updatedAt .. "|" .. (retries or "0") .. "|" .. (submittedAt or "0") .. "|" ..
    (eta or "") .. "|" .. (task or "")
end

-- Whether done record value v says its expiry itself ("@expiresAt|...");
-- a record written by an earlier version has its own doneAt entry instead.
local function hasExpiry(v)
  return string.byte(v, 1) == 64
end

-- The expiry time of done record value v of id (a string; nil: kept forever).
local function leanExpiry(doneAt, id, v)
  if hasExpiry(v) then
    local at = string.match(v, "^@(%d*)|")
    if at == "" then return nil end
    return at
  end
  return redis.call("ZSCORE", doneAt, id)
end

-- The done record of id as updatedAt, retries, submittedAt, eta, task (all
-- strings), and its expiry time (nil: kept forever); nil when there is none
-- or its time is up at now.
local function readLean(done, doneAt, id, now)
  local v = redis.call("HGET", done, id)
  if not v then return nil end
  local expiresAt = leanExpiry(doneAt, id, v)
  if expiresAt and tonumber(expiresAt) <= now then return nil end
  if hasExpiry(v) then v = string.sub(v, string.find(v, "|", 1, true) + 1) end
  local updatedAt, retries, submittedAt, eta, task = string.match(v, "^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$")
  return { updatedAt = updatedAt, retries = retries, submittedAt = submittedAt, eta = eta, task = task,
    expiresAt = expiresAt }
end
