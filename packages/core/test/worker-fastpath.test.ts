/**
 * The runner's fast path (a claim-started, late-acknowledged task without time
 * limits): the handler runs in a fiber of its own, started by the runner, with
 * the runner's context and its TaskContext; interrupting the worker (kill,
 * cold shutdown) interrupts it.
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

describe("Worker fast path", () => {
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
