/**
 * `ErrandTest`: test your tasks deterministically, faults included.
 *
 * One layer wires a memory broker, workers for your tasks and a client under
 * a fresh `TestClock`. `drain` runs everything until nothing is ready,
 * leased or delayed, jumping the clock straight to the next due time, so a
 * 7-day countdown or five retries 10–50 s apart finish at once. A fault plan
 * (`FaultPlan`) crashes workers at chosen points, shuts them down, makes the
 * broker fail or slow, delivers tasks twice, all reproducible: the same
 * tasks, seed and plan give the same history on every run. Canvases run in
 * it too (add `Canvas.CoordinatorLive` to `tasks`), and beats (`Beat.make`
 * in the test's scope; `advance` brings their runs).
 *
 * @example
 * ```ts
 * import { it } from "@effect/vitest"
 * import { Effect, Layer } from "effect"
 * import { Client } from "@errand/core"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 * import { Charge, ChargeLive, Gateway, Ledger } from "../src/Billing.ts"
 *
 * it.effect("a charge survives its worker dying before the ack", () =>
 *   Effect.gen(function*() {
 *     const client = yield* Client.Client
 *     const job = yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
 *     yield* ErrandTest.drain()
 *     yield* ErrandTest.expectHistory(job, [
 *       { outcome: "LOST", worker: "w-1", countdown: "10 seconds" },
 *       { outcome: "SUCCESS", worker: "w-2" }
 *     ])
 *   }).pipe(Effect.provide(ErrandTest.layer({
 *     tasks: [ChargeLive],
 *     faults: FaultPlan.make(FaultPlan.crash({ task: 0, at: "beforeAck" }))
 *   }).pipe(Layer.provide(Layer.mergeAll(Ledger.layer, Gateway.layer()))))))
 * ```
 *
 * @since 0.1.0
 */
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  type LogLevel,
  Option,
  Queue,
  Random,
  References,
  Schema,
  Scope
} from "effect"
import { TestClock } from "effect/testing"
import * as Beat from "../Beat.ts"
import * as Broker from "../Broker.ts"
import * as Client from "../Client.ts"
import { BrokerError, TaskNotFound } from "../Errors.ts"
import * as MemoryBroker from "../MemoryBroker.ts"
import { finalStates, type TaskRecord } from "../Message.ts"
import { ResultBackend } from "../ResultBackend.ts"
import * as Task from "../Task.ts"
import { TaskContext } from "../TaskContext.ts"
import * as Worker from "../Worker.ts"
import * as FaultPlan from "./FaultPlan.ts"
import * as History from "./History.ts"

/**
 * Options of `ErrandTest.layer`. Worker options (`concurrency`, `lease`...)
 * apply to every worker the harness starts.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 * import { ChargeLive } from "../src/Billing.ts"
 *
 * const options: ErrandTest.Options<[typeof ChargeLive]> = {
 *   tasks: [ChargeLive],
 *   workers: 2,
 *   concurrency: 4,
 *   seed: 7,
 *   faults: FaultPlan.make(FaultPlan.shutdown({ at: "5 seconds" }))
 * }
 * ```
 *
 * @since 0.1.0
 */
export interface Options<Tasks extends ReadonlyArray<Task.AnyImplemented>> {
  /** The implemented tasks the workers run. */
  readonly tasks: Tasks
  /** How many workers run from the start, named `w-1`, `w-2`... Default 1; 0 to start them with `startWorker`. */
  readonly workers?: number | undefined
  /** Handlers run at once per worker. Default 4. */
  readonly concurrency?: number | undefined
  readonly prefetch?: number | undefined
  /** Default 10 seconds, as in production. */
  readonly lease?: Duration.Input | undefined
  /** Default 30 seconds, as in production. */
  readonly shutdownGrace?: Duration.Input | undefined
  /**
   * How long an idle claim waits. Default 1 hour: the memory broker wakes a
   * claim as soon as a task is due, so a long wait only saves clock wakeups.
   */
  readonly idleWait?: Duration.Input | undefined
  readonly queues?: ReadonlyArray<string> | undefined
  /** The faults to apply. Default none. */
  readonly faults?: FaultPlan.FaultPlan | ReadonlyArray<FaultPlan.Fault> | undefined
  /**
   * Seeds Effect's `Random` for the whole test (handlers, jittered retry
   * policies) and picks `"random"` crash points. Default 0.
   */
  readonly seed?: number | string | undefined
  /** Start a new worker when one crashes or shuts down (a supervisor). Default true. */
  readonly restart?: boolean | undefined
  /** The least severe log level printed. Default `"Error"`: workers' warnings about injected faults stay quiet. */
  readonly logLevel?: LogLevel.LogLevel | undefined
  /** The default `maxSteps` of `drain`. Default 1000. */
  readonly maxSteps?: number | undefined
}

/**
 * Options of `drain`.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * ErrandTest.drain({ maxSteps: 50, tick: "100 millis" })
 * ```
 *
 * @since 0.1.0
 */
export interface DrainOptions {
  /** Give up (with `DrainTimeout`) after this many clock jumps. Default: the layer's `maxSteps` (1000). */
  readonly maxSteps?: number | undefined
  /** How far to move the clock when nothing in the broker is due but work is still held. Default 1 second. */
  readonly tick?: Duration.Input | undefined
}

/**
 * What a `drain` did.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const program = Effect.gen(function*() {
 *   const report = yield* ErrandTest.drain()
 *   report.elapsed // e.g. Duration.seconds(150) for the seed's five retries
 * })
 * ```
 *
 * @since 0.1.0
 */
