/**
 * The runner's fast path (a claim-started, late-acknowledged task without time
 * limits): the handler runs in a fiber of its own, started by the runner, with
 * the runner's context and its TaskContext; interrupting the worker (kill,
 * cold shutdown) interrupts it. A handler that returns its outcome as it is
 * (an `Exit`: `Effect.succeed`, `Effect.fail`, `Effect.die`) needs no fiber,
 * and ends as one that runs would.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Ref, Schema } from "effect"
import { Client, Retry, Task, TaskContext } from "@errand/core"
import { advance, base, startWorker } from "./utils.ts"

class Greeter extends Context.Service<Greeter, { readonly greet: (name: string) => string }>()("test/Greeter") {}

const Hello = Task.make("test.fast.hello", {
  payload: Schema.Struct({ name: Schema.String }),
  success: Schema.String
})

const Block = Task.make("test.fast.block", {
  payload: Schema.Void,
  success: Schema.String,
  retry: Retry.linear({ step: "1 second", maxRetries: 3 })
})

class Busy extends Schema.TaggedError<Busy>()("Busy", { attempt: Schema.Number }) {}

const Plain = Task.make("test.fast.plain", {
  payload: Schema.Struct({ n: Schema.Number }),
  success: Schema.Number,
  failure: Busy,
  retry: Retry.fixed({ delay: "1 second", maxRetries: 2 })
})

describe("Worker fast path", () => {
  it.effect("a handler that returns an Exit ends as a running one would: result, retried failure, defect", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const calls = new Map<number, number>()
      // n = 0: succeeds; n = 1: fails once, then succeeds; n = 2: dies every time
      const PlainLive = Task.implement(Plain, ({ n }) => {
        const attempt = calls.get(n) ?? 0
        calls.set(n, attempt + 1)
        if (n === 1 && attempt === 0) return Effect.fail(new Busy({ attempt }))
        if (n === 2) return Effect.die(new Error(`broken ${attempt}`))
        return Effect.succeed(n * 10 + attempt)
      })
      yield* startWorker({ tasks: [PlainLive] })
      const jobs = yield* Effect.forEach([0, 1, 2], (n) => client.submit(Plain, { n }))
      yield* advance(5)
      assert.strictEqual(yield* client.await(jobs[0]!), 0)
      assert.strictEqual(yield* client.await(jobs[1]!), 11)
      const retried = yield* client.status(jobs[1]!.id)
      assert.deepStrictEqual(retried.history.map((h) => [h.outcome, h.error?._tag]), [["RETRY", "Busy"], [
        "SUCCESS",
        undefined
      ]])
      const died = yield* client.status(jobs[2]!.id)
      assert.deepStrictEqual(died.history.map((h) => h.error?._tag), ["TaskDefect", "TaskDefect", "TaskDefect"])
      assert.include(died.history[0]!.error!.message, "broken 0")
      assert.strictEqual(died.error?._tag, "MaxRetriesExceeded")
    }).pipe(Effect.provide(base)))


  it.effect("the handler sees its TaskContext and the services the worker was given", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const seen: Array<unknown> = []
      const HelloLive = Task.implement(Hello, ({ name }) =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          const greeter = yield* Greeter
          seen.push({ id: ctx.id, task: ctx.task, queue: ctx.queue, retries: ctx.retries, worker: ctx.worker })
          return greeter.greet(name)
        }))
      yield* startWorker({ tasks: [HelloLive], id: "w-fast" }).pipe(
        Effect.provideService(Greeter, { greet: (name) => `hello ${name}` })
      )
      const jobs = yield* Effect.forEach(["a", "b", "c"], (name) => client.submit(Hello, { name }))
      yield* advance(1)
      for (const job of jobs) {
        const status = yield* client.status(job.id)
        assert.strictEqual(status.state, "SUCCESS")
        assert.deepStrictEqual(status.history.map((h) => h.outcome), ["SUCCESS"])
      }
      assert.deepStrictEqual(yield* Effect.forEach(jobs, (job) => client.await(job)), ["hello a", "hello b", "hello c"])
      assert.deepStrictEqual(
        seen,
        jobs.map((job) => ({ id: job.id, task: "test.fast.hello", queue: "default", retries: 0, worker: "w-fast" }))
      )
    }).pipe(Effect.provide(base)))

  it.effect("a kill interrupts a handler that waits (its finalizer runs); the task comes back when the lease runs out", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const started = yield* Deferred.make<void>()
      const cleaned = yield* Ref.make(0)
      const BlockLive = Task.implement(Block, () =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          if (ctx.retries > 0) return `attempt ${ctx.retries} on ${ctx.worker}`
          yield* Deferred.succeed(started, undefined)
          return yield* Effect.never.pipe(Effect.ensuring(Ref.update(cleaned, (n) => n + 1)))
        }))
      const a = yield* startWorker({ tasks: [BlockLive], id: "w-a", lease: "3 seconds" })
      const job = yield* client.submit(Block, undefined)
      yield* advance(1)
      yield* Deferred.await(started)
      yield* a.worker.kill
      yield* advance(1)
      assert.strictEqual(yield* Ref.get(cleaned), 1)
      yield* startWorker({ tasks: [BlockLive], id: "w-b", lease: "3 seconds" })
      yield* advance(20)
      assert.strictEqual(yield* client.await(job), "attempt 1 on w-b")
    }).pipe(Effect.provide(base)))

  it.effect("a cold shutdown interrupts a waiting handler at once and reschedules its task as WorkerShutdown", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const cleaned = yield* Ref.make(0)
      const BlockLive = Task.implement(Block, () =>
        Effect.never.pipe(Effect.ensuring(Ref.update(cleaned, (n) => n + 1)), Effect.as("never")))
      const a = yield* startWorker({ tasks: [BlockLive], id: "w-a", shutdownGrace: "1 hour" })
      const job = yield* client.submit(Block, undefined)
      yield* advance(1)
      assert.strictEqual((yield* client.status(job.id)).state, "STARTED")
      yield* a.worker.shutdownNow
      const closing = yield* Effect.forkChild(a.close)
      yield* advance(1)
      yield* Fiber.join(closing)
      assert.strictEqual(yield* Ref.get(cleaned), 1)
      const status = yield* client.status(job.id)
      assert.strictEqual(status.state, "RETRY")
      assert.strictEqual(status.history[0]!.error?._tag, "WorkerShutdown")
    }).pipe(Effect.provide(base)))
})
