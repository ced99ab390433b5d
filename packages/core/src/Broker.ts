/**
 * The `Broker` service: where tasks wait, are leased to workers, and end.
 *
 * Every operation takes and returns a batch, so a Redis broker does one round
 * trip for many tasks. Every step that changes a task's place in the queue
 * also writes its record in the same atomic step (the broker and the result
 * backend share one store), so a task's state never disagrees with where its
 * message is.
 *
 * Leases are fenced: a claim hands out a `token`, and `start`, `renew`,
 * `complete`, `retry` and `deadLetter` with a token that is no longer the
 * current one are refused (`"stale"` / `false`), so a worker that stalled past
 * its lease cannot overwrite the attempt that replaced it.
 *
 * @since 0.1.0
 */
import { Context, type Effect } from "effect"
import type { BrokerError, ErrorInfo } from "./Errors.ts"
import type { Attempt, Message } from "./Message.ts"

/**
 * A task to enqueue.
 *
 * @since 0.1.0
 */
export interface Submission {
  readonly message: Message
  /** When the task becomes due (ms since the epoch); at or before now: ready at once. */
  readonly dueAt: number
  /** Submissions with the same dedup id (per queue) while the first is not final enqueue once. */
  readonly dedupId?: string | undefined
  /**
   * The id was made for this submission, which is sent for the first time
   * (`Client` sets it for the ids it generates): no broker can know it yet,
   * so a broker may skip looking it up (the check that makes a resent
   * submission of a known id a no-op). Never set it for an id given by a
   * caller, which may be a resend.
   */
  readonly fresh?: boolean | undefined
}

/**
 * What `enqueue` did with one submission.
 *
 * @since 0.1.0
 */
export interface Enqueued {
  readonly id: string
  /** Set when a submission with the same dedup id was already waiting: the id of that task. */
  readonly duplicateOf?: string | undefined
}

/**
 * A claim's fencing handle.
 *
 * @since 0.1.0
 */
export interface Lease {
  readonly id: string
  readonly token: number
  /**
   * The queue the delivery came from, when the caller knows it (a worker
   * does). A broker that keeps tasks per queue then need not look the id up;
   * without it, it finds the queue itself.
   */
  readonly queue?: string | undefined
  /**
   * What the broker put in the delivery's `handle`, given back by a caller
   * that has it: a broker may find the task from it instead of looking its
   * id up (the memory broker does), after checking that it is its own and
   * agrees with `id` and `token`. Opaque to everyone else.
   */
  readonly handle?: unknown
}

/**
 * A lease that ran out: the attempt it covered was lost with its worker.
 *
 * @since 0.1.0
 */
export interface LostLease {
  readonly worker: string
  /** When the lost attempt started, if it did. */
  readonly startedAt?: number | undefined
  readonly expiredAt: number
  /** The lost attempt had been acknowledged at start (`acksLate: false`). */
  readonly ackedEarly: boolean
}

/**
 * A task leased to a worker.
 *
 * @since 0.1.0
 */
export interface Delivery extends Lease {
  readonly queue: string
  readonly deadline: number
  /** The stored message, not yet validated: decode it with `Message.decodeMessage`. */
  readonly message: unknown
  /**
   * Set when an earlier lease on this task ran out after its attempt started.
   * The marker stays on the task until a later lease starts it (`start`) or
   * ends or reschedules it (`complete`, `retry`, `deadLetter`): a lease that
   * itself runs out before starting keeps the earlier marker, so a lost
   * attempt is reported even when the worker that claimed it next dies too.
   */
  readonly lost?: LostLease | undefined
  /**
   * Set when the claim also started this attempt (`ClaimOptions.start`): the
   * task is STARTED at this time by the claiming worker, as after `start`
   * with `ackEarly: false`. No `start` call is needed for it.
   */
  readonly startedAt?: number | undefined
}

/**
 * @since 0.1.0
 */
export interface ClaimOptions {
  readonly queues: ReadonlyArray<string>
  readonly worker: string
  /** The most deliveries to return. */
  readonly max: number
  readonly leaseMillis: number
  /** How long to wait for a task when none is ready; 0 returns at once. */
  readonly waitMillis: number
  /**
   * Start up to this many of the claimed tasks in the same step, as `start`
   * with `ackEarly: false` would (state STARTED, started by `worker` at the
   * claim time): the first ones in claim order that carry no lost marker and
   * are not flagged revoked. Those come back with `startedAt` set. A worker
   * passes how many of its runners are idle, which saves the `start` round
   * trip for tasks that go straight to a handler. Default 0.
   */
  readonly start?: number | undefined
}

