/**
 * Fault plans: a value that says what goes wrong while a test runs, and when.
 * `ErrandTest.layer({ tasks, faults })` applies it; the same plan and seed
 * give the same run, so a failing plan is a reproducible bug report.
 *
 * Faults name tasks by their submission index (`task: 0` is the first task
 * enqueued in the test; the harness names it `<task name>-0`) and attempts
 * by retry number (`attempt: 0` is the first run). Times are milliseconds
 * of the test's clock, which starts at 0.
 *
 * - `Crash`: the worker running an attempt dies (kill -9) at a point:
 *   `beforeStart` (claimed, never started), `beforeHandler` (started, handler
 *   not run), `inHandler` (`afterMillis` into the handler, default at its
 *   first wait), `beforeAck` (handler done, outcome never written). A
 *   replacement worker starts at once (see `ErrandTest.Options.restart`).
 * - `Shutdown`: a warm shutdown (SIGTERM) of a worker at a time.
 * - `BrokerOutage`: broker calls fail with `BrokerError` during a window.
 * - `SlowBroker`: broker calls take `delayMillis` longer during a window.
 * - `Duplicate`: the broker delivers an attempt twice, to two workers at
 *   once: both run the handler with the same task id and attempt.
 * - `Fail`: the attempt dies with a defect before or after its handler ran.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const plan = FaultPlan.make(
 *   FaultPlan.crash({ task: 0, at: "beforeAck" }),
 *   FaultPlan.outage({ from: "5 seconds", for: "20 seconds" }),
 *   FaultPlan.duplicate({ task: 1 })
 * )
 * FaultPlan.format(plan)
 * // 1. crash the worker running task 0 (attempt 0) after its handler, before the ack
 * // 2. broker down (calls fail with BrokerError) from 5s for 20s
 * // 3. deliver task 1 (attempt 0) twice, to two workers at once
 * ```
 *
 * @since 0.1.0
 */
import { Arbitrary, Duration, Effect, Schema } from "effect"

const natural = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const positive = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
const between = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

/**
 * Where a `Crash` hits an attempt. `"random"` picks one of the four from the
 * harness seed when the plan is applied.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const points: ReadonlyArray<FaultPlan.CrashPoint> = FaultPlan.crashPoints
 * // ["beforeStart", "beforeHandler", "inHandler", "beforeAck"]
 * ```
 *
 * @since 0.1.0
 */
export const CrashPoint = Schema.Literals(["beforeStart", "beforeHandler", "inHandler", "beforeAck", "random"])

/**
 * The type of \`CrashPoint\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const at: FaultPlan.CrashPoint = "beforeAck"
 * ```
 *
 * @since 0.1.0
 */
export type CrashPoint = typeof CrashPoint.Type

/**
 * The four crash points, in the order an attempt passes them.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.crashPoints.length // 4
 * ```
 *
 * @since 0.1.0
 */
export const crashPoints = ["beforeStart", "beforeHandler", "inHandler", "beforeAck"] as const

/**
 * The broker operations a window (`BrokerOutage`, `SlowBroker`) can hit.
 * Without `ops`, a window hits the worker's operations: everything but
 * `enqueue`, `revoke`, `redeliver` and `stats`, so the test can still submit.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.outage({ from: 0, for: "10 seconds", ops: ["renew"] }) // heartbeats fail, nothing else
 * ```
 *
 * @since 0.1.0
 */
export const Op = Schema.Literals([
  "enqueue",
  "claim",
  "start",
  "renew",
  "complete",
  "retry",
  "deadLetter",
  "release",
  "revoke",
  "redeliver",
  "stats"
])

/**
 * The type of \`Op\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const op: FaultPlan.Op = "renew"
 * ```
 *
 * @since 0.1.0
 */
export type Op = typeof Op.Type

/**
 * The operations a window hits when it names none.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.workerOps.includes("renew") // true
 * ```
 *
 * @since 0.1.0
 */
