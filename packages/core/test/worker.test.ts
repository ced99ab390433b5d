import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Ref, Schema } from "effect"
import {
  Broker,
  Client,
  MemoryBroker,
  Retry,
  SoftTimeLimitExceeded,
  Task,
  TaskContext,
  TaskRevoked,
  TimeLimitExceeded,
  Worker,
  WorkerLost
} from "@errand/core"
import { advance, base, settle, startWorker } from "./utils.ts"

class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", { code: Schema.String }) {}

const Slow = Task.make("test.slow", {
  payload: Schema.Struct({ seconds: Schema.Number }),
  success: Schema.String,
  retry: Retry.linear({ step: "10 seconds", maxRetries: 5 })
})

/** Sleeps `seconds` on the first attempt, returns at once on later ones. */
const SlowLive = Task.implement(Slow, ({ seconds }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    if (ctx.retries === 0) yield* Effect.sleep(`${seconds} seconds`)
    return `done on attempt ${ctx.retries} by ${ctx.worker}`
  }))

describe("WorkerLost", () => {
  it.effect("a worker killed mid-task: the lease runs out, the task is retried per the policy, history says WorkerLost", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const a = yield* startWorker({ tasks: [SlowLive], id: "w-a", lease: "3 seconds" })
      const job = yield* client.submit(Slow, { seconds: 60 })
      yield* advance(1)
      assert.strictEqual((yield* client.status(job.id)).state, "STARTED")
      yield* a.worker.kill
      yield* startWorker({ tasks: [SlowLive], id: "w-b", lease: "3 seconds" })
      yield* advance(20)
      const result = yield* client.await(job)
      assert.strictEqual(result, "done on attempt 1 by w-b")
      const status = yield* client.status(job.id)
      assert.strictEqual(status.state, "SUCCESS")
      assert.strictEqual(status.retries, 1)
      assert.deepStrictEqual(status.history.map((h) => h.outcome), ["LOST", "SUCCESS"])
      const lost = status.history[0]!
      assert.strictEqual(lost.worker, "w-a")
      assert.strictEqual(lost.error?._tag, "WorkerLost")
      assert.include(lost.error?.message ?? "", "w-a")
      assert.strictEqual(lost.countdown, 10_000)
      assert.strictEqual(status.history[1]!.worker, "w-b")
      // re-run 10 s after the lease ran out (3-4 s after the last heartbeat)
      assert.isAtLeast(status.history[1]!.startedAt - lost.endedAt, 10_000)
    }).pipe(Effect.provide(base)))

  it.effect("with acksLate: false the lost task ends FAILURE with WorkerLost, as in Celery", () =>
    Effect.gen(function*() {
      const AtMostOnce = Task.make("test.atMostOnce", {
        payload: Schema.Struct({ seconds: Schema.Number }),
        success: Schema.String,
        retry: Retry.linear({ step: "10 seconds", maxRetries: 5 }),
        acksLate: false
      })
      let runs = 0
      const AtMostOnceLive = Task.implement(AtMostOnce, ({ seconds }) =>
        Effect.sync(() => runs++).pipe(Effect.andThen(Effect.sleep(`${seconds} seconds`)), Effect.as("done")))
      const client = yield* Client.Client
      const a = yield* startWorker({ tasks: [AtMostOnceLive], id: "w-a", lease: "3 seconds" })
      const job = yield* client.submit(AtMostOnce, { seconds: 60 })
      yield* advance(1)
      yield* a.worker.kill
      yield* startWorker({ tasks: [AtMostOnceLive], id: "w-b", lease: "3 seconds" })
      yield* advance(30)
      const error = yield* Effect.flip(client.await(job))
      assert.instanceOf(error, WorkerLost)
      const status = yield* client.status(job.id)
      assert.strictEqual(status.state, "FAILURE")
      assert.strictEqual(status.error?._tag, "WorkerLost")
      assert.deepStrictEqual(status.history.map((h) => h.outcome), ["LOST"])
      assert.strictEqual(runs, 1)
    }).pipe(Effect.provide(base)))

  it.effect("prefetched tasks of a killed worker that never started come back without counting an attempt", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const a = yield* startWorker({ tasks: [SlowLive], id: "w-a", lease: "3 seconds", concurrency: 1, prefetch: 3 })
      const first = yield* client.submit(Slow, { seconds: 60 })
      const waiting = yield* client.submit(Slow, { seconds: 0 })
      yield* advance(1)
      assert.strictEqual((yield* client.status(waiting.id)).state, "RECEIVED")
      yield* a.worker.kill
      yield* startWorker({ tasks: [SlowLive], id: "w-b", lease: "3 seconds" })
      yield* advance(20)
      assert.strictEqual((yield* client.status(first.id)).state, "SUCCESS")
      const status = yield* client.status(waiting.id)
      assert.strictEqual(status.state, "SUCCESS")
      assert.strictEqual(status.retries, 0)
      assert.deepStrictEqual(status.history.map((h) => h.outcome), ["SUCCESS"])
    }).pipe(Effect.provide(base)))
})