export interface DrainReport {
  /** Clock jumps taken. */
  readonly steps: number
  /** Simulated time that passed. */
  readonly elapsed: Duration.Duration
  /** The clock when it ended (ms since the test began). */
  readonly now: number
}

/**
 * A task `drain` left unfinished.
 *
 * @example
 * ```ts
 * import type * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const stuck: ErrandTest.PendingTask = { id: "billing.charge-0", task: "billing.charge", state: "RETRY", retries: 999 }
 * ```
 *
 * @since 0.1.0
 */
export const PendingTask = Schema.Struct({
  id: Schema.String,
  task: Schema.String,
  state: Schema.String,
  retries: Schema.Number,
  last: Schema.optional(Schema.String)
})

/**
 * The type of \`PendingTask\`.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const stuck: ReadonlyArray<ErrandTest.PendingTask> = [{ id: "job-0", task: "job", state: "RETRY", retries: 99 }]
 * ```
 *
 * @since 0.1.0
 */
export type PendingTask = typeof PendingTask.Type

/**
 * `drain` took `maxSteps` clock jumps and work was still pending: a task
 * that retries forever, a handler that never ends, or tasks no worker is
 * left to run. `pending` names them.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const program = ErrandTest.drain({ maxSteps: 100 }).pipe(
 *   Effect.catchTag("DrainTimeout", (e) => Effect.succeed(e.pending.map((t) => t.id)))
 * )
 * ```
 *
 * @since 0.1.0
 */
export class DrainTimeout extends Schema.TaggedError<DrainTimeout>()("DrainTimeout", {
  steps: Schema.Number,
  elapsedMillis: Schema.Number,
  pending: Schema.Array(PendingTask),
  message: Schema.String
}) {}

/**
 * One thing the harness did: a worker started, a fault fired.
 *
 * @example
 * ```ts
 * import type * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const event: ErrandTest.TraceEvent = {
 *   at: 0,
 *   kind: "crash",
 *   detail: "w-1 crashed running billing.charge-0 (attempt 0) after its handler, before the ack [fault 1]"
 * }
 * ```
 *
 * @since 0.1.0
 */
export interface TraceEvent {
  /** Ms since the test began. */
  readonly at: number
  readonly kind: "worker" | "crash" | "shutdown" | "outage" | "slow" | "duplicate" | "fail"
  readonly detail: string
}

/**
 * Everything observable about a run: every task's record (history included)
 * in submission order, and the harness trace. Two runs with the same tasks,
 * seed and fault plan give deep-equal snapshots.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const program = Effect.gen(function*() {
 *   yield* ErrandTest.drain()
 *   const { tasks, trace } = yield* ErrandTest.snapshot
 * })
 * ```
 *
 * @since 0.1.0
 */
export interface Snapshot {
  readonly tasks: ReadonlyArray<TaskRecord>
  readonly trace: ReadonlyArray<TraceEvent>
}

/**
 * A worker the harness runs.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const alive = Effect.map(ErrandTest.workers, (ws) => ws.filter((w) => w.status === "running").map((w) => w.id))
 * ```
 *
 * @since 0.1.0
 */
export interface WorkerInfo {
  readonly id: string
  readonly status: "running" | "stopping" | "stopped" | "killed"
}

/**
 * The harness.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const program = Effect.gen(function*() {
 *   const harness = yield* ErrandTest.ErrandTest
 *   yield* harness.advance("5 seconds")
 *   yield* harness.kill("w-1")
 *   yield* harness.drain()
 * })
 * ```
 *
 * @since 0.1.0
 */
export interface Service {
  /** Run until nothing is ready, leased, delayed or held by a worker. See `ErrandTest.drain`. */
  readonly drain: (options?: DrainOptions) => Effect.Effect<DrainReport, DrainTimeout>
  /** Move the clock forward, running everything due on the way, then settle. */
  readonly advance: (duration: Duration.Input) => Effect.Effect<void>
  /** Let every fiber that can run, run, without moving the clock. */
  readonly settle: Effect.Effect<void>
  /** Every task's record, in submission order. */
  readonly tasks: Effect.Effect<ReadonlyArray<TaskRecord>>
  /** The harness trace: workers started, faults fired. */
  readonly trace: Effect.Effect<ReadonlyArray<TraceEvent>>
  readonly snapshot: Effect.Effect<Snapshot>
  readonly workers: Effect.Effect<ReadonlyArray<WorkerInfo>>
  /** A task's record by id or job. */
  readonly status: (job: Client.Job<Task.Any> | string) => Effect.Effect<TaskRecord, TaskNotFound>
  /** Assert a task's history; see `History.expect`. */
  readonly expectHistory: (
    job: Client.Job<Task.Any> | string,
    expected: ReadonlyArray<History.Expected>
  ) => Effect.Effect<void, TaskNotFound>
  /** Kill -9 a worker (default: the first running one); a replacement starts if `restart`. */
  readonly kill: (worker?: string) => Effect.Effect<void>
  /** Warm-shut-down a worker (default: the first running one); a replacement starts if `restart`. */
  readonly shutdown: (worker?: string) => Effect.Effect<void>
  /** Start one more worker; returns its id. */
  readonly startWorker: Effect.Effect<string>
}

/**
 * The harness service, provided by `ErrandTest.layer`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const program = ErrandTest.ErrandTest.use((harness) => harness.drain())
 * ```
 *
 * @since 0.1.0
 */
