-- Helpers of the fast lane (see the layout in common.lua), prepended after
-- common.lua to the scripts that read or write it.

local function fastKey(tag)
  return tag .. ":fast"
end

local function fastLeaseKey(tag)
  return tag .. ":fastLease"
end

-- A fast-lane entry (see common.lua): priority, submittedAt, task, the rest
-- (headers and payload), the headers' length and whether its result is
-- stored ("=" entries); or, for an entry written by an earlier version
-- ("p|submittedAt|taskLength|<task><message>", no leading "~" or "="), the
-- message JSON as the rest and no length.
local function parseFast(v)
  local mark = string.byte(v, 1)
  if mark ~= 126 and mark ~= 61 then
    local p, submittedAt, len = string.match(v, "^(%d*)|(%d*)|(%d+)|")
    local from = #p + #submittedAt + #len + 4
    local n = tonumber(len)
    return p, submittedAt, string.sub(v, from, from + n - 1), string.sub(v, from + n), nil
  end
  local p, submittedAt, len, hlen = string.match(v, "^[~=](%d*)|(%d*)|(%d+)|(%d+)|")
  local from = #p + #submittedAt + #len + #hlen + 6
  local n = tonumber(len)
  return p, submittedAt, string.sub(v, from, from + n - 1), string.sub(v, from + n), tonumber(hlen), mark == 61
end