describe("WorkerShutdown", () => {
  it.effect("closing a worker waits for short tasks, interrupts long ones after the grace; they are retried", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const cleaned = yield* Ref.make(0)
      const Long = Task.make("test.long", {
        payload: Schema.Struct({ seconds: Schema.Number }),
        success: Schema.String,
        retry: Retry.linear({ step: "10 seconds", maxRetries: 5 })
      })
      const LongLive = Task.implement(Long, ({ seconds }) =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          if (ctx.retries === 0) {
            yield* Effect.sleep(`${seconds} seconds`).pipe(Effect.ensuring(Ref.update(cleaned, (n) => n + 1)))
          }
          return `attempt ${ctx.retries} on ${ctx.worker}`
        }))
      const a = yield* startWorker({ tasks: [LongLive], id: "w-a", shutdownGrace: "5 seconds" })
      const short = yield* client.submit(Long, { seconds: 2 })
      const long = yield* client.submit(Long, { seconds: 600 })
      yield* advance(1)
      const closing = yield* Effect.forkChild(a.close)
      yield* advance(3)
      assert.strictEqual((yield* client.status(short.id)).state, "SUCCESS")
      assert.strictEqual((yield* client.status(long.id)).state, "STARTED")
      yield* advance(3)
      yield* Fiber.join(closing)
      assert.strictEqual(yield* Ref.get(cleaned), 2)
      const afterClose = yield* client.status(long.id)
      assert.strictEqual(afterClose.state, "RETRY")
      assert.strictEqual(afterClose.history[0]!.error?._tag, "WorkerShutdown")
      assert.strictEqual(afterClose.history[0]!.countdown, 10_000)
      yield* startWorker({ tasks: [LongLive], id: "w-b" })
      yield* advance(12)
      assert.strictEqual(yield* client.await(long), "attempt 1 on w-b")
      const status = yield* client.status(long.id)
      assert.deepStrictEqual(status.history.map((h) => h.outcome), ["RETRY", "SUCCESS"])
      assert.deepStrictEqual((yield* client.status(short.id)).history.map((h) => h.outcome), ["SUCCESS"])
    }).pipe(Effect.provide(base)))

  it.effect("a closing worker gives back prefetched tasks at once", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const a = yield* startWorker({ tasks: [SlowLive], id: "w-a", concurrency: 1, prefetch: 4, shutdownGrace: "1 second" })
      yield* client.submit(Slow, { seconds: 600 })
      const queued = yield* Effect.forEach([1, 2, 3], () => client.submit(Slow, { seconds: 0 }))
      yield* advance(1)
      const broker = yield* Broker.Broker
      assert.strictEqual((yield* broker.stats(["default"]))[0]!.running, 4)
      const closing = yield* Effect.forkChild(a.close)
      yield* advance(2)
      yield* Fiber.join(closing)
      const [stats] = yield* broker.stats(["default"])
      assert.strictEqual(stats!.running, 0)
      assert.strictEqual(stats!.ready, 3)
      assert.strictEqual(stats!.delayed, 1)
      for (const job of queued) assert.strictEqual((yield* client.status(job.id)).history.length, 0)
    }).pipe(Effect.provide(base)))
})

