import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { TestClock } from "effect/testing"
import { Broker, Client, MemoryBroker, Task, Worker } from "@errand/core"
import type { Message } from "../src/Message.ts"
import { base } from "./utils.ts"

const Add = Task.make("client.add", {
  payload: Schema.Struct({ a: Schema.Number, at: Schema.Date }),
  queue: "client"
})

const claimAll = Effect.gen(function*() {
  const broker = yield* Broker.Broker
  const out = yield* broker.claim({ queues: ["client"], worker: "w", max: 100, leaseMillis: 10_000, waitMillis: 0 })
  return out.map((d) => d.message as Message)
})

describe("Client submit path", () => {
  it.effect("submit encodes the payload with the task's Schema; no trace headers when nothing traces it", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Add, { a: 1, at: new Date(0) }, { headers: { k: "v" }, priority: 7 })
      const [m] = yield* claimAll
      assert.strictEqual(m!.id, job.id)
      assert.deepStrictEqual(m!.payload, { a: 1, at: "1970-01-01T00:00:00.000Z" })
      assert.deepStrictEqual(m!.headers, { k: "v" })
      assert.strictEqual(m!.priority, 7)
      assert.isUndefined(m!.eta)
      assert.isUndefined(m!.storeResult)
    }).pipe(Effect.provide(base)))

  it.effect("a traced caller's submit carries its trace in the headers", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const traceId = yield* Effect.gen(function*() {
        yield* client.submit(Add, { a: 1, at: new Date(0) })
        return (yield* Effect.orDie(Effect.currentSpan)).traceId
      }).pipe(Effect.withSpan("caller"))
      const [m] = yield* claimAll
      assert.strictEqual(m!.headers["x-trace-id"], traceId)
      assert.isString(m!.headers["x-span-id"])
    }).pipe(Effect.provide(base)))

  it.effect("submitMany: one message per payload, in order, sharing the options", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const broker = yield* Broker.Broker
      const jobs = yield* client.submitMany(Add, [0, 1, 2].map((a) => ({ a, at: new Date(a) })), {
        countdown: "5 seconds",
        storeResult: false
      })
      assert.strictEqual(new Set(jobs.map((j) => j.id)).size, 3)
      assert.deepStrictEqual(yield* broker.stats(["client"]), [{ queue: "client", ready: 0, delayed: 3, running: 0, dead: 0 }])
      yield* TestClock.adjust("5 seconds")
      const messages = yield* claimAll
      assert.deepStrictEqual(messages.map((m) => m.id), jobs.map((j) => j.id))
      assert.deepStrictEqual(messages.map((m) => (m.payload as { a: number }).a), [0, 1, 2])
      for (const m of messages) {
        assert.strictEqual(m.eta, 5000)
        assert.strictEqual(m.storeResult, false)
      }
    }).pipe(Effect.provide(base)))

  it.effect("submitMany with one invalid payload fails with PayloadInvalid and enqueues nothing", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const broker = yield* Broker.Broker
      const error = yield* Effect.flip(
        client.submitMany(Add, [{ a: 1, at: new Date(0) }, { a: "x", at: new Date(0) } as never])
      )
      assert.strictEqual(error._tag, "PayloadInvalid")
      assert.deepStrictEqual(yield* broker.stats(["client"]), [{ queue: "client", ready: 0, delayed: 0, running: 0, dead: 0 }])
    }).pipe(Effect.provide(base)))
})

describe("Client marks the ids it makes as fresh", () => {
  it.effect("generated ids are fresh; ids the caller gives are not (a broker must look them up)", () =>
    Effect.gen(function*() {
      const seen: Array<Broker.Submission> = []
      const broker = yield* Broker.Broker
      const recording = Broker.Broker.of({
        ...broker,
        enqueue: (batch) => Effect.suspend(() => (seen.push(...batch), broker.enqueue(batch)))
      })
      const client = yield* Client.make.pipe(Effect.provideService(Broker.Broker, recording))
      yield* client.submit(Add, { a: 1, at: new Date(0) })
      yield* client.submit(Add, { a: 2, at: new Date(0) }, { id: "mine" })
      yield* client.submitMany(Add, [{ a: 3, at: new Date(0) }, { a: 4, at: new Date(0) }])
      assert.deepStrictEqual(seen.map((s) => s.fresh), [true, false, true, true])
      assert.strictEqual(seen[1]!.message.id, "mine")
    }).pipe(Effect.scoped, Effect.provide(MemoryBroker.layer)))
})

describe("submitMany hands the broker chunks of its size and yields between them", () => {
  const Tick = Task.make("client.tick", { payload: Schema.Struct({ n: Schema.Number }), queue: "client" })
  const payloads = (count: number) => Array.from({ length: count }, (_, n) => ({ n }))

  it.effect("chunks of the broker's enqueueChunk (5,000 when it says none), in order", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      const chunks = (enqueueChunk: number | undefined) =>
        Effect.gen(function*() {
          const sizes: Array<number> = []
          const ids: Array<string> = []
          const recording = Broker.Broker.of({
            ...broker,
            enqueueChunk,
            enqueue: (batch) =>
              Effect.suspend(() => {
                sizes.push(batch.length)
                for (const s of batch) ids.push(s.message.id)
                return broker.enqueue(batch)
              })
          })
          const client = yield* Client.make.pipe(Effect.provideService(Broker.Broker, recording))
          const jobs = yield* client.submitMany(Tick, payloads(12_001))
          assert.deepStrictEqual(ids, jobs.map((j) => j.id))
          return sizes
        }).pipe(Effect.scoped)
      assert.deepStrictEqual(yield* chunks(undefined), [5000, 5000, 2001])
      assert.deepStrictEqual(yield* chunks(4000), [4000, 4000, 4000, 1])
      // a size that is not a positive whole number is ignored
      for (const bad of [0, -1, 2.5, Number.NaN]) assert.deepStrictEqual(yield* chunks(bad), [5000, 5000, 2001])
      assert.strictEqual(broker.enqueueChunk, 1000)
    }).pipe(Effect.provide(MemoryBroker.layer)))

  it.effect("on the memory broker a worker in the same process runs the first tasks before the submit returns", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      let returned = false
      let ranBefore = 0
      let ran = 0
      yield* Worker.make({
        tasks: [Task.implement(Tick, () =>
          Effect.sync(() => {
            ran++
            if (!returned) ranBefore++
          }))],
        concurrency: 10
      })
      yield* client.submitMany(Tick, payloads(10_000))
      returned = true
      // chunks of 1,000 with a yield after each: most ran while the rest were
      // made (9,040 here; 40 when all 10,000 went in two chunks and no yield)
      assert.isAtLeast(ranBefore, 5000)
      while (ran < 10_000) yield* Effect.yieldNow
      assert.strictEqual(ran, 10_000)
    }).pipe(Effect.scoped, Effect.provide(Client.layer.pipe(Layer.provideMerge(MemoryBroker.layer)))))
})
