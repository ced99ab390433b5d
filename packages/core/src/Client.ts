/**
 * The producer's side: submit tasks, wait for their typed results, read
 * their status and history, revoke them.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@errand/core"
 * import { Charge } from "./billing.ts"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* Client.Client
 *   const job = yield* client.submit(Charge, { orderId: "o-1", cents: 500 }, { countdown: "5 seconds" })
 *   const receipt = yield* client.await(job) // CardDeclined | MaxRetriesExceeded | TaskRevoked | ...
 *   const status = yield* client.status(job.id)
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, Duration, Effect, type Fiber, Layer, Option, Schema, type Scope, Tracer } from "effect"
import * as Broker from "./Broker.ts"
import * as Canvas from "./Canvas.ts"
import {
  type AwaitError,
  type BrokerError,
  fromInfo,
  PayloadInvalid,
  TaskDefect,
  TaskNotFound,
  TaskRevoked
} from "./Errors.ts"
import * as Batcher from "./internal/batcher.ts"
import * as Codec from "./internal/codec.ts"
import { noHeaders } from "./internal/headers.ts"
import { traced } from "./internal/tracing.ts"
import { randomUUID } from "./internal/uuid.ts"
import type { Message, TaskRecord } from "./Message.ts"
import { ResultBackend } from "./ResultBackend.ts"
import type * as Task from "./Task.ts"

/**
 * A submitted task: its id, and its definition for typed `await`.
 *
 * @since 0.1.0
 */
export interface Job<T extends Task.Any> {
  readonly id: string
  readonly task: T
  /** Set when the submission was deduplicated: the id of the task already waiting. */
  readonly duplicateOf?: string | undefined
}

/**
 * Options of `submit`.
 *
 * @since 0.1.0
 */
export interface SubmitOptions {
  /** Run no sooner than this long from now. */
  readonly countdown?: Duration.Input | undefined
  /** Run no sooner than this time (a `Date` or ms since the epoch). */
  readonly eta?: Date | number | undefined
  /** Override the task's priority (0..9). */
  readonly priority?: number | undefined
  /** Override the task's queue. */
  readonly queue?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** A submission with the same dedup id while the first is not final is not enqueued again. */
  readonly dedupId?: string | undefined
  /** Choose the task id (default: a random UUID). */
  readonly id?: string | undefined
  /** Store the result (default: the task's `storeResult`). */
  readonly storeResult?: boolean | undefined
}

/**
 * The status of a task: its record, as `Client.status` returns it.
 *
 * @since 0.1.0
 */
export type Status = TaskRecord

/**
 * A submitted canvas: its id (the id of its record) and its definition, for
 * a typed `awaitCanvas`.
 *
 * @since 0.1.0
 */
export interface CanvasJob<C extends Canvas.Any> {
  readonly id: string
  readonly canvas: C
}

/**
 * Options of `submitCanvas`: they apply to the canvas's coordinator (a
 * countdown delays the whole canvas); members keep their tasks' queues and
 * priorities and inherit `headers`.
 *
 * @since 0.1.0
 */
export interface CanvasSubmitOptions {
  readonly countdown?: Duration.Input | undefined
  readonly eta?: Date | number | undefined
  readonly priority?: number | undefined
  /** The coordinators' queue (default `errand.canvas`; run `Canvas.layer({ queues })` on it). */
  readonly queue?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Choose the canvas id (default: a random UUID). Members get `<id>/<path>`. */
  readonly id?: string | undefined
}

/**
 * The options argument of `submitCanvas`: required, with the canvas's
 * `input`, when its first steps take one (unbound tasks); optional otherwise.
 *
 * @since 0.1.0
 */
export type CanvasSubmitArgs<C extends Canvas.Any> = unknown extends Canvas.Input<C>
  ? [options?: CanvasSubmitOptions & { readonly input?: unknown }]
  : [options: CanvasSubmitOptions & { readonly input: Canvas.Input<C> }]

