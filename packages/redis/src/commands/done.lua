-- Helpers for done records (see the layout in common.lua), prepended after
-- common.lua to the scripts that read or write them only: every helper
-- defined costs every call of a script that has it.

-- A done record's value (see common.lua); absent fields read as their
-- defaults.
local function leanRecord(updatedAt, retries, submittedAt, eta, task)
  return updatedAt .. "|" .. (retries or "0") .. "|" .. (submittedAt or "0") .. "|" .. (eta or "") .. "|" ..
    (task or "")
end

-- The done record of id as updatedAt, retries, submittedAt, eta, task (all
-- strings), and its expiry time (nil: kept forever); nil when there is none
-- or its time is up at now.
local function readLean(done, doneAt, id, now)
  local v = redis.call("HGET", done, id)
  if not v then return nil end
  local expiresAt = redis.call("ZSCORE", doneAt, id)
  if expiresAt and tonumber(expiresAt) <= now then return nil end
  local updatedAt, retries, submittedAt, eta, task = string.match(v, "^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$")
  return { updatedAt = updatedAt, retries = retries, submittedAt = submittedAt, eta = eta, task = task,
    expiresAt = expiresAt }
end