export const workerOps: ReadonlyArray<Op> = ["claim", "start", "renew", "complete", "retry", "deadLetter", "release"]

/**
 * The worker running attempt `attempt` of task `task` dies at `at`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const fault: FaultPlan.Crash = { _tag: "Crash", task: 0, attempt: 0, at: "beforeAck" }
 * ```
 *
 * @since 0.1.0
 */
export const Crash = Schema.TaggedStruct("Crash", {
  task: natural,
  attempt: natural,
  at: CrashPoint,
  /** For `inHandler`: how far into the handler (default 0: at its first wait). */
  afterMillis: Schema.optionalKey(natural)
})

/**
 * The type of \`Crash\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const c: FaultPlan.Crash = FaultPlan.crash({ task: 0, at: "inHandler", after: "1 second" })
 * ```
 *
 * @since 0.1.0
 */
export type Crash = typeof Crash.Type

/**
 * A warm shutdown (SIGTERM) at `atMillis` of the `worker`-th running worker
 * (in start order, modulo how many run; default the first).
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const fault: FaultPlan.Shutdown = { _tag: "Shutdown", atMillis: 5_000 }
 * ```
 *
 * @since 0.1.0
 */
export const Shutdown = Schema.TaggedStruct("Shutdown", {
  atMillis: natural,
  worker: Schema.optionalKey(natural)
})

/**
 * The type of \`Shutdown\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const s: FaultPlan.Shutdown = FaultPlan.shutdown({ at: "5 seconds" })
 * ```
 *
 * @since 0.1.0
 */
export type Shutdown = typeof Shutdown.Type

/**
 * Broker calls fail with `BrokerError` from `fromMillis` for `forMillis`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const fault: FaultPlan.BrokerOutage = { _tag: "BrokerOutage", fromMillis: 1_000, forMillis: 30_000 }
 * ```
 *
 * @since 0.1.0
 */
export const BrokerOutage = Schema.TaggedStruct("BrokerOutage", {
  fromMillis: natural,
  forMillis: positive,
  ops: Schema.optionalKey(Schema.Array(Op))
})

/**
 * The type of \`BrokerOutage\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const o: FaultPlan.BrokerOutage = FaultPlan.outage({ from: 0, for: "30 seconds" })
 * ```
 *
 * @since 0.1.0
 */
export type BrokerOutage = typeof BrokerOutage.Type

/**
 * Broker calls take `delayMillis` longer from `fromMillis` for `forMillis`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const fault: FaultPlan.SlowBroker = { _tag: "SlowBroker", fromMillis: 0, forMillis: 60_000, delayMillis: 4_000 }
 * ```
 *
 * @since 0.1.0
 */
export const SlowBroker = Schema.TaggedStruct("SlowBroker", {
  fromMillis: natural,
  forMillis: positive,
  delayMillis: positive,
  ops: Schema.optionalKey(Schema.Array(Op))
})

/**
 * The type of \`SlowBroker\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const s: FaultPlan.SlowBroker = FaultPlan.slowBroker({ from: 0, for: "1 minute", delay: "2 seconds" })
 * ```
 *
 * @since 0.1.0
 */
export type SlowBroker = typeof SlowBroker.Type

/**
 * The broker delivers attempt `attempt` of task `task` twice, to two workers
 * at once (the second is the harness's `w-dup`). Both run the handler with
 * the same task id and attempt number; the first outcome is kept and the
 * second is recorded as `STALE`, as fencing does for a real double delivery.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const fault: FaultPlan.Duplicate = { _tag: "Duplicate", task: 0, attempt: 0 }
 * ```
 *
 * @since 0.1.0
 */
export const Duplicate = Schema.TaggedStruct("Duplicate", {
  task: natural,
  attempt: natural
})

/**
 * The type of \`Duplicate\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const d: FaultPlan.Duplicate = FaultPlan.duplicate({ task: 1 })
 * ```
 *
 * @since 0.1.0
 */
