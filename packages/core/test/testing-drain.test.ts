import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Schema } from "effect"
import { Client, Retry, Task, TaskContext } from "@errand/core"
import * as ErrandTest from "@errand/core/testing/ErrandTest"
import { Flaky, Job, JobLive, Probe } from "./testing-fixtures.ts"

const world = (options: Partial<ErrandTest.Options<[typeof JobLive]>> = {}) =>
  ErrandTest.layer({ tasks: [JobLive], ...options }).pipe(Layer.provideMerge(Probe.layer))

/** Celery's reference task: fails `failTimes` times, retried after 10, 20, 30, 40, 50 s. */
const Seed = Task.make("seed.flaky", {
  payload: Schema.Struct({ failTimes: Schema.Int }),
  success: Schema.Number,
  failure: Flaky,
  retry: Retry.linear({ step: "10 seconds", maxRetries: 5 })
})
const SeedLive = Task.implement(Seed, ({ failTimes }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    if (ctx.retries < failTimes) return yield* new Flaky({ message: `attempt ${ctx.retries} failed` })
    return ctx.retries
  }))

describe("drain", () => {
  it.effect("returns at once when there is nothing to do", () =>
    Effect.gen(function*() {
      const report = yield* ErrandTest.drain()
      assert.strictEqual(report.steps, 0)
      assert.strictEqual(report.now, 0)
    }).pipe(Effect.provide(world())))

  it.effect("skips straight through the seed's retries: one clock jump per retry, 150 s of test time", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Seed, { failTimes: 99 })
      const report = yield* ErrandTest.drain()
      assert.strictEqual(report.steps, 5)
      assert.deepStrictEqual(report.elapsed, Duration.millis(150_000))
      yield* ErrandTest.expectHistory(job, [
        ...[10, 20, 30, 40, 50].map((s) => ({ outcome: "RETRY" as const, countdown: Duration.seconds(s) })),
        { outcome: "FAILURE", error: { _tag: "Flaky", message: "attempt 5 failed" }, startedAt: "150 seconds" }
      ])
      assert.strictEqual((yield* client.status(job.id)).error?._tag, "MaxRetriesExceeded")
    }).pipe(ErrandTest.provide({ tasks: [SeedLive] })))

  it.effect("a 7-day countdown is one jump", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Seed, { failTimes: 0 }, { countdown: "7 days" })
      const report = yield* ErrandTest.drain()
      assert.strictEqual(report.steps, 1)
      assert.strictEqual(report.now, Duration.toMillis(Duration.days(7)))
      yield* ErrandTest.expectHistory(job, [{ outcome: "SUCCESS", startedAt: "7 days" }])
    }).pipe(ErrandTest.provide({ tasks: [SeedLive] })), 30_000)

  it.effect("runs long handlers to the end, and many tasks across workers", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const jobs = yield* Effect.forEach([0, 1, 2, 3, 4, 5], (n) => client.submit(Job, { n, seconds: n * 600 }))
      const report = yield* ErrandTest.drain()
      // the clock may end past the last event (by at most a lease): drain jumps to lease deadlines while handlers run
      assert.isAtLeast(report.now, 3_000_000)
      for (const [n, job] of jobs.entries()) {
        yield* ErrandTest.expectHistory(job, [{ outcome: "SUCCESS", took: Duration.seconds(n * 600) }])
      }
      const states = (yield* ErrandTest.tasks).map((t) => `${t.id} ${t.state}`)
      assert.deepStrictEqual(states, [0, 1, 2, 3, 4, 5].map((n) => `test.job-${n} SUCCESS`))
    }).pipe(Effect.provide(world({ workers: 2, concurrency: 2 }))))

  it.effect("a task that retries forever is reported, not hung on: DrainTimeout names it", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      yield* client.submit(Seed, { failTimes: 1 })
      yield* client.submit(Forever, undefined)
      const error = yield* Effect.flip(ErrandTest.drain({ maxSteps: 50 }))
      assert.strictEqual(error._tag, "DrainTimeout")
      assert.strictEqual(error.steps, 50)
      assert.deepStrictEqual(error.pending.map((p) => [p.id, p.state]), [["test.forever-1", "RETRY"]])
      assert.include(error.message, "drain gave up after 50 clock jumps")
      assert.include(error.message, "test.forever-1 (test.forever): RETRY, 51 retries")
      assert.include(error.message, "RETRY error RetryRequested")
    }).pipe(ErrandTest.provide({ tasks: [SeedLive, ForeverLive] })))

  it.effect("a handler that never ends is reported too", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      yield* client.submit(Stuck, undefined)
      const error = yield* Effect.flip(ErrandTest.drain({ maxSteps: 20 }))
      assert.deepStrictEqual(error.pending.map((p) => [p.id, p.state]), [["test.stuck-0", "STARTED"]])
    }).pipe(ErrandTest.provide({ tasks: [StuckLive] })))
})

