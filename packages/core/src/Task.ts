/**
 * Tasks: a name and Schemas for the payload, the result and the typed
 * failure, plus how the task is retried, acknowledged and time-limited.
 * Producers and workers share the definition; only workers implement it.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Retry, Task, TaskContext } from "@errand/core"
 *
 * class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", { code: Schema.String }) {}
 *
 * export const Charge = Task.make("billing.charge", {
 *   payload: Schema.Struct({ orderId: Schema.String, cents: Schema.Int }),
 *   success: Schema.Struct({ receipt: Schema.String }),
 *   failure: CardDeclined,
 *   retry: Retry.linear({ step: "10 seconds", maxRetries: 5 })
 * })
 *
 * export const ChargeLive = Task.implement(Charge, Effect.fnUntraced(function*(payload) {
 *   const ctx = yield* TaskContext
 *   return { receipt: `r-${payload.orderId}-${ctx.retries}` }
 * }))
 * ```
 *
 * @since 0.1.0
 */
import { Duration, type Effect, Option, Pipeable, Schema, SchemaAST } from "effect"
import { SchemaJITCompiler } from "effect/schema"
import type { RetryRequested } from "./Errors.ts"
import * as Retry from "./Retry.ts"
import type { TaskContext } from "./TaskContext.ts"

const TypeId = "~@errand/core/Task" as const

/**
 * A Schema usable in a task: encodes to JSON, needs no services.
 *
 * @since 0.1.0
 */
export type AnySchema = Schema.Codec<any, any, never, never>

/**
 * A task definition.
 *
 * @since 0.1.0
 */
export interface Task<
  out Name extends string,
  out Payload extends AnySchema,
  out Success extends AnySchema,
  out Failure extends AnySchema
> extends Pipeable.Pipeable {
  readonly [TypeId]: typeof TypeId
  readonly name: Name
  readonly payload: Payload
  readonly success: Success
  readonly failure: Failure
  readonly retry: Retry.RetryPolicy
  /** Acknowledge only after the task ended (at-least-once). Default true. */
  readonly acksLate: boolean
  /** Interrupt the handler after this long (its finalizers run). */
  readonly softTimeLimit: Option.Option<Duration.Duration>
  /** Abandon the handler after this long (no waiting for finalizers). */
  readonly timeLimit: Option.Option<Duration.Duration>
  /** The queue it is sent to. Default "default". */
  readonly queue: string
  /** 0 (lowest) to 9 (highest). Default 5. */
  readonly priority: number
  /** Store the result for `await`/`status`. Default true; false keeps only the state. */
  readonly storeResult: boolean
  /**
   * Keep a record of a success. Default true; false: a task that succeeds
   * leaves nothing behind (as BullMQ's `removeOnComplete` and Celery's
   * `ignore_result`), so its id is unknown once it has ended (a submit
   * under that id then makes a new task, as after a record expires). For
   * streams of fire-and-forget tasks: no done record is written or
   * trimmed. Failures and revocations keep theirs; a canvas member keeps
   * its record (the canvas reads it), and so does a Beat run (its known id
   * keeps a time from running twice); `Client.await` of such a task fails
   * at once.
   *
   * @example
   * ```ts
   * import { Schema } from "effect"
   * import { Task } from "@errand/core"
   *
   * // a click stream nobody awaits: nothing is kept of each success
   * const Track = Task.make("analytics.track", {
   *   payload: Schema.Struct({ page: Schema.String }),
   *   keepRecord: false
   * })
   * ```
   */
  readonly keepRecord: boolean
  /** JSON codecs derived from the Schemas, built once. */
  readonly codecs: {
    readonly payload: Schema.Codec<Schema.Schema.Type<Payload>, unknown>
    readonly success: Schema.Codec<Schema.Schema.Type<Success>, unknown>
    readonly failure: Schema.Codec<Schema.Schema.Type<Failure>, unknown>
  }
}

/**
 * Any task.
 *
 * @since 0.1.0
 */
export interface Any extends Task<string, AnySchema, AnySchema, AnySchema> {}

/**
 * The decoded payload of a task.
 *
 * @since 0.1.0
 */
export type Payload<T extends Any> = Schema.Schema.Type<T["payload"]>

/**
 * The payload as a producer gives it (what the payload Schema encodes from).
 *
 * @since 0.1.0
 */
export type PayloadInput<T extends Any> = Schema.Schema.Type<T["payload"]>

/**
 * The result of a task.
 *
 * @since 0.1.0
 */
export type Success<T extends Any> = Schema.Schema.Type<T["success"]>

/**
 * The typed failure of a task.
 *
 * @since 0.1.0
 */
export type Failure<T extends Any> = Schema.Schema.Type<T["failure"]>

/**
 * Options of `Task.make`.
 *
 * @since 0.1.0
 */
