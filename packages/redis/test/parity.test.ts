/**
 * The Redis layer behaves like the memory layer where a user can see it:
 * the seed scenario in real time gives the same history on both, and bad
 * input ends the same way. Plus several worker processes and a producer
 * process on one Redis: 10,000 tasks, each run once, each result stored.
 */
import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import { Client, MaxRetriesExceeded, MemoryBroker, Retry, Task, TaskContext, Worker } from "@errand/core"
import type { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import { Effect, Exit, Layer, References, Schema, Scope } from "effect"
import { Sleep } from "./fixtures/tasks.ts"
import { type ScriptProcess, spawnScript, spawnWorker, useTestRedis, withPrefix } from "./utils/process.ts"
import { deletePrefix, randomPrefix } from "./utils/redis.ts"

const redis = useTestRedis()

class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { message: Schema.String }) {}

const Seed = Task.make("parity.seed", {
  payload: Schema.Struct({ failTimes: Schema.Int }),
  success: Schema.Struct({ attempts: Schema.Int }),
  failure: Flaky,
  retry: Retry.linear({ step: "100 millis", maxRetries: 5 })
})

const SeedLive = Task.implement(Seed, ({ failTimes }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    if (ctx.retries < failTimes) return yield* new Flaky({ message: `attempt ${ctx.retries} failed` })
    return { attempts: ctx.retries + 1 }
  }))

const Good = Task.make("parity.good", { payload: Schema.Struct({ n: Schema.Int }), success: Schema.Int })
const GoodLive = Task.implement(Good, ({ n }) => Effect.succeed(n * 2))

type Services = Client.Client | Broker | ResultBackend | Scope.Scope

/** What a user sees of a task, without times and worker names. */
const visible = (status: Client.Status) => ({
  state: status.state,
  retries: status.retries,
  error: status.error === undefined ? undefined : { _tag: status.error._tag, message: status.error.message },
  history: status.history.map((h) => ({
    attempt: h.attempt,
    outcome: h.outcome,
    countdown: h.countdown,
    error: h.error === undefined ? undefined : { _tag: h.error._tag, message: h.error.message }
  }))
})

/** Runs the seed (always failing, and failing twice) and the bad-input cases; returns what is visible. */
const scenario = Effect.gen(function*() {
  const client = yield* Client.Client
  const broker = yield* Broker
  const scope = yield* Scope.make()
  yield* Worker.make({ tasks: [SeedLive, GoodLive], id: "w-parity", lease: "2 seconds", idleWait: "1 second" }).pipe(
    Scope.provide(scope)
  )
  const failing = yield* client.submit(Seed, { failTimes: 99 })
  const twice = yield* client.submit(Seed, { failTimes: 2 })
  const base = { headers: {}, priority: 5, retries: 0, submittedAt: 0, queue: "default" }
  // fixed ids: each run is on a fresh broker (memory) or prefix (Redis)
  const oldId = "old-producer"
  const unknownId = "unknown-task"
  yield* broker.enqueue([
    { message: { ...base, id: oldId, task: "parity.good", payload: { n: "one" } }, dueAt: 0 },
    { message: { ...base, id: unknownId, task: "parity.nope", payload: {} }, dueAt: 0 }
  ])
  const after = yield* client.submit(Good, { n: 21 })
  const failed = yield* Effect.flip(client.await(failing))
  expect(failed).toBeInstanceOf(MaxRetriesExceeded)
  expect(yield* client.await(twice)).toEqual({ attempts: 3 })
  expect(yield* client.await(after)).toBe(42)
  const failingStatus = yield* client.status(failing.id)
  // the countdowns were kept: each retry started at least its countdown after the previous attempt ended
  for (let i = 1; i < failingStatus.history.length; i++) {
    const gap = failingStatus.history[i]!.startedAt - failingStatus.history[i - 1]!.endedAt
    expect(gap).toBeGreaterThanOrEqual(failingStatus.history[i - 1]!.countdown! - 5)
  }
  const out = {
    failing: visible(failingStatus),
    twice: visible(yield* client.status(twice.id)),
    invalid: visible(yield* client.status(oldId)),
    unknown: visible(yield* client.status(unknownId)),
    awaited: { _tag: failed._tag, lastError: failed instanceof MaxRetriesExceeded ? failed.lastError._tag : "" }
  }
  yield* Scope.close(scope, Exit.void)
  return out
})

const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

describe("Redis and memory layers agree", () => {
  it.live("the seed in real time (step 100 ms) and bad input give the same visible outcome on both", () =>
    Effect.gen(function*() {
      const onMemory = yield* scenario.pipe(
        Effect.provide(Client.layer.pipe(Layer.provideMerge(MemoryBroker.layer))),
        Effect.scoped,
        quiet
      )
      const prefix = randomPrefix()
      const onRedis = yield* (scenario as Effect.Effect<Awaited<typeof onMemory>, unknown, Services>).pipe(
        Effect.provide(Client.layer.pipe(Layer.provideMerge(RedisBroker.layer({ url: redis.url(), prefix })))),
        Effect.scoped,
        quiet,
        Effect.ensuring(Effect.promise(() => deletePrefix(redis.url(), prefix)))
      )
      expect(onRedis).toEqual(onMemory)
      expect(onRedis.failing.history.map((h) => h.countdown)).toEqual([100, 200, 300, 400, 500, undefined])
      expect(onRedis.failing.state).toBe("FAILURE")
      expect(onRedis.failing.error?._tag).toBe("MaxRetriesExceeded")
      expect(onRedis.failing.history[5]!.error).toEqual({ _tag: "Flaky", message: "attempt 5 failed" })
      expect(onRedis.invalid.error?._tag).toBe("PayloadInvalid")
      expect(onRedis.invalid.error?.message).toContain("parity.good")
      expect(onRedis.unknown.error?._tag).toBe("UnknownTask")
      expect(onRedis.unknown.error?.message).toContain("parity.nope")
    }), 30_000)
})

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname

describe("several worker processes and a producer process on one Redis", () => {
  it.live("10,000 tasks: each run exactly once, each result stored", () =>
    withPrefix(redis.url, (prefix, processes: Array<ScriptProcess>) =>
      Effect.gen(function*() {
        const count = 10_000
        for (const n of [1, 2, 3]) processes.push(spawnWorker(fixture("worker.ts"), redis.url(), prefix, `w-${n}`))
        const producer = spawnScript(fixture("producer.ts"), {
          ERRAND_REDIS_URL: redis.url(),
          ERRAND_REDIS_PREFIX: prefix,
          COUNT: String(count),
          ID_PREFIX: "p"
        })
        const code = yield* Effect.promise(() => producer.exited)
        expect(code, producer.output()).toBe(0)
        const client = yield* Client.Client
        const final = yield* Effect.forEach(
          Array.from({ length: count }, (_, i) => `p-${i}`),
          (id) => Effect.andThen(client.await({ id, task: Sleep }), client.status(id)),
          { concurrency: 200 }
        )
        const workersSeen = new Set<string>()
        for (const s of final) {
          expect(s.state).toBe("SUCCESS")
          expect(s.history.length).toBe(1)
          expect(s.history[0]!.outcome).toBe("SUCCESS")
          expect(s.result).toBe(`attempt 0 by ${s.history[0]!.worker}`)
          workersSeen.add(s.history[0]!.worker)
        }
        expect(final.length).toBe(count)
        expect(workersSeen.size).toBe(3)
      })), 120_000)
})