const Forever = Task.make("test.forever", { payload: Schema.Void, retry: Retry.fixed({ delay: "1 second", maxRetries: 1_000_000 }) })
const ForeverLive = Task.implement(Forever, () => TaskContext.use((ctx) => ctx.retry()))
const Stuck = Task.make("test.stuck", { payload: Schema.Void })
const StuckLive = Task.implement(Stuck, () => Effect.never)

describe("the harness", () => {
  it.effect("names tasks <name>-<n> in submission order and workers w-1, w-2...", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const a = yield* client.submit(Job, { n: 0, seconds: 0 })
      const many = yield* client.submitMany(Job, [{ n: 1, seconds: 0 }, { n: 2, seconds: 0 }])
      const own = yield* client.submit(Job, { n: 3, seconds: 0 }, { id: "mine" })
      assert.deepStrictEqual([a, ...many, own].map((j) => j.id), ["test.job-0", "test.job-1", "test.job-2", "mine"])
      yield* ErrandTest.drain()
      assert.deepStrictEqual((yield* ErrandTest.workers).map((w) => w.id), ["w-1", "w-2", "w-3"])
      assert.deepStrictEqual((yield* ErrandTest.tasks).map((t) => t.id), ["test.job-0", "test.job-1", "test.job-2", "mine"])
    }).pipe(Effect.provide(world({ workers: 3 }))))

  it.effect("advance moves the clock exactly, running what is due on the way", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Job, { n: 0, seconds: 0 }, { countdown: "30 seconds" })
      yield* ErrandTest.advance("29 seconds")
      assert.strictEqual((yield* client.status(job.id)).state, "PENDING")
      yield* ErrandTest.advance("1 second")
      assert.strictEqual((yield* client.status(job.id)).state, "SUCCESS")
      assert.strictEqual(yield* ErrandTest.now, 30_000)
    }).pipe(Effect.provide(world())))

  it.effect("kill and shutdown from the test: the lease runs out, or the grace does; replacements take over", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const a = yield* client.submit(Job, { n: 0, seconds: 60 })
      yield* ErrandTest.advance("1 second")
      yield* ErrandTest.kill()
      const b = yield* client.submit(Job, { n: 1, seconds: 60 })
      yield* ErrandTest.advance("1 second")
      yield* ErrandTest.shutdown("w-2")
      yield* ErrandTest.drain()
      yield* ErrandTest.expectHistory(a, [{ outcome: "LOST", worker: "w-1" }, { outcome: "SUCCESS", worker: "w-3" }])
      yield* ErrandTest.expectHistory(b, [
        { outcome: "RETRY", worker: "w-2", error: "WorkerShutdown" },
        { outcome: "SUCCESS", worker: "w-3" }
      ])
      assert.deepStrictEqual((yield* ErrandTest.workers).map((w) => `${w.id} ${w.status}`), [
        "w-1 killed",
        "w-2 stopped",
        "w-3 running"
      ])
      assert.deepStrictEqual((yield* ErrandTest.trace).map((e) => `${e.at} ${e.kind}: ${e.detail}`), [
        "0 worker: w-1 started",
        "1000 crash: w-1 killed by the test",
        "1000 worker: w-2 started",
        "2000 shutdown: w-2 shut down (warm) by the test",
        "2000 worker: w-3 started"
      ])
    }).pipe(Effect.provide(world({ shutdownGrace: "1 second" }))))

  it.effect("workers: 0 — tasks wait until the test starts a worker", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Job, { n: 0, seconds: 1 })
      const error = yield* Effect.flip(ErrandTest.drain({ maxSteps: 5 }))
      assert.include(error.message, "no worker is running")
      assert.strictEqual(yield* ErrandTest.startWorker, "w-1")
      yield* ErrandTest.drain()
      yield* ErrandTest.expectHistory(job, [{ outcome: "SUCCESS", worker: "w-1", startedAt: "5 seconds" }])
    }).pipe(Effect.provide(world({ workers: 0 }))))

  it.effect("closing the world with tasks still running does not wait for them", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      yield* client.submit(Job, { n: 0, seconds: 3600 })
      yield* ErrandTest.advance("1 second")
      assert.strictEqual((yield* ErrandTest.tasks)[0]!.state, "STARTED")
    }).pipe(Effect.provide(world())))
})