describe("time limits", () => {
  it.effect("softTimeLimit interrupts the handler (finalizers run): SoftTimeLimitExceeded", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      let finalized = false
      const Soft = Task.make("test.soft", { payload: Schema.Void, softTimeLimit: "5 seconds" })
      const SoftLive = Task.implement(Soft, () =>
        Effect.sleep("60 seconds").pipe(Effect.ensuring(Effect.sync(() => finalized = true))))
      yield* startWorker({ tasks: [SoftLive] })
      const job = yield* client.submit(Soft, undefined)
      yield* advance(6)
      const error = yield* Effect.flip(client.await(job))
      assert.instanceOf(error, SoftTimeLimitExceeded)
      assert.isTrue(finalized)
      const status = yield* client.status(job.id)
      assert.strictEqual(status.state, "FAILURE")
      assert.strictEqual(status.history[0]!.endedAt - status.history[0]!.startedAt, 5_000)
    }).pipe(Effect.provide(base)))

  it.effect("timeLimit abandons the handler without waiting for its finalizers: TimeLimitExceeded", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const Hard = Task.make("test.hard", { payload: Schema.Void, timeLimit: "5 seconds" })
      const HardLive = Task.implement(Hard, () =>
        Effect.sleep("60 seconds").pipe(Effect.ensuring(Effect.sleep("100 seconds"))))
      yield* startWorker({ tasks: [HardLive] })
      const job = yield* client.submit(Hard, undefined)
      yield* advance(6)
      const error = yield* Effect.flip(client.await(job))
      assert.instanceOf(error, TimeLimitExceeded)
      const status = yield* client.status(job.id)
      assert.strictEqual(status.history[0]!.endedAt - status.history[0]!.startedAt, 5_000)
    }).pipe(Effect.provide(base)))

  it.effect("a soft limit below the hard one: interrupted at the soft limit, abandoned at the hard one if finalizers hang", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const Both = Task.make("test.both", { payload: Schema.Void, softTimeLimit: "2 seconds", timeLimit: "4 seconds" })
      const BothLive = Task.implement(Both, () => Effect.sleep("60 seconds").pipe(Effect.ensuring(Effect.sleep("60 seconds"))))
      yield* startWorker({ tasks: [BothLive] })
      const job = yield* client.submit(Both, undefined)
      yield* advance(5)
      const error = yield* Effect.flip(client.await(job))
      assert.instanceOf(error, TimeLimitExceeded)
    }).pipe(Effect.provide(base)))
})