export class ErrandTest extends Context.Service<ErrandTest, Service>()("@errand/core/testing/ErrandTest") {}

/**
 * The error a `Fail` fault makes a handler die with.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * new ErrandTest.InjectedFault("billing.charge-0 (attempt 0) died after its handler returned [fault 1]")
 * ```
 *
 * @since 0.1.0
 */
export class InjectedFault extends Error {
  override readonly name = "InjectedFault"
}

/**
 * The id of the extra worker that receives `Duplicate` deliveries.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * ErrandTest.duplicateWorker // "w-dup"
 * ```
 *
 * @since 0.1.0
 */
export const duplicateWorker = "w-dup"

interface PoolWorker {
  readonly id: string
  readonly service: Worker.Service
  readonly scope: Scope.Closeable
  readonly dup: boolean
  status: WorkerInfo["status"]
}

interface DupState {
  arrived: number
  readonly both: Deferred.Deferred<void>
}

type ResolvedFault = FaultPlan.Fault

const fmt = (ms: number) => Duration.format(Duration.millis(ms))

const toMillis = (input: Duration.Input) => Duration.toMillis(Duration.fromInputUnsafe(input))

const retriesOf = (message: unknown): number =>
  typeof message === "object" && message !== null && "retries" in message && typeof message.retries === "number"
    ? message.retries
    : 0

const leaseKey = (lease: Broker.Lease) => `${lease.id}#${lease.token}`

const pointText: Record<Exclude<FaultPlan.CrashPoint, "random">, string> = {
  beforeStart: "after claiming it, before starting it",
  beforeHandler: "after starting it, before its handler ran",
  inHandler: "inside its handler",
  beforeAck: "after its handler, before the ack"
}