/**
 * The state of a lease, as `start` and `renew` see it.
 *
 * @since 0.1.0
 */
export type LeaseStatus = "ok" | "stale" | "revoked"

/**
 * @since 0.1.0
 */
export interface Start extends Lease {
  readonly worker: string
  readonly startedAt: number
  /** Acknowledge now (`acksLate: false`): a lost worker then fails the task. */
  readonly ackEarly: boolean
}

/**
 * The final step of a task.
 *
 * @since 0.1.0
 */
export interface Completion extends Lease {
  readonly state: "SUCCESS" | "FAILURE" | "REVOKED"
  readonly result?: unknown
  readonly error?: ErrorInfo | undefined
  readonly attempt: Attempt
  /** Keep `result` in the record (default true). */
  readonly storeResult?: boolean | undefined
  /**
   * Keep a record at all (default true). false, with SUCCESS: the task is
   * forgotten as it ends (no done record; its id is unknown from then on),
   * `Task.keepRecord`. Other states keep theirs regardless.
   */
  readonly keepRecord?: boolean | undefined
  /**
   * The message as delivered, when the caller has it: a broker may take the
   * final record's task name and submit time from it instead of reading them
   * back. It must be the message of this delivery.
   */
  readonly message?: Message | undefined
}

/**
 * A failed attempt that will run again after a countdown.
 *
 * @since 0.1.0
 */
export interface Reschedule extends Lease {
  readonly dueAt: number
  readonly error: ErrorInfo
  readonly attempt: Attempt
}

/**
 * A message that cannot be run: it leaves the queue for the dead letters,
 * where `redeliver` can bring it back.
 *
 * @since 0.1.0
 */
export interface DeadLetter extends Lease {
  readonly error: ErrorInfo
  readonly attempt: Attempt
}

/**
 * What `revoke` found.
 *
 * @since 0.1.0
 */
export type RevokeResult =
  /** It was waiting: removed and marked REVOKED. */
  | "revoked"
  /** It is running: flagged, its worker interrupts it at the next heartbeat. */
  | "running"
  /** It had already ended. */
  | "final"
  | "unknown"

/**
 * Counts of one queue.
 *
 * @since 0.1.0
 */
export interface QueueStats {
  readonly queue: string
  readonly ready: number
  readonly delayed: number
  readonly running: number
  readonly dead: number
}

/**
 * A worker as it registers itself: who, where, what it consumes. Written by
 * `heartbeat` with the worker's lease renewals and read back by `workers`.
 *
 * @since 0.1.0
 */
export interface WorkerInfo {
  readonly id: string
  readonly host: string
  readonly pid: number
  readonly queues: ReadonlyArray<string>
  readonly concurrency: number
  /** When the worker started (ms since the epoch). */
  readonly startedAt: number
  /** When it last heartbeated. */
  readonly heartbeatAt: number
  /**
   * Until when that heartbeat vouches for the worker (its lease time): a
   * worker not heard from past this is gone, and its leases have run out.
   */
  readonly aliveUntil: number
  /** When the broker forgets the entry, unless a later heartbeat renews it. */
  readonly expiresAt: number
  /** Tasks held (running or prefetched) at the last heartbeat. */
  readonly inFlight?: number | undefined
  /** Set by the last heartbeat of a worker that shut down cleanly. */
  readonly stoppedAt?: number | undefined
}

/**
 * A registered worker's status at `now`: `alive` while its heartbeats come,
 * `stopped` after a clean shutdown, `gone` when it stopped heartbeating
 * without one (killed, hung, cut off).
 *
 * @since 0.1.0
 */
export const workerStatus = (worker: WorkerInfo, now: number): "alive" | "stopped" | "gone" =>
  worker.stoppedAt !== undefined ? "stopped" : now > worker.aliveUntil ? "gone" : "alive"

/**
 * The broker.
 *
 * @since 0.1.0
 */
