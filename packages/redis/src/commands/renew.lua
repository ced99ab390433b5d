-- renew: extend current leases to now + leaseMillis.
-- KEYS[1] leased
-- ARGV[1] tag  ARGV[2] now  ARGV[3] leaseMillis  then per lease: id token
-- Returns per lease: 0 ok, 1 stale, 2 revoked (the lease is still extended,
-- so the worker has time to stop the task and complete it as REVOKED).
local tag = ARGV[1]
local deadline = fmt(tonumber(ARGV[2]) + tonumber(ARGV[3]))
local out = {}
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = taskKey(tag, id)
  if not isCurrent(key, KEYS[1], id, token) then
    out[#out + 1] = 1
  else
    redis.call("ZADD", KEYS[1], "XX", deadline, id)
    if redis.call("HGET", key, "revoked") == "1" then
      out[#out + 1] = 2
    else
      out[#out + 1] = 0
    end
  end
end
return out
