/**
 * Beat: periodic tasks (Celery beat), run by any number of processes with
 * one leader among them.
 *
 * Each entry submits a task on a schedule: a cron expression, a `Cron`, or
 * an Effect `Schedule` (`Schedule.spaced("30 seconds")`, `Schedule.cron(..)`).
 * Every process may run `Beat.layer` with the same entries; one of them leads
 * and submits, the others wait to take over.
 *
 * - **Leader by lease.** The leader holds the lease on a task that is never
 *   run nor completed (`beat:<name>:leader:<n>` in queue `errand.beat.<name>`),
 *   renewed by heartbeat like any running task. When the leader dies its
 *   lease runs out and a follower's claim gets the task: it leads. A leader
 *   that shuts down warmly gives the lease back at once.
 * - **No run doubled.** A run's task id is its entry and scheduled time
 *   (`beat:<name>:<entry>@<ISO time>`) and enqueue is idempotent per task id,
 *   so a time submitted twice (by a leader that stalled past its lease and the
 *   one that replaced it, or by a new leader catching up) runs once. A run
 *   keeps its record even when its task says `keepRecord: false`.
 * - **Catch-up.** The leader writes, per entry, the last scheduled time it
 *   submitted into its task's record (`meta.beat.entries`). A new leader
 *   starts from there: the times that passed since, while no leader lived,
 *   are "missed". `catchUp: "latest"` (default) submits only the most recent
 *   missed time, as Celery beat and Kubernetes CronJobs do; `"all"` submits
 *   every missed time (at most `maxCatchUp`, default 100, the latest ones);
 *   `"none"` skips them. The first leader ever starts at its start time. A
 *   spaced schedule stays on the grid of its first leader across leader
 *   changes.
 *
 * The next time of an entry is computed by one fresh step of its schedule
 * from the previous scheduled time, so the schedule must not keep state
 * between steps (cron, `spaced`, `fixed` and their unions do; `exponential`
 * does not).
 *
 * @example
 * ```ts
 * import { Layer, Schedule } from "effect"
 * import { Beat, Client } from "@errand/core"
 * import { RedisBroker } from "@errand/redis"
 * import { Report, Ping } from "./tasks.ts"
 *
 * const BeatLive = Beat.layer({
 *   entries: [
 *     Beat.entry({ id: "nightly-report", task: Report, payload: { kind: "daily" }, schedule: "0 3 * * *" }),
 *     Beat.entry({ id: "ping", task: Ping, payload: (at) => ({ at: at.toISOString() }), schedule: Schedule.spaced("30 seconds"), catchUp: "all" })
 *   ]
 * }).pipe(Layer.provide(Client.layer), Layer.provideMerge(RedisBroker.layer({ url })))
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Cron, Duration, Effect, Fiber, Layer, Option, Pull, Schedule, Schema, type Scope } from "effect"
import * as Broker from "./Broker.ts"
import * as Client from "./Client.ts"
import type { BrokerError } from "./Errors.ts"
import * as Headers from "./internal/headers.ts"
import { finalStates, type Message } from "./Message.ts"
import { ResultBackend } from "./ResultBackend.ts"
import type * as Task from "./Task.ts"

/**
 * What a new leader does with the times missed while no leader lived.
 *
 * @since 0.1.0
 */
export type CatchUp = "latest" | "all" | "none"

/**
 * A schedule: a cron expression (5 or 6 fields, UTC), a `Cron`, or an Effect
 * `Schedule` without state between steps.
 *
 * @since 0.1.0
 */
export type When = string | Cron.Cron | Schedule.Schedule<unknown, unknown, unknown>

/**
 * One periodic task.
 *
 * @since 0.1.0
 */
