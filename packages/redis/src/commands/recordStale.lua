-- recordStale: append the late outcome of a superseded attempt to the history.
-- A done record (no hash, see common.lua) becomes a hash again, SUCCESS with
-- its result and attempt, if it kept them, and this one, expiring when the
-- done record would have.
-- KEYS[1] task hash  KEYS[2] done  KEYS[3] doneAt
-- ARGV[1] attempt JSON  ARGV[2] id  ARGV[3] now  ARGV[4] tag
-- A fast-lane task (see common.lua) becomes a hash first.
-- Returns 1 recorded, 0 unknown task.
materialize(ARGV[4], ARGV[2])
local f = redis.call("HMGET", KEYS[1], "state", "history")
if f[1] then
  redis.call("HSET", KEYS[1], "history", appendHistory(f[2], ARGV[1]))
  return 1
end
local id = ARGV[2]
local r = readLean(KEYS[2], KEYS[3], id, tonumber(ARGV[3]))
if not r then return 0 end
local fields = {
  "state", "SUCCESS", "task", r.task, "submittedAt", r.submittedAt, "updatedAt", r.updatedAt,
  "history", appendHistory(r.history, ARGV[1])
}
if r.result then push2(fields, "result", r.result) end
if r.retries ~= "0" then push2(fields, "retries", r.retries) end
if r.eta ~= "" then push2(fields, "eta", r.eta) end
redis.call("HSET", KEYS[1], unpack(fields))
if r.expiresAt then redis.call("PEXPIREAT", KEYS[1], r.expiresAt) end
redis.call("HDEL", KEYS[2], id)
unlist(KEYS[3], id, r.expiresAt)
return 1