/**
 * A canvas and its members, each with its live record (`None` when not
 * submitted yet).
 *
 * @since 0.1.0
 */
export interface CanvasStatus {
  readonly id: string
  readonly state: string
  /** The canvas's own record (the coordinator task's). */
  readonly record: TaskRecord
  readonly members: ReadonlyArray<{
    readonly path: string
    readonly id: string
    readonly task: string
    readonly state: string
    readonly record: Option.Option<TaskRecord>
  }>
}

/**
 * @since 0.1.0
 */
export interface Service {
  /** Validate the payload and enqueue the task. Concurrent submits share a broker round trip. */
  readonly submit: <T extends Task.Any>(
    task: T,
    payload: Task.PayloadInput<T>,
    options?: SubmitOptions
  ) => Effect.Effect<Job<T>, PayloadInvalid | BrokerError>
  /** Submit many payloads of one task in one broker round trip. */
  readonly submitMany: <T extends Task.Any>(
    task: T,
    payloads: Iterable<Task.PayloadInput<T>>,
    options?: Omit<SubmitOptions, "id" | "dedupId">
  ) => Effect.Effect<ReadonlyArray<Job<T>>, PayloadInvalid | BrokerError>
  /**
   * Wait for the task to end: its typed result, or its typed failure, or why
   * errand ended it. `TaskNotFound` at once for a task with `keepRecord: false`.
   */
  readonly await: <T extends Task.Any>(
    job: Job<T>
  ) => Effect.Effect<Task.Success<T>, Task.Failure<T> | AwaitError | TaskNotFound | BrokerError>
  /** The task's record: state, retries, result, error, meta and per-attempt history. */
  readonly status: (id: string) => Effect.Effect<Status, TaskNotFound | BrokerError>
  /** Revoke a task: removed if waiting, interrupted at its worker's next heartbeat if running. */
  readonly revoke: (id: string) => Effect.Effect<Broker.RevokeResult, BrokerError>
  /**
   * Submit a canvas (chain, group, chord, nested): validates bound payloads
   * and the input, then enqueues its coordinator. Needs `Canvas.layer` in
   * some worker process.
   */
  readonly submitCanvas: <C extends Canvas.Any>(
    canvas: C,
    ...args: CanvasSubmitArgs<C>
  ) => Effect.Effect<CanvasJob<C>, PayloadInvalid | BrokerError>
  /**
   * Wait for a canvas to end: its typed result, or `CanvasFailed` naming the
   * member that failed (with that member's typed error as `cause`).
   */
  readonly awaitCanvas: <C extends Canvas.Any>(
    job: CanvasJob<C>
  ) => Effect.Effect<Canvas.Success<C>, Canvas.MemberError<C> | AwaitError | TaskNotFound | BrokerError>
  /**
   * Revoke a canvas: its coordinator stops (at its worker's next heartbeat
   * when running) and its members that have not started are revoked; running
   * members finish. Awaiting it then fails with `TaskRevoked`.
   */
  readonly revokeCanvas: (id: string) => Effect.Effect<Broker.RevokeResult, BrokerError>
  /** A canvas's record and the live records of its members. */
  readonly canvasStatus: (
    canvas: string | CanvasJob<Canvas.Any>
  ) => Effect.Effect<CanvasStatus, TaskNotFound | BrokerError>
}

/**
 * The client.
 *
 * @since 0.1.0
 */
export class Client extends Context.Service<Client, Service>()("@errand/core/Client") {}

/**
 * Turns a final record's error back into the typed error it stands for.
 *
 * @since 0.1.0
 */