export type Duplicate = typeof Duplicate.Type

/**
 * Attempt `attempt` of task `task` dies with a defect (`TaskDefect`),
 * `before` its handler runs or `after` it returned (its side effects done).
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const fault: FaultPlan.Fail = { _tag: "Fail", task: 0, attempt: 0, at: "after" }
 * ```
 *
 * @since 0.1.0
 */
export const Fail = Schema.TaggedStruct("Fail", {
  task: natural,
  attempt: natural,
  at: Schema.Literals(["before", "after"])
})

/**
 * The type of \`Fail\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const f: FaultPlan.Fail = FaultPlan.fail({ task: 0, at: "before" })
 * ```
 *
 * @since 0.1.0
 */
export type Fail = typeof Fail.Type

/**
 * Any fault.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const fault = Schema.decodeUnknownSync(FaultPlan.Fault)({ _tag: "Duplicate", task: 0, attempt: 0 })
 * ```
 *
 * @since 0.1.0
 */
export const Fault = Schema.Union([Crash, Shutdown, BrokerOutage, SlowBroker, Duplicate, Fail])

/**
 * The type of \`Fault\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const faults: ReadonlyArray<FaultPlan.Fault> = [FaultPlan.duplicate({ task: 0 }), FaultPlan.shutdown({ at: "2 seconds" })]
 * ```
 *
 * @since 0.1.0
 */
export type Fault = typeof Fault.Type

/**
 * The kinds of fault, by `_tag`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const kinds: ReadonlyArray<FaultPlan.Kind> = ["Crash", "Duplicate"]
 * ```
 *
 * @since 0.1.0
 */
export type Kind = Fault["_tag"]

/**
 * Every kind of fault.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.kinds // ["Crash", "Shutdown", "BrokerOutage", "SlowBroker", "Duplicate", "Fail"]
 * ```
 *
 * @since 0.1.0
 */
export const kinds: ReadonlyArray<Kind> = ["Crash", "Shutdown", "BrokerOutage", "SlowBroker", "Duplicate", "Fail"]

/**
 * A fault plan: the faults to apply, each at most once.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * // plans are plain data: store a failing one as JSON, decode it back
 * const plan = Schema.decodeUnknownSync(FaultPlan.FaultPlan)({ faults: [{ _tag: "Crash", task: 0, attempt: 0, at: "inHandler" }] })
 * ```
 *
 * @since 0.1.0
 */
export const FaultPlan = Schema.Struct({ faults: Schema.Array(Fault) })

/**
 * The type of \`FaultPlan\`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const plan: FaultPlan.FaultPlan = FaultPlan.make(FaultPlan.crash({ task: 0, at: "beforeAck" }))
 * ```
 *
 * @since 0.1.0
 */
export type FaultPlan = typeof FaultPlan.Type

/**
 * The plan with no faults.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.empty.faults.length // 0
 * ```
 *
 * @since 0.1.0
 */
export const empty: FaultPlan = { faults: [] }

/**
 * Builds a plan from faults.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const plan = FaultPlan.make(FaultPlan.crash({ task: 0 }), FaultPlan.shutdown({ at: "3 seconds" }))
 * ```
 *
 * @since 0.1.0
 */
export const make = (...faults: ReadonlyArray<Fault>): FaultPlan => ({ faults })

const millis = (input: Duration.Input): number => Math.round(Duration.toMillis(Duration.fromInputUnsafe(input)))

/**
 * A `Crash`. `attempt` defaults to 0, `at` to `"random"` (picked from the
 * harness seed), `after` (for `inHandler`) to 0.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.crash({ task: 2, attempt: 1, at: "inHandler", after: "500 millis" })
 * ```
 *
 * @since 0.1.0
 */
