-- Shared helpers, prepended to every step script when it is loaded.
--
-- A task lives in one hash, <tag>:t:<id>, in its queue's hash slot. Record
-- fields: task state retries submittedAt updatedAt eta result error meta
-- revoked history (id and queue are in the key; retries 0 and history [] are
-- not written, absent means those). Internal fields: m (message JSON), p
-- (priority; absent: 5), tok (fencing token), lw/ls/la (current lease:
-- worker, startedAt, ackEarly, absent "0"; lw is present exactly while the
-- task is leased), xw/xs/xe/xa (lost-lease marker: worker, startedAt,
-- expiredAt, ackedEarly), dd (dedup id).
--
-- A task that ended SUCCESS without storing its result (a "lean" record)
-- has no hash: it is one field of the queue's done hash, <tag>:done, id ->
-- "@expiresAt|updatedAt|retries|submittedAt|eta|task" (expiresAt "" when
-- kept forever, eta "" when absent; the task name last, so it may hold
-- "|"). The records one complete writes expire together: one entry of the
-- sorted set <tag>:doneAt, their ids joined by "\n", scored by that time,
-- tells the trimming which to forget. (A record written by an earlier
-- version has no "@expiresAt|" and its own doneAt entry, its id alone.) Its
-- state is SUCCESS and its history empty. A fast-lane task whose result is
-- stored ends SUCCESS as a done record too, one that keeps the result and
-- the attempt: "#expiresAt|updatedAt|submittedAt|taskLength|resultLength|
-- <task><result><attempt>" (lengths in bytes; retries 0, no eta; result ""
-- when there is none; its history is that one attempt). A done record whose time is up counts as unknown even
-- before complete trims it. An id has a hash or a done record, not both
-- (a stale attempt recorded on a done record turns it back into a hash).
-- Their helpers are in done.lua, prepended only to the scripts that use them.
--
-- The fast lane: a task submitted ready now, with retries 0, no eta, no
-- dedup id and storeResult false or absent, whose id is not empty and holds
-- no newline, has no hash while all goes well. From enqueue until it ends it
-- is one field of <tag>:fast, id ->
-- "~p|submittedAt|taskLength|headersLength|<task><headers><payload>"
-- ("=" instead of "~": storeResult absent, its result stored)
-- (priority 0-9, submit time, the task name and the headers JSON, each as
-- many bytes long as its length says, headers "" when empty, then the
-- payload JSON as submitted): the rest of the message is implied (retries 0,
-- no eta, storeResult as the mark says, the queue, whose name enqueue keeps in
-- <tag>:queue), so a claim hands out a few bytes per task and the worker
-- parses only the payload. A step off the lane builds the whole message
-- JSON again (`fastMessage`, fast.lua). (An entry of an earlier version,
-- without the "~" or "=", holds the whole message: it is read as such.)
-- A claim leases the fast-lane tasks it takes together, as one claim with
-- one token from the queue's counter <tag>:tok:
--   <tag>:claim      token -> "claimedAt|worker"
--   <tag>:claimIds   token -> the claim's ids, joined by "\n"
--   <tag>:claimLeft  token -> how many of them are still leased under it
--   <tag>:claimAt    sorted set of tokens by deadline (renewed per claim)
-- and each task's lease is <tag>:fastLease id -> the token, bare when the
-- claim started it, "token|" when it did not, "token|startedAt" once a
-- later start did. A claim is forgotten when none of its tasks is leased
-- under it any more, or when its deadline passes: its tasks still leased
-- then become hashes with that lease, which expires as any other.
-- Its state: PENDING in fast only, RECEIVED or STARTED with a fast lease;
-- a SUCCESS ends it as a done record (with its result and attempt when its
-- result is stored). Any other step on it (retry, failure, dead letter,
-- release, revoke, setState, purge, a stale attempt, an expired claim, a
-- start that acknowledges early or comes from another worker) first turns
-- it into a hash (`materialize`,
-- fast.lua), then proceeds as for any task. An id is in one of: a hash, the
-- fast lane, a done record.
--
-- Ready order: one sorted set, score = (9 - priority) * BAND + MID +/- seq, so
-- its first members are the highest priority, then FIFO; "front" inserts
-- (release, lost leases) use MID - seq and come before every normal insert
-- of their priority. All scores stay below 2^53. Normal inserts of priority 5
-- (the default, and nearly every task of a busy queue) go to a list instead,
-- <tag>:fifo, oldest first: an RPUSH and a counted LPOP cost a fraction of a
-- sorted set's insert and pop. A claim takes the set's members that come
-- before priority 5's normal inserts (higher priorities, priority 5's front),
-- then the list, then the rest of the set (lower priorities). An id is in
-- at most one of them, once.
--
-- Parked claims (<tag>:park, <tag>:inbox:<parkId>): see park.lua.
--
-- Scripts keep redis.call per task to a minimum (one HMGET to check, one
-- HSET to write) and batch set updates into one ZADD / ZREM per step. A
-- redis.call costs about as much as 2-3 fields of one, so fields matter too;
-- so does Lua's own work per task (varargs, number formatting).

local BAND = 10000000000000
local MID = 5000000000000
local CHUNK = 2000

