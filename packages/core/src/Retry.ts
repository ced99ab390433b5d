/**
 * Retry policies: when a task that failed runs again, and how often.
 *
 * A policy is an Effect `Schedule` (the delays) plus a cap on retries and a
 * rule for which errors are retried (Celery's `autoretry_for`). Delays are
 * computed by replaying the schedule from the start for each retry, so a
 * policy needs no state outside the message: any worker, on any machine,
 * computes the same countdown for the same attempt.
 *
 * @example
 * ```ts
 * import { Retry } from "@errand/core"
 *
 * // Celery's countdown=(2 * (retries + 1)) * 5 with max_retries=5
 * const seed = Retry.linear({ step: "10 seconds", maxRetries: 5 })
 * // Retry.delays(seed) => 10s, 20s, 30s, 40s, 50s
 * ```
 *
 * @since 0.1.0
 */
import { Duration, Effect, Option, Pipeable, Pull, Schedule } from "effect"
import type { ErrorInfo } from "./Errors.ts"

const TypeId = "~@errand/core/Retry" as const

/**
 * Which errors a policy retries: a list of `_tag`s, or a predicate.
 *
 * @since 0.1.0
 */
export type RetryOn = ReadonlyArray<string> | ((error: ErrorInfo) => boolean)

/**
 * A retry policy.
 *
 * @since 0.1.0
 */
export interface RetryPolicy extends Pipeable.Pipeable {
  readonly [TypeId]: typeof TypeId
  /** The delays between attempts. The schedule's input is the failed attempt's error. */
  readonly schedule: Schedule.Schedule<unknown, ErrorInfo>
  /** The most retries, so at most `maxRetries + 1` attempts. */
  readonly maxRetries: number
  /** Which errors are retried. */
  readonly retryOn: RetryOn | undefined
}

/**
 * Errors that are never retried, whatever the policy says: running the task
 * again cannot change their outcome.
 *
 * @since 0.1.0
 */
export const neverRetried: ReadonlySet<string> = new Set([
  "TaskRevoked",
  "PayloadInvalid",
  "UnknownTask",
  "MalformedMessage",
  "MaxRetriesExceeded"
])

const Proto = {
  [TypeId]: TypeId,
  pipe() {
    return Pipeable.pipeArguments(this, arguments)
  }
}

/**
 * Builds a policy from any `Schedule` of delays. The schedule ending also
 * ends the retries, whichever of it and `maxRetries` comes first.
 *
 * @example
 * ```ts
 * import { Schedule } from "effect"
 * import { Retry } from "@errand/core"
 *
 * const policy = Retry.fromSchedule(
 *   Schedule.exponential("1 second").pipe(Schedule.jittered),
 *   { maxRetries: 8, retryOn: ["Timeout", "WorkerLost"] }
 * )
 * ```
 *
 * @since 0.1.0
 */
export const fromSchedule = (
  schedule: Schedule.Schedule<unknown, ErrorInfo>,
  options: { readonly maxRetries: number; readonly retryOn?: RetryOn | undefined; readonly jitter?: boolean | undefined }
): RetryPolicy => {
  if (!Number.isInteger(options.maxRetries) || options.maxRetries < 0) {
    throw new RangeError(`Retry: maxRetries must be a whole number >= 0, got ${options.maxRetries}`)
  }
  const self = Object.create(Proto)
  self.schedule = options.jitter ? Schedule.jittered(schedule) : schedule
  self.maxRetries = options.maxRetries
  self.retryOn = options.retryOn
  return self
}

/**
 * Options shared by the ready-made policies.
 *
 * @since 0.1.0
 */
export interface Options {
  readonly maxRetries: number
  readonly retryOn?: RetryOn | undefined
  /** Scale each delay by a random factor between 0.8 and 1.2. */
  readonly jitter?: boolean | undefined
}

/**
 * Delays that grow by `step` each retry: `step`, `2 × step`, `3 × step`...
 * The reference Celery task is `linear({ step: "10 seconds", maxRetries: 5 })`.
 *
 * @since 0.1.0
 */
export const linear = (options: Options & { readonly step: Duration.Input }): RetryPolicy => {
  const step = Duration.fromInputUnsafe(options.step)
  return fromSchedule(
    Schedule.forever.pipe(
      Schedule.modifyDelay(({ attempt }) => Effect.succeed(Duration.times(step, attempt)))
    ),
    options
  )
}

/**
 * Delays that multiply by `factor` (default 2) each retry, starting at `base`
 * and capped at `max` when given.
 *
 * @since 0.1.0
 */
