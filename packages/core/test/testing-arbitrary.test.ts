import { assert, describe, it } from "@effect/vitest"
import { Arbitrary, Duration, Effect, Schema } from "effect"
import { Client, Retry, Task } from "@errand/core"
import * as ErrandTest from "@errand/core/testing/ErrandTest"
import * as Failures from "@errand/core/testing/Failures"
import * as FaultPlan from "@errand/core/testing/FaultPlan"
import { Flaky } from "./testing-fixtures.ts"

describe("FaultPlan.arbitrary", () => {
  it.effect("stays within its bounds", () =>
    Effect.gen(function*() {
      const options: FaultPlan.ArbitraryOptions = { tasks: 3, attempts: 2, maxFaults: 4, horizon: "10 seconds", maxWindow: "5 seconds", maxDelay: "2 seconds", workers: 2 }
      const plans = yield* Arbitrary.sampleEffect(FaultPlan.arbitrary(options), { count: 300, seed: 1, size: 50 })
      const seen = new Set<string>()
      for (const { faults } of plans) {
        assert.isAtMost(faults.length, 4)
        for (const f of faults) {
          seen.add(f._tag)
          assert.isTrue(Schema.is(FaultPlan.Fault)(f), JSON.stringify(f))
          if ("task" in f) assert.isBelow(f.task, 3)
          if ("attempt" in f) assert.isBelow(f.attempt, 2)
          if (f._tag === "Shutdown") {
            assert.isAtMost(f.atMillis, 10_000)
            assert.isBelow(f.worker ?? 0, 2)
          }
          if (f._tag === "BrokerOutage" || f._tag === "SlowBroker") {
            assert.isAtMost(f.fromMillis, 10_000)
            assert.isAtLeast(f.forMillis, 1_000)
            assert.isAtMost(f.forMillis, 5_000)
            assert.strictEqual(f.fromMillis % 1000, 0)
          }
          if (f._tag === "SlowBroker") assert.isAtMost(f.delayMillis, 2_000)
          if (f._tag === "Crash" && f.at !== "inHandler") assert.isUndefined(f.afterMillis)
        }
      }
      assert.deepStrictEqual([...seen].sort(), [...FaultPlan.kinds].sort())
      const crashes = yield* Arbitrary.sampleEffect(FaultPlan.arbitrary({ tasks: 1, kinds: ["Crash"] }), { count: 50, seed: 2 })
      assert.isTrue(crashes.every((p) => p.faults.every((f) => f._tag === "Crash")))
    }))

  it.effect("shrinks a failure to the one fault that causes it", () =>
    Effect.gen(function*() {
      const result = yield* Arbitrary.checkEffect(
        FaultPlan.arbitrary({ tasks: 5, attempts: 3, maxFaults: 6 }),
        // "broken" whenever any plan duplicates task 3
        (plan) => !plan.faults.some((f) => f._tag === "Duplicate" && f.task === 3),
        { runs: 500, seed: 4 }
      )
      assert.strictEqual(result._tag, "Falsified")
      if (result._tag === "Falsified") {
        assert.deepStrictEqual(result.shrunkInput, { faults: [{ _tag: "Duplicate", task: 3, attempt: 0 }] })
        assert.strictEqual(FaultPlan.format(result.shrunkInput), "1. deliver task 3 (attempt 0) twice, to two workers at once")
      }
    }))

  it.effect("sample: the same seed gives the same plan", () =>
    Effect.gen(function*() {
      const a = yield* FaultPlan.sample({ tasks: 4, seed: 99, size: 30 })
      const b = yield* FaultPlan.sample({ tasks: 4, seed: 99, size: 30 })
      assert.deepStrictEqual(a, b)
      assert.isAbove(a.faults.length, 0)
    }))
})

