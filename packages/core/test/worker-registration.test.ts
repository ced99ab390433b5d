/**
 * Worker registration (what `errand inspect` shows) and cold shutdown (what a
 * second SIGTERM does), on the memory broker under TestClock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Broker, Client, Retry, Task, TaskContext } from "@errand/core"
import { Effect, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import { advance, base, settle, startWorker } from "./utils.ts"

const Slow = Task.make("test.reg.slow", {
  payload: Schema.Struct({ seconds: Schema.Number }),
  success: Schema.String,
  retry: Retry.linear({ step: "10 seconds", maxRetries: 5 })
})

const SlowLive = Task.implement(Slow, ({ seconds }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    if (ctx.retries === 0) yield* Effect.sleep(`${seconds} seconds`)
    return `attempt ${ctx.retries} by ${ctx.worker}`
  }))

const listed = (id: string) =>
  Effect.gen(function*() {
    const broker = yield* Broker.Broker
    const workers = yield* broker.workers!
    return workers.find((w) => w.id === id)
  })

describe("Worker registration", () => {
  it.effect("registers at start, heartbeats with its renewals, marks a clean stop; a killed worker is gone", () =>
    Effect.gen(function*() {
      const a = yield* startWorker({
        tasks: [SlowLive],
        id: "w-a",
        lease: "3 seconds",
        concurrency: 4,
        host: "box-1",
        pid: 77,
        queues: ["default", "other"]
      })
      const first = (yield* listed("w-a"))!
      assert.deepStrictEqual(
        { ...first },
        {
          id: "w-a",
          host: "box-1",
          pid: 77,
          queues: ["default", "other"],
          concurrency: 4,
          startedAt: 0,
          heartbeatAt: 0,
          aliveUntil: 3000,
          expiresAt: 3000 + 10 * 60_000,
          inFlight: 0
        }
      )
      const client = yield* Client.Client
      yield* client.submit(Slow, { seconds: 60 })
      yield* advance(2)
      const beat = (yield* listed("w-a"))!
      assert.strictEqual(beat.heartbeatAt, 2000)
      assert.strictEqual(beat.inFlight, 1)
      assert.strictEqual(Broker.workerStatus(beat, 2000), "alive")

      const b = yield* startWorker({ tasks: [SlowLive], id: "w-b", lease: "3 seconds" })
      yield* b.close
      const stopped = (yield* listed("w-b"))!
      assert.strictEqual(Broker.workerStatus(stopped, 2000), "stopped")

      yield* a.worker.kill
      yield* advance(5)
      const gone = (yield* listed("w-a"))!
      assert.strictEqual(gone.heartbeatAt, 2000)
      assert.strictEqual(Broker.workerStatus(gone, 7000), "gone")
      // forgotten ten minutes after its last heartbeat vouched for it
      yield* TestClock.adjust("10 minutes")
      assert.isUndefined(yield* listed("w-a"))
    }).pipe(Effect.provide(base)))

  it.effect("shutdownNow during a warm shutdown: no grace, running tasks rescheduled with WorkerShutdown", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const a = yield* startWorker({ tasks: [SlowLive], id: "w-a", shutdownGrace: "1 hour" })
      const job = yield* client.submit(Slow, { seconds: 600 })
      yield* advance(1)
      assert.strictEqual((yield* client.status(job.id)).state, "STARTED")
      const closing = yield* Effect.forkChild(a.close)
      yield* advance(5)
      assert.isUndefined(closing.pollUnsafe())
      yield* a.worker.shutdownNow
      yield* settle
      yield* Fiber.join(closing)
      const status = yield* client.status(job.id)
      assert.strictEqual(status.state, "RETRY")
      assert.deepStrictEqual(status.history.map((h) => [h.outcome, h.error?._tag]), [["RETRY", "WorkerShutdown"]])
      yield* startWorker({ tasks: [SlowLive], id: "w-b" })
      yield* advance(15)
      assert.strictEqual(yield* client.await(job), "attempt 1 by w-b")
    }).pipe(Effect.provide(base)))
})