-- The message JSON of a fast-lane task, as the producer's would read: the
-- entry keeps only what is not implied (retries 0, no eta, storeResult
-- false or absent, the queue's name; empty headers as nothing), with the
-- payload JSON as submitted.
local function fastMessage(tag, id, p, submittedAt, task, rest, hlen, stored)
  if not hlen then return rest end
  local headers = hlen > 0 and string.sub(rest, 1, hlen) or "{}"
  return '{"id":' .. cjson.encode(id) .. ',"task":' .. cjson.encode(task) .. ',"queue":' ..
    cjson.encode(redis.call("GET", tag .. ":queue") or "") .. ',"payload":' .. string.sub(rest, hlen + 1) ..
    ',"headers":' .. headers .. ',"priority":' .. p .. ',"retries":0,"submittedAt":' .. submittedAt ..
    (stored and "}" or ',"storeResult":false}')
end

-- The token of a fast lease: the value up to its "|", if any.
local function tokenOf(l)
  if string.find(l, "|", 1, true) then return string.match(l, "^[^|]*") end
  return l
end

-- When a fast lease's attempt started: its claim's time (a bare token), nil
-- (token "|": received, not started) or the time a later start gave.
local function leaseStartedAt(l, claimedAt)
  local at = string.find(l, "|", 1, true)
  if not at then return claimedAt end
  if at == #l then return nil end
  return string.sub(l, at + 1)
end

-- A claim of fast-lane tasks: its time and worker, or nil when it has ended.
local function claimOf(tag, token)
  local h = redis.call("HGET", tag .. ":claim", token)
  if not h then return nil end
  local claimedAt = string.match(h, "^[^|]*")
  return { token = token, claimedAt = claimedAt, worker = string.sub(h, #claimedAt + 2),
    deadline = redis.call("ZSCORE", tag .. ":claimAt", token) }
end

-- Forgets a claim of fast-lane tasks.
local function dropClaim(tag, token)
  redis.call("HDEL", tag .. ":claim", token)
  redis.call("HDEL", tag .. ":claimIds", token)
  redis.call("HDEL", tag .. ":claimLeft", token)
  redis.call("ZREM", tag .. ":claimAt", token)
  redis.call("HDEL", tag .. ":claimPark", token)
end

-- counts: token -> how many of its claim's tasks left their fast leases; a
-- claim none of whose tasks is still leased under it is forgotten.
local function leftClaims(tag, counts)
  for token, n in pairs(counts) do
    if redis.call("HINCRBY", tag .. ":claimLeft", token, -n) <= 0 then dropClaim(tag, token) end
  end
end

-- Turns fast-lane task id into a hash of its own, as enqueue, claim and start
-- would have written it (message, task, submittedAt, priority; its lease, if
-- any, with its token, in the leased set at its claim's deadline). Returns
-- true if it was in the fast lane; false leaves everything as it was.
-- `claim` (optional) is the claim it is known to be leased under, which is
-- then not counted down (an expiring claim is forgotten as a whole).
local function materialize(tag, id, claim)
  local fast = fastKey(tag)
  local v = redis.call("HGET", fast, id)
  if not v then return false end
  local p, submittedAt, task, rest, hlen, stored = parseFast(v)
  local fields = {
    "m", fastMessage(tag, id, p, submittedAt, task, rest, hlen, stored), "task", task, "submittedAt", submittedAt
  }
  if p ~= "5" then push2(fields, "p", p) end
  local leases = fastLeaseKey(tag)
  local l = redis.call("HGET", leases, id)
  if l then
    local token = tokenOf(l)
    local c = claim
    if not c then
      c = claimOf(tag, token)
      leftClaims(tag, { [token] = 1 })
    end
    -- a claim always outlives its leases; should one be gone, the lease is
    -- taken as lost at once
    c = c or { claimedAt = submittedAt, worker = "", deadline = "0" }
    local startedAt = leaseStartedAt(l, c.claimedAt)
    push2(fields, "tok", token)
    push2(fields, "lw", c.worker)
    push2(fields, "updatedAt", startedAt or c.claimedAt)
    if startedAt then
      push2(fields, "state", "STARTED")
      push2(fields, "ls", startedAt)
    else
      push2(fields, "state", "RECEIVED")
    end
    redis.call("HDEL", leases, id)
    redis.call("ZADD", tag .. ":leased", c.deadline, id)
  else
    push2(fields, "state", "PENDING")
    push2(fields, "updatedAt", submittedAt)
  end
  redis.call("HSET", taskKey(tag, id), unpack(fields))
  redis.call("HDEL", fast, id)
  return true
end

-- The fast leases of the ids of ARGV from `from` on, every `step` values (a
-- per-lease script's items), in one HMGET (false: none); none at all when
-- the queue has no fast lease.
local function fastLeasesAt(tag, from, step)
  local key = fastLeaseKey(tag)
  if redis.call("EXISTS", key) == 0 then return {} end
  local ids = {}
  for i = from, #ARGV, step do ids[#ids + 1] = ARGV[i] end
  return hmgetMany(key, ids)
end

-- materialize for each id of ARGV from `from` on, every `step` values (a
-- per-lease script's items), when the queue has a fast lane at all.
local function materializeAll(tag, from, step)
  if redis.call("EXISTS", fastKey(tag)) == 0 then return end
  for i = from, #ARGV, step do materialize(tag, ARGV[i]) end
end

-- The inboxes found holding replies never taken, this run (parkId -> true).
local untakenInboxes = {}

-- The inbox of a parked claim's registration parkId still holds the reply
-- it was handed (see park.lua): its worker never took it. (The leases of one
-- reply end together; `dropUntaken` then deletes the inboxes.)
local function untaken(tag, parkId)
  if not parkId or parkId == "" then return false end
  if untakenInboxes[parkId] then return true end
  if redis.call("EXISTS", tag .. ":inbox:" .. parkId) == 1 then
    untakenInboxes[parkId] = true
    return true
  end
  return false
end

-- Deletes the inboxes `untaken` found: nobody will take their replies.
local function dropUntaken(tag)
  for parkId in pairs(untakenInboxes) do redis.call("DEL", tag .. ":inbox:" .. parkId) end
end

-- Claims of fast-lane tasks whose deadline is up (at most `limit`): the
-- tasks still leased under each become hashes with that lease, in the leased
-- set at its deadline (so they expire as any lease), and the claim is
-- forgotten. The tasks of a hand-off whose reply was never taken (see
-- park.lua) go back to the front of the queue instead, as they were.
local function expireClaims(tag, nowS, limit)
  local expired = redis.call("ZRANGEBYSCORE", tag .. ":claimAt", "-inf", nowS, "LIMIT", 0, limit)
  for _, token in ipairs(expired) do
    local c = claimOf(tag, token)
    local list = redis.call("HGET", tag .. ":claimIds", token)
    if c and list then
      local ids = {}
      for id in string.gmatch(list, "[^\n]+") do ids[#ids + 1] = id end
      local leases = hmgetMany(fastLeaseKey(tag), ids)
      if untaken(tag, redis.call("HGET", tag .. ":claimPark", token)) then
        local back, ready = {}, {}
        for k = 1, #ids do
          if leases[k] and tokenOf(leases[k]) == token then back[#back + 1] = ids[k] end
        end
        if #back > 0 then
          callMany("HDEL", fastLeaseKey(tag), back)
          local entries = hmgetMany(fastKey(tag), back)
          local seq = sequence(tag, #back)
          -- to the front, as a lost lease goes (walked backwards: each goes
          -- before the last, so the first ends up first)
          for k = #back, 1, -1 do
            local p = entries[k] and string.byte(entries[k], 2)
            push2(ready, readyScore(p and p - 48 or 5, true, seq()), back[k])
          end
          zaddMany(tag .. ":ready", ready)
        end
      else
        for k = 1, #ids do
          if leases[k] and tokenOf(leases[k]) == token then materialize(tag, ids[k], c) end
        end
      end
    end
    dropClaim(tag, token)
  end
end
