-- start: mark attempts STARTED and remember who runs them (for lost leases).
-- KEYS[1] leased
-- ARGV[1] tag  ARGV[2] now
-- then per lease, 5 values: id token worker startedAt ackEarly ("1"/"0")
-- Returns per lease: 0 ok, 1 stale, 2 revoked.
local tag, nowS = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 5 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = taskKey(tag, id)
  if not isCurrent(key, KEYS[1], id, token) then
    out[#out + 1] = 1
  elseif redis.call("HGET", key, "revoked") == "1" then
    out[#out + 1] = 2
  else
    redis.call("HSET", key, "state", "STARTED", "updatedAt", nowS,
      "lw", ARGV[i + 2], "ls", ARGV[i + 3], "la", ARGV[i + 4])
    out[#out + 1] = 0
  end
end
return out
