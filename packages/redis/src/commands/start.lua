-- start: mark attempts STARTED and remember who runs them (for lost leases);
-- the attempt now handles any earlier lost marker, which is cleared. A fast
-- lease (see common.lua) gets its startedAt and worker; one that
-- acknowledges early is first turned into a hash.
-- KEYS[1] leased (declares the queue's slot)  KEYS[2] fastLease
-- ARGV[1] tag  ARGV[2] now
-- then per lease, 5 values: id token worker startedAt ackEarly ("1"/"0")
-- Returns per lease: 0 ok, 1 stale, 2 revoked.
-- Current lease: the token matches and the task is leased (lw present).
local tag, nowS = ARGV[1], ARGV[2]
local out = {}
local anyFast = redis.call("EXISTS", KEYS[2]) == 1
for i = 3, #ARGV, 5 do
  local id = ARGV[i]
  local l = anyFast and redis.call("HGET", KEYS[2], id)
  if l and ARGV[i + 4] ~= "1" then
    local token, _, _, submittedAt, task = parseFastLease(l)
    if token ~= ARGV[i + 1] then
      out[#out + 1] = 1
    else
      redis.call("HSET", KEYS[2], id, fastLease(token, ARGV[i + 3], nowS, submittedAt, task, ARGV[i + 2]))
      out[#out + 1] = 0
    end
  else
    if l then materialize(tag, id) end
    local key = taskKey(tag, id)
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
end
return out