export const crash = (options: {
  readonly task: number
  readonly attempt?: number | undefined
  readonly at?: CrashPoint | undefined
  readonly after?: Duration.Input | undefined
}): Crash => ({
  _tag: "Crash",
  task: options.task,
  attempt: options.attempt ?? 0,
  at: options.at ?? "random",
  ...(options.after === undefined ? {} : { afterMillis: millis(options.after) })
})

/**
 * A warm `Shutdown` at `at` (time since the test began).
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.shutdown({ at: "2 seconds" })
 * ```
 *
 * @since 0.1.0
 */
export const shutdown = (options: { readonly at: Duration.Input; readonly worker?: number | undefined }): Shutdown => ({
  _tag: "Shutdown",
  atMillis: millis(options.at),
  ...(options.worker === undefined ? {} : { worker: options.worker })
})

/**
 * A `BrokerOutage` from `from` for `for`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.outage({ from: "1 second", for: "30 seconds" })
 * ```
 *
 * @since 0.1.0
 */
export const outage = (options: {
  readonly from: Duration.Input
  readonly for: Duration.Input
  readonly ops?: ReadonlyArray<Op> | undefined
}): BrokerOutage => ({
  _tag: "BrokerOutage",
  fromMillis: millis(options.from),
  forMillis: millis(options.for),
  ...(options.ops === undefined ? {} : { ops: options.ops })
})

/**
 * A `SlowBroker` window: calls take `delay` longer from `from` for `for`.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.slowBroker({ from: 0, for: "1 minute", delay: "3 seconds", ops: ["renew"] })
 * ```
 *
 * @since 0.1.0
 */
export const slowBroker = (options: {
  readonly from: Duration.Input
  readonly for: Duration.Input
  readonly delay: Duration.Input
  readonly ops?: ReadonlyArray<Op> | undefined
}): SlowBroker => ({
  _tag: "SlowBroker",
  fromMillis: millis(options.from),
  forMillis: millis(options.for),
  delayMillis: millis(options.delay),
  ...(options.ops === undefined ? {} : { ops: options.ops })
})

/**
 * A `Duplicate` delivery of a task's attempt (default the first).
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.duplicate({ task: 0 })
 * ```
 *
 * @since 0.1.0
 */
export const duplicate = (options: { readonly task: number; readonly attempt?: number | undefined }): Duplicate => ({
  _tag: "Duplicate",
  task: options.task,
  attempt: options.attempt ?? 0
})

/**
 * A `Fail`: the attempt dies with a defect, by default `after` its handler ran.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.fail({ task: 0, at: "before" })
 * ```
 *
 * @since 0.1.0
 */
export const fail = (options: {
  readonly task: number
  readonly attempt?: number | undefined
  readonly at?: "before" | "after" | undefined
}): Fail => ({
  _tag: "Fail",
  task: options.task,
  attempt: options.attempt ?? 0,
  at: options.at ?? "after"
})

const fmt = (ms: number) => Duration.format(Duration.millis(ms))

const opsText = (ops: ReadonlyArray<Op> | undefined) => (ops === undefined ? "" : ` (${ops.join(", ")} only)`)

const pointText: Record<CrashPoint, string> = {
  beforeStart: "after it claimed it, before it started",
  beforeHandler: "after it started, before its handler ran",
  inHandler: "inside its handler",
  beforeAck: "after its handler, before the ack",
  random: "at a point picked by the seed"
}

/**
 * One fault as a sentence.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * FaultPlan.describe(FaultPlan.crash({ task: 0, at: "beforeAck" }))
 * // "crash the worker running task 0 (attempt 0) after its handler, before the ack"
 * ```
 *
 * @since 0.1.0
 */