export const exponential = (
  options: Options & {
    readonly base: Duration.Input
    readonly factor?: number | undefined
    readonly max?: Duration.Input | undefined
  }
): RetryPolicy => {
  const base = Schedule.exponential(options.base, options.factor ?? 2)
  const max = options.max === undefined ? undefined : Duration.fromInputUnsafe(options.max)
  return fromSchedule(
    max === undefined
      ? base
      : base.pipe(Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, max)))),
    options
  )
}

/**
 * The same delay before every retry.
 *
 * @since 0.1.0
 */
export const fixed = (options: Options & { readonly delay: Duration.Input }): RetryPolicy =>
  fromSchedule(Schedule.spaced(options.delay), options)

/**
 * Never retry: the first failure is final.
 *
 * @since 0.1.0
 */
export const none: RetryPolicy = fromSchedule(Schedule.forever, { maxRetries: 0 })

/**
 * Returns the policy with another rule for which errors are retried.
 *
 * @since 0.1.0
 */
export const retryOn = (retryOn: RetryOn) => (self: RetryPolicy): RetryPolicy =>
  fromSchedule(self.schedule, { maxRetries: self.maxRetries, retryOn })

/**
 * Whether the policy retries this error at all (ignoring the cap).
 *
 * @since 0.1.0
 */
export const retries = (self: RetryPolicy, error: ErrorInfo): boolean => {
  if (neverRetried.has(error._tag)) return false
  const rule = self.retryOn
  if (rule === undefined) return true
  return typeof rule === "function" ? rule(error) : rule.includes(error._tag)
}

/**
 * Why a policy decided not to retry.
 *
 * @since 0.1.0
 */
export type Decision =
  | { readonly _tag: "Retry"; readonly countdown: Duration.Duration }
  | { readonly _tag: "NotRetryable" }
  | { readonly _tag: "Exhausted" }

const placeholder: ErrorInfo = { _tag: "Error", message: "preview" }

/**
 * Decides what happens after an attempt failed with `error` when the task has
 * already been retried `retriesSoFar` times: retry after a countdown, or stop.
 * A policy that allows no retries (`Retry.none`) ends the task with its own
 * error; one whose retries ran out ends it with `MaxRetriesExceeded`.
 *
 * The countdown is found by replaying the schedule from its start, so it does
 * not depend on which worker asks. Time seen by the schedule starts at 0 and
 * advances by each delay.
 *
 * @since 0.1.0
 */
export const decide = (
  self: RetryPolicy,
  retriesSoFar: number,
  error: ErrorInfo
): Effect.Effect<Decision> => {
  if (self.maxRetries === 0 || !retries(self, error)) return Effect.succeed({ _tag: "NotRetryable" })
  if (retriesSoFar >= self.maxRetries) return Effect.succeed({ _tag: "Exhausted" })
  return Effect.map(nthDelay(self, retriesSoFar, error), (delay) =>
    Option.match(delay, {
      onNone: () => ({ _tag: "Exhausted" }) as const,
      onSome: (countdown) => ({ _tag: "Retry", countdown }) as const
    }))
}

// defined once: a generator function made per call would pin its arguments
// through young collections (README, "Writing handlers")
const nthDelay = Effect.fnUntraced(function*(
  self: RetryPolicy,
  n: number,
  error: ErrorInfo
) {
  const step = yield* Schedule.toStep(self.schedule)
  let now = 0
  for (let i = 0; i <= n; i++) {
    const exit = yield* Effect.exit(step(now, error))
    if (exit._tag === "Failure") {
      if (Pull.isDoneCause(exit.cause)) return Option.none()
      return yield* Effect.failCause(exit.cause)
    }
    const delay = exit.value[1]
    if (i === n) return Option.some(delay)
    now += Duration.toMillis(delay)
  }
  return Option.none()
}, Effect.orDie)

/**
 * The countdowns the policy gives, in order, when every attempt fails with a
 * retryable error: at most `maxRetries` of them.
 *
 * @example
 * ```ts
 * import { Effect, Duration } from "effect"
 * import { Retry } from "@errand/core"
 *
 * const delays = Effect.runSync(Retry.delays(Retry.linear({ step: "10 seconds", maxRetries: 5 })))
 * delays.map(Duration.toSeconds) // [10, 20, 30, 40, 50]
 * ```
 *
 * @since 0.1.0
 */
export const delays = (self: RetryPolicy, error: ErrorInfo = placeholder): Effect.Effect<ReadonlyArray<Duration.Duration>> =>
  Effect.gen(function*() {
    const out: Array<Duration.Duration> = []
    for (let n = 0; n < self.maxRetries; n++) {
      const delay = yield* nthDelay(self, n, error)
      if (Option.isNone(delay)) break
      out.push(delay.value)
    }
    return out
  })
