-- complete: end tasks with SUCCESS / FAILURE / REVOKED.
-- KEYS[1] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] ttl (ms)  ARGV[4] done channel
-- then per task, 6 values: id token state result error attempt
--   (result and error: JSON, "" when absent)
-- Returns per task: 1 done, 0 stale.
local tag, nowS, ttl = ARGV[1], ARGV[2], ARGV[3]
local out, done = {}, {}
for i = 5, #ARGV, 6 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = taskKey(tag, id)
  if isCurrent(key, KEYS[1], id, token) then
    redis.call("ZREM", KEYS[1], id)
    redis.call("HSET", key, "state", ARGV[i + 2], "updatedAt", nowS)
    if ARGV[i + 3] ~= "" then redis.call("HSET", key, "result", ARGV[i + 3]) end
    if ARGV[i + 4] ~= "" then redis.call("HSET", key, "error", ARGV[i + 4]) end
    appendHistory(key, ARGV[i + 5])
    finalize(tag, key, id, ttl, false)
    done[#done + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #done > 0 then
  redis.call("PUBLISH", ARGV[4], table.concat(done, "\n"))
end
return out
