-- renew: extend current leases to now + leaseMillis.
-- KEYS[1] leased  KEYS[2] fastLease
-- ARGV[1] tag  ARGV[2] now  ARGV[3] leaseMillis  then per lease: id token
-- Returns per lease: 0 ok, 1 stale, 2 revoked (the lease is still extended,
-- so the worker has time to stop the task and complete it as REVOKED). A
-- fast lease (see common.lua) is current when its token matches, and is
-- extended with its whole claim; it is never revoked (revoke turns it into
-- a hash first).
local tag = ARGV[1]
local deadline = fmt(tonumber(ARGV[2]) + tonumber(ARGV[3]))
local out, leased, claims = {}, {}, {}
local fastLeases = fastLeasesAt(tag, 4, 2)
for i = 4, #ARGV, 2 do
  local id, tok = ARGV[i], ARGV[i + 1]
  local l = fastLeases[(i - 4) / 2 + 1]
  if l then
    if tokenOf(l) ~= tok then
      out[#out + 1] = 1
    else
      claims[tok] = true
      out[#out + 1] = 0
    end
  else
    local f = redis.call("HMGET", taskKey(tag, id), "tok", "lw", "revoked")
    if f[1] ~= tok or not f[2] then
      out[#out + 1] = 1
    else
      push2(leased, deadline, id)
      if f[3] == "1" then out[#out + 1] = 2 else out[#out + 1] = 0 end
    end
  end
end
zaddMany(KEYS[1], leased, "XX")
for token in pairs(claims) do redis.call("ZADD", tag .. ":claimAt", "XX", deadline, token) end
return out