describe("FaultPlan values", () => {
  it("constructors, sentences, and a JSON round trip", () => {
    const plan = FaultPlan.make(
      FaultPlan.crash({ task: 0, at: "beforeAck" }),
      FaultPlan.crash({ task: 1, attempt: 2, at: "inHandler", after: "1.5 seconds" }),
      FaultPlan.crash({ task: 2 }),
      FaultPlan.shutdown({ at: "5 seconds", worker: 1 }),
      FaultPlan.outage({ from: "1 second", for: "30 seconds", ops: ["renew", "complete"] }),
      FaultPlan.slowBroker({ from: 0, for: "1 minute", delay: "3 seconds" }),
      FaultPlan.duplicate({ task: 3 }),
      FaultPlan.fail({ task: 4, at: "before" })
    )
    assert.strictEqual(
      FaultPlan.format(plan),
      [
        "1. crash the worker running task 0 (attempt 0) after its handler, before the ack",
        "2. crash the worker running task 1 (attempt 2) inside its handler (1s 500ms in)",
        "3. crash the worker running task 2 (attempt 0) at a point picked by the seed",
        "4. warm shutdown of worker #1 at 5s",
        "5. broker down (calls fail with BrokerError) from 1s for 30s (renew, complete only)",
        "6. broker slow (+3s per call) from 0 for 1m",
        "7. deliver task 3 (attempt 0) twice, to two workers at once",
        "8. task 4 (attempt 0) dies with a defect before its handler runs"
      ].join("\n")
    )
    assert.strictEqual(FaultPlan.format(FaultPlan.empty), "no faults")
    const json = Schema.encodeSync(Schema.fromJsonString(FaultPlan.FaultPlan))(plan)
    assert.deepStrictEqual(Schema.decodeUnknownSync(Schema.fromJsonString(FaultPlan.FaultPlan))(json), plan)
  })
})

describe("Failures", () => {
  it.effect("arbitrary stays within its bounds", () =>
    Effect.gen(function*() {
      const sequences = yield* Arbitrary.sampleEffect(Failures.arbitrary({ maxLength: 3, steps: ["fail", "retry"] }), {
        count: 100,
        seed: 3,
        size: 20
      })
      assert.isTrue(sequences.every((s) => s.length <= 3 && s.every((step) => step === "fail" || step === "retry")))
      assert.isTrue(sequences.some((s) => s.length === 3))
    }))

  const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
  const policies = {
    linear: (step: number, maxRetries: number) => Retry.linear({ step: Duration.seconds(step), maxRetries }),
    exponential: (step: number, maxRetries: number) =>
      Retry.exponential({ base: Duration.seconds(step), maxRetries, max: "1 minute" }),
    fixed: (step: number, maxRetries: number) => Retry.fixed({ delay: Duration.seconds(step), maxRetries }),
    onlyFlaky: (step: number, maxRetries: number) => Retry.fixed({ delay: Duration.seconds(step), maxRetries, retryOn: ["Flaky"] })
  }

  it.effect.prop(
    "for any policy and failure sequence, the history is the one Failures.expected predicts",
    {
      sequence: Failures.arbitrary({ maxLength: 7 }),
      kind: Schema.Literals(["linear", "exponential", "fixed", "onlyFlaky"]),
      step: int(1, 30),
      maxRetries: int(0, 6)
    },
    ({ kind, maxRetries, sequence, step }) =>
      Effect.gen(function*() {
        const policy = policies[kind](step, maxRetries)
        const T = Task.make("prop.failures", { payload: Schema.Void, failure: Flaky, retry: policy })
        const TLive = Task.implement(T, () => Failures.play(sequence, { fail: (n) => new Flaky({ message: `attempt ${n}` }) }))
        const prediction = yield* Failures.expected(policy, sequence, { failTag: "Flaky" })
        yield* Effect.gen(function*() {
          const client = yield* Client.Client
          const job = yield* client.submit(T, undefined)
          yield* ErrandTest.drain()
          yield* ErrandTest.expectHistory(job, prediction.history)
          const status = yield* client.status(job.id)
          assert.strictEqual(status.state, prediction.state)
          assert.strictEqual(status.error?._tag, prediction.error)
          assert.isAtMost(status.history.length, policy.maxRetries + 1)
        }).pipe(ErrandTest.provide({ tasks: [TLive] }))
      }),
    { timeout: 30_000, arbitrary: { runs: 80 } }
  )
})
