-- Leasing ready tasks, and handing them to parked claims. Prepended after
-- common.lua to claim and to the scripts that make tasks ready (enqueue,
-- release, retry, redeliver).
--
-- A claim that finds its (one) queue empty parks: it registers in
-- <tag>:park, parkId -> "until|max|start|leaseMillis|worker", and its
-- worker then blocks on the list <tag>:inbox:<parkId> (BLPOP) until `until`.
-- A script that makes tasks ready leases them to the first parked claims at
-- once, as their claim would have (`leaseReady`), and pushes each its claim
-- reply (JSON, with the time of the lease first): the task reaches the
-- worker in the reply to its BLPOP, one hop after the submit instead of a
-- wake-up and a claim's round trip. A registration is dropped when it is
-- served, when `until` passes, and by the claim itself when it stops waiting
-- (`unpark.lua`, which takes what its inbox may hold). A delayed task due
-- before a parked claim's `until` nudges it (an empty reply): it claims
-- again and parks until the task is due.
--
-- A worker that dies while parked (kill -9, OOM) leaves its registration
-- behind for at most its lifetime, and a script may hand it tasks nobody
-- will take: they stay in its inbox, which outlives their lease
-- (INBOX_KEEP). When such a lease runs out, the inbox still holding the
-- reply says the worker never took it: the tasks go back to the front of
-- the queue as they were (no lost attempt, nothing counted), not through
-- WorkerLost. A fast-lane claim made by a hand-off names its registration
-- in <tag>:claimPark (token -> parkId); a hash task leased by one, in its
-- field `lp` ("" for any other lease). The inbox is gone once the worker
-- took the reply (BLPOP, or unpark).

-- How long an inbox outlives the leases of the reply it holds (ms), so that
-- the lease's end can still tell whether the reply was taken.
local INBOX_KEEP = 600000

