import { assert, describe, it } from "@effect/vitest"
import { Arbitrary, Effect, Layer } from "effect"
import { Client, MaxRetriesExceeded } from "@errand/core"
import { ErrandTest, FaultPlan, History } from "@errand/core/testing"
import { CardDeclined, Charge, ChargeLive, ChargeNaive, Gateway, Ledger } from "../src/Billing.ts"

/** A test world: the toolkit's harness for `impl`, a fresh ledger, a scripted gateway. */
const world = (
  impl: typeof ChargeLive,
  options: Omit<ErrandTest.Options<[typeof ChargeLive]>, "tasks"> & { readonly gateway?: Parameters<typeof Gateway.layer>[0] } = {}
) =>
  ErrandTest.layer({ tasks: [impl], ...options }).pipe(
    Layer.provideMerge(Layer.fresh(Layer.mergeAll(Ledger.layer, Gateway.layer(options.gateway ?? {}))))
  )

describe("time-skipping through the seed's retries", () => {
  it.effect("the gateway is down 5 times: retries after 10, 20, 30, 40, 50 s, then charged once, in one drain", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
      const report = yield* ErrandTest.drain()
      assert.strictEqual(report.now, 150_000)
      yield* ErrandTest.expectHistory(job, [
        { outcome: "RETRY", countdown: "10 seconds", error: "GatewayUnavailable", startedAt: 0 },
        { outcome: "RETRY", countdown: "20 seconds", startedAt: "10 seconds" },
        { outcome: "RETRY", countdown: "30 seconds", startedAt: "30 seconds" },
        { outcome: "RETRY", countdown: "40 seconds", startedAt: "60 seconds" },
        { outcome: "RETRY", countdown: "50 seconds", startedAt: "100 seconds" },
        { outcome: "SUCCESS", startedAt: "150 seconds", countdown: null, error: null }
      ])
      assert.deepStrictEqual(yield* client.await(job), { receipt: "r-gw-o-1" })
      const ledger = yield* Ledger
      assert.deepStrictEqual((yield* ledger.entries).map((e) => [e.orderId, e.attempt]), [["o-1", 5]])
    }).pipe(Effect.provide(world(ChargeLive, { gateway: { unavailable: 5, latency: 0 } }))))

  it.effect("the gateway never comes back: MaxRetriesExceeded after 150 s, nothing charged", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
      yield* ErrandTest.drain()
      yield* ErrandTest.expectHistory(job, [
        ...[10, 20, 30, 40, 50].map((s) => ({ outcome: "RETRY" as const, countdown: `${s} seconds` as const })),
        { outcome: "FAILURE", error: "GatewayUnavailable", startedAt: "150 seconds" }
      ])
      const error = yield* Effect.flip(client.await(job))
      assert.instanceOf(error, MaxRetriesExceeded)
      assert.deepStrictEqual(yield* (yield* Ledger).entries, [])
    }).pipe(Effect.provide(world(ChargeLive, { gateway: { unavailable: 99, latency: 0 } }))))

  it.effect("a declined card is final: one FAILURE, no retry", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Charge, { orderId: "o-9", cents: 500 })
      yield* ErrandTest.drain()
      yield* ErrandTest.expectHistory(job, [{ outcome: "FAILURE", error: "CardDeclined", took: "200 millis" }])
      assert.instanceOf(yield* Effect.flip(client.await(job)), CardDeclined)
    }).pipe(Effect.provide(world(ChargeLive, { gateway: { declines: ["o-9"] } }))))

  it.effect("a charge due in 7 days runs 7 days later, without waiting 7 days", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Charge, { orderId: "o-1", cents: 500 }, { countdown: "7 days" })
      const report = yield* ErrandTest.drain()
      // one jump to the due time, one over the gateway's 200 ms
      assert.strictEqual(report.steps, 2)
      yield* ErrandTest.expectHistory(job, [{ outcome: "SUCCESS", startedAt: "7 days", took: "200 millis" }])
    }).pipe(Effect.provide(world(ChargeLive))))
})

