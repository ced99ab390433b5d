/**
 * The in-memory broker and result backend: one process, no I/O, every step
 * driven by Effect's `Clock`. Under `TestClock` it is fully deterministic:
 * advancing the clock by 10 seconds makes due exactly the tasks that were.
 *
 * It is the embedded default and what apps run their tests on. It keeps the
 * same contract as the Redis layer (the shared contract suite checks both).
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Client, MemoryBroker, Worker } from "@errand/core"
 *
 * const App = Layer.mergeAll(Client.layer, Worker.layer({ tasks: [] })).pipe(
 *   Layer.provideMerge(MemoryBroker.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Deferred, Effect, Layer, Option } from "effect"
import * as Broker from "./Broker.ts"
import { info, TaskRevoked } from "./Errors.ts"
import { Deque, MinHeap } from "./internal/heap.ts"
import { type Attempt, finalStates, type TaskRecord } from "./Message.ts"
import { ResultBackend } from "./ResultBackend.ts"

/** `failed`: ended FAILURE, the message kept so `redeliver` can run it again. */
type Place = "ready" | "delayed" | "leased" | "dead" | "failed" | "gone"

interface Entry {
  readonly id: string
  readonly queue: string
  /** The stored message: a `Message` normally; anything when written raw. */
  message: unknown
  priority: number
  place: Place
  /** Bumped at every move, so stale heap/deque entries are skipped. */
  generation: number
  dueAt: number
  token: number
  deadline: number
  worker: string
  startedAt: number | undefined
  ackedEarly: boolean
  revoked: boolean
  lost: Broker.LostLease | undefined
  dedupId: string | undefined
}

interface Ref {
  readonly entry: Entry
  readonly generation: number
}

interface QueueState {
  readonly ready: Array<Deque<Ref>>
  readonly delayed: MinHeap<Ref>
  readonly leased: MinHeap<Ref>
  counts: { ready: number; delayed: number; leased: number; dead: number }
}

type MutableRecord = {
  -readonly [K in keyof TaskRecord]: TaskRecord[K]
}

/**
 * Test hooks of the memory broker.
 *
 * @since 0.1.0
 */
export class MemoryStore extends Context.Service<MemoryStore, {
  /** Write a message straight into a queue, as another program (or a bug) might. */
  readonly pushRaw: (queue: string, id: string, message: unknown) => Effect.Effect<void>
  /** How many tasks are ready, delayed or leased in all queues. */
  readonly pending: Effect.Effect<number>
  /** The next time something becomes due (a delayed task or a lease running out). */
  readonly nextDueAt: Effect.Effect<Option.Option<number>>
}>()("@errand/core/MemoryBroker/MemoryStore") {}

/**
 * Builds a memory broker: the `Broker`, the `ResultBackend` and the test hooks.
 *
 * @since 0.1.0
 */