const make = Effect.fnUntraced(function*<Tasks extends ReadonlyArray<Task.AnyImplemented>>(options: Options<Tasks>) {
  const scope = yield* Scope.Scope
  const testClock = yield* TestClock.testClockWith(Effect.succeed)
  if (typeof (testClock as Partial<TestClock.TestClock>).setTime !== "function") {
    return yield* Effect.die(new Error("ErrandTest: the Clock is not a TestClock"))
  }
  const services = yield* Effect.context<Task.Services<Tasks[number]>>()
  const { backend, broker: inner, store } = yield* MemoryBroker.make
  const seed = options.seed ?? 0
  const restart = options.restart ?? true
  const defaultMaxSteps = options.maxSteps ?? 1000
  const planned = options.faults === undefined
    ? []
    : "faults" in options.faults
    ? options.faults.faults
    : options.faults
  // "random" crash points are picked from the seed, apart from the Random the handlers see.
  const faults: ReadonlyArray<ResolvedFault> = yield* Effect.forEach(planned, (fault) =>
    fault._tag === "Crash" && fault.at === "random"
      ? Effect.map(Random.next, (r) => ({ ...fault, at: FaultPlan.crashPoints[Math.floor(r * 4)]! }))
      : Effect.succeed(fault)).pipe(Random.withSeed(`${seed}/faults`))
  const fired = new Set<number>()
  const now = () => testClock.currentTimeMillisUnsafe()

  const trace: Array<TraceEvent> = []
  const note = (kind: TraceEvent["kind"], detail: string) => {
    trace.push({ at: now(), kind, detail })
  }

  // Tasks, in the order they were enqueued: fault plans name them by index.
  const ids: Array<string> = []
  const index = new Map<string, number>()
  const leases = new Map<string, { readonly worker: string; readonly retries: number }>()
  const dups = new Map<string, DupState>()
  const dupQueue = yield* Queue.unbounded<Broker.Delivery>()

  const find = (pred: (fault: ResolvedFault) => boolean): number | undefined => {
    for (let i = 0; i < faults.length; i++) {
      if (!fired.has(i) && pred(faults[i]!)) return i
    }
    return undefined
  }
  const crashAt = (id: string, retries: number, at: FaultPlan.CrashPoint) => {
    const task = index.get(id)
    return task === undefined
      ? undefined
      : find((f) => f._tag === "Crash" && f.task === task && f.attempt === retries && f.at === at)
  }

  // Workers.
  let handlers = 0
  const pool = new Map<string, PoolWorker>()
  let workerCount = 0
  const concurrency = options.concurrency ?? 4
  const wrapped = options.tasks.map((impl) => wrap(impl))
  const commands = yield* Queue.unbounded<void>()

  const crash = (w: PoolWorker, detail: string) =>
    Effect.gen(function*() {
      if (w.status === "killed" || w.status === "stopped") return
      w.status = "killed"
      note("crash", detail)
      yield* w.service.kill
      if (restart && !w.dup) Queue.offerUnsafe(commands, undefined)
    })

  // The Broker every worker and the client use: faults are applied here.
  const guard = <A>(op: FaultPlan.Op, call: Effect.Effect<A, BrokerError>): Effect.Effect<A, BrokerError> =>
    Effect.suspend(() => {
      const t = now()
      for (let i = 0; i < faults.length; i++) {
        const f = faults[i]!
        if (f._tag !== "BrokerOutage" && f._tag !== "SlowBroker") continue
        if (t < f.fromMillis || t >= f.fromMillis + f.forMillis) continue
        if (!(f.ops ?? FaultPlan.workerOps).includes(op)) continue
        const window = `${fmt(f.fromMillis)} to ${fmt(f.fromMillis + f.forMillis)}`
        if (!fired.has(i)) {
          fired.add(i)
          note(
            f._tag === "BrokerOutage" ? "outage" : "slow",
            f._tag === "BrokerOutage"
              ? `broker down from ${window}: first failed call ${op} [fault ${i + 1}]`
              : `broker slow (+${fmt(f.delayMillis)}) from ${window}: first slow call ${op} [fault ${i + 1}]`
          )
        }
        if (f._tag === "BrokerOutage") {
          return Effect.fail(
            new BrokerError({
              operation: op,
              message: `injected by the fault plan: the broker is down from ${window} [fault ${i + 1}]`
            })
          )
        }
        return Effect.andThen(testClock.sleep(Duration.millis(f.delayMillis)), call)
      }
      return call
    })

  const claimed = (worker: string, deliveries: ReadonlyArray<Broker.Delivery>) =>
    Effect.sync(() => {
      for (const d of deliveries) {
        const retries = retriesOf(d.message)
        leases.set(leaseKey(d), { worker, retries })
        const task = index.get(d.id)
        if (task === undefined) continue
        const i = find((f) => f._tag === "Duplicate" && f.task === task && f.attempt === retries)
        if (i === undefined) continue
        fired.add(i)
        dups.set(leaseKey(d), { arrived: 0, both: Deferred.makeUnsafe<void>() })
        note("duplicate", `${d.id} (attempt ${retries}) delivered to ${worker} and ${duplicateWorker} [fault ${i + 1}]`)
        Queue.offerUnsafe(dupQueue, d)
      }
    })

  const start = (batch: ReadonlyArray<Broker.Start>) =>
    Effect.gen(function*() {
      for (const item of batch) {
        const w = pool.get(item.worker)
        const lease = leases.get(leaseKey(item))
        if (w === undefined || w.dup || lease === undefined) continue
        const i = crashAt(item.id, lease.retries, "beforeStart")
        if (i === undefined) continue
        fired.add(i)
        yield* crash(w, `${w.id} crashed running ${item.id} (attempt ${lease.retries}), ${pointText.beforeStart} [fault ${i + 1}]`)
        return yield* Effect.never
      }
      const statuses = yield* guard("start", inner.start(batch))
      for (let j = 0; j < batch.length; j++) {
        const item = batch[j]!
        const w = pool.get(item.worker)
        const lease = leases.get(leaseKey(item))
        if (statuses[j] !== "ok" || w === undefined || w.dup || lease === undefined) continue
        const i = crashAt(item.id, lease.retries, "beforeHandler")
        if (i === undefined) continue
        fired.add(i)
        yield* crash(w, `${w.id} crashed running ${item.id} (attempt ${lease.retries}), ${pointText.beforeHandler} [fault ${i + 1}]`)
        return yield* Effect.never
      }
      return statuses
    })

  /** complete / retry / deadLetter: the ack of an attempt. */
  const ack = <I extends Broker.Lease & { readonly attempt: { readonly worker: string; readonly outcome: string; readonly attempt: number } }>(
    op: FaultPlan.Op,
    call: (batch: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<boolean>, BrokerError>
  ) =>
  (batch: ReadonlyArray<I>) =>
    Effect.gen(function*() {
      for (const item of batch) {
        const lease = leases.get(leaseKey(item))
        // a lost attempt is written by the worker that found it, in the lost worker's name
        const caller = item.attempt.outcome === "LOST" ? lease?.worker : item.attempt.worker
        const w = caller === undefined ? undefined : pool.get(caller)
        if (w === undefined || w.dup) continue
        const retries = lease?.retries ?? item.attempt.attempt
        const i = crashAt(item.id, retries, "beforeAck")
        if (i === undefined) continue
        fired.add(i)
        yield* crash(w, `${w.id} crashed running ${item.id} (attempt ${retries}), ${pointText.beforeAck} [fault ${i + 1}]`)
        return yield* Effect.never
      }
      // A duplicated attempt: the first ack waits for the other copy's, so both handlers run to the end.
      const waits: Array<Deferred.Deferred<void>> = []
      for (const item of batch) {
        const dup = dups.get(leaseKey(item))
        if (dup === undefined) continue
        dup.arrived++
        if (dup.arrived >= 2) Deferred.doneUnsafe(dup.both, Effect.void)
        else waits.push(dup.both)
      }
      if (waits.length > 0) {
        yield* Effect.raceFirst(
          Effect.forEach(waits, Deferred.await, { discard: true }),
          testClock.sleep(Duration.minutes(1))
        )
      }
      return yield* guard(op, call(batch))
    })

  const broker = Broker.Broker.of({
    enqueue: (batch) =>
      Effect.suspend(() => {
        // Registered before the broker sees them: a worker may claim them before `enqueue` returns.
        const fresh = batch.map((s) => s.message.id).filter((id) => !index.has(id))
        for (const id of fresh) {
          index.set(id, ids.length)
          ids.push(id)
        }
        const forget = (gone: ReadonlyArray<string>) => {
          if (gone.length === 0) return
          const drop = new Set(gone)
          const kept = ids.filter((id) => !drop.has(id))
          ids.length = 0
          index.clear()
          for (const id of kept) {
            index.set(id, ids.length)
            ids.push(id)
          }
        }
        return guard("enqueue", inner.enqueue(batch)).pipe(
          Effect.tap((out) =>
            Effect.sync(() => {
              // a deduplicated submission is not a task of its own
              const deduped = out.flatMap((o, i) => (o.duplicateOf === undefined ? [] : [batch[i]!.message.id]))
              forget(deduped.filter((id) => fresh.includes(id)))
            })
          ),
          Effect.tapError(() => Effect.sync(() => forget(fresh)))
        )
      }),
    claim: (claim) =>
      claim.worker === duplicateWorker
        ? Effect.map(Queue.take(dupQueue), (d) => [d])
        // Claims never start tasks here (`ClaimOptions.start` dropped): every
        // attempt goes through `start`, where the crash points before and
        // after starting are applied.
        : Effect.tap(guard("claim", inner.claim({ ...claim, start: 0 })), (ds) => claimed(claim.worker, ds)),
    start,
    renew: (batch, leaseMillis) => guard("renew", inner.renew(batch, leaseMillis)),
    complete: ack("complete", inner.complete),
    retry: ack("retry", inner.retry),
    deadLetter: ack("deadLetter", inner.deadLetter),
    release: (batch) => guard("release", inner.release(batch)),
    revoke: (id) => guard("revoke", inner.revoke(id)),
    redeliver: (id) => guard("redeliver", inner.redeliver(id)),
    stats: (queues) => guard("stats", inner.stats(queues))
  })

  /** Wraps a handler so `Fail` and `inHandler` crash faults can reach inside it, and counts running handlers. */
  function wrap(impl: Task.AnyImplemented): Task.AnyImplemented {
    return Task.implement(impl.task as Task.Any, (payload: unknown) =>
      Effect.suspend(() => {
        handlers++
        return Effect.ensuring(
          runWithFaults(impl, payload),
          Effect.sync(() => {
            handlers--
          })
        )
      }))
  }

  function runWithFaults(impl: Task.AnyImplemented, payload: unknown): Effect.Effect<any, any, any> {
    return Effect.gen(function*() {
      const ctx = yield* TaskContext
      const task = index.get(ctx.id)
      if (task === undefined) return yield* impl.handler(payload)
      const what = `${ctx.id} (attempt ${ctx.retries})`
      const failBefore = find((f) => f._tag === "Fail" && f.task === task && f.attempt === ctx.retries && f.at === "before")
      if (failBefore !== undefined) {
        fired.add(failBefore)
        const detail = `${what} on ${ctx.worker} died before its handler ran [fault ${failBefore + 1}]`
        note("fail", detail)
        return yield* Effect.die(new InjectedFault(`injected by the fault plan: ${detail}`))
      }
      const w = pool.get(ctx.worker)
      const inHandler = w === undefined || w.dup ? undefined : crashAt(ctx.id, ctx.retries, "inHandler")
      if (inHandler !== undefined && w !== undefined) {
        fired.add(inHandler)
        const fault = faults[inHandler] as FaultPlan.Crash
        const fiber = yield* Effect.forkChild(impl.handler(payload), { startImmediately: true })
        const after = fault.afterMillis ?? 0
        if (after > 0) {
          yield* Effect.raceFirst(Effect.asVoid(Fiber.await(fiber)), testClock.sleep(Duration.millis(after)))
        }
        const when = fiber.pollUnsafe() !== undefined
          ? "as its handler returned, before the ack"
          : after > 0
          ? `${fmt(after)} into its handler`
          : "at its handler's first wait"
        yield* Effect.forkDetach(crash(w, `${w.id} crashed running ${what}, ${when} [fault ${inHandler + 1}]`))
        return yield* Effect.never
      }
      const result = yield* impl.handler(payload)
      const failAfter = find((f) => f._tag === "Fail" && f.task === task && f.attempt === ctx.retries && f.at === "after")
      if (failAfter !== undefined) {
        fired.add(failAfter)
        const detail = `${what} on ${ctx.worker} died after its handler returned [fault ${failAfter + 1}]`
        note("fail", detail)
        return yield* Effect.die(new InjectedFault(`injected by the fault plan: ${detail}`))
      }
      return result
    })
  }

  const workerContext = Context.add(Context.add(services, Broker.Broker, broker), ResultBackend, backend)

  const startWorker = (dup: boolean) =>
    Effect.gen(function*() {
      const id = dup ? duplicateWorker : `w-${++workerCount}`
      const workerScope = yield* Scope.make()
      const service = yield* Worker.make({
        tasks: wrapped,
        id,
        concurrency: dup ? 64 : concurrency,
        prefetch: dup ? 1 : options.prefetch,
        lease: options.lease,
        shutdownGrace: options.shutdownGrace,
        idleWait: options.idleWait ?? "1 hour",
        queues: options.queues
      }).pipe(Scope.provide(workerScope), Effect.provideContext(workerContext)) as Effect.Effect<Worker.Service>
      pool.set(id, { id, service, scope: workerScope, dup, status: "running" })
      if (!dup) note("worker", `${id} started`)
      return id
    })

  const running = () => [...pool.values()].filter((w) => !w.dup && w.status === "running")

  const pick = (worker: string | undefined) =>
    Effect.suspend(() => {
      const w = worker === undefined ? running()[0] : pool.get(worker)
      return w === undefined
        ? Effect.die(new Error(`ErrandTest: no worker ${worker ?? "running"} (workers: ${[...pool.keys()].join(", ")})`))
        : Effect.succeed(w)
    })

  const shutdown = (w: PoolWorker, detail: string) =>
    Effect.gen(function*() {
      if (w.status !== "running") return
      w.status = "stopping"
      note("shutdown", detail)
      yield* Effect.forkIn(
        Effect.ensuring(
          Scope.close(w.scope, Exit.void),
          Effect.sync(() => {
            if (w.status === "stopping") w.status = "stopped"
          })
        ),
        scope
      )
      if (restart) yield* startWorker(false)
    })

  // Closing the harness kills every worker first: a warm shutdown would wait on a clock no one advances.
  yield* Effect.addFinalizer(() =>
    Effect.forEach([...pool.values()], (w) =>
      Effect.gen(function*() {
        if (w.status === "running" || w.status === "stopping") {
          w.status = "killed"
          yield* w.service.kill
        }
        yield* Scope.close(w.scope, Exit.void)
      }), { discard: true })
  )

  for (let i = 0; i < Math.max(0, options.workers ?? 1); i++) yield* startWorker(false)
  if (faults.some((f) => f._tag === "Duplicate")) yield* startWorker(true)
  yield* Effect.forkScoped(Effect.forever(Effect.andThen(Queue.take(commands), startWorker(false))))
  for (let i = 0; i < faults.length; i++) {
    const f = faults[i]!
    if (f._tag !== "Shutdown") continue
    yield* Effect.forkScoped(
      Effect.andThen(
        testClock.sleep(Duration.millis(Math.max(0, f.atMillis - now()))),
        Effect.suspend(() => {
          fired.add(i)
          const alive = running()
          if (alive.length === 0) {
            note("shutdown", `no worker running to shut down [fault ${i + 1}]`)
            return Effect.void
          }
          const w = alive[(f.worker ?? 0) % alive.length]!
          return shutdown(w, `${w.id} shut down (warm) [fault ${i + 1}]`)
        })
      )
    )
  }

  // The client: task ids are `<task name>-<n>`, so runs are comparable.
  const real = yield* Client.make.pipe(Effect.provideContext(Context.make(Broker.Broker, broker).pipe(Context.add(ResultBackend, backend))))
  let submitted = 0
  const submit: Client.Service["submit"] = (task, payload, submitOptions) =>
    real.submit(task, payload, { ...submitOptions, id: submitOptions?.id ?? `${task.name}-${submitted++}` })
  const client = Client.Client.of({
    ...real,
    submit,
    submitMany: (task, payloads, submitOptions) => Effect.forEach(Array.from(payloads), (p) => submit(task, p, submitOptions))
  })

  // Draining.
  const settle = Effect.gen(function*() {
    for (let i = 0; i < 64; i++) yield* Effect.yieldNow
  })
  // A beat's leader task (`Beat.leaderQueue`) is held for as long as the
  // beat runs: it is not work, and a world with a beat would never be idle.
  // Its runs are future events: `advance` brings them, `drain` runs them.
  const beatQueues = Beat.leaderQueue("")
  const beatHeld = Effect.gen(function*() {
    const queues = (yield* Effect.orDie(inner.queues ?? Effect.succeed([]))).filter((q) => q.startsWith(beatQueues))
    if (queues.length === 0) return 0
    let n = 0
    for (const s of yield* Effect.orDie(inner.stats(queues))) n += s.ready + s.delayed + s.running
    return n
  })
  const busy = Effect.gen(function*() {
    // Handlers are counted on their own: a worker's `inFlight` misses an attempt whose lease it lost.
    let n = (yield* store.pending) - (yield* beatHeld) + handlers
    for (const w of pool.values()) {
      if (w.status === "running" || w.status === "stopping") n += yield* w.service.inFlight
    }
    return n
  })
  const records = Effect.suspend(() => Effect.forEach([...ids], (id) => Effect.orDie(backend.get(id)))).pipe(
    Effect.map((found) => found.flatMap((o) => (Option.isSome(o) ? [o.value] : [])))
  )
  const drain = (drainOptions?: DrainOptions) =>
    Effect.gen(function*() {
      const maxSteps = drainOptions?.maxSteps ?? defaultMaxSteps
      const tick = Math.max(1, toMillis(drainOptions?.tick ?? "1 second"))
      const began = now()
      yield* settle
      let steps = 0
      while (true) {
        if ((yield* busy) === 0) {
          yield* settle
          if ((yield* busy) === 0) break
        }
        if (steps >= maxSteps) {
          const pending: Array<PendingTask> = []
          for (const record of yield* records) {
            if (finalStates.has(record.state)) continue
            const last = record.history.at(-1)
            pending.push({
              id: record.id,
              task: record.task,
              state: record.state,
              retries: record.retries,
              ...(last === undefined ? {} : { last: History.line(last) })
            })
          }
          const elapsedMillis = now() - began
          const list = pending.map((p) =>
            `  ${p.id} (${p.task}): ${p.state}, ${p.retries} ${p.retries === 1 ? "retry" : "retries"}${
              p.last === undefined ? "" : `; last attempt: ${p.last}`
            }`
          )
          return yield* new DrainTimeout({
            steps,
            elapsedMillis,
            pending,
            message: `drain gave up after ${steps} clock jumps (${fmt(elapsedMillis)} of test time) with ${
              pending.length === 1 ? "1 task" : `${pending.length} tasks`
            } still pending: ${
              running().length === 0
                ? "no worker is running (they crashed or shut down, and restart is off)"
                : "it retries forever, a handler never ends, or it waits on something that never comes"
            }` +
              (list.length > 0 ? `\n${list.join("\n")}` : "")
          })
        }
        steps++
        const t = now()
        const next = yield* store.nextDueAt
        const target = Option.isSome(next) && next.value > t ? next.value : t + tick
        yield* testClock.setTime(target)
        yield* settle
      }
      return { steps, elapsed: Duration.millis(now() - began), now: now() } satisfies DrainReport
    })

  const status = (job: Client.Job<Task.Any> | string) => client.status(typeof job === "string" ? job : job.id).pipe(
    Effect.catchTag("BrokerError", Effect.die)
  )

  const harness = ErrandTest.of({
    drain,
    advance: (duration) => Effect.andThen(testClock.adjust(duration), settle),
    settle,
    tasks: records,
    trace: Effect.sync(() => [...trace]),
    snapshot: Effect.map(records, (tasks) => ({ tasks, trace: [...trace] })),
    workers: Effect.sync(() => [...pool.values()].filter((w) => !w.dup).map((w) => ({ id: w.id, status: w.status }))),
    status,
    expectHistory: (job, expected) => Effect.flatMap(status(job), (record) => History.expect(record, expected)),
    kill: (worker) =>
      Effect.flatMap(pick(worker), (w) => Effect.andThen(crash(w, `${w.id} killed by the test`), settle)),
    shutdown: (worker) =>
      Effect.flatMap(pick(worker), (w) => Effect.andThen(shutdown(w, `${w.id} shut down (warm) by the test`), settle)),
    startWorker: startWorker(false)
  })

  return Context.make(ErrandTest, harness).pipe(
    Context.add(Client.Client, client),
    Context.add(Broker.Broker, broker),
    Context.add(ResultBackend, backend),
    Context.add(MemoryBroker.MemoryStore, store)
  )
})

/**
 * What the tasks of a test world need from outside it: their services, less
 * the broker and result backend, which the world's workers give their
 * handlers (a canvas coordinator, `Canvas.CoordinatorLive`, needs both).
 *
 * @since 0.1.0
 */
export type WorldServices<Tasks extends ReadonlyArray<Task.AnyImplemented>> = Exclude<
  Task.Services<Tasks[number]>,
  Broker.Broker | ResultBackend
>

/**
 * The whole test world in one layer: a fresh `TestClock` (time starts at
 * 0), a memory broker, `workers` workers (`w-1`, `w-2`...) running `tasks`
 * with the fault plan applied, a `Client` whose task ids are
 * `<task name>-<n>` in submission order, and the `ErrandTest` harness.
 * Effect's `Random` is seeded with `seed`. The layer needs what the task
 * handlers need.
 *
 * Closing the layer kills the workers (no warm shutdown), so a test may end
 * with tasks still running.
 *
 * @example
 * ```ts
 * import { it } from "@effect/vitest"
 * import { Effect, Layer } from "effect"
 * import { Client } from "@errand/core"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 * import { Charge, ChargeLive, Gateway, Ledger } from "../src/Billing.ts"
 *
 * // Ledger is merged into the world so the test can read it too
 * const World = ErrandTest.layer({ tasks: [ChargeLive], concurrency: 4 }).pipe(
 *   Layer.provideMerge(Layer.mergeAll(Ledger.layer, Gateway.layer()))
 * )
 *
 * it.effect("charges", () =>
 *   Effect.gen(function*() {
 *     const client = yield* Client.Client
 *     yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
 *     yield* ErrandTest.drain()
 *   }).pipe(Effect.provide(World)))
 * ```
 *
 * @since 0.1.0
 */
export const layer = <const Tasks extends ReadonlyArray<Task.AnyImplemented>>(
  options: Options<Tasks>
): Layer.Layer<
  | ErrandTest
  | Client.Client
  | Broker.Broker
  | ResultBackend
  | MemoryBroker.MemoryStore
  | TestClock.TestClock,
  never,
  WorldServices<Tasks>
> => {
  const seeded = Layer.effect(Random.Random, Effect.service(Random.Random).pipe(Random.withSeed(options.seed ?? 0)))
  const env = Layer.mergeAll(
    TestClock.layer(),
    seeded,
    Layer.succeed(References.MinimumLogLevel, options.logLevel ?? "Error")
  )
  return Layer.effectContext(make(options)).pipe(Layer.provideMerge(env)) as any
}

/**
 * Runs an effect in a fresh `ErrandTest.layer(options)` world: shorthand
 * for `Effect.provide(ErrandTest.layer(options))`, handy inside a property
 * where every run needs a world of its own.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@errand/core"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 * import * as FaultPlan from "@errand/core/testing/FaultPlan"
 * import { Charge, ChargeLive } from "../src/Billing.ts"
 *
 * const run = (plan: FaultPlan.FaultPlan) =>
 *   Effect.gen(function*() {
 *     const client = yield* Client.Client
 *     yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
 *     yield* ErrandTest.drain()
 *     return yield* ErrandTest.snapshot
 *   }).pipe(ErrandTest.provide({ tasks: [ChargeLive], faults: plan }))
 * ```
 *
 * @since 0.1.0
 */
export const provide = <const Tasks extends ReadonlyArray<Task.AnyImplemented>>(options: Options<Tasks>) =>
<A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<
  A,
  E,
  | Exclude<R, ErrandTest | Client.Client | Broker.Broker | ResultBackend | MemoryBroker.MemoryStore | TestClock.TestClock>
  | WorldServices<Tasks>
> => Effect.provide(self, layer(options))

/**
 * Runs until nothing is ready, leased, delayed or held by a worker. Each
 * step jumps the `TestClock` to the next time something is due in the
 * broker (a countdown, a retry, a lease running out), or by `tick` when
 * only handlers are busy, running everything due on the way in order. A
 * 7-day countdown takes one step.
 *
 * Fails with `DrainTimeout`, naming the tasks still pending, after
 * `maxSteps` steps: a task that retries forever is reported, not hung on.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@errand/core"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 * import { Charge } from "../src/Billing.ts"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* Client.Client
 *   yield* client.submit(Charge, { orderId: "o-1", cents: 500 }, { countdown: "7 days" })
 *   const report = yield* ErrandTest.drain() // report.steps === 1
 * })
 * ```
 *
 * @since 0.1.0
 */
export const drain = (options?: DrainOptions): Effect.Effect<DrainReport, DrainTimeout, ErrandTest> =>
  ErrandTest.use((harness) => harness.drain(options))

/**
 * Moves the clock forward by `duration`, running everything due on the way.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * ErrandTest.advance("10 seconds")
 * ```
 *
 * @since 0.1.0
 */
export const advance = (duration: Duration.Input): Effect.Effect<void, never, ErrandTest> =>
  ErrandTest.use((harness) => harness.advance(duration))

/**
 * Lets every fiber that can run, run, without moving the clock.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * ErrandTest.settle
 * ```
 *
 * @since 0.1.0
 */
export const settle: Effect.Effect<void, never, ErrandTest> = ErrandTest.use((h) => h.settle)

/**
 * Every task's record and the harness trace; equal across runs with the
 * same tasks, seed and fault plan.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const program = Effect.andThen(ErrandTest.drain(), ErrandTest.snapshot)
 * ```
 *
 * @since 0.1.0
 */
export const snapshot: Effect.Effect<Snapshot, never, ErrandTest> = ErrandTest.use((h) => h.snapshot)

/**
 * The harness trace: workers started, faults fired, with their times.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const crashes = Effect.map(ErrandTest.trace, (events) => events.filter((e) => e.kind === "crash"))
 * ```
 *
 * @since 0.1.0
 */
export const trace: Effect.Effect<ReadonlyArray<TraceEvent>, never, ErrandTest> = ErrandTest.use((h) => h.trace
)

/**
 * Every task's record, in submission order.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const states = Effect.map(ErrandTest.tasks, (records) => records.map((r) => r.state))
 * ```
 *
 * @since 0.1.0
 */
export const tasks: Effect.Effect<ReadonlyArray<TaskRecord>, never, ErrandTest> = ErrandTest.use((h) => h.tasks
)

/**
 * The workers the harness ran, with their status.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * const ids = Effect.map(ErrandTest.workers, (ws) => ws.map((w) => `${w.id}:${w.status}`))
 * ```
 *
 * @since 0.1.0
 */
export const workers: Effect.Effect<ReadonlyArray<WorkerInfo>, never, ErrandTest> = ErrandTest.use((h) => h.workers
)

/**
 * Asserts a task's history, given its record, its job or its id: see
 * `History.expect` for the expected entries and the failure message.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@errand/core"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 * import { Charge } from "../src/Billing.ts"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* Client.Client
 *   const job = yield* client.submit(Charge, { orderId: "o-1", cents: 500 })
 *   yield* ErrandTest.drain()
 *   yield* ErrandTest.expectHistory(job, [{ outcome: "RETRY", countdown: "10 seconds" }, "SUCCESS"])
 * })
 * ```
 *
 * @since 0.1.0
 */
export const expectHistory: {
  (status: TaskRecord, expected: ReadonlyArray<History.Expected>): Effect.Effect<void>
  (
    job: Client.Job<Task.Any> | string,
    expected: ReadonlyArray<History.Expected>
  ): Effect.Effect<void, TaskNotFound, ErrandTest>
} = ((target: TaskRecord | Client.Job<Task.Any> | string, expected: ReadonlyArray<History.Expected>) =>
  typeof target === "object" && "history" in target
    ? History.expect(target, expected)
    : ErrandTest.use((h) => h.expectHistory(target, expected))) as any

/**
 * Kill -9 a worker (default: the first running one). With `restart` (the
 * default) a new worker takes its place.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * ErrandTest.kill("w-1")
 * ```
 *
 * @since 0.1.0
 */
export const kill = (worker?: string): Effect.Effect<void, never, ErrandTest> =>
  ErrandTest.use((h) => h.kill(worker))

/**
 * Warm-shut-down a worker (default: the first running one), as SIGTERM does.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * ErrandTest.shutdown()
 * ```
 *
 * @since 0.1.0
 */
export const shutdown = (worker?: string): Effect.Effect<void, never, ErrandTest> =>
  ErrandTest.use((h) => h.shutdown(worker))

/**
 * Starts one more worker (named after the last one) and returns its id.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * // with `workers: 0`, tasks wait until the test starts a worker
 * const program = Effect.andThen(ErrandTest.advance("1 minute"), ErrandTest.startWorker)
 * ```
 *
 * @since 0.1.0
 */
export const startWorker: Effect.Effect<string, never, ErrandTest> = ErrandTest.use((h) => h.startWorker)

/**
 * The current test time, in ms since the test began.
 *
 * @example
 * ```ts
 * import * as ErrandTest from "@errand/core/testing/ErrandTest"
 *
 * ErrandTest.now // Effect<number>
 * ```
 *
 * @since 0.1.0
 */
export const now: Effect.Effect<number> = Clock.currentTimeMillis
