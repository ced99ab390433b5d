-- revoke: remove a waiting task (REVOKED), or flag a running one.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased  KEYS[4] done  KEYS[5] doneAt
-- ARGV[1] tag  ARGV[2] now  ARGV[3] ttl (ms, 0: keep)  ARGV[4] done channel  ARGV[5] id
-- ARGV[6] the error (JSON) recorded on a task revoked while waiting
-- Returns "revoked" | "running" | "final" | "unknown" (a done record, see
-- common.lua, is "final").
local tag, nowS, id = ARGV[1], ARGV[2], ARGV[5]
local key = taskKey(tag, id)
-- a fast-lane task is revoked as a hash (see common.lua)
materialize(tag, id)
local f = redis.call("HMGET", key, "state", "lw", "dd", "p")
if not f[1] then
  if readLean(KEYS[4], KEYS[5], id, tonumber(nowS)) then return "final" end
  return "unknown"
end
if isFinal(f[1]) then return "final" end
if f[2] then
  redis.call("HSET", key, "revoked", "1", "updatedAt", nowS)
  return "running"
end
-- waiting: in the ready set, the list (only priority 5 is there; LREM
-- scans it, as BullMQ's remove of a waiting job does) or the delayed set
local waiting = redis.call("ZREM", KEYS[1], id) == 1 or
  (clampPriority(f[4]) == 5 and redis.call("LREM", fifoKey(tag), 1, id) == 1) or
  redis.call("ZREM", KEYS[2], id) == 1
if waiting then
  redis.call("HSET", key, "state", "REVOKED", "updatedAt", nowS, "error", ARGV[6])
  redis.call("HDEL", key, "m", "xw", "xs", "xe", "xa", "revoked", "dd")
  releaseDedup(tag, id, f[3])
  if tonumber(ARGV[3]) > 0 then redis.call("PEXPIRE", key, ARGV[3]) end
  redis.call("PUBLISH", ARGV[4], id)
  return "revoked"
end
return "unknown"
