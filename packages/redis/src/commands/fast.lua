-- Helpers of the fast lane (see the layout in common.lua), prepended after
-- common.lua to the scripts that read or write it.

local function fastKey(tag)
  return tag .. ":fast"
end

local function fastLeaseKey(tag)
  return tag .. ":fastLease"
end

-- A fast-lane entry: priority, submittedAt, task, message.
local function parseFast(v)
  local p, submittedAt, len = string.match(v, "^(%d*)|(%d*)|(%d+)|")
  local from = #p + #submittedAt + #len + 4
  local n = tonumber(len)
  return p, submittedAt, string.sub(v, from, from + n - 1), string.sub(v, from + n)
end

-- A fast lease's value.
local function fastLease(token, startedAt, updatedAt, submittedAt, task, worker)
  return token .. "|" .. startedAt .. "|" .. updatedAt .. "|" .. submittedAt .. "|" .. #task .. "|" .. task .. worker
end

-- A fast lease: token, startedAt, updatedAt, submittedAt, task, worker.
local function parseFastLease(v)
  local token, startedAt, updatedAt, submittedAt, len = string.match(v, "^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(%d+)|")
  local from = #token + #startedAt + #updatedAt + #submittedAt + #len + 6
  local n = tonumber(len)
  return token, startedAt, updatedAt, submittedAt, string.sub(v, from, from + n - 1), string.sub(v, from + n)
end

-- Turns fast-lane task id into a hash of its own, as enqueue, claim and start
-- would have written it (message, task, submittedAt, priority; its lease, if
-- any, with its token). Returns true if it was in the fast lane; false
-- leaves everything as it was.
local function materialize(tag, id)
  local fast = fastKey(tag)
  local v = redis.call("HGET", fast, id)
  if not v then return false end
  local p, submittedAt, task, m = parseFast(v)
  local fields = { "m", m, "task", task, "submittedAt", submittedAt }
  if p ~= "5" then push2(fields, "p", p) end
  local leases = fastLeaseKey(tag)
  local l = redis.call("HGET", leases, id)
  if l then
    local token, startedAt, updatedAt, _, _, worker = parseFastLease(l)
    push2(fields, "tok", token)
    push2(fields, "lw", worker)
    push2(fields, "updatedAt", updatedAt)
    if startedAt ~= "" then
      push2(fields, "state", "STARTED")
      push2(fields, "ls", startedAt)
    else
      push2(fields, "state", "RECEIVED")
    end
    redis.call("HDEL", leases, id)
  else
    push2(fields, "state", "PENDING")
    push2(fields, "updatedAt", submittedAt)
  end
  redis.call("HSET", taskKey(tag, id), unpack(fields))
  redis.call("HDEL", fast, id)
  return true
end

-- materialize for each id of ARGV from `from` on, every `step` values (a
-- per-lease script's items), when the queue has a fast lane at all.
local function materializeAll(tag, from, step)
  if redis.call("EXISTS", fastKey(tag)) == 0 then return end
  for i = from, #ARGV, step do materialize(tag, ARGV[i]) end
end
