/**
 * Workers: claim tasks from the broker, run their handlers, and record every
 * attempt. A worker acknowledges late by default (at-least-once), renews its
 * leases by heartbeat while tasks run, applies soft and hard time limits and
 * the retry policy, and shuts down warmly when its scope closes.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { MemoryBroker, Worker } from "@errand/core"
 * import { ChargeLive } from "./billing.ts"
 *
 * const WorkerLive = Worker.layer({ tasks: [ChargeLive], concurrency: 16 }).pipe(
 *   Layer.provide(MemoryBroker.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  LogLevel,
  Option,
  Schedule,
  Schema,
  type Scope,
  Tracer
} from "effect"
import * as Broker from "./Broker.ts"
import {
  BrokerError,
  type ErrorInfo,
  info,
  MalformedMessage,
  MaxRetriesExceeded,
  PayloadInvalid,
  RetryRequested,
  SoftTimeLimitExceeded,
  TaskDefect,
  TaskRevoked,
  TimeLimitExceeded,
  UnknownTask,
  WorkerLost,
  WorkerShutdown
} from "./Errors.ts"
import * as Batcher from "./internal/batcher.ts"
import * as Codec from "./internal/codec.ts"
import { Fifo } from "./internal/fifo.ts"
import { beatHeader, canvasHeader, noHeaders } from "./internal/headers.ts"
import { type Attempt, type Message, Message as MessageSchema, type Outcome } from "./Message.ts"
import { ResultBackend } from "./ResultBackend.ts"
import * as Retry from "./Retry.ts"
import type * as Task from "./Task.ts"
import { retryRequest, type Service as TaskContextService, TaskContext } from "./TaskContext.ts"

/**
 * Options of `Worker.layer` / `Worker.make`.
 *
 * @since 0.1.0
 */
export interface Options<Tasks extends ReadonlyArray<Task.AnyImplemented>> {
  /** The implemented tasks this worker runs. */
  readonly tasks: Tasks
  /** How many handlers run at once. Default 16. */
  readonly concurrency?: number | undefined
  /** The queues to consume. Default: the queues of `tasks`. */
  readonly queues?: ReadonlyArray<string> | undefined
  /** How many tasks to claim per broker round trip, and to hold beyond those running. Default: `concurrency`. */
  readonly prefetch?: number | undefined
  /**
   * How far claims may grow beyond `prefetch` while handlers end faster than
   * a claim round trip and the runners run dry waiting for claims: each such
   * claim doubles the batch, up to this many tasks; it halves back toward
   * `prefetch` once handlers get slower or claims come back short. Default:
   * `max(prefetch, 500)`; `prefetch` turns the growth off. While such
   * claims keep coming back full, the next one is sent before the tasks just
   * claimed run (up to two batches held beyond the running tasks), unless
   * the broker's claims land at once (the memory broker's).
   */
  readonly prefetchMax?: number | undefined
  /** How long a claim lasts without a heartbeat. Renewed every third of it. Default 10 seconds. */
  readonly lease?: Duration.Input | undefined
  /** How long a closing worker waits for running tasks before interrupting them. Default 30 seconds. */
  readonly shutdownGrace?: Duration.Input | undefined
  /** How long one claim waits for work when the queues are empty. Default 5 seconds. */
  readonly idleWait?: Duration.Input | undefined
  /** This worker's id in leases and history. Default: `worker-<random>`. */
  readonly id?: string | undefined
  /** The host this worker registers under (`errand inspect`). Default: `$HOSTNAME`, else "unknown". */
  readonly host?: string | undefined
  /** The process id it registers under. Default: this process's. */
  readonly pid?: number | undefined
}

/**
 * A running worker.
 *
 * @since 0.1.0
 */
export interface Service {
  readonly id: string
  readonly queues: ReadonlyArray<string>
  /** Tasks held (running or prefetched). */
  readonly inFlight: Effect.Effect<number>
  /**
   * Simulates a sudden death (kill -9, OOM, lost network): every fiber stops
   * at once and the worker never speaks to the broker again, so its leases
   * run out and its tasks come back as `WorkerLost`. For tests.
   */
  readonly kill: Effect.Effect<void>
  /**
   * Makes the shutdown cold (a second SIGTERM): no grace, running tasks are
   * interrupted at once and rescheduled with `WorkerShutdown`. Ends the grace
   * of a shutdown in progress, or applies when the worker's scope closes.
   */
  readonly shutdownNow: Effect.Effect<void>
}

/**
 * The worker running in the current context (provided by `Worker.layer`).
 *
 * @since 0.1.0
 */
export class Worker extends Context.Service<Worker, Service>()("@errand/core/Worker") {}

/**
 * How a task ends, as the worker's hooks see it just before it is recorded.
 *
 * @since 0.1.0
 */
export type Final =
  | { readonly state: "SUCCESS"; readonly result: unknown }
  | { readonly state: "FAILURE" | "REVOKED"; readonly error: ErrorInfo }

/**
 * Hooks a worker runs when a task reaches its final state, before the outcome
 * is acknowledged and while the lease is held: a worker that dies in between
 * leaves the task to be run again, so a hook runs at least once. What
 * canvases (chain, group, chord) build on. `result` is encoded (JSON).
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { Worker } from "@errand/core"
 *
 * const Audit = Layer.succeed(Worker.Hooks, {
 *   beforeFinal: (message, final) => Effect.log(`${message.task} ${message.id} ends ${final.state}`)
 * })
 * ```
 *
 * @since 0.1.0
 */
export interface HooksService {
  readonly beforeFinal: (message: Message, final: Final) => Effect.Effect<void, BrokerError>
}

/**
 * The hooks of the workers in this context; none by default.
 *
 * @since 0.1.0
 */
export const Hooks = Context.Reference<HooksService>("@errand/core/Worker/Hooks", {
  defaultValue: () => noHooks
})

const noHooks: HooksService = { beforeFinal: () => Effect.void }

type StopReason = "shutdown" | "revoked" | "stale" | "killed"

/** An implemented task with its codecs compiled once. */
interface Registered {
  readonly impl: Task.AnyImplemented
  readonly task: Task.Any
  /** The decoded payload, or `Codec.Invalid`. */
  readonly decodePayload: Codec.Run
  /** The encoded result, or `Codec.Invalid`. */
  readonly encodeSuccess: Codec.Run
  readonly encodeFailure: (u: unknown) => Exit.Exit<unknown, Schema.SchemaError>
  /** Acknowledges late and has no time limits: a claim-started run may take the runner's fast path. */
  readonly plain: boolean
}

const decodeMessageExit = Schema.decodeUnknownExit(MessageSchema)

/**
 * A delivery the worker holds, from its claim until its outcome has landed in
 * the broker. Each claim is held on its own (a worker may claim again a task
 * whose earlier lease it lost while that attempt still runs, and both must be
 * renewed, awaited at shutdown and counted), in the worker's `HeldList`.
 */
interface Held {
  readonly delivery: Broker.Delivery
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  reason: StopReason | undefined
  /** Its outcome is queued for the broker: the runner has moved on, the lease is still held. */
  acking: boolean
  /** In the `HeldList` (from the claim until `done`). */
  linked: boolean
  prev: Held | undefined
  next: Held | undefined
}

