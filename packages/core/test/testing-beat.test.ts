/**
 * `ErrandTest` with a beat: `advance` brings its scheduled runs, `drain`
 * runs what they left pending (retries included) and returns; the beat
 * leader's lease, held for as long as the beat runs, is not work.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule, Schema } from "effect"
import { Beat, Client, Retry, Task, TaskContext } from "@errand/core"
import * as ErrandTest from "@errand/core/testing/ErrandTest"

class Busy extends Schema.TaggedError<Busy>()("Busy", { message: Schema.String }) {}

const Report = Task.make("tb.report", {
  payload: Schema.Struct({ at: Schema.String }),
  success: Schema.String,
  failure: Busy,
  retry: Retry.fixed({ delay: "10 seconds", maxRetries: 3 })
})
const runs: Array<{ readonly at: string; readonly retries: number }> = []
/** Fails the first attempt of the 03:00 run. */
const ReportLive = Task.implement(Report, ({ at }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    runs.push({ at, retries: ctx.retries })
    if (at.endsWith("T03:00:00.000Z") && ctx.retries === 0) return yield* new Busy({ message: "the ledger is locked" })
    return at
  }))

const hourly = Beat.entry({
  id: "hourly",
  task: Report,
  payload: (at) => ({ at: at.toISOString() }),
  schedule: Schedule.spaced("1 hour")
})

describe("ErrandTest with a beat", () => {
  it.effect("advance brings a day of hourly runs; drain finishes the retry one left and returns", () =>
    Effect.gen(function*() {
      runs.length = 0
      const client = yield* Client.Client
      yield* Beat.make({ entries: [hourly] })
      yield* ErrandTest.advance("1 day")
      // 24 runs, the one of 03:00 failed once and waits for its retry
      const first = runs.filter((r) => r.retries === 0)
      assert.strictEqual(first.length, 24)
      assert.strictEqual(first[0]!.at, "1970-01-01T01:00:00.000Z")
      const report = yield* ErrandTest.drain()
      assert.isAtMost(report.steps, 2)
      assert.deepStrictEqual(runs.filter((r) => r.retries > 0).map((r) => r.at), ["1970-01-01T03:00:00.000Z"])
      const id = Beat.runId("default", "hourly", Date.parse("1970-01-01T03:00:00.000Z"))
      yield* ErrandTest.expectHistory(id, [
        { outcome: "RETRY", error: { _tag: "Busy" }, countdown: "10 seconds" },
        { outcome: "SUCCESS" }
      ])
      assert.strictEqual((yield* client.status(id)).state, "SUCCESS")
    }).pipe(Effect.scoped, ErrandTest.provide({ tasks: [ReportLive] })))

  it.effect("drain with only the beat's leader held returns at once", () =>
    Effect.gen(function*() {
      yield* Beat.make({ entries: [hourly] })
      yield* ErrandTest.settle
      const report = yield* ErrandTest.drain()
      assert.strictEqual(report.steps, 0)
    }).pipe(Effect.scoped, ErrandTest.provide({ tasks: [ReportLive] })))
})
