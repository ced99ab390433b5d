import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Random, Schema } from "effect"
import { Broker, Client, Retry, Task, TaskContext } from "@errand/core"
import { advance, base, drainAll, settle, startWorker } from "./utils.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const PolicySpec = Schema.Struct({
  kind: Schema.Literals(["linear", "exponential", "fixed", "none"]),
  stepSeconds: int(1, 20),
  maxRetries: int(0, 6)
})

const policyOf = (spec: typeof PolicySpec.Type): Retry.RetryPolicy => {
  switch (spec.kind) {
    case "linear":
      return Retry.linear({ step: Duration.seconds(spec.stepSeconds), maxRetries: spec.maxRetries })
    case "exponential":
      return Retry.exponential({ base: Duration.seconds(spec.stepSeconds), maxRetries: spec.maxRetries, max: "2 minutes" })
    case "fixed":
      return Retry.fixed({ delay: Duration.seconds(spec.stepSeconds), maxRetries: spec.maxRetries })
    case "none":
      return Retry.none
  }
}

class Boom extends Schema.TaggedError<Boom>()("Boom", { message: Schema.String }) {}

describe("properties", () => {
  it.effect.prop(
    "for any policy and failure sequence, countdowns equal Retry.delays and attempts never exceed maxRetries + 1",
    { spec: PolicySpec, failures: int(0, 8) },
    ({ failures, spec }) =>
      Effect.gen(function*() {
        const policy = policyOf(spec)
        const T = Task.make("prop.retry", { payload: Schema.Void, failure: Boom, retry: policy })
        let attempts = 0
        const TLive = Task.implement(T, () =>
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            attempts++
            if (ctx.retries < failures) return yield* new Boom({ message: `failure ${ctx.retries}` })
          }))
        const client = yield* Client.Client
        yield* startWorker({ tasks: [TLive] })
        const job = yield* client.submit(T, undefined)
        const delays = (yield* Retry.delays(policy)).map(Duration.toMillis)
        const total = delays.reduce((a, b) => a + b, 0)
        yield* advance(Math.ceil(total / 1000) + 2)
        const status = yield* client.status(job.id)
        const maxRetries = policy.maxRetries
        assert.isAtMost(attempts, maxRetries + 1)
        assert.strictEqual(status.history.length, attempts)
        assert.strictEqual(attempts, Math.min(failures, maxRetries) + 1)
        const countdowns = status.history.flatMap((h) => (h.countdown === undefined ? [] : [h.countdown]))
        assert.deepStrictEqual(countdowns, delays.slice(0, countdowns.length))
        // each run starts exactly its countdown after the previous one ended
        for (let i = 1; i < status.history.length; i++) {
          assert.strictEqual(status.history[i]!.startedAt - status.history[i - 1]!.endedAt, countdowns[i - 1])
        }
        if (failures <= maxRetries) {
          assert.strictEqual(status.state, "SUCCESS")
        } else {
          assert.strictEqual(status.state, "FAILURE")
          assert.strictEqual(status.error?._tag, maxRetries === 0 ? "Boom" : "MaxRetriesExceeded")
        }
      }).pipe(Effect.provide(base)),
    { timeout: 60_000, arbitrary: { runs: 60 } }
  )

  it.effect.prop(
    "without faults every task runs exactly once and every result is stored",
    { tasks: int(1, 80), concurrency: int(1, 8), prefetch: int(1, 8), workers: int(1, 3) },
    ({ concurrency, prefetch, tasks, workers }) =>
      Effect.gen(function*() {
        const T = Task.make("prop.once", {
          payload: Schema.Struct({ n: Schema.Int, sleepMs: Schema.Int }),
          success: Schema.Int
        })
        const runs = new Map<number, number>()
        const TLive = Task.implement(T, ({ n, sleepMs }) =>
          Effect.sleep(sleepMs).pipe(
            Effect.andThen(Effect.sync(() => runs.set(n, (runs.get(n) ?? 0) + 1))),
            Effect.as(n * n)
          ))
        const client = yield* Client.Client
        for (let w = 0; w < workers; w++) yield* startWorker({ tasks: [TLive], concurrency, prefetch })
        const jobs = yield* Effect.forEach(
          Array.from({ length: tasks }, (_, n) => n),
          (n) => Effect.flatMap(Random.nextIntBetween(0, 3000), (sleepMs) => client.submit(T, { n, sleepMs })),
          { concurrency: "unbounded" }
        )
        yield* advance(Math.ceil((tasks * 3) / (concurrency * workers)) + 5)
        yield* drainAll(600)
        for (let n = 0; n < tasks; n++) assert.strictEqual(runs.get(n), 1, `task ${n} ran ${runs.get(n)} times`)
        for (let n = 0; n < tasks; n++) {
          const status = yield* client.status(jobs[n]!.id)
          assert.strictEqual(status.state, "SUCCESS")
          assert.strictEqual(status.result, n * n)
          assert.strictEqual(status.history.length, 1)
        }
        const broker = yield* Broker.Broker
        assert.deepStrictEqual(yield* broker.stats(["default"]), [{ queue: "default", ready: 0, delayed: 0, running: 0, dead: 0 }])
      }).pipe(Effect.provide(base)),
    { timeout: 60_000, arbitrary: { runs: 40 } }
  )

  it.effect.prop(
    "with random worker crashes every task still reaches a final state, and every extra run is explained by a LOST entry",
    {
      tasks: int(1, 40),
      crashes: Schema.Array(Schema.Struct({ atSecond: int(0, 30), worker: int(0, 2) })).check(Schema.isMaxLength(6)),
      acksLate: Schema.Boolean
    },
    ({ acksLate, crashes, tasks }) =>
      Effect.gen(function*() {
        const T = Task.make("prop.crash", {
          payload: Schema.Struct({ n: Schema.Int, seconds: Schema.Int }),
          success: Schema.Int,
          retry: Retry.fixed({ delay: "2 seconds", maxRetries: 10 }),
          acksLate
        })
        const runs = new Map<number, number>()
        const TLive = Task.implement(T, ({ n, seconds }) =>
          Effect.sync(() => runs.set(n, (runs.get(n) ?? 0) + 1)).pipe(
            Effect.andThen(Effect.sleep(Duration.seconds(seconds))),
            Effect.as(n)
          ))
        const client = yield* Client.Client
        const options = { tasks: [TLive], concurrency: 3, prefetch: 2, lease: "3 seconds" } as const
        const pool = [yield* startWorker(options), yield* startWorker(options), yield* startWorker(options)]
        const jobs = yield* Effect.forEach(
          Array.from({ length: tasks }, (_, n) => n),
          (n) => Effect.flatMap(Random.nextIntBetween(0, 4), (seconds) => client.submit(T, { n, seconds }))
        )
        const schedule = [...crashes].sort((a, b) => a.atSecond - b.atSecond)
        let second = 0
        for (const crash of schedule) {
          yield* advance(crash.atSecond - second)
          second = crash.atSecond
          yield* pool[crash.worker]!.worker.kill
          pool[crash.worker] = yield* startWorker(options)
        }
        yield* advance(400)
        yield* drainAll(600)
        yield* settle
        for (let n = 0; n < tasks; n++) {
          const status = yield* client.status(jobs[n]!.id)
          assert.include(["SUCCESS", "FAILURE"], status.state, `task ${n} ended ${status.state}`)
          const lost = status.history.filter((h) => h.outcome === "LOST").length
          const ran = runs.get(n) ?? 0
          assert.isAtMost(ran, lost + 1, `task ${n} ran ${ran} times with ${lost} LOST entries`)
          if (status.state === "FAILURE") {
            assert.isFalse(acksLate && status.error?._tag !== "MaxRetriesExceeded")
            assert.strictEqual(status.history.at(-1)!.outcome, "LOST")
          }
        }
      }).pipe(Effect.provide(base)),
    { timeout: 120_000, arbitrary: { runs: 30 } }
  )
})