export const make = Effect.sync(() => {
  const entries = new Map<string, Entry>()
  const records = new Map<string, MutableRecord>()
  const queues = new Map<string, QueueState>()
  const dedup = new Map<string, string>()
  const waiters = new Map<string, Array<Deferred.Deferred<void>>>()
  const registered = new Map<string, Broker.WorkerInfo>()
  /** Queues a task was enqueued to (what `queues` lists, as on Redis). */
  const known = new Set<string>()
  let wakeup = Deferred.makeUnsafe<void>()

  const signal = () => {
    const current = wakeup
    wakeup = Deferred.makeUnsafe<void>()
    Deferred.doneUnsafe(current, Effect.void)
  }

  const queueOf = (name: string): QueueState => {
    let q = queues.get(name)
    if (q === undefined) {
      q = {
        ready: Array.from({ length: 10 }, () => new Deque<Ref>()),
        delayed: new MinHeap<Ref>(),
        leased: new MinHeap<Ref>(),
        counts: { ready: 0, delayed: 0, leased: 0, dead: 0 }
      }
      queues.set(name, q)
    }
    return q
  }

  const leave = (entry: Entry) => {
    const q = queueOf(entry.queue)
    switch (entry.place) {
      case "ready":
        q.counts.ready--
        break
      case "delayed":
        q.counts.delayed--
        break
      case "leased":
        q.counts.leased--
        break
      case "dead":
        q.counts.dead--
        break
    }
    entry.generation++
    entry.place = "gone"
  }

  const toReady = (entry: Entry, front: boolean) => {
    leave(entry)
    const q = queueOf(entry.queue)
    entry.place = "ready"
    q.counts.ready++
    const ref = { entry, generation: entry.generation }
    const lane = q.ready[clampPriority(entry.priority)]!
    if (front) lane.unshift(ref)
    else lane.push(ref)
  }

  const toDelayed = (entry: Entry, dueAt: number) => {
    leave(entry)
    const q = queueOf(entry.queue)
    entry.place = "delayed"
    entry.dueAt = dueAt
    q.counts.delayed++
    q.delayed.push(dueAt, { entry, generation: entry.generation })
  }

  const toLeased = (entry: Entry, worker: string, deadline: number) => {
    leave(entry)
    const q = queueOf(entry.queue)
    entry.place = "leased"
    entry.token++
    entry.deadline = deadline
    entry.worker = worker
    entry.startedAt = undefined
    entry.ackedEarly = false
    q.counts.leased++
    q.leased.push(deadline, { entry, generation: entry.generation })
  }

  const toDead = (entry: Entry) => {
    leave(entry)
    entry.place = "dead"
    queueOf(entry.queue).counts.dead++
  }

  const releaseDedup = (entry: Entry) => {
    if (entry.dedupId !== undefined && dedup.get(dedupKey(entry.queue, entry.dedupId)) === entry.id) {
      dedup.delete(dedupKey(entry.queue, entry.dedupId))
    }
  }

  const remove = (entry: Entry) => {
    leave(entry)
    entries.delete(entry.id)
    releaseDedup(entry)
  }

  /** A task that ended FAILURE keeps its message (no queue holds it) for `redeliver`. */
  const toFailed = (entry: Entry) => {
    leave(entry)
    entry.place = "failed"
    entry.lost = undefined
    entry.revoked = false
    releaseDedup(entry)
  }

  const current = (ref: Ref) => ref.entry.generation === ref.generation

  /** Moves due delayed tasks to ready and expired leases back as lost. */
  const promote = (q: QueueState, now: number) => {
    while (q.delayed.size > 0 && q.delayed.peekKey()! <= now) {
      const ref = q.delayed.pop()!
      if (current(ref)) toReady(ref.entry, false)
    }
    while (q.leased.size > 0 && q.leased.peekKey()! <= now) {
      const ref = q.leased.pop()!
      if (!current(ref)) continue
      const entry = ref.entry
      if (entry.deadline > now) {
        q.leased.push(entry.deadline, { entry, generation: entry.generation })
        continue
      }
      // A lease that expired before its attempt started adds nothing: an
      // earlier lost attempt, not yet handled, stays the one reported.
      if (entry.startedAt !== undefined || entry.lost === undefined) {
        entry.lost = {
          worker: entry.worker,
          startedAt: entry.startedAt,
          expiredAt: entry.deadline,
          ackedEarly: entry.ackedEarly
        }
      }
      toReady(entry, true)
      const record = records.get(entry.id)
      if (record !== undefined) {
        record.state = "PENDING"
        record.updatedAt = now
      }
    }
  }

  const nextEvent = (names: ReadonlyArray<string>): number | undefined => {
    let next: number | undefined
    for (const name of names) {
      const q = queueOf(name)
      while (q.delayed.size > 0 && !current(q.delayed.peek()!)) q.delayed.pop()
      // a renewed lease surfaces with its old deadline: re-file it under the new one
      while (q.leased.size > 0) {
        const ref = q.leased.peek()!
        if (!current(ref)) q.leased.pop()
        else if (ref.entry.deadline > q.leased.peekKey()!) q.leased.push(ref.entry.deadline, q.leased.pop()!)
        else break
      }
      for (const key of [q.delayed.peekKey(), q.leased.peekKey()]) {
        if (key !== undefined && (next === undefined || key < next)) next = key
      }
    }
    return next
  }

  const finish = (id: string) => {
    const list = waiters.get(id)
    if (list !== undefined) {
      waiters.delete(id)
      for (const d of list) Deferred.doneUnsafe(d, Effect.void)
    }
  }

  const lease = (batch: ReadonlyArray<Broker.Lease>) =>
    batch.map((item) => {
      const entry = entries.get(item.id)
      return entry !== undefined && entry.place === "leased" && entry.token === item.token ? entry : undefined
    })

  const enqueue = (batch: ReadonlyArray<Broker.Submission>) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const out: Array<Broker.Enqueued> = []
      let ready = false
      for (const { dedupId, dueAt, message } of batch) {
        // an id already known is not enqueued again: a producer retrying a
        // submit whose first try went through must not reset or rerun the task
        if (records.has(message.id)) {
          out.push({ id: message.id })
          continue
        }
        if (dedupId !== undefined) {
          const existing = dedup.get(dedupKey(message.queue, dedupId))
          if (existing !== undefined) {
            out.push({ id: message.id, duplicateOf: existing })
            continue
          }
          dedup.set(dedupKey(message.queue, dedupId), message.id)
        }
        const entry = newEntry(message.id, message.queue, message, message.priority, dedupId)
        entries.set(entry.id, entry)
        known.add(entry.queue)
        records.set(entry.id, {
          id: message.id,
          task: message.task,
          queue: message.queue,
          state: "PENDING",
          retries: message.retries,
          submittedAt: message.submittedAt,
          updatedAt: now,
          ...(message.eta === undefined ? {} : { eta: message.eta }),
          history: []
        })
        if (dueAt <= now) {
          toReady(entry, false)
          ready = true
        } else {
          toDelayed(entry, dueAt)
          ready = true
        }
        out.push({ id: message.id })
      }
      if (ready) signal()
      return out
    })

  const claimNow = (options: Broker.ClaimOptions, now: number): Array<Broker.Delivery> => {
    const out: Array<Broker.Delivery> = []
    const toStart = options.start ?? 0
    let started = 0
    for (const name of options.queues) {
      const q = queueOf(name)
      promote(q, now)
    }
    for (let priority = 9; priority >= 0 && out.length < options.max; priority--) {
      for (const name of options.queues) {
        const lane = queueOf(name).ready[priority]!
        while (out.length < options.max && lane.size > 0) {
          const ref = lane.shift()!
          if (!current(ref)) continue
          const entry = ref.entry
          // The lost marker stays until the new lease starts or ends the task,
          // so it survives a claimer that dies before handling it.
          const lost = entry.lost
          toLeased(entry, options.worker, now + options.leaseMillis)
          // started in the same step (ClaimOptions.start), as `start` would
          const startNow = started < toStart && lost === undefined && !entry.revoked
          if (startNow) {
            started++
            entry.startedAt = now
          }
          const record = records.get(entry.id)
          if (record !== undefined) {
            record.state = startNow ? "STARTED" : "RECEIVED"
            record.updatedAt = now
          }
          out.push({
            id: entry.id,
            token: entry.token,
            queue: entry.queue,
            deadline: entry.deadline,
            message: entry.message,
            ...(lost === undefined ? {} : { lost }),
            ...(startNow ? { startedAt: now } : {})
          })
        }
      }
    }
    return out
  }

  const claim = (options: Broker.ClaimOptions): Effect.Effect<ReadonlyArray<Broker.Delivery>> =>
    Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      const until = start + options.waitMillis
      while (true) {
        const now = yield* Clock.currentTimeMillis
        const batch = claimNow(options, now)
        if (batch.length > 0 || now >= until) return batch
        const next = nextEvent(options.queues)
        const sleep = Math.max(0, Math.min(until, next ?? until) - now)
        const woken = wakeup
        yield* Effect.raceFirst(Deferred.await(woken), Effect.sleep(sleep))
      }
    })

  const start = (batch: ReadonlyArray<Broker.Start>) =>
    Effect.map(Clock.currentTimeMillis, (now) =>
      lease(batch).map((entry, i): Broker.LeaseStatus => {
        if (entry === undefined) return "stale"
        if (entry.revoked) return "revoked"
        const item = batch[i]!
        entry.lost = undefined
        entry.startedAt = item.startedAt
        entry.worker = item.worker
        entry.ackedEarly = item.ackEarly
        const record = records.get(entry.id)
        if (record !== undefined && !finalStates.has(record.state)) {
          record.state = "STARTED"
          record.updatedAt = now
        }
        return "ok"
      }))

  const renew = (batch: ReadonlyArray<Broker.Lease>, leaseMillis: number) =>
    Effect.map(Clock.currentTimeMillis, (now) =>
      lease(batch).map((entry): Broker.LeaseStatus => {
        if (entry === undefined) return "stale"
        // The heap keeps the old deadline; `promote` re-files the entry when
        // it surfaces early, so a long task holds one heap entry, not one per renewal.
        entry.deadline = now + leaseMillis
        return entry.revoked ? "revoked" : "ok"
      }))

  const appendAttempt = (record: MutableRecord, attempt: Attempt) => {
    record.history = [...record.history, attempt]
  }

  const complete = (batch: ReadonlyArray<Broker.Completion>) =>
    Effect.map(Clock.currentTimeMillis, (now) =>
      lease(batch).map((entry, i) => {
        if (entry === undefined) return false
        const item = batch[i]!
        if (item.state === "FAILURE") toFailed(entry)
        else remove(entry)
        const record = records.get(entry.id)
        if (record !== undefined) {
          record.state = item.state
          record.updatedAt = now
          if (item.storeResult !== false && item.result !== undefined) record.result = item.result
          // the final error is this attempt's: a success after retries has none
          if (item.error !== undefined) record.error = item.error
          else delete record.error
          appendAttempt(record, item.attempt)
        }
        finish(entry.id)
        return true
      }))

  const retry = (batch: ReadonlyArray<Broker.Reschedule>) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      let woke = false
      const out = lease(batch).map((entry, i) => {
        if (entry === undefined) return false
        const item = batch[i]!
        entry.lost = undefined
        entry.message = bumpRetries(entry.message)
        if (item.dueAt <= now) {
          toReady(entry, false)
          woke = true
        } else {
          toDelayed(entry, item.dueAt)
          woke = true
        }
        const record = records.get(entry.id)
        if (record !== undefined) {
          record.state = "RETRY"
          record.retries++
          record.updatedAt = now
          record.error = item.error
          appendAttempt(record, item.attempt)
        }
        return true
      })
      if (woke) signal()
      return out
    })

  const deadLetter = (batch: ReadonlyArray<Broker.DeadLetter>) =>
    Effect.map(Clock.currentTimeMillis, (now) =>
      lease(batch).map((entry, i) => {
        if (entry === undefined) return false
        const item = batch[i]!
        entry.lost = undefined
        toDead(entry)
        const record = records.get(entry.id) ?? recordFromRaw(entry, now)
        records.set(entry.id, record)
        record.state = "FAILURE"
        record.updatedAt = now
        record.error = item.error
        appendAttempt(record, item.attempt)
        finish(entry.id)
        return true
      }))

  const release = (batch: ReadonlyArray<Broker.Lease>) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const out = lease(batch).map((entry) => {
        if (entry === undefined) return false
        toReady(entry, true)
        const record = records.get(entry.id)
        if (record !== undefined && !finalStates.has(record.state)) {
          record.state = "PENDING"
          record.updatedAt = now
        }
        return true
      })
      signal()
      return out
    })

  const revoke = (id: string) =>
    Effect.map(Clock.currentTimeMillis, (now): Broker.RevokeResult => {
      const entry = entries.get(id)
      const record = records.get(id)
      if (entry === undefined || entry.place === "dead" || entry.place === "failed") {
        return record === undefined ? "unknown" : "final"
      }
      if (entry.place === "leased") {
        entry.revoked = true
        if (record !== undefined) record.revoked = true
        return "running"
      }
      remove(entry)
      if (record !== undefined) {
        record.state = "REVOKED"
        record.updatedAt = now
        record.error = info(new TaskRevoked({ taskId: id, message: `task ${id} was revoked before it ran` }))
      }
      finish(id)
      return "revoked"
    })

  const redeliver = (id: string) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const entry = entries.get(id)
      if (entry === undefined || (entry.place !== "dead" && entry.place !== "failed")) return false
      toReady(entry, false)
      const record = records.get(id)
      if (record !== undefined) {
        record.state = "PENDING"
        record.updatedAt = now
      }
      signal()
      return true
    })

  const stats = (names: ReadonlyArray<string>) =>
    Effect.sync(() =>
      names.map((name): Broker.QueueStats => {
        const c = queueOf(name).counts
        return { queue: name, ready: c.ready, delayed: c.delayed, running: c.leased, dead: c.dead }
      })
    )

  const heartbeat = (batch: ReadonlyArray<Broker.WorkerInfo>) =>
    Effect.sync(() => {
      for (const worker of batch) registered.set(worker.id, worker)
    })

  const workers = Effect.map(Clock.currentTimeMillis, (now) => {
    const out: Array<Broker.WorkerInfo> = []
    for (const [id, worker] of registered) {
      if (worker.expiresAt <= now) registered.delete(id)
      else out.push(worker)
    }
    return out
  })

  const listQueues = Effect.sync(() => [...known].sort())

  const purge = (names: ReadonlyArray<string>) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const wanted = new Set(names)
      const counts = new Map<string, number>()
      for (const entry of [...entries.values()]) {
        if (!wanted.has(entry.queue) || (entry.place !== "ready" && entry.place !== "delayed")) continue
        remove(entry)
        counts.set(entry.queue, (counts.get(entry.queue) ?? 0) + 1)
        const record = records.get(entry.id)
        if (record !== undefined) {
          record.state = "REVOKED"
          record.updatedAt = now
          record.error = info(
            new TaskRevoked({ taskId: entry.id, message: `task ${entry.id} was purged from queue ${entry.queue} before it ran` })
          )
        }
        finish(entry.id)
      }
      return names.map((name) => counts.get(name) ?? 0)
    })

  const get = (id: string) =>
    Effect.sync(() => {
      const record = records.get(id)
      return record === undefined ? Option.none<TaskRecord>() : Option.some<TaskRecord>({ ...record })
    })

  const setState = (id: string, state: string, meta: unknown) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const record = records.get(id)
      if (record === undefined || finalStates.has(record.state)) return false
      record.state = state
      record.updatedAt = now
      if (meta !== undefined) record.meta = meta
      return true
    })

  const recordStale = (id: string, attempt: Attempt) =>
    Effect.sync(() => {
      const record = records.get(id)
      if (record !== undefined) appendAttempt(record, attempt)
    })

  const awaitFinal = (id: string): Effect.Effect<Option.Option<TaskRecord>> =>
    Effect.suspend(() => {
      const record = records.get(id)
      if (record === undefined) return Effect.succeed(Option.none())
      if (finalStates.has(record.state)) return Effect.succeed(Option.some({ ...record }))
      const deferred = Deferred.makeUnsafe<void>()
      const list = waiters.get(id)
      if (list === undefined) waiters.set(id, [deferred])
      else list.push(deferred)
      return Effect.flatMap(Deferred.await(deferred), () => awaitFinal(id))
    })

  const pushRaw = (queue: string, id: string, message: unknown) =>
    Effect.sync(() => {
      const entry = newEntry(id, queue, message, 5, undefined)
      entries.set(id, entry)
      known.add(queue)
      toReady(entry, false)
      signal()
    })

  const pending = Effect.sync(() => {
    let n = 0
    for (const q of queues.values()) n += q.counts.ready + q.counts.delayed + q.counts.leased
    return n
  })

  const nextDueAt = Effect.sync(() => Option.fromUndefinedOr(nextEvent([...queues.keys()])))

  return {
    broker: Broker.Broker.of({
      enqueue,
      claim,
      start,
      renew,
      complete,
      retry,
      deadLetter,
      release,
      revoke,
      redeliver,
      stats,
      heartbeat,
      workers,
      queues: listQueues,
      purge
    }),
    backend: ResultBackend.of({ get, setState, recordStale, awaitFinal }),
    store: MemoryStore.of({ pushRaw, pending, nextDueAt })
  }
})