export interface Entry<T extends Task.Any = Task.Any> {
  /** Unique within the beat; part of every run's task id. */
  readonly id: string
  readonly task: T
  /** The payload, or a function of the scheduled time giving it. */
  readonly payload: Task.PayloadInput<T> | ((scheduledAt: Date) => Task.PayloadInput<T>)
  readonly schedule: When
  /** Default `"latest"`. */
  readonly catchUp?: CatchUp | undefined
  /** The most runs submitted at once when catching up (`"all"`) or after a stall. Default 100. */
  readonly maxCatchUp?: number | undefined
  readonly queue?: string | undefined
  readonly priority?: number | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * Defines an entry, checking its payload against its task.
 *
 * @since 0.1.0
 */
export const entry = <T extends Task.Any>(entry: Entry<T>): Entry<T> => entry

/**
 * Options of `Beat.layer` / `Beat.make`.
 *
 * @since 0.1.0
 */
export interface Options {
  readonly entries: ReadonlyArray<Entry<any>>
  /** Beats with different names run independently (own leader, own runs). Default `"default"`. */
  readonly name?: string | undefined
  /** The leader's lease: a dead leader is replaced after at most this long. Renewed every third of it. Default 10 seconds. */
  readonly lease?: Duration.Input | undefined
  /** This process's id as a beat member. Default `beat-<random>`. */
  readonly id?: string | undefined
}

/**
 * A running beat member.
 *
 * @since 0.1.0
 */
export interface Service {
  readonly id: string
  readonly name: string
  /** Whether this member leads now. */
  readonly isLeader: Effect.Effect<boolean>
  /** Simulates a sudden death (kill -9): stops at once, the lease is not given back. For tests. */
  readonly kill: Effect.Effect<void>
}

/**
 * The beat member running in this context (provided by `Beat.layer`).
 *
 * @since 0.1.0
 */
export class Beat extends Context.Service<Beat, Service>()("@errand/core/Beat") {}

/**
 * The checkpoint in the leader task's record.
 *
 * @since 0.1.0
 */
export const Meta = Schema.Struct({
  beat: Schema.Struct({
    name: Schema.String,
    /** The member that wrote it. */
    leader: Schema.String,
    /** Per entry, the last scheduled time submitted (ms since the epoch). */
    entries: Schema.Record(Schema.String, Schema.Number)
  })
})

/**
 * @since 0.1.0
 */
export type Meta = typeof Meta.Type

const decodeMeta = Schema.decodeUnknownOption(Meta)

/**
 * The task id of the run of `entry` at `scheduledAt`.
 *
 * @since 0.1.0
 */
export const runId = (name: string, entry: string, scheduledAt: number): string =>
  `beat:${name}:${entry}@${new Date(scheduledAt).toISOString()}`

/**
 * The queue of a beat's leader task.
 *
 * @since 0.1.0
 */
export const leaderQueue = (name: string): string => `errand.beat.${name}`

/**
 * The task id of a beat's leader task, generation `generation` (a new one
 * is made only when the current one was ended from outside: revoked, purged).
 *
 * @since 0.1.0
 */
export const leaderId = (name: string, generation: number): string => `beat:${name}:leader:${generation}`

/**
 * The header of a run: its beat and entry (`<name>/<entry>`).
 *
 * @since 0.1.0
 */
export const entryHeader: "x-errand-beat" = Headers.beatHeader

/**
 * The header of a run: its scheduled time (ISO 8601).
 *
 * @since 0.1.0
 */
export const scheduledHeader = "x-errand-beat-at"

/** The next scheduled time strictly after `from`, if the schedule goes on. */
type Next = (from: number) => Effect.Effect<Option.Option<number>>

const compile = (entry: Entry): Next => {
  const when = entry.schedule
  if (typeof when === "string" || Cron.isCron(when)) {
    const cron = typeof when === "string" ? Cron.parseUnsafe(when, "UTC") : when
    return (from) => Effect.sync(() => Option.some(Cron.next(cron, from).getTime()))
  }
  return (from) =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(when)
      const exit = yield* Effect.exit(step(from, undefined))
      if (exit._tag === "Failure") {
        if (Pull.isDoneCause(exit.cause)) return Option.none()
        return yield* Effect.die(new Error(`Beat entry "${entry.id}": its schedule failed`, { cause: exit.cause }))
      }
      const delay = Duration.toMillis(exit.value[1])
      if (!(delay >= 1)) {
        return yield* Effect.die(new Error(`Beat entry "${entry.id}": its schedule gave a delay of ${delay} ms`))
      }
      return Option.some(from + delay)
    })
}

