/**
 * The tagged errors errand puts in a task's error channel, and the errors of
 * the broker itself. Every error carries a message a person can act on.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * The summary of an error kept in a task's record and history: its `_tag` and
 * message, and (for a task's own typed failure) its encoded form.
 *
 * @since 0.1.0
 */
export const ErrorInfo = Schema.Struct({
  _tag: Schema.String,
  message: Schema.String,
  encoded: Schema.optional(Schema.Unknown)
})

/**
 * @since 0.1.0
 */
export type ErrorInfo = typeof ErrorInfo.Type

/**
 * The worker that ran an attempt was lost (crash, OOM, `kill -9`, lost
 * network): its lease ran out before it acknowledged the task. The task goes
 * through its retry policy, or fails when `acksLate` is false.
 *
 * @since 0.1.0
 */
export class WorkerLost extends Schema.TaggedError<WorkerLost>()("WorkerLost", {
  taskId: Schema.String,
  worker: Schema.String,
  message: Schema.String
}) {}

/**
 * The worker running the task shut down (SIGTERM, scope closed) before the
 * task finished within the shutdown grace period. The task is rescheduled by
 * its retry policy.
 *
 * @since 0.1.0
 */
export class WorkerShutdown extends Schema.TaggedError<WorkerShutdown>()("WorkerShutdown", {
  taskId: Schema.String,
  worker: Schema.String,
  message: Schema.String
}) {}

/**
 * The task failed more often than its retry policy allows. `lastError` is the
 * error of the final attempt.
 *
 * @since 0.1.0
 */
export class MaxRetriesExceeded extends Schema.TaggedError<MaxRetriesExceeded>()("MaxRetriesExceeded", {
  taskId: Schema.String,
  task: Schema.String,
  retries: Schema.Number,
  lastError: ErrorInfo,
  message: Schema.String
}) {}

/**
 * The handler ran past the task's `softTimeLimit`: it was interrupted and its
 * finalizers ran.
 *
 * @since 0.1.0
 */
export class SoftTimeLimitExceeded extends Schema.TaggedError<SoftTimeLimitExceeded>()("SoftTimeLimitExceeded", {
  taskId: Schema.String,
  limitMillis: Schema.Number,
  message: Schema.String
}) {}

/**
 * The handler ran past the task's hard `timeLimit`: it was abandoned without
 * waiting for its finalizers.
 *
 * @since 0.1.0
 */
export class TimeLimitExceeded extends Schema.TaggedError<TimeLimitExceeded>()("TimeLimitExceeded", {
  taskId: Schema.String,
  limitMillis: Schema.Number,
  message: Schema.String
}) {}

/**
 * The task was revoked before it finished.
 *
 * @since 0.1.0
 */
export class TaskRevoked extends Schema.TaggedError<TaskRevoked>()("TaskRevoked", {
  taskId: Schema.String,
  message: Schema.String
}) {}

/**
 * A payload did not match its task's payload Schema: at `submit` (nothing is
 * enqueued) or at the worker (a message sent by an older producer).
 *
 * @since 0.1.0
 */
export class PayloadInvalid extends Schema.TaggedError<PayloadInvalid>()("PayloadInvalid", {
  task: Schema.String,
  issue: Schema.String,
  message: Schema.String
}) {}

/**
 * A worker received a message for a task it has no implementation of.
 *
 * @since 0.1.0
 */
