/**
 * Failure sequences: what each attempt of a task does, as data. A handler
 * plays the sequence (`play`), a property generates sequences
 * (`arbitrary`), and `expected` says what the history must then be under a
 * retry policy: a ready-made oracle for "the countdowns are the policy's and
 * attempts never exceed the cap".
 *
 * Attempt `i` does `sequence[i]`; past the end, the handler goes on and
 * succeeds.
 *
 * - `"fail"`: the handler fails with the task's typed failure.
 * - `"defect"`: the handler dies (a thrown exception): `TaskDefect`.
 * - `"retry"`: the handler asks to be retried (`ctx.retry()`), which counts
 *   against the cap whatever the policy's `retryOn` says.
 *
 * @example
 * ```ts
 * import { it } from "@effect/vitest"
 * import { Effect, Schema } from "effect"
 * import { Client, Retry, Task } from "@errand/core"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 * import * as Failures from "@errand/core/testing/Failures"
 *
 * class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { message: Schema.String }) {}
 * const policy = Retry.linear({ step: "10 seconds", maxRetries: 5 })
 * const Job = Task.make("job", { payload: Schema.Void, failure: Flaky, retry: policy })
 *
 * it.effect.prop("the history follows the policy", { sequence: Failures.arbitrary() }, ({ sequence }) =>
 *   Effect.gen(function*() {
 *     const client = yield* Client.Client
 *     const job = yield* client.submit(Job, undefined)
 *     yield* ErrandTest.drain()
 *     const { history } = yield* Failures.expected(policy, sequence, { failTag: "Flaky" })
 *     yield* ErrandTest.expectHistory(job, history)
 *   }).pipe(ErrandTest.provide({
 *     tasks: [Task.implement(Job, () => Failures.play(sequence, { fail: (n) => new Flaky({ message: `attempt ${n}` }) }))]
 *   })))
 * ```
 *
 * @since 0.1.0
 */
import { Arbitrary, Duration, Effect, Schema } from "effect"
import type { ErrorInfo } from "../Errors.ts"
import type { RetryRequested } from "../Errors.ts"
import type { Outcome } from "../Message.ts"
import * as Retry from "../Retry.ts"
import { TaskContext } from "../TaskContext.ts"
import type * as History from "./History.ts"

/**
 * What one attempt does.
 *
 * @example
 * ```ts
 * import * as Failures from "@errand/core/testing/Failures"
 *
 * const step: Failures.Step = "defect"
 * ```
 *
 * @since 0.1.0
 */
export const Step = Schema.Literals(["fail", "defect", "retry"])

/**
 * The type of \`Step\`.
 *
 * @example
 * ```ts
 * import * as Failures from "@errand/core/testing/Failures"
 *
 * const steps: ReadonlyArray<Failures.Step> = ["fail", "retry"]
 * ```
 *
 * @since 0.1.0
 */
export type Step = typeof Step.Type

/**
 * What the attempts do, in order; past the end the handler succeeds.
 *
 * @example
 * ```ts
 * import * as Failures from "@errand/core/testing/Failures"
 *
 * const twiceThenOk: Failures.Sequence = ["fail", "fail"]
 * ```
 *
 * @since 0.1.0
 */
export type Sequence = ReadonlyArray<Step>

/**
 * Generates failure sequences of up to `maxLength` steps (default 8) drawn
 * from `steps` (default all three). They shrink towards fewer steps and
 * towards `steps[0]`.
 *
 * @example
 * ```ts
 * import { Effect, Arbitrary } from "effect"
 * import * as Failures from "@errand/core/testing/Failures"
 *
 * const some = Effect.runSync(Arbitrary.sampleEffect(Failures.arbitrary({ maxLength: 3, steps: ["fail"] }), { count: 3, seed: 1 }))
 * // e.g. [["fail"], [], ["fail", "fail", "fail"]]
 * ```
 *
 * @since 0.1.0
 */
export const arbitrary = (options?: {
  readonly maxLength?: number | undefined
  readonly steps?: ReadonlyArray<Step> | undefined
}): Arbitrary.Arbitrary<Sequence> => {
  const steps = options?.steps ?? ["fail", "defect", "retry"]
  if (steps.length === 0) throw new RangeError("Failures.arbitrary: no steps to draw from")
  const step = Arbitrary.map(
    Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: steps.length - 1 }))),
    (i) => steps[i]!
  )
  return Arbitrary.array(step, { maxLength: Math.max(0, options?.maxLength ?? 8) })
}

