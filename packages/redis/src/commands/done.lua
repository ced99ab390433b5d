-- Helpers for done records (see the layout in common.lua), prepended after
-- common.lua to the scripts that read or write them only: every helper
-- defined costs every call of a script that has it.

-- A done record's value (see common.lua): its expiry time ("": kept
-- forever), then the record; absent fields read as their defaults.
local function leanRecord(expiresAt, updatedAt, retries, submittedAt, eta, task)
  return "@" .. expiresAt .. "|" .. updatedAt .. "|" .. (retries or "0") .. "|" .. (submittedAt or "0") .. "|" ..
    (eta or "") .. "|" .. (task or "")
end

-- A done record with a result (see common.lua), of a fast-lane task whose
-- result is stored: its expiry time, when it ended, submittedAt, task, the
-- result JSON ("": none) and the attempt it ended with.
local function resultRecord(expiresAt, updatedAt, submittedAt, task, result, attempt)
  return "#" .. expiresAt .. "|" .. updatedAt .. "|" .. submittedAt .. "|" .. #task .. "|" .. #result .. "|" ..
    task .. result .. attempt
end

-- Whether done record value v says its expiry itself ("@expiresAt|..." or
-- "#expiresAt|..."); a record written by an earlier version has its own
-- doneAt entry instead.
local function hasExpiry(v)
  local b = string.byte(v, 1)
  return b == 64 or b == 35
end

-- The expiry time of done record value v of id (a string; nil: kept forever).
local function leanExpiry(doneAt, id, v)
  if hasExpiry(v) then
    local at = string.match(v, "^[@#](%d*)|")
    if at == "" then return nil end
    return at
  end
  return redis.call("ZSCORE", doneAt, id)
end

-- Takes id out of the doneAt entries of expiry expiresAt (a string; nil:
-- its record was kept forever, so no entry lists it), when its done record
-- goes before the trim reaches it (an expired record forgotten at enqueue,
-- one a stale attempt turns into a hash): every id an entry lists then has
-- no record or the one that entry's call wrote, and the trim deletes an
-- expired entry's ids without reading their records. A record of an earlier
-- version has an entry of its own, its id alone, removed here too. Rare: it
-- reads the few entries of that expiry.
local function unlist(doneAt, id, expiresAt)
  redis.call("ZREM", doneAt, id)
  if not expiresAt then return end
  for _, entry in ipairs(redis.call("ZRANGEBYSCORE", doneAt, expiresAt, expiresAt)) do
    local rest, n, found = {}, 0, false
    for one in string.gmatch(entry, "[^\n]+") do
      if one == id then
        found = true
      else
        n = n + 1
        rest[n] = one
      end
    end
    if found then
      redis.call("ZREM", doneAt, entry)
      if n > 0 then redis.call("ZADD", doneAt, expiresAt, table.concat(rest, "\n")) end
    end
  end
end

-- The done record of id as updatedAt, retries, submittedAt, eta, task (all
-- strings), result (JSON, nil: none) and history (JSON, nil: empty), and its
-- expiry time (nil: kept forever); nil when there is none or its time is up
-- at now.
local function readLean(done, doneAt, id, now)
  local v = redis.call("HGET", done, id)
  if not v then return nil end
  local expiresAt = leanExpiry(doneAt, id, v)
  if expiresAt and tonumber(expiresAt) <= now then return nil end
  if string.byte(v, 1) == 35 then
    local head, updatedAt, submittedAt, taskLen, resultLen = string.match(v, "^(#%d*|(%d*)|(%d*)|(%d+)|(%d+)|)")
    local from = #head + 1
    local taskEnd, resultEnd = from + tonumber(taskLen), from + tonumber(taskLen) + tonumber(resultLen)
    local result = string.sub(v, taskEnd, resultEnd - 1)
    return { updatedAt = updatedAt, retries = "0", submittedAt = submittedAt, eta = "",
      task = string.sub(v, from, taskEnd - 1), result = result ~= "" and result or nil,
      history = "[" .. string.sub(v, resultEnd) .. "]", expiresAt = expiresAt }
  end
  if hasExpiry(v) then v = string.sub(v, string.find(v, "|", 1, true) + 1) end
  local updatedAt, retries, submittedAt, eta, task = string.match(v, "^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$")
  return { updatedAt = updatedAt, retries = retries, submittedAt = submittedAt, eta = eta, task = task,
    expiresAt = expiresAt }
end
