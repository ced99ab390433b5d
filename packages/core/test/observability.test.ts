import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Schema, Tracer } from "effect"
import { Broker, Client, Task, TaskContext } from "@errand/core"
import { withSpanIfTraced } from "../src/internal/tracing.ts"
import { advance, base, startWorker } from "./utils.ts"

describe("observability", () => {
  it.effect("the run of a task is a span whose parent is the producer's submit span, in the same trace", () =>
    Effect.gen(function*() {
      const seen: Array<{ traceId: string; name: string; parentSpanId: string | undefined; headers: Record<string, string> }> = []
      const Traced = Task.make("obs.traced", { payload: Schema.Void })
      const TracedLive = Task.implement(Traced, () =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          const span = yield* Effect.orDie(Effect.currentSpan)
          seen.push({
            traceId: span.traceId,
            name: span.name,
            parentSpanId: Option.getOrUndefined(Option.map(span.parent, (p) => p.spanId)),
            headers: { ...ctx.headers }
          })
        }))
      const client = yield* Client.Client
      yield* startWorker({ tasks: [TracedLive] })
      const producerTrace = yield* Effect.gen(function*() {
        yield* client.submit(Traced, undefined)
        return (yield* Effect.orDie(Effect.currentSpan)).traceId
      }).pipe(Effect.withSpan("checkout"))
      yield* advance(1)
      assert.strictEqual(seen.length, 1)
      const run = seen[0]!
      assert.strictEqual(run.name, "errand.run obs.traced")
      assert.strictEqual(run.traceId, producerTrace)
      assert.strictEqual(run.parentSpanId, run.headers["x-span-id"])
      assert.strictEqual(run.headers["x-trace-id"], producerTrace)
    }).pipe(Effect.provide(base)))

  it.effect("submitMany joins its caller's trace, and adds no trace headers to an untraced caller's messages", () =>
    Effect.gen(function*() {
      const Many = Task.make("obs.many", { payload: Schema.Number })
      const client = yield* Client.Client
      const untraced = yield* client.submitMany(Many, [1, 2])
      const traced = yield* client.submitMany(Many, [3]).pipe(Effect.withSpan("import"))
      const all = yield* Effect.flatMap(Effect.service(Broker.Broker), (broker) =>
        broker.claim({ queues: [Many.queue], worker: "w", max: 10, leaseMillis: 1000, waitMillis: 0 }))
      const byId = new Map(all.map((d) => [d.id, d.message as { readonly headers: Record<string, string> }]))
      assert.isUndefined(byId.get(untraced[0]!.id)!.headers["x-trace-id"])
      assert.isUndefined(byId.get(untraced[1]!.id)!.headers["x-trace-id"])
      const header = byId.get(traced[0]!.id)!.headers["x-trace-id"]
      assert.isString(header)
    }).pipe(Effect.provide(base)))
})

describe("withSpanIfTraced (the broker calls' spans)", () => {
  const spanName = Effect.map(Effect.option(Effect.currentSpan), Option.map((s) => s.name))

  it.effect("no span for an untraced caller: nothing could read it", () =>
    Effect.gen(function*() {
      assert.isTrue(Option.isNone(yield* spanName.pipe(withSpanIfTraced("RedisBroker.enqueue", {}))))
    }))

  it.effect("a span inside a traced caller's, with the attributes given", () =>
    Effect.gen(function*() {
      const [name, parent, size] = yield* Effect.gen(function*() {
        const span = yield* Effect.orDie(Effect.currentSpan)
        return [span.name, Option.getOrUndefined(Option.map(span.parent, (p) => (p as { name?: string }).name)), span.attributes.get("size")]
      }).pipe(withSpanIfTraced("RedisBroker.enqueue", { attributes: { size: 3 } }), Effect.withSpan("submit"))
      assert.strictEqual(name, "RedisBroker.enqueue")
      assert.strictEqual(parent, "submit")
      assert.strictEqual(size, 3)
    }))

  it.effect("a span for an untraced caller when a tracer is installed", () =>
    Effect.gen(function*() {
      const ended: Array<string> = []
      const tracer = Tracer.make({
        span: (options) => {
          const span = new Tracer.NativeSpan(options)
          const end = span.end.bind(span)
          span.end = (at, exit) => {
            ended.push(span.name)
            end(at, exit)
          }
          return span
        }
      })
      const name = yield* spanName.pipe(withSpanIfTraced("RedisBroker.claim", {}), Effect.withTracer(tracer))
      assert.deepStrictEqual(Option.getOrUndefined(name), "RedisBroker.claim")
      assert.deepStrictEqual(ended, ["RedisBroker.claim"])
    }))
})