export class UnknownTask extends Schema.TaggedError<UnknownTask>()("UnknownTask", {
  task: Schema.String,
  known: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/**
 * A message in the queue could not be read as an errand message.
 *
 * @since 0.1.0
 */
export class MalformedMessage extends Schema.TaggedError<MalformedMessage>()("MalformedMessage", {
  id: Schema.String,
  issue: Schema.String,
  message: Schema.String
}) {}

/**
 * A handler died with a defect (an unexpected exception) instead of a typed
 * failure. Retried like any failure by default.
 *
 * @since 0.1.0
 */
export class TaskDefect extends Schema.TaggedError<TaskDefect>()("TaskDefect", {
  taskId: Schema.String,
  message: Schema.String
}) {}

/**
 * No task with this id is known to the result backend (never submitted, or
 * its record expired).
 *
 * @since 0.1.0
 */
export class TaskNotFound extends Schema.TaggedError<TaskNotFound>()("TaskNotFound", {
  taskId: Schema.String,
  message: Schema.String
}) {}

/**
 * The broker or result backend could not do what was asked (Redis went away,
 * a script failed). Nothing acknowledged is lost; the caller may retry.
 *
 * @since 0.1.0
 */
export class BrokerError extends Schema.TaggedError<BrokerError>()("BrokerError", {
  operation: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * The errors errand itself can put in an `await`'s error channel, besides the
 * task's own failure.
 *
 * @since 0.1.0
 */
export type AwaitError =
  | MaxRetriesExceeded
  | WorkerLost
  | WorkerShutdown
  | SoftTimeLimitExceeded
  | TimeLimitExceeded
  | TaskRevoked
  | PayloadInvalid
  | UnknownTask
  | MalformedMessage
  | TaskDefect

/**
 * errand's own errors that can end a task, by `_tag`. Their fields are kept
 * in the record (`ErrorInfo.encoded`), so `Client.await` gives back the same
 * error, worker names and limits included.
 *
 * @since 0.1.0
 */
export const taskErrors = {
  WorkerLost,
  WorkerShutdown,
  MaxRetriesExceeded,
  SoftTimeLimitExceeded,
  TimeLimitExceeded,
  TaskRevoked,
  PayloadInvalid,
  UnknownTask,
  MalformedMessage,
  TaskDefect
} as const

const taskErrorCodecs = Object.fromEntries(
  Object.entries(taskErrors).map(([tag, schema]) => [tag, Schema.toCodecJson(schema)])
) as Record<string, Schema.Codec<AwaitError, unknown>>

/**
 * Reads back one of errand's own errors from its summary; `undefined` when
 * the summary is not one (or was written by another version).
 *
 * @since 0.1.0
 */
export const fromInfo = (error: ErrorInfo): AwaitError | undefined => {
  const codec = taskErrorCodecs[error._tag]
  if (codec === undefined || error.encoded === undefined) return undefined
  const decoded = Schema.decodeUnknownOption(codec)(error.encoded)
  return decoded._tag === "Some" ? decoded.value : undefined
}

/**
 * Summarises any error as `{ _tag, message }` for records and history. For a
 * task's own typed failure pass its `encoded` form; errand's own errors are
 * encoded here.
 *
 * @since 0.1.0
 */
export const info = (error: unknown, encoded?: unknown): ErrorInfo => {
  if (typeof error === "object" && error !== null) {
    const tag = "_tag" in error && typeof error._tag === "string" ? error._tag : "Error"
    const message = "message" in error && typeof error.message === "string" && error.message.length > 0
      ? error.message
      : safeString(error)
    const codec = encoded === undefined ? taskErrorCodecs[tag] : undefined
    const own = codec === undefined ? undefined : Schema.encodeUnknownOption(codec)(error)
    const kept = own !== undefined && own._tag === "Some" ? own.value : encoded
    return kept === undefined ? { _tag: tag, message } : { _tag: tag, message, encoded: kept }
  }
  return { _tag: "Error", message: String(error) }
}

const safeString = (u: unknown): string => {
  try {
    return JSON.stringify(u) ?? String(u)
  } catch {
    return String(u)
  }
}

/**
 * Raised by `TaskContext.retry`: the handler asks to be run again after a
 * countdown. It counts against the policy's `maxRetries`.
 *
 * @since 0.1.0
 */
export class RetryRequested extends Schema.TaggedError<RetryRequested>()("RetryRequested", {
  countdownMillis: Schema.optional(Schema.Number),
  reason: Schema.optional(ErrorInfo),
  message: Schema.String
}) {}
