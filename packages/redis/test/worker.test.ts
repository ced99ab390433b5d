/**
 * The core's Worker and Client running on the Redis broker, on the live
 * clock: retries held by Redis, a killed worker's task coming back as
 * WorkerLost, a malformed message dead-lettered, a throughput smoke test, and
 * a worker shut down while it claims ahead leaving nothing leased.
 */
import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import { Client, Retry, Task, TaskContext, Worker } from "@errand/core"
import type { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import { Effect, Exit, Layer, References, Schema, Scope } from "effect"
import { command, deletePrefix, randomPrefix, useTestRedis } from "./utils/redis.ts"

const server = useTestRedis()

class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { message: Schema.String }) {}

const FlakyTask = Task.make("redis.flaky", {
  payload: Schema.Struct({ failTimes: Schema.Int }),
  success: Schema.Struct({ attempts: Schema.Int }),
  failure: Flaky,
  retry: Retry.linear({ step: "100 millis", maxRetries: 5 })
})

const FlakyLive = Task.implement(FlakyTask, ({ failTimes }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    if (ctx.retries < failTimes) return yield* new Flaky({ message: `attempt ${ctx.retries} failed` })
    return { attempts: ctx.retries + 1 }
  }))

const Slow = Task.make("redis.slow", {
  payload: Schema.Struct({ millis: Schema.Int }),
  success: Schema.String,
  retry: Retry.linear({ step: "100 millis", maxRetries: 3 })
})

const SlowLive = Task.implement(Slow, ({ millis }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    yield* Effect.sleep(millis)
    return `done on attempt ${ctx.retries} by ${ctx.worker}`
  }))

const Noop = Task.make("redis.noop", { payload: Schema.Struct({ i: Schema.Int }), success: Schema.Int })
const NoopLive = Task.implement(Noop, ({ i }) => Effect.succeed(i))

/** Runs `body` with a Client on a fresh Redis broker (own prefix, cleaned after). */
const withClient = <A, E>(
  body: Effect.Effect<A, E, Client.Client | Broker | ResultBackend | RedisBroker.Handle | Scope.Scope>
) =>
  Effect.suspend(() => {
    const prefix = randomPrefix()
    // the body's scope (its workers) closes before the broker it runs on
    return body.pipe(
      Effect.scoped,
      Effect.provide(Client.layer.pipe(Layer.provideMerge(RedisBroker.layer({ url: server.url(), prefix })))),
      Effect.ensuring(Effect.promise(() => deletePrefix(server.url(), prefix)))
    )
  })

/** Starts a worker in a scope of its own. */
const startWorker = <const Tasks extends ReadonlyArray<Task.AnyImplemented>>(options: Worker.Options<Tasks>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const worker = yield* Worker.make(options).pipe(Scope.provide(scope))
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    return worker
  })