/**
 * The held deliveries, oldest first, linked through their `prev` and `next`:
 * holding and releasing one is a few field writes, where a Map keyed by the
 * delivery cost three hashed lookups per task (set, get, delete) and its
 * rehashing.
 */
class HeldList {
  private head: Held | undefined = undefined
  private tail: Held | undefined = undefined
  size = 0

  add(h: Held): void {
    h.linked = true
    h.prev = this.tail
    h.next = undefined
    if (this.tail === undefined) this.head = h
    else this.tail.next = h
    this.tail = h
    this.size++
  }

  /** Releases `h`; false when it was not held (any more). */
  remove(h: Held): boolean {
    if (!h.linked) return false
    h.linked = false
    if (h.prev === undefined) this.head = h.next
    else h.prev.next = h.next
    if (h.next === undefined) this.tail = h.prev
    else h.next.prev = h.prev
    h.prev = undefined
    h.next = undefined
    this.size--
    return true
  }

  /** The held deliveries now, oldest first (a copy: callers may release them meanwhile). */
  values(): Array<Held> {
    const out: Array<Held> = []
    for (let h = this.head; h !== undefined; h = h.next) out.push(h)
    return out
  }
}

/** The history entry of an attempt by `worker`. */
const attemptOf = (
  worker: string,
  message: { readonly retries: number },
  startedAt: number,
  endedAt: number,
  outcome: Outcome,
  error?: ErrorInfo,
  countdown?: number
): Attempt =>
  // the usual entry (a success) without spreading empty objects: it is
  // made once per task
  error === undefined && countdown === undefined
    ? { attempt: message.retries, worker, startedAt, endedAt, outcome }
    : {
      attempt: message.retries,
      worker,
      startedAt,
      endedAt,
      outcome,
      ...(error === undefined ? {} : { error }),
      ...(countdown === undefined ? {} : { countdown })
    }

/** What every `Ready` of one worker shares: its id and its result backend. */
interface ReadyEnv {
  readonly worker: string
  readonly backend: ResultBackend["Service"]
}

/**
 * A delivery whose message, task and payload are checked, about to run. It is
 * also the handler's `TaskContext` (its fields read through to the delivery
 * and message), and the source of its success's completion (`Succeeded`):
 * one object a task, where a context, its `updateState` closure and a
 * completion with its attempt were four.
 */
class Ready implements TaskContextService {
  readonly delivery: Broker.Delivery
  readonly message: Message
  readonly registered: Registered
  readonly payload: unknown
  readonly startedAt: number
  readonly env: ReadyEnv
  constructor(
    delivery: Broker.Delivery,
    message: Message,
    registered: Registered,
    payload: unknown,
    startedAt: number,
    env: ReadyEnv
  ) {
    this.delivery = delivery
    this.message = message
    this.registered = registered
    this.payload = payload
    this.startedAt = startedAt
    this.env = env
  }
  get id(): string {
    return this.delivery.id
  }
  get task(): string {
    return this.registered.task.name
  }
  get queue(): string {
    return this.delivery.queue
  }
  get retries(): number {
    return this.message.retries
  }
  get eta(): number | undefined {
    return this.message.eta
  }
  get headers(): Readonly<Record<string, string>> {
    return this.message.headers
  }
  get worker(): string {
    return this.env.worker
  }
  /** Made when read (few handlers use it), bound to this task: safe to destructure. */
  get updateState(): TaskContextService["updateState"] {
    const id = this.delivery.id
    const backend = this.env.backend
    return (state, meta) => Effect.asVoid(backend.setState(id, state, meta))
  }
  get retry(): TaskContextService["retry"] {
    return retryRequest
  }
}

/**
 * The completion of a `Ready` task that succeeded: its fields read through to
 * the task, and its attempt made only if a broker reads it (a success that
 * keeps no record, or no result, has it read by none).
 */
class Succeeded implements Broker.Completion {
  readonly ready: Ready
  readonly result: unknown
  readonly endedAt: number
  readonly storeResult: boolean
  readonly keepRecord: boolean
  private made: Attempt | undefined
  constructor(ready: Ready, result: unknown, endedAt: number, storeResult: boolean, keepRecord: boolean) {
    this.ready = ready
    this.result = result
    this.endedAt = endedAt
    this.storeResult = storeResult
    this.keepRecord = keepRecord
    this.made = undefined
  }
  get id(): string {
    return this.ready.delivery.id
  }
  get token(): number {
    return this.ready.delivery.token
  }
  get queue(): string {
    return this.ready.delivery.queue
  }
  get handle(): unknown {
    return this.ready.delivery.handle
  }
  get state(): "SUCCESS" {
    return "SUCCESS"
  }
  get error(): undefined {
    return undefined
  }
  get message(): Message {
    return this.ready.message
  }
  get attempt(): Attempt {
    const { env, message, startedAt } = this.ready
    return this.made ??= attemptOf(env.worker, message, startedAt, this.endedAt, "SUCCESS")
  }
}

/**
 * A well-formed message, checked field by field: the Schema decode runs
 * only for messages that fail this, to say what is wrong with them.
 */
const isMessage = (u: unknown): u is Message => {
  if (typeof u !== "object" || u === null) return false
  const m = u as Record<string, unknown>
  if (
    typeof m.id !== "string" || typeof m.task !== "string" || typeof m.queue !== "string" ||
    typeof m.priority !== "number" || typeof m.retries !== "number" || typeof m.submittedAt !== "number" ||
    !("payload" in m) ||
    (m.eta !== undefined && typeof m.eta !== "number") ||
    (m.storeResult !== undefined && typeof m.storeResult !== "boolean")
  ) return false
  const headers = m.headers
  // the shared empty headers of a message submitted with none (frozen): nothing to check
  if (headers === noHeaders) return true
  if (typeof headers !== "object" || headers === null || Array.isArray(headers)) return false
  for (const key in headers) {
    if (typeof (headers as Record<string, unknown>)[key] !== "string") return false
  }
  return true
}

const randomId = () => Math.random().toString(36).slice(2, 10)

/** How long the broker keeps a worker's registration after its last heartbeat vouched for it. */
const registrationKeptMillis = 10 * 60_000

const defaultHost = (): string =>
  (typeof process === "undefined" ? undefined : process.env?.HOSTNAME) || "unknown"

const defaultPid = (): number => (typeof process === "undefined" ? 0 : process.pid)

/**
 * Starts a worker in the current scope; closing the scope shuts it down
 * warmly.
 *
 * @since 0.1.0
 */