describe("custom states, explicit retry, typed failures", () => {
  it.effect("updateState sets a custom state with meta, visible in status while the task runs", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const Progress = Task.make("test.progress", { payload: Schema.Void })
      const ProgressLive = Task.implement(Progress, () =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          yield* ctx.updateState("PROGRESS", { done: 1, of: 2 })
          yield* Effect.sleep("10 seconds")
          yield* ctx.updateState("PROGRESS", { done: 2, of: 2 })
        }).pipe(Effect.orDie))
      yield* startWorker({ tasks: [ProgressLive] })
      const job = yield* client.submit(Progress, undefined)
      yield* advance(1)
      const running = yield* client.status(job.id)
      assert.strictEqual(running.state, "PROGRESS")
      assert.deepStrictEqual(running.meta, { done: 1, of: 2 })
      yield* advance(10)
      const done = yield* client.status(job.id)
      assert.strictEqual(done.state, "SUCCESS")
      assert.deepStrictEqual(done.meta, { done: 2, of: 2 })
    }).pipe(Effect.provide(base)))

  it.effect("TaskContext says the task's id, name, queue, attempt, eta, headers and worker on both run paths; updateState and retry work destructured", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const seen: Array<Record<string, unknown>> = []
      // a plain task takes the runner's fast path; one with a time limit, the full run
      const make = (name: string, limited: boolean) => {
        const task = Task.make(name, {
          payload: Schema.Void,
          success: Schema.Number,
          queue: "ctx",
          retry: Retry.fixed({ delay: "1 second", maxRetries: 1 }),
          ...(limited ? { timeLimit: "1 minute" } : {})
        })
        return [task, Task.implement(task, () =>
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            const { eta, headers, id, queue, retries, task, worker } = ctx
            seen.push({ id, task, queue, retries, eta, headers, worker })
            const { retry, updateState } = ctx
            yield* updateState("PROGRESS", { attempt: retries }).pipe(Effect.orDie)
            if (retries === 0) return yield* retry({ countdown: "2 seconds" })
            return retries
          }))] as const
      }
      const [Fast, FastLive] = make("test.ctx.fast", false)
      const [Full, FullLive] = make("test.ctx.full", true)
      yield* startWorker({ tasks: [FastLive, FullLive], id: "w-ctx", queues: ["ctx"] })
      const fast = yield* client.submit(Fast, undefined, { headers: { tenant: "acme" } })
      const full = yield* client.submit(Full, undefined, { countdown: "1 second" })
      yield* advance(10)
      assert.strictEqual(yield* client.await(fast), 1)
      assert.strictEqual(yield* client.await(full), 1)
      const of = (id: string) => seen.filter((s) => s.id === id)
      assert.deepStrictEqual(of(fast.id), [0, 1].map((retries) => ({
        id: fast.id,
        task: "test.ctx.fast",
        queue: "ctx",
        retries,
        eta: undefined,
        headers: { tenant: "acme" },
        worker: "w-ctx"
      })))
      assert.deepStrictEqual(of(full.id), [0, 1].map((retries) => ({
        id: full.id,
        task: "test.ctx.full",
        queue: "ctx",
        retries,
        eta: 1_000,
        headers: {},
        worker: "w-ctx"
      })))
      assert.deepStrictEqual((yield* client.status(fast.id)).meta, { attempt: 1 })
      assert.deepStrictEqual((yield* client.status(full.id)).meta, { attempt: 1 })
      assert.deepStrictEqual((yield* client.status(full.id)).history.map((h) => h.countdown), [2_000, undefined])
    }).pipe(Effect.provide(base)))

  it.effect("ctx.retry({ countdown }) runs the task again after the countdown, counted against maxRetries", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const times: Array<number> = []
      const Again = Task.make("test.again", {
        payload: Schema.Void,
        success: Schema.Number,
        retry: Retry.fixed({ delay: "1 minute", maxRetries: 2 })
      })
      const AgainLive = Task.implement(Again, () =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          times.push(yield* Effect.clockWith((c) => Effect.succeed(c.currentTimeMillisUnsafe())))
          return yield* ctx.retry({ countdown: "3 seconds" })
        }))
      yield* startWorker({ tasks: [AgainLive] })
      const job = yield* client.submit(Again, undefined)
      yield* advance(10)
      assert.deepStrictEqual(times, [0, 3_000, 6_000])
      const status = yield* client.status(job.id)
      assert.strictEqual(status.state, "FAILURE")
      assert.strictEqual(status.error?._tag, "MaxRetriesExceeded")
      assert.deepStrictEqual(status.history.map((h) => h.countdown), [3_000, 3_000, undefined])
    }).pipe(Effect.provide(base)))

  it.effect("a failure the policy does not retry ends at once, and await decodes it to the typed error", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const Charge = Task.make("test.charge", {
        payload: Schema.Struct({ orderId: Schema.String, cents: Schema.Int }),
        success: Schema.Struct({ receipt: Schema.String }),
        failure: CardDeclined,
        retry: Retry.linear({ step: "10 seconds", maxRetries: 5, retryOn: ["WorkerLost", "WorkerShutdown"] })
      })
      const ChargeLive = Task.implement(Charge, ({ orderId }) =>
        orderId === "bad" ? Effect.fail(new CardDeclined({ code: "insufficient_funds" })) : Effect.succeed({ receipt: `r-${orderId}` }))
      yield* startWorker({ tasks: [ChargeLive] })
      const bad = yield* client.submit(Charge, { orderId: "bad", cents: 500 })
      const good = yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
      yield* advance(1)
      const error = yield* Effect.flip(client.await(bad))
      assert.instanceOf(error, CardDeclined)
      if (error instanceof CardDeclined) assert.strictEqual(error.code, "insufficient_funds")
      assert.deepStrictEqual(yield* client.await(good), { receipt: "r-o-1" })
      assert.strictEqual((yield* client.status(bad.id)).history.length, 1)
    }).pipe(Effect.provide(base)))

  it.effect("a defect (thrown exception) is recorded as TaskDefect and retried by default", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const Boom = Task.make("test.boom", { payload: Schema.Void, retry: Retry.fixed({ delay: "1 second", maxRetries: 1 }) })
      const BoomLive = Task.implement(Boom, () => Effect.sync(() => { throw new Error("kaboom") }))
      yield* startWorker({ tasks: [BoomLive] })
      const job = yield* client.submit(Boom, undefined)
      yield* advance(3)
      const status = yield* client.status(job.id)
      assert.deepStrictEqual(status.history.map((h) => h.error?._tag), ["TaskDefect", "TaskDefect"])
      assert.include(status.history[0]!.error!.message, "kaboom")
      assert.strictEqual(status.error?._tag, "MaxRetriesExceeded")
    }).pipe(Effect.provide(base)))
})

