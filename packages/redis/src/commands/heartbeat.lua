-- heartbeat: register workers or renew their registrations, and forget the
-- ones whose entries expired.
-- KEYS[1] workers hash (id -> WorkerInfo JSON)  KEYS[2] expiry zset (id by expiresAt)
-- ARGV[1] now  then per worker, 3 values: id json expiresAt
-- Returns how many expired entries were removed.
local now = ARGV[1]
local expiry = {}
for i = 2, #ARGV, 3 do
  redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
  push(expiry, ARGV[i + 2], ARGV[i])
end
zaddMany(KEYS[2], expiry)
local gone = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now, "LIMIT", 0, 1000)
if #gone > 0 then
  for i = 1, #gone, CHUNK do
    redis.call("HDEL", KEYS[1], unpack(gone, i, math.min(i + CHUNK - 1, #gone)))
  end
  zremMany(KEYS[2], gone)
end
return #gone