export const describe = (fault: Fault): string => {
  switch (fault._tag) {
    case "Crash": {
      const after = fault.at === "inHandler" && fault.afterMillis !== undefined && fault.afterMillis > 0
        ? ` (${fmt(fault.afterMillis)} in)`
        : ""
      return `crash the worker running task ${fault.task} (attempt ${fault.attempt}) ${pointText[fault.at]}${after}`
    }
    case "Shutdown":
      return `warm shutdown of worker #${fault.worker ?? 0} at ${fmt(fault.atMillis)}`
    case "BrokerOutage":
      return `broker down (calls fail with BrokerError) from ${fmt(fault.fromMillis)} for ${fmt(fault.forMillis)}${
        opsText(fault.ops)
      }`
    case "SlowBroker":
      return `broker slow (+${fmt(fault.delayMillis)} per call) from ${fmt(fault.fromMillis)} for ${
        fmt(fault.forMillis)
      }${opsText(fault.ops)}`
    case "Duplicate":
      return `deliver task ${fault.task} (attempt ${fault.attempt}) twice, to two workers at once`
    case "Fail":
      return `task ${fault.task} (attempt ${fault.attempt}) dies with a defect ${
        fault.at === "before" ? "before its handler runs" : "after its handler returned"
      }`
  }
}

/**
 * The plan as numbered sentences, one per line (`"no faults"` when empty).
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * console.log(FaultPlan.format(FaultPlan.make(FaultPlan.duplicate({ task: 0 }))))
 * // 1. deliver task 0 (attempt 0) twice, to two workers at once
 * ```
 *
 * @since 0.1.0
 */
export const format = (plan: FaultPlan | ReadonlyArray<Fault>): string => {
  const faults = "faults" in plan ? plan.faults : plan
  return faults.length === 0 ? "no faults" : faults.map((f, i) => `${i + 1}. ${describe(f)}`).join("\n")
}

/**
 * Bounds of generated plans.
 *
 * @example
 * ```ts
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const options: FaultPlan.ArbitraryOptions = { tasks: 3, attempts: 2, horizon: "1 minute", maxFaults: 3 }
 * ```
 *
 * @since 0.1.0
 */
export interface ArbitraryOptions {
  /** How many tasks the test submits: faults name tasks 0 to `tasks - 1`. */
  readonly tasks: number
  /** Faults hit attempts 0 to `attempts - 1`. Default 2. */
  readonly attempts?: number | undefined
  /** Timed faults (shutdowns, broker windows) start within this. Default 1 minute. */
  readonly horizon?: Duration.Input | undefined
  /** The longest broker window. Default 30 seconds. */
  readonly maxWindow?: Duration.Input | undefined
  /** The longest `SlowBroker` delay. Default 5 seconds (under the default 10 s lease). */
  readonly maxDelay?: Duration.Input | undefined
  /** The most faults in one plan. Default 4. */
  readonly maxFaults?: number | undefined
  /** The kinds to generate. Default all. */
  readonly kinds?: ReadonlyArray<Kind> | undefined
  /** Shutdowns pick among this many running workers. Default 1. */
  readonly workers?: number | undefined
}

const seconds = (max: number, min = 0) =>
  Arbitrary.map(Arbitrary.schema(between(min, Math.max(min, Math.floor(max / 1000)))), (s) => s * 1000)

/**
 * Generates fault plans within bounds, for `it.effect.prop` or
 * `Arbitrary.checkEffect`. Plans shrink towards fewer faults, earlier tasks
 * and attempts, and earlier, shorter windows, so a failure is reported as
 * the smallest plan that still breaks the property. Timed faults fall on
 * whole seconds.
 *
 * @example
 * ```ts
 * import { it } from "@effect/vitest"
 * import { Effect } from "effect"
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * it.effect.prop("survives any plan", { plan: FaultPlan.arbitrary({ tasks: 3 }) }, ({ plan }) =>
 *   Effect.succeed(FaultPlan.format(plan).length > 0), { arbitrary: { runs: 50 } })
 * ```
 *
 * @since 0.1.0
 */
