/**
 * Redis goes away mid-operation and comes back on the same port: operations
 * fail with a BrokerError (no crash, no hang) while it is down, and the layer
 * reconnects and carries on with the data Redis kept (appendonly).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import { BrokerError } from "@errand/core/Errors"
import { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import { Clock, Effect, Exit, Fiber, Option, References, Schedule } from "effect"
import { attempt, message } from "./utils/harness.ts"
import { type RedisServer, startRedisServer } from "./utils/redis.ts"

let server: RedisServer | undefined

beforeAll(async () => {
  server = await startRedisServer({ appendonly: true })
})

afterAll(async () => {
  await server?.stop()
})

/** The error of a failed exit, which must be a BrokerError. */
const brokerError = <A>(exit: Exit.Exit<A, unknown>): BrokerError => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure, got a success")
  const reason = exit.cause.reasons[0]
  if (reason?._tag !== "Fail" || !(reason.error instanceof BrokerError)) {
    throw new Error(`expected a BrokerError, got ${String(reason)}`)
  }
  return reason.error
}

describe("RedisBroker outage", () => {
  it.live("ops fail with BrokerError while Redis is down, and carry on once it is back", () =>
    Effect.gen(function*() {
      const redis = server!
      const broker = yield* Broker
      const backend = yield* ResultBackend
      const now = yield* Clock.currentTimeMillis
      const submit = (id: string) => broker.enqueue([{ message: message(id), dueAt: now }])

      yield* submit("before-1")
      yield* submit("before-2")
      const [leased] = yield* broker.claim({ queues: ["q"], worker: "w1", max: 1, leaseMillis: 60_000, waitMillis: 0 })
      expect(leased.id).toBe("before-1")

      // a producer keeps submitting batches while Redis goes away under it
      let n = 0
      const producer = yield* Effect.suspend(() =>
        broker.enqueue(Array.from({ length: 100 }, () => ({ message: message(`load-${n++}`), dueAt: now })))
      ).pipe(Effect.forever, Effect.timeout("20 seconds"), Effect.exit, Effect.forkChild)
      // and a worker waits for work on another queue
      const idle = yield* broker.claim({ queues: ["idle"], worker: "w2", max: 1, leaseMillis: 1000, waitMillis: 1500 })
        .pipe(Effect.exit, Effect.forkChild)
      yield* Effect.sleep(100)
      yield* Effect.promise(() => redis.stop())

      // the producer stops with a BrokerError, not a hang
      const producerError = brokerError(yield* Fiber.join(producer))
      expect(producerError.message).toContain(`Redis at 127.0.0.1:${redis.port} is unreachable`)
      // the idle claim (parked: blocked on a connection of its own) ends with a BrokerError
      expect(brokerError(yield* Fiber.join(idle)).operation).toBe("claim")

      // every op fails fast with an actionable message
      const t0 = yield* Clock.currentTimeMillis
      const errors = [
        brokerError(yield* Effect.exit(submit("during"))),
        brokerError(
          yield* Effect.exit(broker.claim({ queues: ["q"], worker: "w1", max: 1, leaseMillis: 1000, waitMillis: 0 }))
        ),
        brokerError(yield* Effect.exit(broker.renew([{ id: leased.id, token: leased.token }], 1000))),
        brokerError(yield* Effect.exit(backend.get("before-2"))),
        brokerError(yield* Effect.exit(broker.stats(["q"])))
      ]
      expect((yield* Clock.currentTimeMillis) - t0).toBeLessThan(2000)
      // the cause: the client's last socket error, the refused reconnect or (before
      // its first retry) the dropped connection
      for (const e of errors) {
        expect(e.message).toMatch(
          new RegExp(`Redis at 127\\.0\\.0\\.1:${redis.port} is unreachable \\(\\w+\\): .*(ECONNREFUSED|Socket closed)`)
        )
      }
      expect(errors.map((e) => e.operation)).toEqual(["enqueue", "claim", "renew", "get", "stats"])

      // Redis comes back on the same port with its data (appendonly)
      yield* Effect.promise(() => redis.start())
      const stats = yield* broker.stats(["q"]).pipe(
        Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 100 })
      )
      expect(stats[0].running).toBe(1)
      expect(stats[0].ready).toBeGreaterThanOrEqual(1) // before-2, and the load batches that made it
      expect(yield* broker.renew([{ id: leased.id, token: leased.token }], 60_000)).toEqual(["ok"])

      // scripts are loaded again (a restarted Redis has none cached), pub/sub resubscribed
      yield* Effect.sleep(500)
      const waiting = yield* broker.claim({ queues: ["after"], worker: "w3", max: 1, leaseMillis: 1000, waitMillis: 8000 })
        .pipe(Effect.forkChild)
      const awaited = yield* backend.awaitFinal(leased.id).pipe(Effect.forkChild)
      yield* Effect.sleep(100)
      const t1 = yield* Clock.currentTimeMillis
      yield* broker.enqueue([{ message: message("after-1", { queue: "after" }), dueAt: t1 }])
      const [fresh] = yield* Fiber.join(waiting)
      expect(fresh.id).toBe("after-1")
      expect((yield* Clock.currentTimeMillis) - t1).toBeLessThan(1000)

      expect(
        yield* broker.complete([{
          id: leased.id,
          token: leased.token,
          state: "SUCCESS",
          result: "ok",
          attempt: attempt("SUCCESS")
        }])
      ).toEqual([true])
      const final = yield* Fiber.join(awaited)
      expect(Option.getOrThrow(final).result).toBe("ok")
    }).pipe(
      Effect.provide(RedisBroker.layer({ url: server!.url, prefix: "outage" })),
      // the client logs a warning per reconnect attempt: expected here
      Effect.provideService(References.MinimumLogLevel, "Error")
    ), 60_000)
})
