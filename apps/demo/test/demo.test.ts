import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, References } from "effect"
import { Client, MaxRetriesExceeded, MemoryBroker } from "@errand/core"
import { historyTable, summaryOf } from "../src/report.ts"
import * as Scenarios from "../src/scenarios.ts"

const { STEP_MS } = Scenarios

/** Runs a scenario on a fresh memory broker, collecting its live view instead of printing it. */
const run = (scenario: Scenarios.Scenario) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const result = yield* scenario.run.pipe(
      Effect.provide(Client.layer.pipe(Layer.provideMerge(MemoryBroker.layer))),
      Effect.provideService(Scenarios.View, { line: (text) => lines.push(text) }),
      Effect.provideService(References.MinimumLogLevel, "Error")
    )
    return { result, lines }
  })

const failedChecks = (result: Scenarios.ScenarioResult) =>
  result.checks.filter((c) => !c.ok).map((c) => `${c.label}: ${c.detail}`)

// Each scenario has its own broker, so they can run side by side on the real clock.
describe.concurrent("demo scenarios (real clock, 150 ms = 10 s of the reference)", () => {
  it.live("flaky: fails 3 times, then SUCCESS with retries 3 and countdowns 10, 20, 30 s", () =>
    Effect.gen(function*() {
      const { lines, result } = yield* run(Scenarios.flaky(3))
      assert.deepStrictEqual(failedChecks(result), [])
      assert.isTrue(Scenarios.passed(result))
      assert.isTrue(Exit.isSuccess(result.awaited))
      if (Exit.isSuccess(result.awaited)) assert.deepStrictEqual(result.awaited.value, { ok: true, retries: 3 })
      const { status } = result
      assert.strictEqual(status.state, "SUCCESS")
      assert.strictEqual(status.retries, 3)
      assert.deepStrictEqual(status.history.map((a) => a.outcome), ["RETRY", "RETRY", "RETRY", "SUCCESS"])
      assert.deepStrictEqual(status.history.map((a) => a.countdown), [STEP_MS, 2 * STEP_MS, 3 * STEP_MS, undefined])
      assert.deepStrictEqual(status.history.map((a) => a.attempt), [0, 1, 2, 3])
      assert.deepStrictEqual(result.runs.map((r) => r.end), ["failed", "failed", "failed", "returned"])
      // The live view showed every attempt as the history recorded it.
      assert.strictEqual(lines.filter((l) => l.includes("history ") && l.includes("RETRY after Flaky")).length, 3)
      assert.strictEqual(summaryOf(result), "flaky ok [RETRY x3 -> SUCCESS]")
    }))

  it.live("always fails: countdowns 10..50 s, then FAILURE with MaxRetriesExceeded keeping the last error", () =>
    Effect.gen(function*() {
      const { result } = yield* run(Scenarios.failing)
      assert.deepStrictEqual(failedChecks(result), [])
      assert.isTrue(Exit.isFailure(result.awaited))
      const error = Exit.isFailure(result.awaited) ? Cause.squash(result.awaited.cause) : undefined
      assert.instanceOf(error, MaxRetriesExceeded)
      if (error instanceof MaxRetriesExceeded) {
        assert.strictEqual(error.retries, 5)
        assert.deepStrictEqual({ _tag: error.lastError._tag, message: error.lastError.message }, { _tag: "Flaky", message: "do_something() failed on attempt 5" })
      }
      const { status } = result
      assert.strictEqual(status.state, "FAILURE")
      assert.strictEqual(status.error?._tag, "MaxRetriesExceeded")
      assert.deepStrictEqual(status.history.map((a) => a.countdown), [...[1, 2, 3, 4, 5].map((n) => n * STEP_MS), undefined])
      assert.deepStrictEqual(status.history.map((a) => a.outcome), ["RETRY", "RETRY", "RETRY", "RETRY", "RETRY", "FAILURE"])
      // Celery runs it at 0, 10, 30, 60, 100, 150 s: here no sooner than that, scaled.
      const starts = status.history.map((a) => a.startedAt - status.submittedAt)
      ;[0, 1, 3, 6, 10, 15].forEach((n, i) => assert.isAtLeast(starts[i]!, n * STEP_MS))
      // The table has a header, a rule and one row per attempt, the error last.
      const table = historyTable(status)
      assert.strictEqual(table.length, 2 + 6)
      assert.match(table[7]!, /^5\s+worker-1\s+.*FAILURE\s+-\s+Flaky: do_something\(\) failed on attempt 5$/)
    }))

  it.live("worker lost: kill -9 on worker-a, the lease runs out, worker-b records LOST and then succeeds", () =>
    Effect.gen(function*() {
      const { lines, result } = yield* run(Scenarios.lost)
      assert.deepStrictEqual(failedChecks(result), [])
      const { status } = result
      assert.strictEqual(status.state, "SUCCESS")
      assert.deepStrictEqual(status.history.map((a) => [a.worker, a.outcome, a.error?._tag, a.countdown]), [
        ["worker-a", "LOST", "WorkerLost", STEP_MS],
        ["worker-b", "SUCCESS", undefined, undefined]
      ])
      assert.deepStrictEqual(result.runs.map((r) => r.worker), ["worker-a", "worker-b"])
      if (Exit.isSuccess(result.awaited)) assert.deepStrictEqual(result.awaited.value, { worker: "worker-b" })
      else assert.fail(`await failed: ${Cause.pretty(result.awaited.cause)}`)
      // The lost attempt ended when its lease ran out, not because its 400 ms of work finished:
      // worker-a's handler never returned. (Its length is no test of that: the lease renewed
      // 100 ms after a start right at a heartbeat tick runs out exactly 400 ms after the start.)
      assert.notStrictEqual(result.runs[0]!.end, "returned")
      assert.isTrue(lines.some((l) => l.includes("kill -9 worker-a")))
    }))

  it.live("warm shutdown: grace 200 ms < task 600 ms; interrupted, WorkerShutdown in history, finished on worker-d", () =>
    Effect.gen(function*() {
      const { result } = yield* run(Scenarios.shutdown)
      assert.deepStrictEqual(failedChecks(result), [])
      const { status } = result
      assert.strictEqual(status.state, "SUCCESS")
      assert.strictEqual(status.retries, 1)
      assert.deepStrictEqual(status.history.map((a) => [a.worker, a.outcome, a.error?._tag, a.countdown]), [
        ["worker-c", "RETRY", "WorkerShutdown", STEP_MS],
        ["worker-d", "SUCCESS", undefined, undefined]
      ])
      assert.deepStrictEqual(result.runs.map((r) => [r.worker, r.end]), [["worker-c", "interrupted"], ["worker-d", "returned"]])
      // The first attempt lasted about the grace period, not the task's 600 ms.
      const first = status.history[0]!
      assert.isAtLeast(first.endedAt - first.startedAt, 200)
      assert.isBelow(first.endedAt - first.startedAt, 600)
    }))

  it.live("the smoke test can fail: a seed that fails 6 times exceeds max_retries=5 and its checks say so", () =>
    Effect.gen(function*() {
      const { result } = yield* run(Scenarios.flaky(6))
      assert.isFalse(Scenarios.passed(result))
      assert.strictEqual(result.status.state, "FAILURE")
      const failed = result.checks.filter((c) => !c.ok).map((c) => c.label)
      assert.includeMembers(failed, ["client.await returns the result", "state is SUCCESS"])
      assert.match(summaryOf(result), /^flaky FAILED /)
    }))
})