-- The two hashes a fast-lane task has a field in while it waits and while it
-- is leased, <tag>:fast and <tag>:fastLease, hold a pin from their first
-- field on: field "\n" (no id holds a newline: enqueue refuses them), whose
-- value is longer than a hash listpack's values may be
-- (hash-max-listpack-value, 64 bytes by default). Each is then a hash table
-- and stays one, never emptied. Without it, a hash of up to
-- hash-max-listpack-entries fields (128 by default, 512 in Debian's
-- redis.conf) is a listpack, in which each field a step writes, reads or
-- deletes is found by a scan of them all: a queue whose backlog or leases
-- stayed in the hundreds paid Redis about twice its time per task
-- (bench/ANALYSIS.md). Counts of their fields leave the pin out. The pin's
-- value is made only when a hash is pinned: a script's top level runs on
-- every call, and building a 1 KB string there cost each call of every step
-- about 3 us of Redis's time (10 us at light load).
-- Returns whether it made the hash.
local function pinHash(key)
  if redis.call("EXISTS", key) == 1 then return false end
  redis.call("HSET", key, "\n", string.rep("-", 1024))
  return true
end

local function fmt(n)
  return string.format("%.0f", n)
end

local function taskKey(tag, id)
  return tag .. ":t:" .. id
end

-- like the memory broker: integers clamped to 0..9, anything else is 5
local function clampPriority(p)
  p = tonumber(p)
  if p == nil or p ~= math.floor(p) then return 5 end
  if p < 0 then return 0 end
  if p > 9 then return 9 end
  return p
end

-- Reserves n sequence numbers of the queue's FIFO counter at once, when the
-- first is taken: a batch that needs none (tasks of priority 5 go to the
-- list, in order, without one) makes no call for them.
local function sequence(tag, n)
  local nextSeq = nil
  return function()
    if nextSeq == nil then nextSeq = redis.call("INCRBY", tag .. ":seq", n) - n end
    nextSeq = nextSeq + 1
    return nextSeq
  end
end

-- A ready score as a Lua number: redis.call passes numbers on exactly (all
-- scores are integers below 2^53), which is cheaper than formatting them.
local function readyScore(p, front, seq)
  local base = (9 - clampPriority(p)) * BAND + MID
  if front then return base - seq end
  return base + seq
end

-- cmd key [flag] args..., in chunks (Lua's unpack limit; CHUNK is even, so
-- score member and field value pairs stay whole): ZADD, ZREM, HSET, HDEL.
local function callMany(cmd, key, args, flag)
  for i = 1, #args, CHUNK do
    if flag then
      redis.call(cmd, key, flag, unpack(args, i, math.min(i + CHUNK - 1, #args)))
    else
      redis.call(cmd, key, unpack(args, i, math.min(i + CHUNK - 1, #args)))
    end
  end
end

local function zaddMany(key, args, flag)
  callMany("ZADD", key, args, flag)
end

local function zremMany(key, members)
  callMany("ZREM", key, members)
end

-- HMGET key fields..., in chunks: the values in the order of fields (false:
-- none).
local function hmgetMany(key, fields)
  local n = #fields
  if n <= CHUNK then
    if n == 0 then return {} end
    return redis.call("HMGET", key, unpack(fields, 1, n))
  end
  local out = {}
  for k = 1, #fields, CHUNK do
    local got = redis.call("HMGET", key, unpack(fields, k, math.min(k + CHUNK - 1, #fields)))
    for j = 1, #got do out[k + j - 1] = got[j] end
  end
  return out
end

-- Appends a and b to the array t (score member, field value). Fixed
-- arity on purpose: a varargs push with select() costs more per task than a
-- one-field redis.call.
local function push2(t, a, b)
  local n = #t
  t[n + 1] = a
  t[n + 2] = b
end

-- A history (JSON array string) with one more attempt.
local function appendHistory(h, attempt)
  if (not h) or h == "" or h == "[]" then
    return "[" .. attempt .. "]"
  end
  return string.sub(h, 1, -2) .. "," .. attempt .. "]"
end

-- Frees the dedup id dd held by task id, if it still holds it.
local function releaseDedup(tag, id, dd)
  if dd then
    local dedup = tag .. ":dedup"
    if redis.call("HGET", dedup, dd) == id then
      redis.call("HDEL", dedup, dd)
    end
  end
end

-- The list of ids ready at priority 5 (see "Ready order").
local function fifoKey(tag)
  return tag .. ":fifo"
end

-- Adds id, ready now, to a batch: `ready` (score id pairs for the ready set)
-- or `fifo` (ids for the list), as "Ready order" says; `seq` is the batch's
-- sequence.
local function addReady(ready, fifo, p, front, seq, id)
  if not front and clampPriority(p) == 5 then
    fifo[#fifo + 1] = id
  else
    push2(ready, readyScore(p, front, seq()), id)
  end
end

-- Appends to ids, up to `limit` ids in all, the first ids of the list,
-- removed from it.
local function popFifo(tag, ids, limit)
  if #ids >= limit then return end
  local listed = redis.call("LPOP", fifoKey(tag), limit - #ids)
  if listed then
    for _, id in ipairs(listed) do ids[#ids + 1] = id end
  end
end

-- Appends to ids, up to `limit` ids in all, the first members of sorted set
-- key, removed from it (by rank: ZPOPMIN would also format every score as a
-- string, which costs more than the rest of a pop).
local function popFirst(key, ids, limit)
  if #ids >= limit then return end
  local first = redis.call("ZRANGE", key, 0, limit - #ids - 1)
  if #first > 0 then
    redis.call("ZREMRANGEBYRANK", key, 0, #first - 1)
    for _, id in ipairs(first) do ids[#ids + 1] = id end
  end
end

-- Writes a batch of addReady to the ready set readyKey and the list.
local function flushReady(tag, readyKey, ready, fifo)
  zaddMany(readyKey, ready)
  callMany("RPUSH", fifoKey(tag), fifo)
end

local function isFinal(state)
  return state == "SUCCESS" or state == "FAILURE" or state == "REVOKED"
end