describe("Worker and Client on Redis", () => {
  it.live("a task that fails twice is retried by the broker's delays, then succeeds", () =>
    withClient(Effect.gen(function*() {
      const client = yield* Client.Client
      yield* startWorker({ tasks: [FlakyLive], id: "w-1", idleWait: "1 second" })
      const job = yield* client.submit(FlakyTask, { failTimes: 2 })
      expect(yield* client.await(job)).toEqual({ attempts: 3 })
      const status = yield* client.status(job.id)
      expect(status.state).toBe("SUCCESS")
      expect(status.retries).toBe(2)
      expect(status.error).toBeUndefined()
      expect(status.history.map((h) => h.outcome)).toEqual(["RETRY", "RETRY", "SUCCESS"])
      expect(status.history.map((h) => h.countdown)).toEqual([100, 200, undefined])
      expect(status.history[1].startedAt - status.history[0].endedAt).toBeGreaterThanOrEqual(100)
    })))

  it.live("a killed worker's task comes back as WorkerLost and another worker finishes it", () =>
    withClient(Effect.gen(function*() {
      const client = yield* Client.Client
      const a = yield* startWorker({ tasks: [SlowLive], id: "w-a", lease: "600 millis", idleWait: "1 second" })
      const job = yield* client.submit(Slow, { millis: 400 })
      while ((yield* client.status(job.id)).state !== "STARTED") yield* Effect.sleep(10)
      yield* a.kill
      yield* startWorker({ tasks: [SlowLive], id: "w-b", lease: "600 millis", idleWait: "1 second" })
      expect(yield* client.await(job)).toBe("done on attempt 1 by w-b")
      const status = yield* client.status(job.id)
      expect(status.history.map((h) => h.outcome)).toEqual(["LOST", "SUCCESS"])
      expect(status.history[0].worker).toBe("w-a")
      expect(status.history[0].error?._tag).toBe("WorkerLost")
    })))

  it.live("a malformed message is dead-lettered with what was wrong; the worker carries on", () =>
    withClient(Effect.gen(function*() {
      const client = yield* Client.Client
      const broker = yield* Broker
      yield* RedisBroker.unsafePushRaw(Noop.queue, "raw-1", "{not json")
      yield* startWorker({ tasks: [NoopLive], id: "w-1", idleWait: "1 second" })
      const job = yield* client.submit(Noop, { i: 7 })
      expect(yield* client.await(job)).toBe(7)
      while ((yield* broker.stats([Noop.queue]))[0].dead === 0) yield* Effect.sleep(10)
      const status = yield* client.status("raw-1")
      expect(status.state).toBe("FAILURE")
      expect(status.error?._tag).toBe("MalformedMessage")
    })).pipe(Effect.provideService(References.MinimumLogLevel, "Error")))

  it.live("throughput smoke test: 5000 tasks through one worker", () =>
    withClient(Effect.gen(function*() {
      const client = yield* Client.Client
      yield* startWorker({ tasks: [NoopLive], id: "w-1", concurrency: 256, idleWait: "1 second" })
      const n = 5000
      const t0 = performance.now()
      const jobs = yield* client.submitMany(Noop, Array.from({ length: n }, (_, i) => ({ i })))
      const results = yield* Effect.forEach(jobs, (job) => client.await(job), { concurrency: 500 })
      const seconds = (performance.now() - t0) / 1000
      expect(results.reduce((a, b) => a + b, 0)).toBe((n * (n - 1)) / 2)
      console.log(`redis worker throughput: ${Math.round(n / seconds)} tasks/s (${n} tasks, submit + run + await)`)
    })), 60_000)

  it.live("an idle worker's claim parks; a submit reaches it, and a worker that stops leaves nothing parked", () =>
    withClient(Effect.gen(function*() {
      const client = yield* Client.Client
      const handle = yield* RedisBroker.Handle
      const keys = RedisBroker.queueKeys(handle.prefix, Noop.queue)
      const count = (...args: ReadonlyArray<string>) => Effect.promise(() => command<number>(server.url(), ...args))
      const scope = yield* Scope.make()
      yield* Worker.make({ tasks: [NoopLive], id: "w-idle", idleWait: "5 seconds" }).pipe(Scope.provide(scope))
      while ((yield* count("HLEN", keys.park)) === 0) yield* Effect.sleep(10)
      for (let i = 0; i < 3; i++) {
        const job = yield* client.submit(Noop, { i })
        expect(yield* client.await(job)).toBe(i)
        expect((yield* client.status(job.id)).history.map((h) => h.worker)).toEqual(["w-idle"])
      }
      yield* Scope.close(scope, Exit.void)
      // the claim unparked as it was interrupted (in the background: give it a moment)
      for (let i = 0; i < 100 && (yield* count("HLEN", keys.park)) > 0; i++) yield* Effect.sleep(10)
      expect(yield* count("HLEN", keys.park)).toBe(0)
      // a task submitted now waits ready for the next worker
      const job = yield* client.submit(Noop, { i: 9 })
      expect((yield* client.status(job.id)).state).toBe("PENDING")
      expect((yield* Broker.use((b) => b.stats([Noop.queue])))[0].ready).toBe(1)
    })))

  it.live("a worker shut down mid-drain, a claim ahead in flight, leaves nothing leased: another worker finishes every task, each once", () => {
    // the broker's claims watched: at each, how many delivered tasks had not run yet
    const runs = new Map<number, number>()
    let ran = 0
    let delivered = 0
    let previous = 0
    let inFlight = 0
    let aheadSeen = false
    const Counted = Task.make("redis.counted", { payload: Schema.Struct({ i: Schema.Int }), success: Schema.Int })
    const CountedLive = Task.implement(Counted, ({ i }) =>
      Effect.sync(() => {
        runs.set(i, (runs.get(i) ?? 0) + 1)
        ran++
        return i
      }))
    const watched = Layer.effect(
      Broker,
      Effect.map(Effect.service(Broker), (broker) =>
        Broker.of({
          ...broker,
          claim: (options) =>
            Effect.suspend(() => {
              // a claim made with a full batch delivered and not run: a claim ahead (a
              // worker that does not claim ahead claims with at most 50 + 500 / 2 not run)
              if (previous === 500 && delivered - ran >= 500) aheadSeen = true
              inFlight++
              return broker.claim(options).pipe(
                Effect.tap((batch) =>
                  Effect.sync(() => {
                    delivered += batch.length
                    previous = batch.length
                  })
                ),
                Effect.ensuring(Effect.sync(() => inFlight--))
              )
            })
        }))
    )
    const prefix = randomPrefix()
    const n = 30_000
    return Effect.gen(function*() {
      const client = yield* Client.Client
      yield* client.submitMany(Counted, Array.from({ length: n }, (_, i) => ({ i })))
      // leases that outlive the test: a task left leased would not come back in time
      const first = yield* Scope.make()
      yield* Worker.make({
        tasks: [CountedLive],
        id: "w-first",
        concurrency: 50,
        prefetch: 500,
        prefetchMax: 500,
        lease: "10 minutes"
      }).pipe(
        Scope.provide(first)
      )
      while (!(aheadSeen && inFlight > 0) && ran < n) yield* Effect.sleep(1)
      expect(ran, "the first worker claimed ahead before the backlog ran out").toBeLessThan(n)
      yield* Scope.close(first, Exit.void)
      expect(inFlight, "the claim in flight landed before the worker stopped").toBe(0)
      const [stats] = yield* Broker.use((b) => b.stats([Counted.queue]))
      expect(stats!.running, "nothing left leased").toBe(0)
      expect(stats!.ready).toBe(n - ran)
      yield* startWorker({ tasks: [CountedLive], id: "w-second", concurrency: 50 })
      const deadline = Date.now() + 20_000
      while (ran < n && Date.now() < deadline) yield* Effect.sleep(10)
      expect(ran).toBe(n)
      expect([...runs.values()].every((k) => k === 1), "each task ran once").toBe(true)
    }).pipe(
      Effect.scoped,
      Effect.provide(
        Client.layer.pipe(
          Layer.provideMerge(watched),
          Layer.provideMerge(RedisBroker.layer({ url: server.url(), prefix }))
        )
      ),
      Effect.ensuring(Effect.promise(() => deletePrefix(server.url(), prefix)))
    )
  }, 60_000)
})