describe("faults, one at a time", () => {
  it.effect("the worker dies after the gateway charged, before the ack: redelivered; the idempotent handler charges once", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
      yield* ErrandTest.drain()
      yield* ErrandTest.expectHistory(job, [
        { outcome: "LOST", worker: "w-1", error: "WorkerLost", countdown: "10 seconds" },
        { outcome: "SUCCESS", worker: "w-2" }
      ])
      assert.strictEqual((yield* (yield* Ledger).entries).length, 1)
    }).pipe(Effect.provide(world(ChargeLive, { faults: [FaultPlan.crash({ task: 0, at: "beforeAck" })] }))))

  it.effect("the same plan makes the naive handler charge twice", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
      yield* ErrandTest.drain()
      const entries = yield* (yield* Ledger).entries
      assert.deepStrictEqual(entries.map((e) => `${e.orderId} attempt ${e.attempt} on ${e.worker}`), [
        "o-1 attempt 0 on w-1",
        "o-1 attempt 1 on w-2"
      ])
    }).pipe(Effect.provide(world(ChargeNaive, { faults: [FaultPlan.crash({ task: 0, at: "beforeAck" })] }))))

  it.effect("a duplicate delivery runs the handler twice at once: the ledger still has one charge", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
      yield* ErrandTest.drain()
      yield* ErrandTest.expectHistory(job, [
        { outcome: "SUCCESS", attempt: 0 },
        { outcome: "STALE", attempt: 0 }
      ])
      assert.strictEqual((yield* (yield* Ledger).entries).length, 1)
    }).pipe(Effect.provide(world(ChargeLive, { faults: [FaultPlan.duplicate({ task: 0 })] }))))
})

const orders = [
  { orderId: "o-1", cents: 500 },
  { orderId: "o-2", cents: 1250 },
  { orderId: "o-3", cents: 99 }
]

const plans = FaultPlan.arbitrary({ tasks: orders.length, workers: 2, maxFaults: 3, horizon: "15 seconds" })

/** Charges three orders under `plan`; says whether each order ended charged exactly once. */
const chargeUnder = (impl: typeof ChargeLive, plan: FaultPlan.FaultPlan) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const ledger = yield* Ledger
    for (const order of orders) yield* client.submit(Charge, order)
    yield* ErrandTest.drain()
    const entries = yield* ledger.entries
    const tasks = yield* ErrandTest.tasks
    const problems = orders.flatMap((order, i) => {
      const charged = entries.filter((e) => e.orderId === order.orderId).length
      const task = tasks[i]!
      return [
        ...(charged === 1 ? [] : [`${order.orderId} charged ${charged} times`]),
        ...(task.state === "SUCCESS" ? [] : [`${task.id} ended ${task.state}: ${History.summarize(task).join(" | ")}`])
      ]
    })
    return { ok: problems.length === 0, problems }
  }).pipe(Effect.provide(world(impl, { faults: plan, workers: 2, concurrency: 2 })))

describe("for any fault plan, each order is charged exactly once", () => {
  it.effect.prop("the idempotent handler", { plan: plans }, ({ plan }) =>
    Effect.gen(function*() {
      const { ok, problems } = yield* chargeUnder(ChargeLive, plan)
      assert.isTrue(ok, `${problems.join("; ")}\nunder:\n${FaultPlan.format(plan)}`)
    }), { timeout: 60_000, arbitrary: { runs: 100 } })

  it.effect("the naive handler: the property is falsified, and shrinks to a one-fault plan", () =>
    Effect.gen(function*() {
      const result = yield* Arbitrary.checkEffect(
        plans,
        (plan) => Effect.map(chargeUnder(ChargeNaive, plan), (r) => r.ok),
        { runs: 200, seed: 1 }
      )
      assert.strictEqual(result._tag, "Falsified")
      if (result._tag !== "Falsified") return
      const shrunk = result.shrunkInput
      console.log(`counterexample after ${result.runs} runs and ${result.shrinks} shrinks:\n${FaultPlan.format(shrunk)}`)
      assert.strictEqual(shrunk.faults.length, 1)
      const fault = shrunk.faults[0]!
      assert.include(["Crash", "Duplicate", "Fail"], fault._tag)
      if ("task" in fault) assert.strictEqual(fault.task, 0)
      // ...and the counterexample replays: the naive handler charges o-1 twice under it
      const replay = yield* chargeUnder(ChargeNaive, shrunk)
      assert.deepStrictEqual(replay.problems, ["o-1 charged 2 times"])
    }), 60_000)
})