/**
 * Plays the sequence for the running attempt: fails, dies or asks for a
 * retry as `sequence[ctx.retries]` says, and succeeds (with `void`) past its
 * end. Call it first in a handler, then do the real work.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Task } from "@errand/core"
 * import * as Failures from "@errand/core/testing/Failures"
 *
 * class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { message: Schema.String }) {}
 * const Job = Task.make("job", { payload: Schema.Void, success: Schema.String, failure: Flaky })
 * const JobLive = Task.implement(Job, () =>
 *   Failures.play(["fail", "defect"], { fail: (n) => new Flaky({ message: `attempt ${n}` }) }).pipe(
 *     Effect.as("done on the third attempt")
 *   ))
 * ```
 *
 * @since 0.1.0
 */
export const play = <E>(
  sequence: Sequence,
  options: { readonly fail: (attempt: number) => E }
): Effect.Effect<void, E | RetryRequested, TaskContext> =>
  TaskContext.use((ctx): Effect.Effect<void, E | RetryRequested> => {
    const step = sequence[ctx.retries]
    switch (step) {
      case undefined:
        return Effect.void
      case "fail":
        return Effect.fail(options.fail(ctx.retries))
      case "defect":
        return Effect.die(new Error(`scripted defect on attempt ${ctx.retries}`))
      case "retry":
        return ctx.retry()
    }
  })

/**
 * What `expected` predicts.
 *
 * @example
 * ```ts
 * import * as Failures from "@errand/core/testing/Failures"
 *
 * declare const prediction: Failures.Prediction
 * prediction.state // "SUCCESS" | "FAILURE"
 * ```
 *
 * @since 0.1.0
 */
export interface Prediction {
  /** One expected entry per attempt: outcome, countdown (or none), error tag. */
  readonly history: ReadonlyArray<History.Expected>
  readonly state: "SUCCESS" | "FAILURE"
  /** The `_tag` of the record's final error, when it fails. */
  readonly error?: string | undefined
}

const tagOf = (step: Step, failTag: string | undefined): string | undefined =>
  step === "fail" ? failTag : step === "defect" ? "TaskDefect" : "RetryRequested"

/**
 * Predicts the history of a task with `policy` whose attempts play
 * `sequence`, using the policy's own decisions (`Retry.decide`): each failed
 * attempt is a `RETRY` with the policy's countdown until the cap or a
 * non-retried error, then a `FAILURE`; the first attempt past the sequence is
 * a `SUCCESS`. `failTag` is the `_tag` of the task's failure (unchecked when
 * omitted).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Retry } from "@errand/core"
 * import * as Failures from "@errand/core/testing/Failures"
 *
 * const p = Effect.runSync(Failures.expected(Retry.linear({ step: "10 seconds", maxRetries: 5 }), ["fail", "retry"]))
 * // p.history: [{ outcome: "RETRY", countdown: 10s }, { outcome: "RETRY", countdown: 20s, error: "RetryRequested" },
 * //             { outcome: "SUCCESS", countdown: null, error: null }]
 * ```
 *
 * @since 0.1.0
 */
export const expected = (
  policy: Retry.RetryPolicy,
  sequence: Sequence,
  options?: { readonly failTag?: string | undefined }
): Effect.Effect<Prediction> =>
  Effect.gen(function*() {
    const history: Array<History.Expected> = []
    for (let attempt = 0; ; attempt++) {
      const step = sequence[attempt]
      if (step === undefined) {
        history.push({ outcome: "SUCCESS", attempt, countdown: null, error: null })
        return { history, state: "SUCCESS" } satisfies Prediction
      }
      const tag = tagOf(step, options?.failTag)
      const error: ErrorInfo = { _tag: tag ?? "Error", message: "" }
      const decision: Retry.Decision = step === "retry"
        ? attempt >= policy.maxRetries
          ? { _tag: "Exhausted" }
          : yield* Retry.decide(Retry.retryOn(() => true)(policy), attempt, error)
        : yield* Retry.decide(policy, attempt, error)
      const entry = { attempt, ...(tag === undefined ? {} : { error: tag }) }
      if (decision._tag === "Retry") {
        const outcome: Outcome = "RETRY"
        history.push({ ...entry, outcome, countdown: Duration.toMillis(decision.countdown) })
        continue
      }
      history.push({ ...entry, outcome: "FAILURE", countdown: null })
      return {
        history,
        state: "FAILURE",
        error: decision._tag === "Exhausted" ? "MaxRetriesExceeded" : tag
      } satisfies Prediction
    }
  })
