-- workers: forget expired registrations, then list the others.
-- KEYS[1] workers hash  KEYS[2] expiry zset
-- ARGV[1] now
-- Returns the WorkerInfo JSON of every registered worker.
local gone = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ARGV[1])
if #gone > 0 then
  for i = 1, #gone, CHUNK do
    redis.call("HDEL", KEYS[1], unpack(gone, i, math.min(i + CHUNK - 1, #gone)))
  end
  zremMany(KEYS[2], gone)
end
return redis.call("HVALS", KEYS[1])