export const arbitrary = (options: ArbitraryOptions): Arbitrary.Arbitrary<FaultPlan> => {
  if (!Number.isInteger(options.tasks) || options.tasks < 1) {
    throw new RangeError(`FaultPlan.arbitrary: tasks must be a whole number >= 1, got ${options.tasks}`)
  }
  const attempts = Math.max(1, options.attempts ?? 2)
  const horizon = millis(options.horizon ?? "1 minute")
  const maxWindow = Math.max(1000, millis(options.maxWindow ?? "30 seconds"))
  const maxDelay = Math.max(1000, millis(options.maxDelay ?? "5 seconds"))
  const workers = Math.max(1, options.workers ?? 1)
  const task = Arbitrary.schema(between(0, options.tasks - 1))
  const attempt = Arbitrary.schema(between(0, attempts - 1))
  const wanted = new Set(options.kinds ?? kinds)
  const byKind: Record<Kind, Arbitrary.Arbitrary<Fault>> = {
    Crash: Arbitrary.map(
      Arbitrary.all({
        task,
        attempt,
        at: Arbitrary.schema(Schema.Literals(crashPoints)),
        afterMillis: Arbitrary.schema(between(0, 3)).pipe(Arbitrary.map((n) => n * 250))
      }),
      ({ afterMillis, at, attempt, task }): Fault => ({
        _tag: "Crash",
        task,
        attempt,
        at,
        ...(at === "inHandler" && afterMillis > 0 ? { afterMillis } : {})
      })
    ),
    Shutdown: Arbitrary.map(
      Arbitrary.all({ atMillis: seconds(horizon), worker: Arbitrary.schema(between(0, workers - 1)) }),
      ({ atMillis, worker }): Fault => ({ _tag: "Shutdown", atMillis, ...(worker > 0 ? { worker } : {}) })
    ),
    BrokerOutage: Arbitrary.map(
      Arbitrary.all({ fromMillis: seconds(horizon), forMillis: seconds(maxWindow, 1) }),
      ({ forMillis, fromMillis }): Fault => ({ _tag: "BrokerOutage", fromMillis, forMillis })
    ),
    SlowBroker: Arbitrary.map(
      Arbitrary.all({ fromMillis: seconds(horizon), forMillis: seconds(maxWindow, 1), delayMillis: seconds(maxDelay, 1) }),
      ({ delayMillis, forMillis, fromMillis }): Fault => ({ _tag: "SlowBroker", fromMillis, forMillis, delayMillis })
    ),
    Duplicate: Arbitrary.map(Arbitrary.all({ task, attempt }), ({ attempt, task }): Fault => ({
      _tag: "Duplicate",
      task,
      attempt
    })),
    Fail: Arbitrary.map(
      Arbitrary.all({ task, attempt, at: Arbitrary.schema(Schema.Literals(["after", "before"])) }),
      ({ at, attempt, task }): Fault => ({ _tag: "Fail", task, attempt, at })
    )
  }
  const chosen = kinds.filter((k) => wanted.has(k))
  if (chosen.length === 0) throw new RangeError("FaultPlan.arbitrary: no kinds of fault to generate")
  const fault = Arbitrary.flatMap(
    Arbitrary.schema(between(0, chosen.length - 1)),
    (i) => byKind[chosen[i]!]
  )
  return Arbitrary.map(
    Arbitrary.array(fault, { maxLength: Math.max(0, options.maxFaults ?? 4) }),
    (faults): FaultPlan => ({ faults })
  )
}

/**
 * Draws one plan from `arbitrary(options)` with a seed: the same seed always
 * gives the same plan.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 *
 * const plan = Effect.runSync(FaultPlan.sample({ tasks: 3, seed: 42 }))
 * ```
 *
 * @since 0.1.0
 */
export const sample = (options: ArbitraryOptions & { readonly seed: number | string; readonly size?: number | undefined }) =>
  Effect.map(
    Arbitrary.sampleEffect(arbitrary(options), { count: 1, seed: options.seed, size: options.size ?? 10 }),
    (plans): FaultPlan => plans[0] ?? empty
  ).pipe(Effect.orDie)