const dedupKey = (queue: string, dedupId: string) => `${queue}\u0000${dedupId}`

const clampPriority = (p: number) => (Number.isInteger(p) ? Math.min(9, Math.max(0, p)) : 5)

const newEntry = (
  id: string,
  queue: string,
  message: unknown,
  priority: number,
  dedupId: string | undefined
): Entry => ({
  id,
  queue,
  message,
  priority,
  place: "gone",
  generation: 0,
  dueAt: 0,
  token: 0,
  deadline: 0,
  worker: "",
  startedAt: undefined,
  ackedEarly: false,
  revoked: false,
  lost: undefined,
  dedupId
})

const bumpRetries = (message: unknown): unknown =>
  typeof message === "object" && message !== null && "retries" in message && typeof message.retries === "number"
    ? { ...message, retries: message.retries + 1 }
    : message

const recordFromRaw = (entry: Entry, now: number): MutableRecord => {
  const m = typeof entry.message === "object" && entry.message !== null
    ? entry.message as Record<string, unknown>
    : {}
  return {
    id: entry.id,
    task: typeof m.task === "string" ? m.task : "?",
    queue: entry.queue,
    state: "PENDING",
    retries: typeof m.retries === "number" ? m.retries : 0,
    submittedAt: typeof m.submittedAt === "number" ? m.submittedAt : now,
    updatedAt: now,
    history: []
  }
}

/**
 * The memory broker as a layer: provides `Broker`, `ResultBackend` and the
 * `MemoryStore` test hooks.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<Broker.Broker | ResultBackend | MemoryStore> = Layer.effectContext(
  Effect.map(make, ({ backend, broker, store }) =>
    Context.make(Broker.Broker, broker).pipe(
      Context.add(ResultBackend, backend),
      Context.add(MemoryStore, store)
    ))
)
