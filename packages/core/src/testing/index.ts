/**
 * errand's testing toolkit: test your tasks deterministically, faults
 * included.
 *
 * - `ErrandTest`: one layer with a memory broker, workers and a client under
 *   a fresh `TestClock`; `drain` to run everything, skipping time; the
 *   harness that applies fault plans.
 * - `FaultPlan`: crashes, shutdowns, broker outages and slowness, duplicate
 *   deliveries, as data, with arbitraries that shrink.
 * - `History`: readable assertions on a task's attempts.
 * - `Failures`: failure sequences for handlers, their arbitrary, and the
 *   history a retry policy gives them.
 *
 * @example
 * ```ts
 * import { it } from "@effect/vitest"
 * import { Effect } from "effect"
 * import { Client } from "@errand/core"
 * import { ErrandTest, FaultPlan } from "@errand/core/testing"
 * import { Charge, ChargeLive } from "../src/Billing.ts"
 *
 * it.effect.prop("charged once under any plan", { plan: FaultPlan.arbitrary({ tasks: 1 }) }, ({ plan }) =>
 *   Effect.gen(function*() {
 *     const client = yield* Client.Client
 *     const job = yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
 *     yield* ErrandTest.drain()
 *     return (yield* client.status(job.id)).state === "SUCCESS"
 *   }).pipe(ErrandTest.provide({ tasks: [ChargeLive], faults: plan })))
 * ```
 *
 * @since 0.1.0
 */

/** The harness: layer, drain, faults applied, snapshots. */
export * as ErrandTest from "./ErrandTest.ts"
/** Fault plans and their arbitraries. */
export * as FaultPlan from "./FaultPlan.ts"
/** Assertions on a task's history. */
export * as History from "./History.ts"
/** Failure sequences: play, generate, predict. */
export * as Failures from "./Failures.ts"
