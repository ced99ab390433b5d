import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Schema } from "effect"
import { TestClock } from "effect/testing"
import { Client, MaxRetriesExceeded, MemoryBroker, Retry, Task, TaskContext, Worker } from "@errand/core"
import { settle } from "./utils.ts"

class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { message: Schema.String }) {}

const Seed = Task.make("seed.flaky", {
  payload: Schema.Struct({ failTimes: Schema.Int }),
  success: Schema.Struct({ ok: Schema.Boolean }),
  failure: Flaky,
  retry: Retry.linear({ step: "10 seconds", maxRetries: 5 })
})

describe("the seed (Celery: max_retries=5, countdown 10, 20, 30, 40, 50 s)", () => {
  it.effect("a task that always fails runs at 0, 10, 30, 60, 100, 150 s, then MaxRetriesExceeded", () =>
    Effect.gen(function*() {
      const runs: Array<number> = []
      const SeedLive = Task.implement(Seed, ({ failTimes }) =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          runs.push(Date.now() >= 0 ? (yield* Effect.clockWith((c) => Effect.succeed(c.currentTimeMillisUnsafe()))) : 0)
          if (ctx.retries < failTimes) return yield* new Flaky({ message: `attempt ${ctx.retries} failed` })
          return { ok: true }
        }))
      yield* Effect.gen(function*() {
        const client = yield* Client.Client
        const job = yield* client.submit(Seed, { failTimes: 99 })
        yield* settle
        for (let t = 1; t <= 160; t++) {
          yield* TestClock.adjust("1 second")
          yield* settle
        }
        assert.deepStrictEqual(runs, [0, 10_000, 30_000, 60_000, 100_000, 150_000])
        const exit = yield* Effect.exit(client.await(job))
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(client.await(job))
        assert.instanceOf(error, MaxRetriesExceeded)
        if (error instanceof MaxRetriesExceeded) {
          assert.strictEqual(error.lastError._tag, "Flaky")
          assert.strictEqual(error.lastError.message, "attempt 5 failed")
          assert.strictEqual(error.retries, 5)
        }
        const status = yield* client.status(job.id)
        assert.strictEqual(status.state, "FAILURE")
        assert.strictEqual(status.retries, 5)
        assert.strictEqual(status.history.length, 6)
        assert.deepStrictEqual(status.history.map((a) => a.countdown), [10_000, 20_000, 30_000, 40_000, 50_000, undefined])
        assert.deepStrictEqual(status.history.map((a) => a.outcome), ["RETRY", "RETRY", "RETRY", "RETRY", "RETRY", "FAILURE"])
        assert.deepStrictEqual(status.history.map((a) => a.startedAt), [0, 10_000, 30_000, 60_000, 100_000, 150_000])
        assert.strictEqual(status.history[5]!.error?._tag, "Flaky")
        assert.strictEqual(status.error?._tag, "MaxRetriesExceeded")
      }).pipe(
        Effect.provide(
          Layer.mergeAll(Client.layer, Worker.layer({ tasks: [SeedLive] })).pipe(Layer.provideMerge(MemoryBroker.layer))
        )
      )
    }))

  it.effect("one that fails twice then succeeds ends SUCCESS with retries 2", () =>
    Effect.gen(function*() {
      const SeedLive = Task.implement(Seed, ({ failTimes }) =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          if (ctx.retries < failTimes) return yield* new Flaky({ message: `attempt ${ctx.retries} failed` })
          return { ok: true }
        }))
      yield* Effect.gen(function*() {
        const client = yield* Client.Client
        const job = yield* client.submit(Seed, { failTimes: 2 })
        yield* settle
        yield* TestClock.adjust("10 seconds")
        yield* settle
        yield* TestClock.adjust("20 seconds")
        yield* settle
        const result = yield* client.await(job)
        assert.deepStrictEqual(result, { ok: true })
        const status = yield* client.status(job.id)
        assert.strictEqual(status.state, "SUCCESS")
        assert.strictEqual(status.retries, 2)
        assert.deepStrictEqual(status.history.map((a) => a.outcome), ["RETRY", "RETRY", "SUCCESS"])
      }).pipe(
        Effect.provide(
          Layer.mergeAll(Client.layer, Worker.layer({ tasks: [SeedLive] })).pipe(Layer.provideMerge(MemoryBroker.layer))
        )
      )
    }))

  it.effect("Retry.delays previews the countdowns", () =>
    Effect.gen(function*() {
      const delays = yield* Retry.delays(Retry.linear({ step: "10 seconds", maxRetries: 5 }))
      assert.deepStrictEqual(delays.map(Duration.toSeconds), [10, 20, 30, 40, 50])
    }))
})
