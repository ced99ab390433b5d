/**
 * A claim interrupted while its script is on its way (a worker shutting down
 * while its claim waits) gives the tasks that script leased back at once,
 * instead of leaving them leased until the lease runs out. `CLIENT PAUSE`
 * holds the script at Redis while the claim is interrupted.
 */
import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import { Effect, Fiber } from "effect"
import { claimNow, enqueueNow, message, record, withBroker } from "./utils/harness.ts"
import { command, useTestRedis } from "./utils/redis.ts"

const server = useTestRedis()

describe("RedisBroker claim interrupted in flight", () => {
  for (const storeResult of [undefined, false] as const) {
    it.live(`its tasks come back ready at once, no attempt counted (storeResult ${String(storeResult)})`, () =>
      withBroker(server.url, () =>
        Effect.gen(function*() {
          const broker = yield* Broker
          // the claim script is loaded at Redis (a first EVALSHA would be refused, then retried)
          expect(yield* claimNow()).toEqual([])
          const m = message("a", storeResult === false ? { storeResult } : {})
          yield* enqueueNow(m)
          // hold every client's commands at Redis for a while
          yield* Effect.promise(() => command(server.url(), "CLIENT", "PAUSE", "400", "ALL"))
          const claiming = yield* Effect.forkChild(
            broker.claim({ queues: ["q"], worker: "w-gone", max: 10, leaseMillis: 60_000, waitMillis: 0 })
          )
          yield* Effect.sleep(100)
          yield* Fiber.interrupt(claiming)
          // the script ran once the pause ended; its task was given back
          yield* Effect.sleep(600)
          const r = yield* record("a")
          expect(r.state).toBe("PENDING")
          expect(r.history).toEqual([])
          const [d] = yield* claimNow(10, 60_000, "w-next")
          expect(d?.id).toBe("a")
          expect(d?.lost).toBeUndefined()
          expect(d?.message).toEqual(m)
        })))
  }
})
