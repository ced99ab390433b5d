-- complete: end tasks with SUCCESS / FAILURE / REVOKED. The message is
-- dropped, except for FAILURE: it stays with the record (same TTL) for
-- redeliver.
-- KEYS[1] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] ttl (ms, 0: keep)  ARGV[4] done channel
-- then per task, 6 values: id token state result error attempt
--   (result and error: JSON, "" when absent)
-- Returns per task: 1 done, 0 stale.
local tag, nowS, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out, done = {}, {}
for i = 5, #ARGV, 6 do
  local id = ARGV[i]
  local key = taskKey(tag, id)
  local f = redis.call("HMGET", key, "tok", "lw", "history", "dd")
  if f[1] == ARGV[i + 1] and f[2] then
    local fields = { "state", ARGV[i + 2], "updatedAt", nowS, "history", appendHistory(f[3], ARGV[i + 5]) }
    if ARGV[i + 3] ~= "" then push2(fields, "result", ARGV[i + 3]) end
    if ARGV[i + 4] ~= "" then push2(fields, "error", ARGV[i + 4]) end
    redis.call("HSET", key, unpack(fields))
    if ARGV[i + 2] == "FAILURE" then
      -- a failed task keeps its message (until the record expires), so
      -- redeliver can run it again
      redis.call("HDEL", key, "lw", "ls", "la", "xw", "xs", "xe", "xa", "revoked", "dd")
    elseif ARGV[i + 4] ~= "" then
      redis.call("HDEL", key, "m", "lw", "ls", "la", "xw", "xs", "xe", "xa", "revoked", "dd")
    else
      -- the final error is this attempt's: a success after retries has none
      redis.call("HDEL", key, "m", "lw", "ls", "la", "xw", "xs", "xe", "xa", "revoked", "dd", "error")
    end
    releaseDedup(tag, id, f[4])
    if ttl > 0 then redis.call("PEXPIRE", key, ttl) end
    done[#done + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #done > 0 then
  zremMany(KEYS[1], done)
  redis.call("PUBLISH", ARGV[4], table.concat(done, "\n"))
end
return out
