-- start: mark attempts STARTED and remember who runs them (for lost leases);
-- the attempt now handles any earlier lost marker, which is cleared.
-- KEYS[1] leased (declares the queue's slot)
-- ARGV[1] tag  ARGV[2] now
-- then per lease, 5 values: id token worker startedAt ackEarly ("1"/"0")
-- Returns per lease: 0 ok, 1 stale, 2 revoked.
-- Current lease: the token matches and the task is leased (lw present).
local tag, nowS = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 5 do
  local key = taskKey(tag, ARGV[i])
  local f = redis.call("HMGET", key, "tok", "lw", "revoked", "xw")
  if f[1] ~= ARGV[i + 1] or not f[2] then
    out[#out + 1] = 1
  elseif f[3] == "1" then
    out[#out + 1] = 2
  else
    if f[2] == ARGV[i + 2] then
      -- the claimer starts it (the usual case): lw already names it
      redis.call("HSET", key, "state", "STARTED", "updatedAt", nowS, "ls", ARGV[i + 3], "la", ARGV[i + 4])
    else
      redis.call("HSET", key, "state", "STARTED", "updatedAt", nowS,
        "lw", ARGV[i + 2], "ls", ARGV[i + 3], "la", ARGV[i + 4])
    end
    if f[4] then redis.call("HDEL", key, "xw", "xs", "xe", "xa") end
    out[#out + 1] = 0
  end
end
return out