const outage = Schedule.exponential("50 millis").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(2))))
)

const persistent = <A>(op: string, effect: Effect.Effect<A, BrokerError>): Effect.Effect<A> =>
  effect.pipe(
    Effect.tapError((e) => Effect.logWarning(`beat: broker ${op} failed, retrying: ${e.message}`)),
    Effect.retry(outage),
    Effect.orDie
  )

/** The most steps taken to find the missed times of an entry before giving up and starting afresh. */
const maxSteps = 100_000

/**
 * Starts a beat member in the current scope. Closing the scope stops it; a
 * leader gives its lease back, so a follower takes over at once.
 *
 * @since 0.1.0
 */
export const make = (
  options: Options
): Effect.Effect<Service, never, Scope.Scope | Broker.Broker | ResultBackend | Client.Client> =>
  Effect.gen(function*() {
    const broker = yield* Broker.Broker
    const backend = yield* ResultBackend
    const client = yield* Client.Client
    const name = options.name ?? "default"
    const id = options.id ?? `beat-${Math.random().toString(36).slice(2, 10)}`
    const leaseMillis = Duration.toMillis(Duration.fromInputUnsafe(options.lease ?? "10 seconds"))
    const queue = leaderQueue(name)
    const seen = new Set<string>()
    for (const e of options.entries) {
      if (seen.has(e.id)) return yield* Effect.die(new Error(`Beat "${name}": entry "${e.id}" is defined twice`))
      seen.add(e.id)
    }
    const entries = options.entries.map((e) => ({ entry: e as Entry, next: compile(e) }))
    const log = (text: string) => Effect.annotateLogs(Effect.logInfo(text), { beat: name, member: id })

    let leading: Broker.Lease | undefined
    let killed = false

    /** The leader task: the first generation whose record is missing or not final. */
    const generation = Effect.gen(function*() {
      for (let n = 0;; n++) {
        const record = yield* persistent("get", backend.get(leaderId(name, n)))
        if (Option.isNone(record) || !finalStates.has(record.value.state)) return n
      }
    })

    /** Whether a generation below `n` is the leader task now (read errors: no). */
    const smallerGeneration = (n: number) =>
      Effect.gen(function*() {
        for (let g = 0; g < n; g++) {
          const record = yield* backend.get(leaderId(name, g))
          if (Option.isNone(record) || !finalStates.has(record.value.state)) return true
        }
        return false
      }).pipe(Effect.orElseSucceed(() => false))

    /** The checkpoint of generation `n`, or of an earlier one (after a revoke or purge). */
    const checkpoint = (n: number) =>
      Effect.gen(function*() {
        for (let g = n; g >= 0 && g >= n - 3; g--) {
          const record = yield* persistent("get", backend.get(leaderId(name, g)))
          const meta = Option.flatMap(record, (r) => decodeMeta(r.meta))
          if (Option.isSome(meta)) return meta.value.beat.entries
        }
        return {} as Record<string, number>
      })

    const submitRun = (e: Entry, at: number) =>
      Effect.gen(function*() {
        const date = new Date(at)
        const payload = typeof e.payload === "function" ? (e.payload as (d: Date) => unknown)(date) : e.payload
        const submitted = yield* client.submit(e.task, payload, {
          id: runId(name, e.id, at),
          queue: e.queue,
          priority: e.priority,
          headers: { ...e.headers, [entryHeader]: `${name}/${e.id}`, [scheduledHeader]: date.toISOString() }
        }).pipe(
          Effect.tapError((error) =>
            error._tag === "BrokerError" ? Effect.logWarning(`beat: submit failed, retrying: ${error.message}`) : Effect.void
          ),
          Effect.retry({ schedule: outage, while: (error) => error._tag === "BrokerError" }),
          Effect.catchTag("PayloadInvalid", (error) =>
            Effect.as(Effect.logError(`beat ${name}: run ${e.id} at ${date.toISOString()} skipped: ${error.message}`), undefined)),
          Effect.orDie
        )
        if (submitted !== undefined) yield* Effect.logDebug(`beat ${name}: submitted ${submitted.id}`)
      })

    /**
     * The scheduled times of an entry after `from` up to `now`: how many, the
     * last `keep` of them, and the last one (`from` when none).
     */
    const due = (next: Next, from: number, now: number, keep: number) =>
      Effect.gen(function*() {
        const kept: Array<number> = []
        let last = from
        let count = 0
        while (true) {
          const t = yield* next(last)
          if (Option.isNone(t) || t.value > now) return { count, kept, last, complete: true }
          last = t.value
          count++
          if (keep > 0) {
            kept.push(last)
            if (kept.length > keep) kept.shift()
          }
          if (count >= maxSteps) return { count, kept, last, complete: false }
        }
      })

    /** What the leader does while it leads: submit every entry's runs on time. */
    const schedule = (leaderTask: string, n: number) =>
      Effect.gen(function*() {
        const saved = yield* checkpoint(n)
        const cursor = new Map<string, number>()
        const start = yield* Clock.currentTimeMillis
        const writeCheckpoint = Effect.suspend(() => {
          const meta: Meta = { beat: { name, leader: id, entries: Object.fromEntries(cursor) } }
          return Effect.asVoid(persistent("setState", backend.setState(leaderTask, "LEADING", meta)))
        })
        // Catch up on the times missed while no leader lived.
        for (const { entry: e, next } of entries) {
          const last = saved[e.id]
          if (last === undefined) {
            cursor.set(e.id, start)
            continue
          }
          const rule = e.catchUp ?? "latest"
          const keep = rule === "none" ? 0 : rule === "latest" ? 1 : Math.max(1, e.maxCatchUp ?? 100)
          const missed = yield* due(next, last, start, keep)
          if (!missed.complete) {
            yield* Effect.logWarning(`beat ${name}: entry ${e.id} missed more than ${maxSteps} runs; starting afresh`)
            cursor.set(e.id, start)
            continue
          }
          if (missed.count > 0) {
            yield* log(`entry ${e.id}: ${missed.count} run(s) missed while no leader lived; catch-up "${rule}" submits ${missed.kept.length}`)
          }
          for (const t of missed.kept) yield* submitRun(e, t)
          cursor.set(e.id, missed.last)
        }
        yield* writeCheckpoint
        const pending = new Map<string, Option.Option<number>>()
        while (true) {
          let soonest: number | undefined
          for (const { entry: e, next } of entries) {
            let t = pending.get(e.id)
            if (t === undefined) {
              t = yield* next(cursor.get(e.id)!)
              pending.set(e.id, t)
            }
            if (Option.isSome(t) && (soonest === undefined || t.value < soonest)) soonest = t.value
          }
          if (soonest === undefined) return yield* Effect.never
          const now = yield* Clock.currentTimeMillis
          if (soonest > now) yield* Effect.sleep(soonest - now)
          const at = yield* Clock.currentTimeMillis
          for (const { entry: e, next } of entries) {
            const t = pending.get(e.id)!
            if (Option.isNone(t) || t.value > at) continue
            // normally one time; more if this leader stalled
            const times = yield* due(next, cursor.get(e.id)!, at, Math.max(1, e.maxCatchUp ?? 100))
            for (const time of times.kept) yield* submitRun(e, time)
            cursor.set(e.id, times.complete ? times.last : at)
            pending.delete(e.id)
          }
          yield* writeCheckpoint
        }
      })

    /** Leads until the lease is lost (or handed over). */
    const lead = (d: Broker.Delivery, n: number) =>
      Effect.gen(function*() {
        const lease: Broker.Lease = { id: d.id, token: d.token, handle: d.handle }
        leading = lease
        yield* log(`leads (lease on ${d.id})`)
        const scheduler = yield* Effect.forkChild(schedule(d.id, n), { startImmediately: true })
        let vouched = (yield* Clock.currentTimeMillis) + leaseMillis
        while (true) {
          yield* Effect.sleep(Math.max(1, Math.floor(leaseMillis / 3)))
          const now = yield* Clock.currentTimeMillis
          const status = yield* broker.renew([lease], leaseMillis).pipe(
            Effect.map((s) => s[0] ?? "stale"),
            Effect.catch((e) => Effect.as(Effect.logWarning(`beat: lease renewal failed: ${e.message}`), "failed" as const))
          )
          if (status === "ok") {
            vouched = now + leaseMillis
            // a smaller generation came back (an old record expired): it is the leader task now
            if (yield* smallerGeneration(n)) {
              yield* persistent("complete", broker.complete([{ ...lease, state: "SUCCESS", attempt: ended(now, "SUCCESS") }]))
              break
            }
            continue
          }
          if (status === "revoked") {
            // revoked from outside: end this generation; the next one is elected
            yield* persistent("complete", broker.complete([{ ...lease, state: "REVOKED", attempt: ended(now, "REVOKED") }]))
            break
          }
          if (status === "stale" || now >= vouched) break
        }
        yield* Fiber.interrupt(scheduler)
        leading = undefined
        yield* log("no longer leads")
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => (leading = undefined))))

    const ended = (now: number, outcome: "SUCCESS" | "REVOKED") => ({
      attempt: 0,
      worker: id,
      startedAt: now,
      endedAt: now,
      outcome
    })

    const follow = Effect.gen(function*() {
      while (true) {
        const n = yield* generation
        const now = yield* Clock.currentTimeMillis
        const message: Message = {
          id: leaderId(name, n),
          task: "errand.beat.leader",
          queue,
          payload: { name },
          headers: {},
          priority: 5,
          retries: 0,
          submittedAt: now
        }
        // idempotent: the leader task is made once per generation
        yield* persistent("enqueue", broker.enqueue([{ message, dueAt: now }]))
        const batch = yield* persistent(
          "claim",
          broker.claim({ queues: [queue], worker: id, max: 1, leaseMillis, waitMillis: leaseMillis })
        )
        for (const d of batch) {
          // the generation may have moved on while this member waited
          const current = d.id === leaderId(name, n) ? n : yield* generation
          if (d.id === leaderId(name, current)) {
            yield* lead(d, current)
          } else {
            // a later generation left over from a race: end it, the current one leads
            const at = yield* Clock.currentTimeMillis
            yield* persistent("complete", broker.complete([{ id: d.id, token: d.token, handle: d.handle, state: "SUCCESS", attempt: ended(at, "SUCCESS") }]))
          }
        }
      }
    })

    const fiber = yield* Effect.forkScoped(follow, { startImmediately: true })
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (killed) return
        const held = leading
        yield* Fiber.interrupt(fiber)
        if (held !== undefined) {
          yield* broker.release([held]).pipe(Effect.timeoutOption("5 seconds"), Effect.ignore)
          yield* log("gave the lease back")
        }
      })
    )

    return {
      id,
      name,
      isLeader: Effect.sync(() => leading !== undefined),
      kill: Effect.gen(function*() {
        if (killed) return
        killed = true
        leading = undefined
        yield* Fiber.interrupt(fiber)
      })
    } satisfies Service
  })

/**
 * Runs a beat member for the lifetime of the layer. Run it in every process
 * that may lead (any number); one leads at a time.
 *
 * @since 0.1.0
 */
export const layer = (
  options: Options
): Layer.Layer<Beat, never, Broker.Broker | ResultBackend | Client.Client> => Layer.effect(Beat, make(options))