-- Leases up to max ready tasks, highest priority first, then FIFO, to
-- worker, starting the first toStart that carry no lost marker and are not
-- flagged revoked (state STARTED, ls = now, as start.lua with ackEarly "0"
-- would). Returns the claim reply without its nextAt: { "", token, started,
-- then per delivery either id entry (a fast-lane task) or id "" token
-- message retries xw xs xe xa started (any other) } (see claim.lua), and
-- whether it took fewer than max (nothing is left ready now).
-- Fast-lane tasks (see common.lua) are leased together, under one claim of
-- the fast lane with one token from the queue's counter (they carry no lost
-- marker and no revoked flag: both live on hashes only).
local function leaseReady(tag, nowS, max, leaseMillis, worker, toStart, parkId, given)
  local out, nOut = { "", "", 0 }, 3
  if max <= 0 then return out, false end
  local readyKey, leasedKey, fastLeaseKey = tag .. ":ready", tag .. ":leased", tag .. ":fastLease"
  local deadline = fmt(tonumber(nowS) + leaseMillis)
  -- leases the hash task id (not in the fast lane), appending its delivery
  local function leaseHash(id, leased)
    local key = taskKey(tag, id)
    local f = redis.call("HMGET", key, "m", "retries", "tok", "xw", "revoked")
    if not f[1] then return end
    local token = tostring((tonumber(f[3]) or 0) + 1)
    local started = ""
    if toStart > 0 and (not f[4] or f[4] == "") and f[5] ~= "1" then
      toStart = toStart - 1
      started = "1"
      -- la absent means "0" (not acknowledged early)
      redis.call("HSET", key, "tok", token, "state", "STARTED", "updatedAt", nowS, "lw", worker, "ls", nowS,
        "lp", parkId or "")
      -- an empty marker (never written by these scripts) is cleared as start.lua would
      if f[4] then redis.call("HDEL", key, "xw", "xs", "xe", "xa") end
    else
      redis.call("HSET", key, "tok", token, "state", "RECEIVED", "updatedAt", nowS, "lw", worker, "lp", parkId or "")
    end
    push2(leased, deadline, id)
    local n = nOut
    nOut = n + 10
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

  -- popped: the ids leased, in ready order; fast[i]: popped[i]'s fast-lane
  -- entry (false: a hash task); dry: nothing is left ready now
  local popped, fast, dry = {}, {}, false
  if given then
    -- a submit's own fast-lane tasks, from its arguments (see handOff)
    local k, n, last = given.at, 0, #given.ids
    while n < max and k <= last do
      n = n + 1
      popped[n], fast[n] = given.ids[k], ARGV[given.from + 2 * k - 1]
      k = k + 1
    end
    given.at = k
    dry = k > last
  else
    -- in ready order (see common.lua): the set's members before priority 5's
    -- normal inserts (taken and removed by rank), the list, the rest of the
    -- set. The set is often absent (priority 5 and nothing sent back to the
    -- front): one EXISTS then stands for its two reads.
    local inSet = redis.call("EXISTS", readyKey) == 1
    if inSet then
      popped = redis.call("ZRANGEBYSCORE", readyKey, "-inf", "(" .. fmt(readyScore(5, false, 0)), "LIMIT", 0, max)
      if #popped > 0 then redis.call("ZREMRANGEBYRANK", readyKey, 0, #popped - 1) end
    end
    popFifo(tag, popped, max)
    if inSet then popFirst(readyKey, popped, max) end
    -- fewer than max: nothing is left ready now
    dry = #popped < max
    -- the popped ids' fast-lane messages, in one HMGET (false: a hash task)
    local fastKey = tag .. ":fast"
    if #popped > 0 and redis.call("EXISTS", fastKey) == 1 then fast = hmgetMany(fastKey, popped) end
  end
  if #popped == 0 then return out, dry end
  local leased = {}
  -- the claim's fast-lane tasks: its token, bare for a task it starts and
  -- with "|" for one it does not, is each task's lease (see common.lua)
  -- (counters, not `#t`: a table's length is a search in Lua 5.1)
  local fastToken, received, fastLeases, fastIds, nFast = nil, nil, {}, {}, 0
  for i = 1, #popped do
    local id = popped[i]
    local v = fast[i]
    if v then
      if not fastToken then
        fastToken = tostring(redis.call("INCR", tag .. ":tok"))
        received = fastToken .. "|"
      end
      nFast = nFast + 1
      fastIds[nFast] = id
      if toStart > 0 then
        toStart = toStart - 1
        out[3] = out[3] + 1
        fastLeases[2 * nFast - 1], fastLeases[2 * nFast] = id, fastToken
      else
        fastLeases[2 * nFast - 1], fastLeases[2 * nFast] = id, received
      end
      local n = nOut
      out[n + 1], out[n + 2] = id, v
      nOut = n + 2
    else
      leaseHash(id, leased)
    end
  end
  if fastToken then
    out[2] = fastToken
    pinHash(fastLeaseKey)
    callMany("HSET", fastLeaseKey, fastLeases)
    redis.call("HSET", tag .. ":claim", fastToken, nowS .. "|" .. worker)
    redis.call("HSET", tag .. ":claimIds", fastToken, table.concat(fastIds, "\n"))
    redis.call("HSET", tag .. ":claimLeft", fastToken, nFast)
    redis.call("ZADD", tag .. ":claimAt", deadline, fastToken)
    if parkId then redis.call("HSET", tag .. ":claimPark", fastToken, parkId) end
  end
  zaddMany(leasedKey, leased)
  return out, dry
end

-- Registers a parked claim (see above) until `untilS`.
local function park(tag, parkId, untilS, max, toStart, leaseMillis, worker)
  redis.call("HSET", tag .. ":park", parkId,
    untilS .. "|" .. max .. "|" .. toStart .. "|" .. leaseMillis .. "|" .. worker)
end

-- Pushes reply (a string) to the inbox of parked claim parkId, kept ttl ms.
local function pushInbox(tag, parkId, reply, ttl)
  local inbox = tag .. ":inbox:" .. parkId
  redis.call("RPUSH", inbox, reply)
  redis.call("PEXPIRE", inbox, ttl)
end

-- Appends what is left of `given` (see handOff) to the queue's list: all
-- of its ids as they are when the claims took none (a submit with no claim
-- parked), else the rest of them.
local function flushGiven(tag, given)
  local ids, at = given.ids, given.at
  if at > #ids then return end
  if at > 1 then
    local rest = {}
    for k = at, #ids do rest[k - at + 1] = ids[k] end
    ids = rest
  end
  callMany("RPUSH", fifoKey(tag), ids)
  given.at = #given.ids + 1
end

-- Serves the queue's parked claims, first parked first, from its ready
-- tasks (call it after making tasks ready); delayed (optional): the
-- delayed tasks just added (due time, id pairs), the earliest of which
-- nudges the claims parked past its due time. Returns whether the parked
-- claims took every task that was ready (then no other claim needs waking
-- for them).
-- given (optional): the tasks of the calling submit that are not written to
-- the list yet, all fresh fast-lane tasks of priority 5 ({ ids = their ids
-- in order, from = the first ARGV of their id and entry pairs, at = 1 }:
-- the k-th one's entry is ARGV[from + 2k - 1]). When claims are
-- parked and nothing older is ready, they would be the first out of the
-- list: the claims take them from ARGV, which spares the list's push and
-- pop and the entries' read back (a light-load submit's hand-off). What the
-- claims do not take, and all of them otherwise, go to the list.
local function handOff(tag, nowS, delayed, given)
  local parkKey = tag .. ":park"
  local parked = redis.call("HGETALL", parkKey)
  if given and (#parked == 0 or redis.call("EXISTS", tag .. ":ready", fifoKey(tag)) > 0) then
    flushGiven(tag, given)
    given = nil
  end
  if #parked == 0 then return false end
  local now = tonumber(nowS)
  local dueAt = nil
  if delayed then
    for i = 1, #delayed, 2 do
      local at = tonumber(delayed[i])
      if dueAt == nil or at < dueAt then dueAt = at end
    end
  end
  local empty, drained = false, false
  for i = 1, #parked, 2 do
    local parkId = parked[i]
    local untilS, max, toStart, leaseMillis, worker =
      string.match(parked[i + 1], "^(%d+)|(%d+)|(%d+)|(%d+)|(.*)$")
    local untilAt = tonumber(untilS)
    if not untilAt or untilAt <= now then
      redis.call("HDEL", parkKey, parkId)
    else
      local out = { "", "", 0 }
      if not empty then
        local dry
        out, dry = leaseReady(tag, nowS, tonumber(max), tonumber(leaseMillis), worker, tonumber(toStart), parkId, given)
        -- the queue ran dry: the claims parked after this one get nothing
        -- (but a nudge for a delayed task), and need no call to find out
        if dry then drained, empty = true, true end
      end
      if #out > 3 then
        out[1] = nowS
        redis.call("HDEL", parkKey, parkId)
        pushInbox(tag, parkId, cjson.encode(out), tonumber(leaseMillis) + INBOX_KEEP)
      else
        empty = true
        if dueAt and dueAt < untilAt then
          redis.call("HDEL", parkKey, parkId)
          pushInbox(tag, parkId, "", leaseMillis)
        elseif not dueAt then
          if given then flushGiven(tag, given) end
          return drained
        end
      end
    end
  end
  if given then flushGiven(tag, given) end
  return drained
end
