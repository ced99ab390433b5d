import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { Client, Task, TaskContext } from "@errand/core"
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
})