describe("revoke", () => {
  it.effect("a pending task is removed and never runs; await fails with TaskRevoked", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      let ran = false
      const T = Task.make("test.revokePending", { payload: Schema.Void })
      const TLive = Task.implement(T, () => Effect.sync(() => ran = true))
      yield* startWorker({ tasks: [TLive] })
      const job = yield* client.submit(T, undefined, { countdown: "1 minute" })
      assert.strictEqual(yield* client.revoke(job.id), "revoked")
      yield* advance(70)
      assert.isFalse(ran)
      assert.instanceOf(yield* Effect.flip(client.await(job)), TaskRevoked)
      assert.strictEqual((yield* client.status(job.id)).state, "REVOKED")
    }).pipe(Effect.provide(base)))

  it.effect("a running task is interrupted at its worker's next heartbeat and ends REVOKED", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      let finalized = false
      const T = Task.make("test.revokeRunning", { payload: Schema.Void, retry: Retry.linear({ step: "1 second", maxRetries: 3 }) })
      const TLive = Task.implement(T, () => Effect.sleep("1 hour").pipe(Effect.ensuring(Effect.sync(() => finalized = true))))
      yield* startWorker({ tasks: [TLive], lease: "3 seconds" })
      const job = yield* client.submit(T, undefined)
      yield* advance(1)
      assert.strictEqual(yield* client.revoke(job.id), "running")
      yield* advance(2)
      assert.isTrue(finalized)
      assert.instanceOf(yield* Effect.flip(client.await(job)), TaskRevoked)
      const status = yield* client.status(job.id)
      assert.strictEqual(status.state, "REVOKED")
      assert.deepStrictEqual(status.history.map((h) => h.outcome), ["REVOKED"])
    }).pipe(Effect.provide(base)))
})

