/**
 * `ErrandTest` runs canvases too: add `Canvas.CoordinatorLive` to its tasks
 * (the coordinators then run on its workers, faults and all).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Canvas, Client, Retry, Task } from "@errand/core"
import * as ErrandTest from "@errand/core/testing/ErrandTest"
import * as FaultPlan from "@errand/core/testing/FaultPlan"

/** A lost attempt is retried by the task's policy (without one, WorkerLost ends it FAILURE, as in Celery). */
const Double = Task.make("tc.double", {
  payload: Schema.Int,
  success: Schema.Int,
  retry: Retry.fixed({ delay: "10 seconds", maxRetries: 2 })
})
const Sum = Task.make("tc.sum", { payload: Schema.Array(Schema.Int), success: Schema.Int })
const Show = Task.make("tc.show", { payload: Schema.Int, success: Schema.String })
let doubles = 0
const tasks = [
  Task.implement(Double, (n) => Effect.as(Effect.andThen(Effect.sync(() => doubles++), Effect.sleep("1 minute")), n * 2)),
  Task.implement(Sum, (ns) => Effect.succeed(ns.reduce((a, b) => a + b, 0))),
  Task.implement(Show, (n) => Effect.succeed(`n=${n}`)),
  Canvas.CoordinatorLive
] as const

describe("ErrandTest with canvases", () => {
  it.effect("a chain runs to the end under drain, its minute-long step at once", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submitCanvas(Canvas.chain(Double, Show), { input: 21 })
      const report = yield* ErrandTest.drain()
      assert.strictEqual(yield* client.awaitCanvas(job), "n=42")
      // test time: the minute passed, no real one
      assert.isAtLeast(report.now, 60_000)
    }).pipe(ErrandTest.provide({ tasks })))

  it.effect("a chord whose worker dies before acking a member still completes: the members it held run again", () =>
    Effect.gen(function*() {
      doubles = 0
      const client = yield* Client.Client
      const job = yield* client.submitCanvas(
        Canvas.chain(Canvas.chord([Canvas.task(Double, 1), Canvas.task(Double, 2), Canvas.task(Double, 3)], Sum), Show)
      )
      yield* ErrandTest.drain()
      assert.strictEqual(yield* client.awaitCanvas(job), "n=12")
      // the worker ran the three members, and the coordinator waiting on
      // them, when it died (kill -9): each came back once and ended
      assert.strictEqual(doubles, 6)
      const lost = (yield* ErrandTest.tasks).filter((r) => r.history.some((a) => a.outcome === "LOST"))
      assert.deepStrictEqual(lost.map((r) => [r.task, r.state, r.retries]), [
        ["errand.canvas", "SUCCESS", 1],
        ["tc.double", "SUCCESS", 1],
        ["tc.double", "SUCCESS", 1],
        ["tc.double", "SUCCESS", 1]
      ])
    }).pipe(ErrandTest.provide({ tasks, faults: FaultPlan.make(FaultPlan.crash({ task: 1, at: "beforeAck" })) })))
})