export const make = <const Tasks extends ReadonlyArray<Task.AnyImplemented>>(
  options: Options<Tasks>
): Effect.Effect<Service, never, Scope.Scope | Broker.Broker | ResultBackend | Task.Services<Tasks[number]>> =>
  Effect.gen(function*() {
    const broker = yield* Broker.Broker
    const backend = yield* ResultBackend
    const id = options.id ?? `worker-${randomId()}`
    const env: ReadyEnv = { worker: id, backend }
    const concurrency = Math.max(1, options.concurrency ?? 16)
    const prefetch = Math.max(1, options.prefetch ?? concurrency)
    const prefetchMax = Math.max(prefetch, options.prefetchMax ?? 500)
    const leaseMillis = Duration.toMillis(Duration.fromInputUnsafe(options.lease ?? "10 seconds"))
    const graceMillis = Duration.toMillis(Duration.fromInputUnsafe(options.shutdownGrace ?? "30 seconds"))
    const idleMillis = Duration.toMillis(Duration.fromInputUnsafe(options.idleWait ?? "5 seconds"))
    const registry = new Map<string, Registered>()
    for (const impl of options.tasks) {
      if (registry.has(impl.task.name)) {
        return yield* Effect.die(new Error(`Worker: task "${impl.task.name}" is implemented twice`))
      }
      const task: Task.Any = impl.task
      registry.set(task.name, {
        impl,
        task,
        decodePayload: Codec.decoder(task.payload, task.codecs.payload),
        encodeSuccess: Codec.encoder(task.success, task.codecs.success),
        encodeFailure: Schema.encodeUnknownExit(task.codecs.failure),
        plain: task.acksLate && Option.isNone(task.softTimeLimit) && Option.isNone(task.timeLimit)
      })
    }
    const clock = yield* Clock.Clock
    const hooks = yield* Hooks
    const tracing = (yield* Tracer.Tracer) !== Tracer.nativeTracer
    const known = [...registry.keys()].sort()
    const queues = options.queues ?? [...new Set(options.tasks.map((impl) => impl.task.queue))]
    if (queues.length === 0) {
      return yield* Effect.die(new Error("Worker: no queues to consume (pass `queues` or at least one task)"))
    }
    const cold = Deferred.makeUnsafe<void>()
    // Done when the worker is killed (`kill`).
    const killedSignal = Deferred.makeUnsafe<void>()

    const held = new HeldList()
    // Held deliveries whose outcome is queued for the broker (`Held.acking`).
    let acking = 0
    // Claimed deliveries waiting for a runner, oldest first.
    const waiting = new Fifo<Held>()

    // Registration: who this worker is, renewed with every heartbeat (`errand inspect`).
    const host = options.host ?? defaultHost()
    const pid = options.pid ?? defaultPid()
    const workerStartedAt = clock.currentTimeMillisUnsafe()
    const register = (stopped: boolean): Effect.Effect<void> => {
      const heartbeat = broker.heartbeat
      if (heartbeat === undefined) return Effect.void
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        heartbeat([{
          id,
          host,
          pid,
          queues,
          concurrency,
          startedAt: workerStartedAt,
          heartbeatAt: now,
          aliveUntil: now + leaseMillis,
          expiresAt: now + leaseMillis + registrationKeptMillis,
          inFlight: held.size,
          ...(stopped ? { stoppedAt: now } : {})
        }])).pipe(Effect.catch((e) =>
          // at shutdown the broker may already be closed; the entry then shows as gone after a lease
          stopped
            ? Effect.logDebug(`worker stop not registered: ${e.message}`)
            : Effect.logWarning(`worker registration failed: ${e.message}`)
        ))
    }
    yield* register(false)
    let stopping = false
    let killed = false
    // The claim batch: `prefetch`, grown while claims limit the drain (see the claimer).
    let batchSize = prefetch
    /**
     * Whether the claimer may claim now: the room is not all taken, and a
     * good part of it is free unless the runners are about to starve. Tasks
     * whose outcome is on its way to the broker do not take room (runners
     * have moved on from them), up to one more full window of them: the next
     * claim is then at the broker while those acknowledgements are.
     */
    const claimRoom = (): number => {
      const pending = held.size - Math.min(acking, concurrency + batchSize)
      const room = concurrency + batchSize - pending
      return room <= 0 || (pending > concurrency && room < Math.max(1, batchSize >> 1)) ? 0 : room
    }
    // Signalled when the claimer may claim again, or no task is held any
    // more (a shutdown waits for that); made only while someone waits for it.
    let roomSignal: Deferred.Deferred<void> | undefined
    const waitRoom = Effect.suspend(() => Deferred.await(roomSignal ??= Deferred.makeUnsafe<void>()))
    const freeRoom = () => {
      // A resumed waiter runs at once, in this call: waking the claimer for
      // each task done would cost a resume and a new wait per task.
      if (roomSignal === undefined || (held.size > 0 && claimRoom() === 0)) return
      const d = roomSignal
      roomSignal = undefined
      Deferred.doneUnsafe(d, Effect.void)
    }

    // Broker writes: batched, and retried through outages until they land.
    const outage = Schedule.exponential("50 millis").pipe(
      Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(2))))
    )
    /**
     * `effect`, run again through an outage until it lands (`outage`'s
     * delays, each failure logged). The retry is set up only once a call
     * failed: `Effect.retry` makes its schedule's state at every run, which
     * cost each claim and each batch write a few hundred bytes.
     */
    const throughOutage = <A>(op: string, effect: Effect.Effect<A, BrokerError>): Effect.Effect<A, BrokerError> => {
      const logged = Effect.tapError(effect, (e) => Effect.logWarning(`broker ${op} failed, retrying: ${e.message}`))
      return Effect.catch(logged, (error) => {
        // the failure just met is the schedule's first input: the next try
        // comes after its first delay, as when the retry wrapped the call
        let first = true
        return Effect.retry(
          Effect.suspend(() => first ? ((first = false), Effect.fail(error)) : logged),
          outage
        )
      })
    }
    const persistent = <A>(op: string, effect: Effect.Effect<A, BrokerError>) =>
      Effect.orDie(throughOutage(op, effect))
    const batched = <I, O>(op: string, call: (batch: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, BrokerError>) =>
      // the outage retry wraps the batch's one broker call, not each item; an idle
      // request is sent by its runner's own fiber (`direct`)
      Effect.map(
        Batcher.make((batch: ReadonlyArray<I>) => persistent(op, call(batch)), { maxBatch: 512, direct: true }),
        (b) => (item: I) => killed ? Effect.never : b.run(item)
      )
    const beforeFinal = (message: Message, final: Final) =>
      killed || hooks === noHooks ? Effect.void : persistent("beforeFinal hook", hooks.beforeFinal(message, final))
    const start = yield* batched("start", broker.start)

    /** A held delivery is done: its outcome landed (or it needs none). */
    const done = (h: Held) => {
      if (held.remove(h) && h.acking) acking--
      freeRoom()
    }

    /**
     * Releases the deliveries of a written batch whose outcomes landed, from
     * the `i`th on, up to the first one the broker refused: its index, or
     * `size` when none was.
     */
    const settle = (size: number, allFor: ReadonlyArray<Held>, from: number, oks: ReadonlyArray<boolean>, i: number) => {
      for (; i < size; i++) {
        if (oks[i] !== true) return i
        done(allFor[from + i]!)
      }
      return size
    }

    /**
     * Acknowledgements (complete, retry, deadLetter) do not hold up the
     * runner: the outcome is queued, the runner takes its next task, and a
     * flusher fiber writes the queued outcomes in one broker call per batch.
     * The delivery stays held (its lease renewed, shutdown waiting for it)
     * until its outcome lands; one the broker refuses (the lease was taken
     * over) is kept in history as STALE.
     */
    const acks = <I extends Broker.Lease & { readonly attempt: Attempt }>(
      op: string,
      call: (batch: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<boolean>, BrokerError>
    ) =>
      Effect.gen(function*() {
        // the queued outcomes and their deliveries, side by side
        let queued: Array<I> = []
        let queuedFor: Array<Held> = []
        let signal: Deferred.Deferred<void> | undefined
        const flusher = Effect.gen(function*() {
          while (true) {
            if (queued.length === 0) {
              yield* Deferred.await(signal ??= Deferred.makeUnsafe<void>())
              // The signal resumes this fiber at once, inside the runner that
              // queued the first outcome: yield so that the outcomes queued
              // until the runners next wait go in this batch, not one each.
              yield* Effect.yieldNow
              continue
            }
            // everything queued goes, in writes of up to 512 (sliced off,
            // not spliced: a splice moved the rest of the queue per write)
            const all = queued
            const allFor = queuedFor
            queued = []
            queuedFor = []
            for (let from = 0; from < all.length; from += 512) {
              if (killed) return yield* Effect.never
              const batch = all.length <= 512 ? all : all.slice(from, from + 512)
              const oks = yield* persistent(op, call(batch))
              // the landed ones in a plain loop (it runs per task), each
              // refused one recorded as STALE in between, in order
              let i = 0
              while ((i = settle(batch.length, allFor, from, oks, i)) < batch.length) {
                const h = allFor[from + i]!
                yield* stale(h.delivery, batch[i]!.attempt)
                done(h)
                i++
              }
            }
          }
        })
        yield* Effect.forkScoped(flusher)
        /** Queues an outcome (the runner's fast path calls it directly). */
        const offer = (h: Held, item: I): void => {
          if (killed) return
          if (h.linked && !h.acking) {
            h.acking = true
            acking++
            // the runner has moved on: its place is free for the claimer
            freeRoom()
          }
          queued.push(item)
          queuedFor.push(h)
          if (signal !== undefined) {
            const s = signal
            signal = undefined
            Deferred.doneUnsafe(s, Effect.void)
          }
        }
        return {
          offer,
          run: (h: Held, item: I): Effect.Effect<void> => Effect.sync(() => offer(h, item))
        }
      })
    const completions = yield* acks("complete", broker.complete)
    const complete = completions.run
    const retry = (yield* acks("retry", broker.retry)).run
    const deadLetter = (yield* acks("deadLetter", broker.deadLetter)).run

    /** The completion of an attempt that succeeded with `result` (encoded), ended now. */
    const successOf = (ready: Ready, result: unknown): Broker.Completion => {
      const { message, registered } = ready
      return new Succeeded(
        ready,
        result,
        clock.currentTimeMillisUnsafe(),
        (registered.task.storeResult || isMember(message)) && message.storeResult !== false,
        registered.task.keepRecord || keepsRecord(message)
      )
    }

    /** Whether the message carries `header` (most carry none: `noHeaders`). */
    const carries = (message: Message, header: string) => message.headers !== noHeaders && header in message.headers
    /** A canvas member keeps its record and result whatever its task says: the canvas reads them. */
    const isMember = (message: Message) => carries(message, canvasHeader)
    /**
     * A canvas member and a Beat run keep their record whatever their task
     * says: the canvas reads it, and a Beat run's known id is what keeps a
     * scheduled time from running twice.
     */
    const keepsRecord = (message: Message) => isMember(message) || carries(message, beatHeader)

    const debug = yield* LogLevel.isEnabled("Debug")
    const log = (level: "Debug" | "Info" | "Warning", text: string, d: Broker.Delivery, extra?: object) => {
      if (level === "Debug" && !debug) return Effect.void
      const annotations = { worker: id, taskId: d.id, queue: d.queue, ...extra }
      const effect = level === "Debug"
        ? Effect.logDebug(text)
        : level === "Info"
        ? Effect.logInfo(text)
        : Effect.logWarning(text)
      return Effect.annotateLogs(effect, annotations)
    }

    const stale = (d: Broker.Delivery, attempt: Attempt) =>
      killed ? Effect.void : Effect.andThen(
        log("Warning", "lease lost before the outcome was recorded; kept in history as STALE", d),
        persistent("recordStale", backend.recordStale(d.id, { ...attempt, outcome: "STALE" }))
      )

    /**
     * How a failed attempt is recorded: the worker and times of the attempt
     * (a lost attempt's are its dead worker's), whether the policy is
     * bypassed (an explicit `ctx.retry`, or a lost task acknowledged early).
     */
    interface FailedAttempt {
      readonly startedAt: number
      readonly endedAt?: number | undefined
      readonly worker?: string | undefined
      readonly lost?: boolean | undefined
      /** `ctx.retry`: retry regardless of `retryOn`, after this countdown if given. */
      readonly requested?: { readonly countdownMillis?: number | undefined } | undefined
      /** End the task with this error, no retry (`acksLate: false` and the worker was lost). */
      readonly final?: boolean | undefined
    }

    const decideFor = (task: Task.Any, message: Message, error: ErrorInfo, how: FailedAttempt) => {
      if (how.final) return Effect.succeed<Retry.Decision>({ _tag: "NotRetryable" })
      if (how.requested === undefined) return Retry.decide(task.retry, message.retries, error)
      if (message.retries >= task.retry.maxRetries) return Effect.succeed<Retry.Decision>({ _tag: "Exhausted" })
      const countdown = how.requested.countdownMillis
      return countdown === undefined
        ? Retry.decide(Retry.retryOn(() => true)(task.retry), message.retries, error)
        : Effect.succeed<Retry.Decision>({ _tag: "Retry", countdown: Duration.millis(countdown) })
    }

    /** A failed attempt: retry per the policy or end the task. */
    const failed = Effect.fnUntraced(function*(
      h: Held,
      message: Message,
      task: Task.Any,
      error: ErrorInfo,
      how: FailedAttempt
    ) {
      const d = h.delivery
      const now = yield* Clock.currentTimeMillis
      const decision = yield* decideFor(task, message, error, how)
      const attempt = (outcome: Outcome, countdown?: number): Attempt => ({
        ...attemptOf(id, message, how.startedAt, how.endedAt ?? now, how.lost ? "LOST" : outcome, error, countdown),
        ...(how.worker === undefined ? {} : { worker: how.worker })
      })
      if (decision._tag === "Retry") {
        const countdown = Duration.toMillis(decision.countdown)
        const entry = attempt("RETRY", countdown)
        yield* retry(h, { id: d.id, token: d.token, queue: d.queue, handle: d.handle, dueAt: now + countdown, error, attempt: entry })
        return yield* log("Info", `retry in ${countdown} ms after ${error._tag}`, d, {
          task: task.name,
          attempt: message.retries,
          error: error.message
        })
      }
      const final: ErrorInfo = decision._tag === "Exhausted"
        ? info(
          new MaxRetriesExceeded({
            taskId: d.id,
            task: task.name,
            retries: message.retries,
            lastError: error,
            message: `${task.name} failed after ${message.retries} ${
              message.retries === 1 ? "retry" : "retries"
            } (the policy allows ${task.retry.maxRetries}); last error: ${error._tag}: ${error.message}`
          })
        )
        : error
      const entry = attempt("FAILURE")
      yield* beforeFinal(message, { state: "FAILURE", error: final })
      yield* complete(h, { id: d.id, token: d.token, queue: d.queue, handle: d.handle, state: "FAILURE", error: final, attempt: entry })
      yield* log("Warning", `failed: ${final._tag}: ${final.message}`, d, { task: task.name })
    })

    const dead = Effect.fnUntraced(function*(h: Held, error: ErrorInfo, message?: Message) {
      const d = h.delivery
      const now = yield* Clock.currentTimeMillis
      const attempt = attemptOf(id, { retries: message?.retries ?? 0 }, now, now, "DEAD", error)
      if (message !== undefined) yield* beforeFinal(message, { state: "FAILURE", error })
      yield* deadLetter(h, { id: d.id, token: d.token, queue: d.queue, handle: d.handle, error, attempt })
      yield* log("Warning", `dead-lettered: ${error._tag}: ${error.message}`, d)
    })

    /** A delivery whose previous lease ran out mid-attempt: record the lost attempt and apply the policy. */
    const lost = (h: Held, lostLease: Broker.LostLease, message: Message, task: Task.Any) =>
      Effect.andThen(
        log("Warning", `worker ${lostLease.worker} lost this task`, h.delivery, { task: task.name }),
        failed(
          h,
          message,
          task,
          info(
            new WorkerLost({
              taskId: h.delivery.id,
              worker: lostLease.worker,
              message: `worker ${lostLease.worker} was lost while running ${task.name}: its lease ran out at ${
                new Date(lostLease.expiredAt).toISOString()
              } without an acknowledgement`
            })
          ),
          {
            startedAt: lostLease.startedAt ?? lostLease.expiredAt,
            endedAt: lostLease.expiredAt,
            worker: lostLease.worker,
            lost: true,
            final: lostLease.ackedEarly
          }
        )
      )

    const parentSpan = (message: Message): Tracer.ExternalSpan | undefined => {
      const traceId = message.headers["x-trace-id"]
      const spanId = message.headers["x-span-id"]
      return traceId && spanId ? Tracer.externalSpan({ traceId, spanId }) : undefined
    }

    /**
     * Runs one delivery to its outcome. Checks that need no I/O run
     * synchronously; a delivery that passes them and needs nothing but its
     * handler run and its outcome recorded (claim-started, acknowledged late,
     * no time limits, no span, no debug logs) comes back as `Ready`, for the
     * runner's fast path.
     */
    const process = (h: Held): Effect.Effect<void> | Ready => {
      const d = h.delivery
      // a well-formed message is taken as it is, with no Exit made around it
      let message: Message
      if (isMessage(d.message)) message = d.message
      else {
        const decoded = decodeMessageExit(d.message)
        if (Exit.isFailure(decoded)) {
          const issue = Cause.pretty(decoded.cause)
          return dead(
            h,
            info(
              new MalformedMessage({
                id: d.id,
                issue,
                message: `message ${d.id} in queue ${d.queue} is not an errand message: ${issue}`
              })
            )
          )
        }
        message = decoded.value
      }
      const registered = registry.get(message.task)
      if (registered === undefined) {
        return dead(
          h,
          info(
            new UnknownTask({
              task: message.task,
              known,
              message: `worker ${id} has no task named "${message.task}" (it knows: ${
                known.join(", ") || "none"
              }); deploy a worker that implements it, then redeliver the task`
            })
          ),
          message
        )
      }
      const task = registered.task
      if (d.lost !== undefined && d.lost.startedAt !== undefined) {
        return lost(h, d.lost, message, task)
      }
      const payload = registered.decodePayload(message.payload)
      if (payload instanceof Codec.Invalid) {
        const issue = Cause.pretty(payload.exit.cause)
        return dead(
          h,
          info(
            new PayloadInvalid({
              task: task.name,
              issue,
              message: `payload of ${task.name} (task ${d.id}) does not match its Schema, ` +
                `perhaps sent by an older producer: ${issue}`
            })
          ),
          message
        )
      }
      const parent = parentSpan(message)
      // A span costs more than the rest of a no-op task's run: one is made
      // when a tracing backend is installed or the producer was traced.
      if (!tracing && parent === undefined) {
        if (registered.plain && d.startedAt !== undefined && !debug) {
          return new Ready(d, message, registered, payload, d.startedAt, env)
        }
        return run(h, message, registered, payload)
      }
      return run(h, message, registered, payload).pipe(
        Effect.withSpan(`errand.run ${task.name}`, {
          attributes: { "errand.task": task.name, "errand.id": d.id, "errand.attempt": message.retries },
          parent
        }, { captureStackTrace: false })
      )
    }

    /**
     * Which claimed tasks the claim starts. Always those idle runners take at
     * once. While handlers end faster than a `start` round trip (averages
     * over recent tasks, on the Clock), all of them: a claimed task then
     * waits for a runner less than that round trip would have taken, and
     * claim → run replaces claim → start → run. A task started by its claim
     * counts as started: a worker killed before running it reports it LOST
     * (README, Guarantees). Off until a handler has been timed, and under
     * TestClock (both averages stay 0).
     */
    let startRtt = 0
    let handlerTime = 0
    let fastRuns = 0
    const ewma = (avg: number, sample: number) => avg === 0 ? sample : avg + (sample - avg) / 16
    /** Whether handlers end faster than a `start` round trip: a claim then starts all it claims. */
    const startsAll = () => handlerTime > 0 && handlerTime < startRtt
    const claimStarts = (max: number) => startsAll() ? max : waiting.size === 0 ? idleRunners.length : 0

    /** The handler's effect, with its `TaskContext` (the `Ready` itself). */
    const handlerOf = (ready: Ready): Effect.Effect<unknown, unknown> => {
      // the runner's context already holds the tasks' services (`make` requires them)
      const handler = ready.registered.impl.handler(ready.payload) as Effect.Effect<unknown, unknown>
      // The handler has a fiber of its own (see `run`): its context is set
      // once, at its start, with none of `provideService`'s restoring on exit.
      return Effect.withFiber((fiber) => {
        fiber.setContext(Context.add(fiber.context, TaskContext, ready))
        return handler
      })
    }

    /**
     * Waits for a handler started by the runner's fast path; a runner
     * interrupted meanwhile interrupts it (and waits for it), as it does its
     * child fibers.
     */
    const awaitHandler = (fiber: Fiber.Fiber<unknown, unknown>) =>
      Effect.onInterrupt(Fiber.await(fiber), () => Fiber.interrupt(fiber))

    /**
     * The fast path's outcome of a handler that succeeded: what `outcome`
     * does for it, without its steps, when there are no hooks to run.
     * `false`: not handled here (`outcome` then handles it).
     */
    const succeeded = (h: Held, ready: Ready, exit: Exit.Exit<unknown, unknown>): boolean => {
      if (exit._tag !== "Success" || hooks !== noHooks) return false
      const registered = ready.registered
      const encoded = registered.encodeSuccess(exit.value)
      if (encoded instanceof Codec.Invalid) return false
      completions.offer(h, successOf(ready, encoded))
      return true
    }

    const run = Effect.fnUntraced(function*(
      h: Held,
      message: Message,
      registered: Registered,
      payload: unknown
    ): Effect.fn.Return<void> {
      const d = h.delivery
      const task = registered.task
      // A claim that started the task (`ClaimOptions.start`) spares the round
      // trip, unless the task acknowledges early, which `start` records.
      const startedAt = d.startedAt ?? clock.currentTimeMillisUnsafe()
      let status: Broker.LeaseStatus = "ok"
      if (d.startedAt === undefined || !task.acksLate) {
        const t0 = clock.currentTimeNanosUnsafe()
        status = yield* start({ id: d.id, token: d.token, queue: d.queue, handle: d.handle, worker: id, startedAt, ackEarly: !task.acksLate })
        startRtt = ewma(startRtt, Number(clock.currentTimeNanosUnsafe() - t0))
      }
      if (status === "stale") {
        return yield* log("Warning", "lease was taken over before the task started; skipped", d)
      }
      if (status === "revoked") {
        return yield* revoked(h, message, startedAt)
      }
      yield* log("Debug", "started", d, { task: task.name, attempt: message.retries })
      const ready = new Ready(d, message, registered, payload, startedAt, env)
      const handler = handlerOf(ready)
      const fiber = yield* Effect.forkChild(handler, { startImmediately: true })
      h.fiber = fiber
      if (Option.isNone(task.softTimeLimit) && Option.isNone(task.timeLimit)) {
        const t0 = clock.currentTimeNanosUnsafe()
        const exit = yield* Fiber.await(fiber)
        handlerTime = ewma(handlerTime, Number(clock.currentTimeNanosUnsafe() - t0))
        h.fiber = undefined
        if (h.reason === "killed" || killed) return
        return yield* outcome(h, ready, exit, false)
      }
      let soft = false
      const soft$ = Option.match(task.softTimeLimit, {
        onNone: () => Fiber.await(fiber),
        onSome: (limit) =>
          Effect.raceFirst(
            Fiber.await(fiber),
            Effect.sleep(limit).pipe(
              Effect.andThen(() => {
                soft = true
                return Fiber.interrupt(fiber)
              }),
              Effect.andThen(Fiber.await(fiber))
            )
          )
      })
      const exit: Option.Option<Exit.Exit<unknown, unknown>> = yield* Option.match(task.timeLimit, {
        onNone: () => Effect.map(soft$, Option.some),
        onSome: (limit) =>
          Effect.raceFirst(
            Effect.map(soft$, Option.some),
            Effect.as(Effect.sleep(limit), Option.none())
          )
      })
      h.fiber = undefined
      if (h.reason === "killed" || killed) return
      if (Option.isNone(exit)) {
        yield* Effect.forkDetach(Fiber.interrupt(fiber))
        const limit = Option.getOrThrow(task.timeLimit)
        return yield* failed(h, message, task, info(
            new TimeLimitExceeded({
              taskId: d.id,
              limitMillis: Duration.toMillis(limit),
              message: `${task.name} ran past its time limit of ${Duration.format(limit)} and was abandoned`
            })
          ),
          { startedAt }
        )
      }
      return yield* outcome(h, ready, exit.value, soft)
    })

    const revoked = Effect.fnUntraced(function*(h: Held, message: Message, startedAt: number) {
      const d = h.delivery
      const now = yield* Clock.currentTimeMillis
      const error = info(new TaskRevoked({ taskId: d.id, message: `task ${d.id} was revoked` }))
      const attempt = attemptOf(id, message, startedAt, now, "REVOKED", error)
      yield* beforeFinal(message, { state: "REVOKED", error })
      yield* complete(h, { id: d.id, token: d.token, queue: d.queue, handle: d.handle, state: "REVOKED", error, attempt })
      yield* log("Info", "revoked", d)
    })

    const outcome = Effect.fnUntraced(function*(
      h: Held,
      ready: Ready,
      exit: Exit.Exit<unknown, unknown>,
      soft: boolean
    ) {
      const { message, registered, startedAt } = ready
      const d = h.delivery
      const task = registered.task
      if (Exit.isSuccess(exit)) {
        const encoded = registered.encodeSuccess(exit.value)
        if (encoded instanceof Codec.Invalid) {
          return yield* failed(h, message, task, info(
              new TaskDefect({
                taskId: d.id,
                message: `${task.name} returned a result that does not match its success Schema: ${
                  Cause.pretty(encoded.exit.cause)
                }`
              })
            ),
            { startedAt }
          )
        }
        yield* beforeFinal(message, { state: "SUCCESS", result: encoded })
        yield* complete(h, successOf(ready, encoded))
        return yield* log("Debug", "succeeded", d, { task: task.name })
      }
      const cause = exit.cause
      if (Cause.hasInterruptsOnly(cause)) {
        const now = yield* Clock.currentTimeMillis
        switch (h.reason) {
          case "revoked":
            return yield* revoked(h, message, startedAt)
          case "stale":
            return yield* stale(
              d,
              attemptOf(id, message, startedAt, now, "STALE", {
                _tag: "LeaseLost",
                message: `the lease on ${d.id} was taken over while ${task.name} ran; the attempt was interrupted`
              })
            )
          case "shutdown":
            return yield* failed(h, message, task, info(
                new WorkerShutdown({
                  taskId: d.id,
                  worker: id,
                  message: `worker ${id} shut down before ${task.name} finished (grace ${graceMillis} ms)`
                })
              ),
              { startedAt }
            )
          default:
            if (soft) {
              const limit = Option.getOrThrow(task.softTimeLimit)
              return yield* failed(h, message, task, info(
                  new SoftTimeLimitExceeded({
                    taskId: d.id,
                    limitMillis: Duration.toMillis(limit),
                    message: `${task.name} ran past its soft time limit of ${
                      Duration.format(limit)
                    } and was interrupted`
                  })
                ),
                { startedAt }
              )
            }
            return yield* failed(h, message, task, info(new TaskDefect({ taskId: d.id, message: `${task.name} was interrupted` })),
              { startedAt }
            )
        }
      }
      const error = Cause.findError(cause)
      if (error._tag === "Success") {
        const e = error.success
        if (e instanceof RetryRequested) {
          const reason = e.reason ?? info(e)
          return yield* failed(h, message, task, reason, {
            startedAt,
            requested: { countdownMillis: e.countdownMillis }
          })
        }
        const encoded = registered.encodeFailure(e)
        return yield* failed(h, message, task, info(e, Exit.isSuccess(encoded) ? encoded.value : undefined),
          { startedAt }
        )
      }
      const defect = Cause.squash(cause)
      return yield* failed(h, message, task, info(
          new TaskDefect({
            taskId: d.id,
            message: `${task.name} died: ${defect instanceof Error ? defect.message : String(defect)}`
          })
        ),
        { startedAt }
      )
    })

    // Runners: `concurrency` fibers taking claimed deliveries in order. A
    // runner is free as soon as its task's outcome is queued for the broker.
    // Runners waiting for work, each on a signal of its own.
    const idleRunners: Array<Deferred.Deferred<void>> = []
    const awaitWork = Effect.suspend(() => {
      const signal = Deferred.makeUnsafe<void>()
      idleRunners.push(signal)
      return Deferred.await(signal)
    })
    /** Holds a claim's deliveries: their leases are renewed, and a shutdown waits for or releases them (a plain loop: it runs per task). */
    const hold = (batch: ReadonlyArray<Broker.Delivery>): Array<Held> => {
      const hs: Array<Held> = new Array(batch.length)
      for (let i = 0; i < batch.length; i++) {
        const h: Held = {
          delivery: batch[i]!,
          fiber: undefined,
          reason: undefined,
          acking: false,
          linked: false,
          prev: undefined,
          next: undefined
        }
        held.add(h)
        hs[i] = h
      }
      return hs
    }
    /** Hands held deliveries to the runners. */
    const offerWork = (hs: ReadonlyArray<Held>) => {
      for (let i = 0; i < hs.length; i++) waiting.push(hs[i]!)
      // Only as many runners as there are tasks for: a resumed runner runs at
      // once, in this call, taking tasks until it waits (for its handler or
      // for work), so each one is woken only while tasks are left for it.
      while (waiting.size > 0 && idleRunners.length > 0) Deferred.doneUnsafe(idleRunners.pop()!, Effect.void)
    }
    const runner = Effect.gen(function*() {
      const self = yield* Effect.fiber
      while (true) {
        const h = waiting.shift()
        if (h === undefined) {
          yield* awaitWork
          continue
        }
        const step = process(h)
        let exit: Exit.Exit<void> | undefined
        if (step instanceof Ready) {
          // the fast path: what `run` does for such a delivery, without its steps
          let handler: Effect.Effect<unknown, unknown> | undefined
          try {
            handler = step.registered.impl.handler(step.payload) as Effect.Effect<unknown, unknown>
          } catch (defect) {
            // a handler function that throws: as when `run` calls it
            exit = Exit.die(defect)
          }
          if (handler !== undefined) {
            let result: Exit.Exit<unknown, unknown>
            if (Exit.isExit(handler)) {
              // A handler that returns its outcome as it is (`Effect.succeed`,
              // `Effect.fail`): nothing to run, so no fiber. It took no time,
              // which the average learns (one run in 8, as below).
              result = handler
              if ((fastRuns++ & 7) === 0) handlerTime = ewma(handlerTime, 1)
            } else {
              // The handler's fiber starts at once, in the runner's context plus
              // its TaskContext, and runs until it ends or waits: as `run`'s
              // forkChild, without its steps (nor the runner's child set:
              // `awaitHandler` interrupts it with the runner).
              const fiber = Effect.runForkWith(
                Context.add(self.context, TaskContext, step)
              )(handler)
              h.fiber = fiber
              // one run in 8 is timed: a clock read costs more than the rest of
              // what a sample changes, and the average needs no more
              const t0 = (fastRuns++ & 7) === 0 ? clock.currentTimeNanosUnsafe() : undefined
              result = fiber.pollUnsafe() ?? (yield* awaitHandler(fiber))
              if (t0 !== undefined) handlerTime = ewma(handlerTime, Number(clock.currentTimeNanosUnsafe() - t0))
              h.fiber = undefined
            }
            if (h.reason !== "killed" && !killed && !succeeded(h, step, result)) {
              exit = yield* Effect.exit(outcome(h, step, result, false))
            }
          }
        } else exit = yield* Effect.exit(step)
        if (exit !== undefined && Exit.isFailure(exit)) {
          if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.interrupt
          yield* Effect.logError("worker failed to process a task", exit.cause)
        }
        if (!h.acking) done(h)
      }
    })
    const runners = yield* Effect.forEach(
      Array.from({ length: concurrency }),
      () => Effect.forkScoped(runner, { startImmediately: true })
    )

    // Claimer: keeps up to concurrency + batch tasks held (two batches while
    // claiming ahead, below), claiming `batch` at a time. The batch is
    // `prefetch`, grown (up to `prefetchMax`) while
    // handlers end faster than a claim round trip and a claim comes back full
    // to runners that all ran dry waiting for it: the claim, not the
    // handlers, is then what limits the drain, and a claim costs the broker
    // less per task the more it takes. It halves back once claims come back
    // short (the queues are running empty) or handlers get slower than a
    // claim round trip.
    let claimRtt = 0
    // After a full batch the next claim does not wait for work (`waitMillis`
    // 0): such a claim is one round trip, and a shutdown lets it land (its
    // tasks are then released at once) instead of interrupting it and
    // leaving them leased until the lease runs out.
    let lastFull = false
    let claimingShort = false
    const claimOf = (max: number, waitMillis: number, start = claimStarts(max)) =>
      throughOutage("claim", broker.claim({ queues, worker: id, max, leaseMillis, waitMillis, start }))
    /** A claim that does not wait for work, its round trip folded into `claimRtt`. */
    const timedClaim = (max: number, start?: number) =>
      Effect.suspend(() => {
        const t0 = clock.currentTimeNanosUnsafe()
        return Effect.map(claimOf(max, 0, start), (batch) => {
          claimRtt = ewma(claimRtt, Number(clock.currentTimeNanosUnsafe() - t0))
          return batch
        })
      })
    // Claiming ahead. While a backlog drains (claims come back full, to
    // handlers quicker than a claim's round trip), the next claim is sent
    // before this one's tasks run: the broker leases the next batch while
    // the worker runs this one, where otherwise each waits for the other
    // (the claim would leave only after the batch ran). The claim in flight
    // holds its tasks as soon as it lands (their leases renewed, a shutdown
    // waiting for it and releasing them); the claimer hands them to the
    // runners after the batch before them. It is sent only when the runners
    // ran dry waiting for the claim before, so at most two batches are held.
    let ahead: Fiber.Fiber<Array<Held>, Effect.Error<ReturnType<typeof claimOf>>> | undefined
    let aheadMax = 0
    // false once a claim ahead landed at once (see below)
    let aheadPays = true
    // the tasks of a claim ahead that landed, until the claimer offers them
    let landed: Array<Held> | undefined
    // its tasks wait behind the batch before them: it starts them only when
    // handlers end faster than a start round trip, not for the runners idle
    // now (`claimStarts`), which that batch is about to take
    const claimAhead = (max: number) =>
      Effect.map(timedClaim(max, startsAll() ? max : 0), (batch) => landed = hold(batch))
    // One turn of the event loop and the next: what a broker client sends on
    // its next turn (node-redis writes on `setImmediate`) is sent before
    // what follows runs.
    const nextTurn = "setImmediate" in globalThis
      ? (f: () => void) => void globalThis.setImmediate(f)
      : (f: () => void) => void globalThis.setTimeout(f, 0)
    const letSend = Effect.callback<void>((resume) => {
      nextTurn(() => nextTurn(() => resume(Effect.void)))
    })
    const claimer = Effect.gen(function*() {
      while (!stopping) {
        let max: number
        let batch: ReadonlyArray<Held>
        if (ahead !== undefined) {
          max = aheadMax
          batch = yield* Fiber.join(ahead)
          ahead = undefined
          landed = undefined
        } else {
          // Claim in batches (`claimRoom`).
          const room = claimRoom()
          if (room === 0) {
            yield* waitRoom
            continue
          }
          max = Math.min(room, batchSize)
          claimingShort = lastFull
          // after a full batch, a short claim: its round trip is timed
          const claimed = yield* (lastFull ? timedClaim(max) : claimOf(max, idleMillis))
          claimingShort = false
          batch = hold(claimed)
        }
        lastFull = batch.length >= max
        const quick = handlerTime > 0 && handlerTime < claimRtt
        // the runners ran dry waiting for this claim
        const dry = waiting.size === 0 && idleRunners.length === concurrency
        // shrinks when the queues run short or handlers got slower than a
        // claim round trip (a slowed downstream): a worker then holds no
        // more than it can start soon
        if (!lastFull || !quick) batchSize = Math.max(prefetch, batchSize >> 1)
        else if (batchSize < prefetchMax && dry) batchSize = Math.min(prefetchMax, batchSize * 2)
        // only while the runners ran dry: a worker whose handlers are busy
        // has its next batch in hand already, and one whose average handler
        // time still comes from quick tasks while slow ones run (that average
        // learns only as tasks end) takes no more
        if (lastFull && quick && dry && aheadPays && !stopping) {
          aheadMax = batchSize
          ahead = yield* Effect.forkChild(claimAhead(aheadMax), { startImmediately: true })
          // A claim that landed at once (the memory broker's) took no round
          // trip: there is nothing to overlap, and the batch held early only
          // lives longer (the in-memory run went 198k–308k → 137k–203k
          // tasks/s with it), so the worker stops claiming ahead.
          if (ahead.pollUnsafe() === undefined) yield* letSend
          else aheadPays = false
        }
        offerWork(batch)
      }
      // stopping: a claim ahead still in flight is this fiber's child, which
      // would be interrupted as it ends; it lands first, and the shutdown
      // gives its tasks back
      if (ahead !== undefined) yield* Fiber.await(ahead)
    })
    const claimerFiber = yield* Effect.forkScoped(claimer, { startImmediately: true })

    // Heartbeat: renews every held lease, interrupts revoked and taken-over attempts.
    const heartbeat = Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep(Math.max(1, Math.floor(leaseMillis / 3)))
        // the registration is renewed after the leases, which come first
        if (held.size === 0) {
          yield* register(false)
          continue
        }
        const items = held.values()
        const statuses = yield* broker.renew(
          items.map((h) => ({ id: h.delivery.id, token: h.delivery.token, queue: h.delivery.queue, handle: h.delivery.handle })),
          leaseMillis
        )
          .pipe(
            Effect.catch((e) =>
              Effect.as(Effect.logWarning(`lease renewal failed: ${e.message}`), items.map(() => "ok" as const))
            )
          )
        for (let i = 0; i < items.length; i++) {
          const h = items[i]!
          const status = statuses[i]
          if (status === "ok" || h.reason !== undefined) continue
          h.reason = status === "revoked" ? "revoked" : "stale"
          if (h.fiber !== undefined) yield* Effect.forkDetach(Fiber.interrupt(h.fiber))
        }
        yield* register(false)
      }
    })
    const heartbeatFiber = yield* Effect.forkScoped(heartbeat, { startImmediately: true })

    const kill = Effect.gen(function*() {
      if (killed) return
      killed = true
      Deferred.doneUnsafe(killedSignal, Effect.void)
      stopping = true
      for (const h of held.values()) {
        h.reason = "killed"
        if (h.fiber !== undefined) yield* Effect.forkDetach(Fiber.interrupt(h.fiber))
      }
      // kill may come from one of the worker's own fibers (a runner whose
      // broker call crashed it, in tests): that one is left to its caller
      // (it cannot await its own end); being killed, it reaches the broker no more
      const self = yield* Effect.fiber
      yield* Fiber.interruptAll([claimerFiber, heartbeatFiber, ...runners].filter((f) => f !== self))
    })

    const shutdown = Effect.gen(function*() {
      if (killed) return
      stopping = true
      if (claimingShort) yield* Effect.timeoutOption(Fiber.await(claimerFiber), "2 seconds")
      // a claim ahead in flight lands, and its tasks go back with the others
      if (ahead !== undefined) yield* Effect.timeoutOption(Fiber.await(ahead), "2 seconds")
      yield* Fiber.interrupt(claimerFiber)
      // Prefetched tasks that never started go back at once.
      const unstarted = waiting.takeAll()
      if (landed !== undefined) {
        for (const h of landed) unstarted.push(h)
        landed = undefined
      }
      if (unstarted.length > 0) {
        for (const h of unstarted) held.remove(h)
        yield* persistent("release", broker.release(
          unstarted.map((h) => ({ id: h.delivery.id, token: h.delivery.token, queue: h.delivery.queue, handle: h.delivery.handle }))
        ))
          .pipe(Effect.timeoutOption("5 seconds"))
      }
      const idle = Effect.gen(function*() {
        while (held.size > 0) yield* waitRoom
      })
      const done = yield* Effect.raceFirst(
        Effect.timeoutOption(idle, graceMillis),
        Effect.as(Deferred.await(cold), Option.none<void>())
      )
      if (Option.isNone(done)) {
        yield* Effect.logInfo(
          Deferred.isDoneUnsafe(cold)
            ? `worker ${id}: cold shutdown; interrupting ${held.size} tasks`
            : `worker ${id}: grace of ${graceMillis} ms over; interrupting ${held.size} tasks`
        )
        for (const h of held.values()) {
          h.reason = "shutdown"
          if (h.fiber !== undefined) yield* Effect.forkDetach(Fiber.interrupt(h.fiber))
        }
        yield* Effect.timeoutOption(idle, "10 seconds")
      }
      yield* Fiber.interruptAll([heartbeatFiber, ...runners])
      yield* register(true).pipe(Effect.timeoutOption("2 seconds"))
    })
    // A worker killed while it shuts down (a crash during a warm shutdown,
    // in tests) stops shutting down: its waits (grace, release, the last
    // claim) would otherwise wait on for a death that already came.
    yield* Effect.addFinalizer(() => Effect.raceFirst(Effect.interruptible(shutdown), Deferred.await(killedSignal)))

    return {
      id,
      queues,
      inFlight: Effect.sync(() => held.size),
      kill,
      shutdownNow: Deferred.succeed(cold, undefined).pipe(Effect.asVoid)
    } satisfies Service
  })

/**
 * Runs a worker for the lifetime of the layer and provides it as `Worker`.
 *
 * @since 0.1.0
 */
export const layer = <const Tasks extends ReadonlyArray<Task.AnyImplemented>>(
  options: Options<Tasks>
): Layer.Layer<Worker, never, Broker.Broker | ResultBackend | Task.Services<Tasks[number]>> =>
  Layer.effect(Worker, make(options))