describe("bad input never crashes a worker and never vanishes", () => {
  const Good = Task.make("test.good", { payload: Schema.Struct({ n: Schema.Int }), success: Schema.Int })
  const GoodLive = Task.implement(Good, ({ n }) => Effect.succeed(n * 2))

  it.effect("submit with a payload that fails its Schema fails with PayloadInvalid and enqueues nothing", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const broker = yield* Broker.Broker
      const error = yield* Effect.flip(client.submit(Good, { n: 1.5 }))
      assert.strictEqual(error._tag, "PayloadInvalid")
      assert.include(error.message, "test.good")
      assert.deepStrictEqual((yield* broker.stats(["default"]))[0], { queue: "default", ready: 0, delayed: 0, running: 0, dead: 0 })
    }).pipe(Effect.provide(base)))

  it.effect("an invalid payload (older producer), an unknown task and a malformed message are dead-lettered with a clear message", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const broker = yield* Broker.Broker
      const store = yield* MemoryBroker.MemoryStore
      yield* startWorker({ tasks: [GoodLive], id: "w-1" })
      const base = { headers: {}, priority: 5, retries: 0, submittedAt: 0, queue: "default" }
      yield* broker.enqueue([
        { message: { ...base, id: "old-producer", task: "test.good", payload: { n: "one" } }, dueAt: 0 },
        { message: { ...base, id: "unknown", task: "test.nope", payload: {} }, dueAt: 0 }
      ])
      yield* store.pushRaw("default", "garbage", "}{ not json")
      const after = yield* client.submit(Good, { n: 21 })
      yield* advance(1)
      const invalid = yield* client.status("old-producer")
      assert.strictEqual(invalid.state, "FAILURE")
      assert.strictEqual(invalid.error?._tag, "PayloadInvalid")
      assert.include(invalid.error!.message, "test.good")
      assert.include(invalid.error!.message, "older producer")
      assert.deepStrictEqual(invalid.history.map((h) => h.outcome), ["DEAD"])
      const unknown = yield* client.status("unknown")
      assert.strictEqual(unknown.error?._tag, "UnknownTask")
      assert.include(unknown.error!.message, "test.nope")
      assert.include(unknown.error!.message, "test.good")
      const garbage = yield* client.status("garbage")
      assert.strictEqual(garbage.error?._tag, "MalformedMessage")
      assert.include(garbage.error!.message, "garbage")
      assert.strictEqual(yield* client.await(after), 42)
      assert.strictEqual((yield* broker.stats(["default"]))[0]!.dead, 3)
      // dead letters come back when asked (e.g. after deploying the missing task)
      assert.isTrue(yield* broker.redeliver("unknown"))
      yield* advance(1)
      // ...and, still unknown to this worker, it is dead-lettered again
      assert.deepStrictEqual((yield* client.status("unknown")).history.map((h) => h.outcome), ["DEAD", "DEAD"])
      assert.strictEqual(yield* store.pending, 0)
      assert.isTrue(Option.isNone(yield* store.nextDueAt))
    }).pipe(Effect.provide(base)))
})

describe("await gives back errand's own errors with their fields", () => {
  it.effect("WorkerLost from await names the lost worker", () =>
    Effect.gen(function*() {
      const AtMostOnce = Task.make("test.atMostOnce2", { payload: Schema.Void, acksLate: false })
      const AtMostOnceLive = Task.implement(AtMostOnce, () => Effect.sleep("60 seconds"))
      const client = yield* Client.Client
      const a = yield* startWorker({ tasks: [AtMostOnceLive], id: "w-gone", lease: "3 seconds" })
      const job = yield* client.submit(AtMostOnce, undefined)
      yield* advance(1)
      yield* a.worker.kill
      yield* startWorker({ tasks: [AtMostOnceLive], id: "w-b", lease: "3 seconds" })
      yield* advance(10)
      const error = yield* Effect.flip(client.await(job))
      assert.instanceOf(error, WorkerLost)
      if (error instanceof WorkerLost) {
        assert.strictEqual(error.worker, "w-gone")
        assert.strictEqual(error.taskId, job.id)
      }
    }).pipe(Effect.provide(base)))
})

describe("Worker.Hooks", () => {
  it.effect("beforeFinal sees each final outcome before it is recorded", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const T = Task.make("test.hooked", { payload: Schema.Struct({ ok: Schema.Boolean }), success: Schema.String })
      const TLive = Task.implement(T, ({ ok }) => ok ? Effect.succeed("yes") : Effect.die("no"))
      const client = yield* Client.Client
      const hooks = {
        beforeFinal: (message: { readonly id: string }, final: Worker.Final) =>
          Effect.gen(function*() {
            const status = yield* client.status(message.id).pipe(Effect.orDie)
            seen.push(`${final.state}:${"result" in final ? final.result : final.error._tag}:recorded=${status.state}`)
          })
      }
      yield* startWorker({ tasks: [TLive] }).pipe(Effect.provideService(Worker.Hooks, hooks))
      yield* client.submit(T, { ok: true })
      yield* advance(1)
      yield* client.submit(T, { ok: false })
      yield* advance(1)
      assert.deepStrictEqual(seen, ["SUCCESS:yes:recorded=STARTED", "FAILURE:TaskDefect:recorded=STARTED"])
    }).pipe(Effect.provide(base)))
})