export class Broker extends Context.Service<Broker, {
  /**
   * Enqueue many tasks at once and write their PENDING records. Idempotent
   * per task id: an id the backend already knows (waiting, running or ended,
   * until its record expires) is left as it is.
   */
  readonly enqueue: (batch: ReadonlyArray<Submission>) => Effect.Effect<ReadonlyArray<Enqueued>, BrokerError>
  /**
   * Lease up to `max` tasks, highest priority first, then oldest first.
   * Delayed tasks that are due and expired leases (as `lost` deliveries) are
   * moved back to ready first. Waits up to `waitMillis` when none is ready.
   */
  readonly claim: (options: ClaimOptions) => Effect.Effect<ReadonlyArray<Delivery>, BrokerError>
  /** Mark attempts STARTED (and acknowledge them early where asked). */
  readonly start: (batch: ReadonlyArray<Start>) => Effect.Effect<ReadonlyArray<LeaseStatus>, BrokerError>
  /** Extend leases to now + `leaseMillis`. */
  readonly renew: (
    batch: ReadonlyArray<Lease>,
    leaseMillis: number
  ) => Effect.Effect<ReadonlyArray<LeaseStatus>, BrokerError>
  /** End tasks: remove their messages and write their final records. `false`: the lease was stale. */
  readonly complete: (batch: ReadonlyArray<Completion>) => Effect.Effect<ReadonlyArray<boolean>, BrokerError>
  /** Reschedule failed attempts: retries + 1, state RETRY, due at `dueAt`. `false`: stale. */
  readonly retry: (batch: ReadonlyArray<Reschedule>) => Effect.Effect<ReadonlyArray<boolean>, BrokerError>
  /** Move messages to the dead letters, state FAILURE. `false`: stale. */
  readonly deadLetter: (batch: ReadonlyArray<DeadLetter>) => Effect.Effect<ReadonlyArray<boolean>, BrokerError>
  /**
   * Give back leased tasks whose handlers never ran (a worker shutting down
   * with prefetched tasks): ready at once, PENDING, no attempt counted and no
   * lost marker, even when the claim had started them.
   */
  readonly release: (batch: ReadonlyArray<Lease>) => Effect.Effect<ReadonlyArray<boolean>, BrokerError>
  /** Revoke a task: removed if waiting, flagged if running. */
  readonly revoke: (id: string) => Effect.Effect<RevokeResult, BrokerError>
  /**
   * Bring a dead-lettered task, or one that ended FAILURE, back to its queue,
   * ready now, state PENDING, its retry count and history kept. A failed
   * task's message is retained with its record (until the record expires).
   * `false`: no such dead letter or failed task.
   */
  readonly redeliver: (id: string) => Effect.Effect<boolean, BrokerError>
  /** Counts per queue. */
  readonly stats: (queues: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<QueueStats>, BrokerError>
  /**
   * How many submissions `Client.submitMany` hands to one `enqueue` (absent:
   * 5,000). A broker a round trip away wants few large calls; one in the
   * same process wants smaller ones, between which `submitMany` yields and a
   * worker in that process runs the tasks already enqueued (the memory
   * broker: 1,000). Anything but a positive whole number is ignored.
   */
  readonly enqueueChunk?: number | undefined
  // Operations for tools (`errand inspect`, `errand purge`). Optional, so a
  // broker layer written before them still compiles and runs: a worker then
  // skips registration, and the tools say the broker lacks them. The memory
  // and Redis layers have them all.
  /**
   * Register workers or renew their registrations (one entry per id, the
   * latest wins). An entry is forgotten at its `expiresAt`.
   */
  readonly heartbeat?: ((batch: ReadonlyArray<WorkerInfo>) => Effect.Effect<void, BrokerError>) | undefined
  /** The registered workers whose entries have not expired, gone and stopped ones included. */
  readonly workers?: Effect.Effect<ReadonlyArray<WorkerInfo>, BrokerError> | undefined
  /** The names of the queues the broker knows (every queue a task was enqueued to). */
  readonly queues?: Effect.Effect<ReadonlyArray<string>, BrokerError> | undefined
  /**
   * Remove the waiting (ready and delayed) tasks of each queue; running and
   * dead-lettered ones stay. Their records become REVOKED (`TaskRevoked`), so
   * awaiters return. Returns how many were removed, per queue.
   */
  readonly purge?: ((queues: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<number>, BrokerError>) | undefined
}>()("@errand/core/Broker") {}
