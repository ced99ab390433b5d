import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Client } from "@errand/core"
import * as ErrandTest from "@errand/core/testing/ErrandTest"
import * as FaultPlan from "@errand/core/testing/FaultPlan"
import { Dice, DiceLive, Job, JobLive, Probe } from "./testing-fixtures.ts"

/** Eight tasks of two kinds on two workers, under `plan` and `seed`: everything observable. */
const run = (plan: FaultPlan.FaultPlan, seed: number | string = 0) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    for (let n = 0; n < 4; n++) {
      yield* client.submit(Job, { n, seconds: n })
      yield* client.submit(Dice, { n })
    }
    const drained = yield* ErrandTest.drain({ maxSteps: 300 }).pipe(
      Effect.map((report) => `ok at ${report.now}`),
      Effect.catchTag("DrainTimeout", (e) => Effect.succeed(e.message))
    )
    return {
      drained,
      snapshot: yield* ErrandTest.snapshot,
      events: yield* (yield* Probe).events
    }
  }).pipe(
    Effect.provide(
      ErrandTest.layer({ tasks: [JobLive, DiceLive], faults: plan, seed, workers: 2, concurrency: 2 }).pipe(
        Layer.provideMerge(Layer.fresh(Probe.layer))
      )
    )
  )

const everyKind = FaultPlan.make(
  FaultPlan.crash({ task: 2 }),
  FaultPlan.crash({ task: 0, at: "beforeAck" }),
  FaultPlan.shutdown({ at: "2 seconds" }),
  FaultPlan.outage({ from: "3 seconds", for: "8 seconds" }),
  FaultPlan.slowBroker({ from: "12 seconds", for: "20 seconds", delay: "2 seconds" }),
  FaultPlan.duplicate({ task: 4 }),
  // dice-3: its first attempt runs to the end under this plan, so the failure after it fires
  FaultPlan.fail({ task: 3 }),
  FaultPlan.crash({ task: 5, at: "inHandler", after: "700 millis" })
)

describe("the same seed and fault plan give the same history", () => {
  it.effect("a plan with every kind of fault, run twice", () =>
    Effect.gen(function*() {
      const first = yield* run(everyKind, 7)
      const second = yield* run(everyKind, 7)
      assert.deepStrictEqual(second, first)
      // ...and the plan really did something
      const kinds = new Set(first.snapshot.trace.map((e) => e.kind))
      for (const kind of ["crash", "shutdown", "outage", "slow", "duplicate", "fail"] as const) assert.isTrue(kinds.has(kind), kind)
      assert.isTrue(first.snapshot.tasks.some((t) => t.history.some((h) => h.outcome === "LOST")))
      assert.isTrue(first.snapshot.tasks.some((t) => t.history.some((h) => h.outcome === "STALE")))
    }))

  it.effect("plans drawn from seeds 1 to 15, each run twice", () =>
    Effect.gen(function*() {
      for (let seed = 1; seed <= 15; seed++) {
        const plan = yield* FaultPlan.sample({ tasks: 8, seed, size: 30, maxFaults: 6, horizon: "20 seconds", workers: 2 })
        const first = yield* run(plan, seed)
        const second = yield* run(plan, seed)
        assert.deepStrictEqual(second, first, `seed ${seed}:\n${FaultPlan.format(plan)}`)
      }
    }), 30_000)

  // Found by the property below (1 run in ~50 hung): a warm shutdown at 0
  // whose waits run on a TestClock no one advances after the drain, then a
  // kill when the harness closes. The killed worker's shutdown now stops.
  it.effect("a worker killed during its warm shutdown closes at once (warm shutdown at 0, slow broker)", () =>
    Effect.gen(function*() {
      const plan = yield* FaultPlan.sample({ tasks: 8, seed: 441, size: 5, maxFaults: 5, horizon: "20 seconds", workers: 2 })
      assert.isTrue(plan.faults.some((f) => f._tag === "Shutdown"), FaultPlan.format(plan))
      const first = yield* run(plan, 3)
      assert.deepStrictEqual(yield* run(plan, 3), first)
    }), 30_000)

  it.effect.prop(
    "for any plan, two runs agree",
    { plan: FaultPlan.arbitrary({ tasks: 8, maxFaults: 5, horizon: "20 seconds", workers: 2 }) },
    ({ plan }) =>
      Effect.gen(function*() {
        const first = yield* run(plan, 3)
        const second = yield* run(plan, 3)
        assert.deepStrictEqual(second, first)
      }),
    { timeout: 30_000, arbitrary: { runs: 20 } }
  )
})

describe("the seed", () => {
  const rolls = (seed: number) =>
    Effect.map(run(FaultPlan.empty, seed), ({ events }) => events.filter((e) => e.includes("rolled")))

  it.effect("drives Effect's Random in handlers (and jittered retries)", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* rolls(1), yield* rolls(1))
      assert.notDeepEqual(yield* rolls(1), yield* rolls(2))
    }))

  it.effect("picks the point of a \"random\" crash, the same way every time", () =>
    Effect.gen(function*() {
      const plan = FaultPlan.make(FaultPlan.crash({ task: 0 }))
      const point = (seed: number) =>
        Effect.map(run(plan, seed), ({ snapshot }) => snapshot.trace.find((e) => e.kind === "crash")?.detail ?? "none")
      const points = new Set<string>()
      for (let seed = 0; seed < 12; seed++) {
        const p = yield* point(seed)
        assert.strictEqual(yield* point(seed), p)
        points.add(p.replace(/.*\(attempt 0\), /, ""))
      }
      assert.isAtLeast(points.size, 3, [...points].join("\n"))
    }))
})