export const errorOf = <T extends Task.Any>(
  task: T,
  record: TaskRecord
): Effect.Effect<never, Task.Failure<T> | AwaitError> => {
  const error = record.error ?? { _tag: "TaskDefect", message: `task ${record.id} ended ${record.state} without an error` }
  const defect = new TaskDefect({ taskId: record.id, message: `${error._tag}: ${error.message}` })
  const own = fromInfo(error)
  if (own !== undefined) return Effect.fail(own)
  if (record.state === "REVOKED") return Effect.fail(new TaskRevoked({ taskId: record.id, message: error.message }))
  if (error.encoded === undefined) return Effect.fail(defect)
  return Effect.flatMap(
    Effect.option(Schema.decodeUnknownEffect(task.codecs.failure)(error.encoded)),
    Option.match({
      onNone: () => Effect.fail(defect),
      onSome: (e) => Effect.fail(e as Task.Failure<T>)
    })
  )
}

/**
 * `effect(span)` inside a span `<name> <task>` when something can see it: a
 * tracer is installed, or the caller is traced (each message then carries
 * the trace to its run). Otherwise no span: it would cost more than the rest
 * of a submit, for nothing.
 */
const traceable = <A, E>(
  name: string,
  task: Task.Any,
  effect: (span: Tracer.Span | undefined) => Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  Effect.withFiber((fiber) => {
    if (!traced(fiber)) return effect(undefined)
    return Effect.withFiber((inner) => effect(spanOf(inner))).pipe(
      Effect.withSpan(`${name} ${task.name}`, { attributes: { "errand.task": task.name } }, { captureStackTrace: false })
    )
  })

/** The fiber's current span, if it is one of this process's (not an external parent). */
const spanOf = (fiber: Fiber.Fiber<unknown, unknown>): Tracer.Span | undefined => {
  const span = fiber.cache.span
  return span?._tag === "Span" ? span : undefined
}

/** A task's payload encoder, compiled once per task: the encoded payload, or `Codec.Invalid`. */
type Encoder = Codec.Run

const encoders = new WeakMap<Task.Any, Encoder>()

const encoderOf = (task: Task.Any): Encoder => {
  let encode = encoders.get(task)
  if (encode === undefined) {
    encode = Codec.encoder(task.payload, task.codecs.payload)
    encoders.set(task, encode)
  }
  return encode
}

/** Submissions per `Broker.enqueue` call of `submitMany`, unless the broker says (`Broker.enqueueChunk`). */
const SUBMIT_CHUNK = 5000

/** What every message of one submit call shares. */
interface Shared {
  readonly now: number
  readonly dueAt: number
  readonly queue: string
  readonly priority: number
  readonly headers: Readonly<Record<string, string>>
  readonly storeResult: boolean
}

/** Reads the options (and the caller's span, for the trace headers) once per call. */
const sharedOf = (
  task: Task.Any,
  options: Omit<SubmitOptions, "id" | "dedupId"> | undefined,
  now: number,
  span: Tracer.Span | undefined
): Shared => {
  const dueAt = options?.eta !== undefined
    ? (typeof options.eta === "number" ? options.eta : options.eta.getTime())
    : options?.countdown !== undefined
    ? now + Duration.toMillis(Duration.fromInputUnsafe(options.countdown))
    : now
  let headers: Readonly<Record<string, string>> = noHeaders
  if (options?.headers !== undefined || span !== undefined) {
    const own: Record<string, string> = { ...options?.headers }
    if (span !== undefined) {
      own["x-trace-id"] = span.traceId
      own["x-span-id"] = span.spanId
    }
    headers = own
  }
  return {
    now,
    dueAt,
    queue: options?.queue ?? task.queue,
    priority: options?.priority ?? task.priority,
    headers,
    storeResult: options?.storeResult ?? task.storeResult
  }
}

/** Encodes one payload and builds its submission; `PayloadInvalid` when the payload does not match. */
const prepare = (
  task: Task.Any,
  encode: Encoder,
  payload: unknown,
  shared: Shared,
  id: string | undefined,
  dedupId: string | undefined
): Broker.Submission | PayloadInvalid => {
  const encoded = encode(payload)
  if (encoded instanceof Codec.Invalid) return invalidPayload(task, encoded)
  return submissionOf(task, encoded, shared, id, dedupId)
}

/** The error for a payload its task's encoder refused. */
const invalidPayload = (task: Task.Any, invalid: Codec.Invalid): PayloadInvalid => {
  const error = Cause.findErrorOption(invalid.exit.cause)
  // not a Schema failure: a defect of the encoder, raised as one
  if (Option.isNone(error)) throw Cause.squash(invalid.exit.cause)
  const text = error.value.message
  return new PayloadInvalid({
    task: task.name,
    issue: text,
    message: `payload of ${task.name} does not match its Schema: ${text}`
  })
}

/** The submission of an encoded payload. */
const submissionOf = (
  task: Task.Any,
  encoded: unknown,
  shared: Shared,
  id: string | undefined,
  dedupId: string | undefined
): Broker.Submission => {
  // each shape of message made whole by one literal: a property added after
  // it would go to a properties array of its own
  const message: Message = shared.dueAt > shared.now
    ? shared.storeResult
      ? {
        id: id ?? randomUUID(),
        task: task.name,
        queue: shared.queue,
        payload: encoded,
        headers: shared.headers,
        priority: shared.priority,
        retries: 0,
        submittedAt: shared.now,
        eta: shared.dueAt
      }
      : {
        id: id ?? randomUUID(),
        task: task.name,
        queue: shared.queue,
        payload: encoded,
        headers: shared.headers,
        priority: shared.priority,
        retries: 0,
        submittedAt: shared.now,
        eta: shared.dueAt,
        storeResult: false
      }
    : shared.storeResult
    ? {
      id: id ?? randomUUID(),
      task: task.name,
      queue: shared.queue,
      payload: encoded,
      headers: shared.headers,
      priority: shared.priority,
      retries: 0,
      submittedAt: shared.now
    }
    : {
      id: id ?? randomUUID(),
      task: task.name,
      queue: shared.queue,
      payload: encoded,
      headers: shared.headers,
      priority: shared.priority,
      retries: 0,
      submittedAt: shared.now,
      storeResult: false
    }
  // an id made here, sent for the first time: no broker can know it yet
  return { message, dueAt: shared.dueAt, dedupId, fresh: id === undefined }
}

/**
 * Builds a client in the current scope.
 *
 * @since 0.1.0
 */
export const make: Effect.Effect<Service, never, Broker.Broker | ResultBackend | Scope.Scope> = Effect.gen(function*() {
  const broker = yield* Broker.Broker
  const backend = yield* ResultBackend
  // The caller's fiber sends its submit itself when none is in flight;
  // submits made meanwhile go together in the next round trip.
  const enqueue = yield* Batcher.make(broker.enqueue, { maxBatch: 1000, direct: true })

  const submitWith = <T extends Task.Any>(
    task: T,
    payload: Task.PayloadInput<T>,
    options: SubmitOptions | undefined,
    span: Tracer.Span | undefined
  ): Effect.Effect<Job<T>, PayloadInvalid | BrokerError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<Job<T>, PayloadInvalid | BrokerError> => {
      const submission = prepare(task, encoderOf(task), payload, sharedOf(task, options, now, span), options?.id, options?.dedupId)
      if (submission instanceof PayloadInvalid) return Effect.fail(submission)
      span?.attribute("errand.id", submission.message.id)
      return Effect.map(enqueue.run(submission), (enqueued): Job<T> => ({
        id: submission.message.id,
        task,
        duplicateOf: enqueued.duplicateOf
      }))
    })

  const submit = <T extends Task.Any>(
    task: T,
    payload: Task.PayloadInput<T>,
    options?: SubmitOptions
  ): Effect.Effect<Job<T>, PayloadInvalid | BrokerError> =>
    traceable("errand.submit", task, (span) => submitWith(task, payload, options, span))

  const submitMany = <T extends Task.Any>(
    task: T,
    payloads: Iterable<Task.PayloadInput<T>>,
    options?: Omit<SubmitOptions, "id" | "dedupId">
  ): Effect.Effect<Array<Job<T>>, PayloadInvalid | BrokerError> =>
    traceable("errand.submitMany", task, (span) => submitManyWith(task, payloads, options, span))

  const submitManyWith = Effect.fnUntraced(function*<T extends Task.Any>(
    task: T,
    payloads: Iterable<Task.PayloadInput<T>>,
    options: Omit<SubmitOptions, "id" | "dedupId"> | undefined,
    span: Tracer.Span | undefined
  ) {
    const now = yield* Clock.currentTimeMillis
    const shared = sharedOf(task, options, now, span)
    const encode = encoderOf(task)
    // every payload is checked before any is enqueued: one that does not
    // match submits none
    const encoded: Array<unknown> = []
    for (const payload of payloads) {
      const e = encode(payload)
      if (e instanceof Codec.Invalid) return yield* invalidPayload(task, e)
      encoded.push(e)
    }
    // The submissions are made a chunk at a time, as the chunk goes to the
    // broker: what the broker does not keep of them (the submission, the
    // chunk) dies young, where made all at once it lived through the young
    // generation's collections and was copied to the old one.
    //
    // Between chunks the fiber yields: on a broker that answers at once
    // (the memory broker) a worker in the same process then runs the
    // chunk's tasks while the rest are made, instead of after all of them,
    // so a large submit does not hold the event loop and its tasks do not
    // wait long enough to be copied to the old generation.
    // (a chunk size that is not a positive whole number is ignored: it
    // would loop forever or submit nothing)
    const asked = broker.enqueueChunk
    const size = asked !== undefined && Number.isInteger(asked) && asked > 0 ? asked : SUBMIT_CHUNK
    const out: Array<Job<T>> = new Array(encoded.length)
    for (let i = 0; i < encoded.length; i += size) {
      if (i > 0) yield* Effect.yieldNow
      const end = Math.min(encoded.length, i + size)
      const chunk: Array<Broker.Submission> = new Array(end - i)
      for (let j = i; j < end; j++) chunk[j - i] = submissionOf(task, encoded[j], shared, undefined, undefined)
      const enqueued = yield* broker.enqueue(chunk)
      for (let j = 0; j < chunk.length; j++) {
        out[i + j] = { id: chunk[j]!.message.id, task, duplicateOf: enqueued[j]?.duplicateOf }
      }
    }
    return out
  })

  const awaitJob = Effect.fnUntraced(function*<T extends Task.Any>(job: Job<T>) {
    const id = job.duplicateOf ?? job.id
    if (!job.task.keepRecord) {
      // its success leaves nothing to read: refused now rather than found missing later
      return yield* new TaskNotFound({
        taskId: id,
        message: `${job.task.name} keeps no record of a success (keepRecord: false), so task ${id} cannot be awaited; ` +
          `define the task without keepRecord: false to await it`
      })
    }
    const found = yield* backend.awaitFinal(id)
    if (Option.isNone(found)) {
      return yield* new TaskNotFound({ taskId: id, message: `no task ${id} is known to the result backend` })
    }
    const record = found.value
    if (record.state === "SUCCESS") {
      return yield* Schema.decodeUnknownEffect(job.task.codecs.success)(record.result).pipe(
        Effect.mapError((e) =>
          new TaskDefect({
            taskId: id,
            message: `the stored result of ${job.task.name} does not match its success Schema: ${e.message}`
          })
        )
      ) as Effect.Effect<Task.Success<T>, TaskDefect>
    }
    return yield* errorOf(job.task, record)
  })

  const status = (id: string) =>
    Effect.flatMap(backend.get(id), (found) =>
      Option.match(found, {
        onNone: () => Effect.fail(new TaskNotFound({ taskId: id, message: `no task ${id} is known to the result backend` })),
        onSome: Effect.succeed
      }))

  const submitCanvas = <C extends Canvas.Any>(canvas: C, ...args: CanvasSubmitArgs<C>) => submitCanvasWith(canvas, args[0])
  const submitCanvasWith = Effect.fnUntraced(function*<C extends Canvas.Any>(
    canvas: C,
    options: (CanvasSubmitOptions & { readonly input?: unknown }) | undefined
  ) {
    const root = yield* Canvas.encode(canvas, options?.input)
    const job = yield* submit(Canvas.Coordinator, root, {
      countdown: options?.countdown,
      eta: options?.eta,
      priority: options?.priority,
      queue: options?.queue,
      headers: options?.headers,
      id: options?.id
    })
    return { id: job.id, canvas } satisfies CanvasJob<C>
  })

  const awaitCanvas = Effect.fnUntraced(function*<C extends Canvas.Any>(job: CanvasJob<C>) {
    const found = yield* backend.awaitFinal(job.id)
    if (Option.isNone(found)) {
      return yield* new TaskNotFound({ taskId: job.id, message: `no canvas ${job.id} is known to the result backend` })
    }
    const record = found.value
    if (record.state === "SUCCESS") return yield* Canvas.decodeResult(job.canvas, job.id, record.result)
    const error = yield* Effect.flip(errorOf(Canvas.Coordinator, record))
    if (!(error instanceof Canvas.CanvasFailed)) return yield* Effect.fail(error)
    const task = Canvas.taskAt(job.canvas, error.path)
    const member: TaskRecord = {
      id: error.member,
      task: error.task,
      queue: task?.queue ?? "",
      state: error.state,
      retries: 0,
      submittedAt: 0,
      updatedAt: 0,
      error: error.error,
      history: []
    }
    const cause = error.error._tag === "TaskNotFound"
      ? new TaskNotFound({ taskId: error.member, message: error.error.message })
      : task === undefined
      ? new TaskDefect({ taskId: error.member, message: `${error.error._tag}: ${error.error.message}` })
      : yield* Effect.flip(errorOf(task, member))
    Object.defineProperty(error, "cause", { value: cause, enumerable: false, configurable: true, writable: true })
    return yield* Effect.fail(error as Canvas.MemberError<C>)
  })

  const canvasStatus = Effect.fnUntraced(function*(canvas: string | CanvasJob<Canvas.Any>) {
    const id = typeof canvas === "string" ? canvas : canvas.id
    const record = yield* status(id)
    const listed = typeof canvas === "string"
      ? Canvas.membersOf(record)
      : Canvas.members(canvas.canvas).map((m) => ({
        path: m.path,
        id: Canvas.memberId(id, m.path),
        task: m.task.name,
        state: "WAITING"
      }))
    const members = yield* Effect.forEach(listed, (m) =>
      Effect.map(backend.get(m.id), (r) => ({
        path: m.path,
        id: m.id,
        task: m.task,
        state: Option.match(r, { onNone: () => m.state, onSome: (r) => r.state }),
        record: r
      })), { concurrency: 16 })
    return { id, state: record.state, record, members } satisfies CanvasStatus
  })

  const revokeCanvas = Effect.fnUntraced(function*(id: string) {
    const result = yield* broker.revoke(id)
    // A running coordinator revokes its waiting members when interrupted,
    // but one that is waiting, or whose lease is running out after a crash,
    // never runs again: revoke what earlier attempts submitted here.
    if (result === "revoked" || result === "running") {
      const record = yield* backend.get(id)
      const submitted = Option.match(record, {
        onNone: () => [],
        onSome: (r) => Canvas.membersOf(r).filter((m) => m.state === "SUBMITTED").map((m) => m.id)
      })
      yield* Canvas.revokeMembers(submitted).pipe(
        Effect.provideService(Broker.Broker, broker),
        Effect.provideService(ResultBackend, backend)
      )
    }
    return result
  })

  return Client.of({
    submit,
    submitMany,
    await: awaitJob,
    status,
    revoke: broker.revoke,
    submitCanvas,
    awaitCanvas,
    revokeCanvas,
    canvasStatus
  })
})

/**
 * The client as a layer; needs a `Broker` and a `ResultBackend`.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<Client, never, Broker.Broker | ResultBackend> = Layer.effect(Client, make)
