-- heartbeat: register workers or renew their registrations, and forget the
-- ones whose entries expired. The two keys expire with their last entry.
-- KEYS[1] workers hash (id -> WorkerInfo JSON)  KEYS[2] expiry zset (id by expiresAt)
-- ARGV[1] now  then per worker, 3 values: id json expiresAt
-- Returns how many expired entries were removed.
local now = ARGV[1]
local expiry = {}
local last = 0
for i = 2, #ARGV, 3 do
  redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
  push2(expiry, ARGV[i + 2], ARGV[i])
  if tonumber(ARGV[i + 2]) > last then last = tonumber(ARGV[i + 2]) end
end
zaddMany(KEYS[2], expiry)
-- both keys live as long as their longest-lived entry, so a registry nobody
-- heartbeats any more disappears by itself
local keep = last - tonumber(now)
if keep > 0 then
  for _, key in ipairs(KEYS) do
    if redis.call("PTTL", key) < keep then redis.call("PEXPIRE", key, fmt(keep)) end
  end
end
local gone = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now, "LIMIT", 0, 1000)
if #gone > 0 then
  for i = 1, #gone, CHUNK do
    redis.call("HDEL", KEYS[1], unpack(gone, i, math.min(i + CHUNK - 1, #gone)))
  end
  zremMany(KEYS[2], gone)
end
return #gone
