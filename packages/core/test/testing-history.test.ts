import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import type { Message } from "@errand/core"
import * as History from "@errand/core/testing/History"

const attempt = (overrides: Partial<Message.Attempt>): Message.Attempt => ({
  attempt: 0,
  worker: "w-1",
  startedAt: 0,
  endedAt: 0,
  outcome: "SUCCESS",
  ...overrides
})

const record: Message.TaskRecord = {
  id: "billing.charge-0",
  task: "billing.charge",
  queue: "default",
  state: "SUCCESS",
  retries: 2,
  submittedAt: 0,
  updatedAt: 30_000,
  history: [
    attempt({ outcome: "RETRY", countdown: 10_000, error: { _tag: "GatewayUnavailable", message: "gateway unavailable (call 1)" } }),
    attempt({ attempt: 1, outcome: "RETRY", startedAt: 10_000, endedAt: 10_200, countdown: 20_000, error: { _tag: "GatewayUnavailable", message: "gateway unavailable (call 2)" } }),
    attempt({ attempt: 2, outcome: "SUCCESS", startedAt: 30_200, endedAt: 30_400, worker: "w-2" })
  ]
}

/** The HistoryMismatch an expectation dies with. */
const mismatch = (expected: ReadonlyArray<History.Expected>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(History.expect(record, expected))
    assert.isTrue(Exit.isFailure(exit))
    if (Exit.isSuccess(exit)) return undefined as never
    const defect = Cause.squash(exit.cause)
    assert.instanceOf(defect, History.HistoryMismatch)
    return defect as History.HistoryMismatch
  })

describe("History.expect", () => {
  it.effect("matches on the fields given: outcomes, countdowns, errors, workers, times", () =>
    Effect.gen(function*() {
      yield* History.expect(record, ["RETRY", "RETRY", "SUCCESS"])
      yield* History.expect(record, [
        { outcome: "RETRY", countdown: "10 seconds", error: "GatewayUnavailable", startedAt: 0 },
        { attempt: 1, countdown: "20 seconds", error: { message: "call 2" }, took: "200 millis" },
        { outcome: "SUCCESS", worker: "w-2", countdown: null, error: null, startedAt: "30.2 seconds", endedAt: 30_400 }
      ])
      yield* History.expect(record, [{ error: { _tag: "GatewayUnavailable", message: /call \d/ } }, {}, {}])
    }))

  it.effect("a mismatch names the task, marks each attempt ✓ or ✗ and says which fields differ", () =>
    Effect.gen(function*() {
      const error = yield* mismatch([
        { outcome: "RETRY", countdown: "10 seconds" },
        { outcome: "RETRY", countdown: "30 seconds", worker: "w-1" },
        { outcome: "SUCCESS", worker: "w-1" }
      ])
      assert.strictEqual(
        error.message,
        [
          "The history of task billing.charge-0 (billing.charge, SUCCESS) does not match (3 attempts):",
          "  ✓ #0 RETRY, countdown 10s",
          "  ✗ #1 expected RETRY, on w-1, countdown 30s",
          "        got      #1 RETRY error GatewayUnavailable: gateway unavailable (call 2), countdown 20s, on w-1, at 10s (took 200ms)",
          "        differs: countdown 30s ≠ countdown 20s",
          "  ✗ #2 expected SUCCESS, on w-1",
          "        got      #2 SUCCESS on w-2, at 30s 200ms (took 200ms)",
          "        differs: on w-1 ≠ on w-2"
        ].join("\n")
      )
      // for the runner's diff: the actual attempts reduced to the expected fields
      assert.strictEqual(error.expected, "RETRY, countdown 10s\nRETRY, on w-1, countdown 30s\nSUCCESS, on w-1")
      assert.strictEqual(error.actual, "RETRY, countdown 10s\nRETRY, on w-1, countdown 20s\nSUCCESS, on w-2")
    }))

  it.effect("missing and extra attempts are reported", () =>
    Effect.gen(function*() {
      const short = yield* mismatch(["RETRY", "SUCCESS"])
      assert.include(short.message, "expected 2 attempts, got 3")
      assert.include(short.message, "✗ #1 expected SUCCESS")
      assert.include(short.message, "✗ #2 expected nothing, got:  #2 SUCCESS on w-2")
      const long = yield* mismatch(["RETRY", "RETRY", "SUCCESS", "SUCCESS"])
      assert.include(long.message, "✗ #3 expected SUCCESS\n        got nothing (the history has 3 attempts)")
    }))

  it.effect("error matchers: a tag, a message substring or RegExp, or null for none", () =>
    Effect.gen(function*() {
      const error = yield* mismatch([{ error: "Timeout" }, { error: { message: /call 9/ } }, { error: "X" }])
      assert.include(error.message, "differs: error Timeout ≠ error GatewayUnavailable")
      assert.include(error.message, 'differs: error * ~ /call 9/ ≠ error GatewayUnavailable ~ "gateway unavailable (call 2)"')
      assert.include(error.message, "differs: error X ≠ no error")
    }))

  it("diff and summarize work on plain histories", () => {
    assert.isUndefined(History.diff(record.history, ["RETRY", "RETRY", "SUCCESS"]))
    assert.deepStrictEqual(History.summarize(record), [
      "#0 RETRY error GatewayUnavailable: gateway unavailable (call 1), countdown 10s, on w-1, at 0 (took 0)",
      "#1 RETRY error GatewayUnavailable: gateway unavailable (call 2), countdown 20s, on w-1, at 10s (took 200ms)",
      "#2 SUCCESS on w-2, at 30s 200ms (took 200ms)"
    ])
    assert.include(History.diff(record.history, ["SUCCESS"])!.message, "The history does not match (expected 1 attempt, got 3)")
  })
})
