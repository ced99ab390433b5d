-- purge: remove up to `limit` waiting tasks (ready first, then delayed) of
-- one queue; their records become REVOKED (TaskRevoked), expire like other
-- final records, and are published as done so awaiters return. Running and
-- dead-lettered tasks are not touched. The caller repeats until fewer than
-- `limit` come back, so a long queue never blocks Redis in one script.
-- KEYS[1] ready  KEYS[2] delayed
-- ARGV[1] tag  ARGV[2] now  ARGV[3] ttl (ms, 0: keep)  ARGV[4] done channel
-- ARGV[5] queue name  ARGV[6] limit
-- Returns how many were removed.
local tag, nowS, ttl, queue = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5]
local limit = tonumber(ARGV[6])
local ids = {}
popFirst(KEYS[1], ids, limit)
popFifo(tag, ids, limit)
popFirst(KEYS[2], ids, limit)
local anyFast = redis.call("EXISTS", fastKey(tag)) == 1
for _, id in ipairs(ids) do
  local key = taskKey(tag, id)
  -- a fast-lane task is purged as a hash (see common.lua)
  if anyFast then materialize(tag, id) end
  local dd = redis.call("HGET", key, "dd")
  local err = cjson.encode({
    _tag = "TaskRevoked",
    message = "task " .. id .. " was purged from queue " .. queue .. " before it ran"
  })
  redis.call("HSET", key, "state", "REVOKED", "updatedAt", nowS, "error", err)
  redis.call("HDEL", key, "m", "xw", "xs", "xe", "xa", "revoked", "dd")
  releaseDedup(tag, id, dd)
  if ttl > 0 then redis.call("PEXPIRE", key, ttl) end
end
if #ids > 0 then
  redis.call("PUBLISH", ARGV[4], table.concat(ids, "\n"))
end
return #ids
