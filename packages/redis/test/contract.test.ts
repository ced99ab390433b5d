/**
 * The shared Broker contract suite, run against the Redis layer: one layer
 * (one random key prefix) for the whole suite, its keys deleted at the end.
 */
import * as BrokerContract from "@errand/core/testing/BrokerContract"
import { RedisBroker } from "@errand/redis"
import { Effect, Layer } from "effect"
import { deletePrefix, randomPrefix, testRedis } from "./utils/redis.ts"

const RedisLayer = Layer.unwrap(Effect.gen(function*() {
  const redis = yield* Effect.acquireRelease(
    Effect.promise(() => testRedis()),
    (redis) => Effect.promise(() => redis.stop())
  )
  const prefix = randomPrefix()
  yield* Effect.addFinalizer(() => Effect.promise(() => deletePrefix(redis.url, prefix)))
  return RedisBroker.layer({ url: redis.url, prefix })
}))

BrokerContract.suite("redis", RedisLayer)

// The fast lane (tasks whose result nobody reads keep no hash while all goes
// well, see commands/common.lua): the whole contract again on such tasks,
// so every step off the lane (retry, revoke, release, lost lease, ...) is
// checked against the same expectations.
BrokerContract.suite("redis, storeResult: false (fast lane)", RedisLayer, { messages: { storeResult: false } })
