/**
 * The wire format: what a producer puts in the broker for one task, and the
 * record the result backend keeps of it. Both are Schemas, so a message that
 * is not one (written by hand, by another program, by an older errand) is
 * reported with what was wrong instead of crashing a worker.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { ErrorInfo } from "./Errors.ts"

/**
 * One task in the broker.
 *
 * @since 0.1.0
 */
export const Message = Schema.Struct({
  /** The task id, unique per submission. */
  id: Schema.String,
  /** The task's name, as given to `Task.make`. */
  task: Schema.String,
  queue: Schema.String,
  /** The payload, encoded to JSON by the task's payload Schema. */
  payload: Schema.Unknown,
  headers: Schema.Record(Schema.String, Schema.String),
  /** 0 (lowest) to 9 (highest). */
  priority: Schema.Number,
  /** How often the task has been retried before this delivery. */
  retries: Schema.Number,
  /** When the producer submitted it (ms since the epoch, the producer's Clock). */
  submittedAt: Schema.Number,
  /** When it was first due, if it was submitted with a countdown or eta. */
  eta: Schema.optional(Schema.Number),
  /** Whether the result is stored (false: only the state is). */
  storeResult: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 */
export type Message = typeof Message.Type

/**
 * The final states: a task in one of them is never run again.
 *
 * @since 0.1.0
 */
export const finalStates: ReadonlySet<string> = new Set(["SUCCESS", "FAILURE", "REVOKED"])

/**
 * The built-in states, as Celery names them. Handlers may set custom states
 * with `TaskContext.updateState`.
 *
 * @since 0.1.0
 */
export type State = "PENDING" | "RECEIVED" | "STARTED" | "RETRY" | "SUCCESS" | "FAILURE" | "REVOKED"

/**
 * How one attempt ended.
 *
 * - `SUCCESS`, `FAILURE`, `REVOKED`: the attempt ended the task.
 * - `RETRY`: it failed and the task was rescheduled (`countdown` says when).
 * - `LOST`: its worker was lost; found by lease expiry (`WorkerLost`).
 * - `STALE`: its worker finished after its lease had been given to another
 *   attempt; the outcome was recorded here and nothing else changed.
 * - `DEAD`: the message could not be run (unknown task, invalid payload,
 *   malformed) and went to the dead letters.
 *
 * @since 0.1.0
 */
export const Outcome = Schema.Literals(["SUCCESS", "FAILURE", "RETRY", "REVOKED", "LOST", "STALE", "DEAD"])

/**
 * @since 0.1.0
 */
export type Outcome = typeof Outcome.Type

/**
 * One entry of a task's history: one attempt.
 *
 * @since 0.1.0
 */
export const Attempt = Schema.Struct({
  /** 0 for the first run, then the retry number. */
  attempt: Schema.Number,
  worker: Schema.String,
  startedAt: Schema.Number,
  endedAt: Schema.Number,
  outcome: Outcome,
  error: Schema.optional(ErrorInfo),
  /** The countdown chosen for the next try, in milliseconds. */
  countdown: Schema.optional(Schema.Number)
})

/**
 * @since 0.1.0
 */
export type Attempt = typeof Attempt.Type

/**
 * What the result backend knows of one task.
 *
 * @since 0.1.0
 */
export const TaskRecord = Schema.Struct({
  id: Schema.String,
  task: Schema.String,
  queue: Schema.String,
  state: Schema.String,
  retries: Schema.Number,
  submittedAt: Schema.Number,
  updatedAt: Schema.Number,
  eta: Schema.optional(Schema.Number),
  /** The result, encoded by the task's success Schema. */
  result: Schema.optional(Schema.Unknown),
  error: Schema.optional(ErrorInfo),
  /** Set by `TaskContext.updateState`. */
  meta: Schema.optional(Schema.Unknown),
  /** Set while a revoke is pending for a running task. */
  revoked: Schema.optional(Schema.Boolean),
  history: Schema.Array(Attempt)
})

/**
 * @since 0.1.0
 */
export type TaskRecord = typeof TaskRecord.Type

/**
 * Decodes a message read from a broker, failing with what was wrong.
 *
 * @since 0.1.0
 */
export const decodeMessage = Schema.decodeUnknownEffect(Message)

/**
 * JSON codecs for storing messages and records as strings.
 *
 * @since 0.1.0
 */
export const MessageJson = Schema.fromJsonString(Message)

/**
 * @since 0.1.0
 */
export const TaskRecordJson = Schema.fromJsonString(TaskRecord)