export interface Options<Payload extends AnySchema, Success extends AnySchema, Failure extends AnySchema> {
  readonly payload: Payload
  readonly success?: Success | undefined
  readonly failure?: Failure | undefined
  readonly retry?: Retry.RetryPolicy | undefined
  readonly acksLate?: boolean | undefined
  readonly softTimeLimit?: Duration.Input | undefined
  readonly timeLimit?: Duration.Input | undefined
  readonly queue?: string | undefined
  readonly priority?: number | undefined
  readonly storeResult?: boolean | undefined
  /** Default true; false implies `storeResult: false` (see `Task.keepRecord`). */
  readonly keepRecord?: boolean | undefined
}

const Proto = {
  [TypeId]: TypeId,
  pipe() {
    return Pipeable.pipeArguments(this, arguments)
  }
}

const optionalDuration = (input: Duration.Input | undefined): Option.Option<Duration.Duration> =>
  input === undefined ? Option.none() : Option.some(Duration.fromInputUnsafe(input))

/**
 * Defines a task. `success` defaults to `Schema.Void`, `failure` to
 * `Schema.Never`, `retry` to `Retry.none`, `acksLate` to true.
 *
 * @since 0.1.0
 */
export const make = <
  const Name extends string,
  Payload extends AnySchema,
  Success extends AnySchema = typeof Schema.Void,
  Failure extends AnySchema = typeof Schema.Never
>(name: Name, options: Options<Payload, Success, Failure>): Task<Name, Payload, Success, Failure> => {
  const priority = options.priority ?? 5
  if (!Number.isInteger(priority) || priority < 0 || priority > 9) {
    throw new RangeError(`Task "${name}": priority must be a whole number from 0 to 9, got ${priority}`)
  }
  const self = Object.create(Proto)
  self.name = name
  self.payload = options.payload
  self.success = options.success ?? Schema.Void
  self.failure = options.failure ?? Schema.Never
  self.retry = options.retry ?? Retry.none
  self.acksLate = options.acksLate ?? true
  self.softTimeLimit = optionalDuration(options.softTimeLimit)
  self.timeLimit = optionalDuration(options.timeLimit)
  self.queue = options.queue ?? "default"
  self.priority = priority
  const keepRecord = options.keepRecord ?? true
  if (!keepRecord && options.storeResult === true) {
    throw new RangeError(
      `Task "${name}": keepRecord: false keeps no record to store a result in; drop storeResult: true or keep the record`
    )
  }
  self.storeResult = keepRecord ? options.storeResult ?? true : false
  self.keepRecord = keepRecord
  self.codecs = {
    payload: compiled(Schema.toCodecJson(self.payload)),
    success: compiled(Schema.toCodecJson(self.success)),
    failure: compiled(Schema.toCodecJson(self.failure))
  }
  return self
}

/**
 * Has Effect's Schema JIT compile a codec's decoder and encoder (lazily, at
 * first use), before anything captures its parser. Producers encode and
 * workers decode each payload; the interpreter's parser is shared by every
 * Schema in the process, so its property reads are megamorphic, where the
 * generated code reads the codec's own keys. Results and errors are the
 * interpreter's; where `new Function` is blocked it stays in use.
 */
const compiled = <S extends Schema.Top>(codec: S): S => {
  SchemaJITCompiler.enable(codec.ast)
  SchemaJITCompiler.enable(SchemaAST.flip(codec.ast))
  return codec
}

/**
 * Whether a value is a task definition.
 *
 * @since 0.1.0
 */
export const isTask = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

/**
 * A task with its handler: what a worker runs.
 *
 * @since 0.1.0
 */
export interface Implemented<T extends Any, R> {
  readonly task: T
  readonly handler: (payload: Payload<T>) => Effect.Effect<Success<T>, Failure<T> | RetryRequested, R>
}

/**
 * Any implemented task.
 *
 * @since 0.1.0
 */
export type AnyImplemented = Implemented<any, any>

/**
 * The services the handlers of implemented tasks need, besides `TaskContext`.
 *
 * @since 0.1.0
 */
export type Services<I> = I extends Implemented<any, infer R> ? Exclude<R, TaskContext> : never

/**
 * Implements a task. The handler's error type must be the task's `failure`
 * (or `RetryRequested`, from `TaskContext.retry`): anything else is a compile
 * error. A handler that returns its outcome as it is (`Effect.succeed`,
 * `Effect.fail`: an `Exit`) is not run in a fiber of its own, which makes
 * short pure tasks cheaper.
 *
 * Define a generator handler once, with `Effect.fnUntraced` (or `Effect.fn`),
 * not as `(payload) => Effect.gen(function*() { ... })`: a generator function
 * made anew for each task gets a V8 map of its own in the old generation,
 * which keeps what it captured (the payload, the task's context) alive
 * through young collections until a full one. On the Redis bench's drain
 * that cost ~5 µs of worker CPU a task.
 *
 * @since 0.1.0
 */
export const implement = <T extends Any, R = never>(
  task: T,
  handler: (payload: Payload<T>) => Effect.Effect<Success<T>, Failure<T> | RetryRequested, R>
): Implemented<T, R> => ({ task, handler })
