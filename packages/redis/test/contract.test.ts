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
