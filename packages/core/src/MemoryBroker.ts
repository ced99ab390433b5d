/**
 * The in-memory broker and result backend: one process, no I/O, every step
 * driven by Effect's `Clock`. Under `TestClock` it is fully deterministic:
 * advancing the clock by 10 seconds makes due exactly the tasks that were.
 *
 * It is the embedded default and what apps run their tests on. It keeps the
 * same contract as the Redis layer (the shared contract suite checks both).
 *
 * Final records are kept for `resultTtl` (default 1 day, on the `Clock`), then
 * forgotten: an expired id is unknown again, as on Redis. A task that ends
 * SUCCESS with `storeResult: false` keeps only its state (no result, meta or
 * history), so a stream of such tasks holds little memory; one whose task
 * keeps no record (`keepRecord: false`) is forgotten as it ends.
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
import { Clock, Context, Deferred, Duration, Effect, Layer, Option } from "effect"
import * as Broker from "./Broker.ts"
import { info, TaskRevoked } from "./Errors.ts"
import { type Attempt, finalStates, type TaskRecord } from "./Message.ts"
import { ResultBackend } from "./ResultBackend.ts"

/**
 * Where a task is. `failed`: ended FAILURE, the message kept so `redeliver`
 * can run it again. `gone`: forgotten (a raw message removed, or an expired
 * record). A task that ended SUCCESS or REVOKED has no `Entry` any more: its
 * `Slot` is only the record.
 */
type Place = "ready" | "delayed" | "leased" | "dead" | "failed" | "gone"

/** A record as `snapshot` builds it. */
type MutableRecord = {
  -readonly [K in keyof TaskRecord]: TaskRecord[K]
}

/**
 * The live part of a task: its message and its place in the queues. Dropped
 * from its `Slot` when the task ends SUCCESS or REVOKED.
 */
interface Entry {
  /** The task's slot under its id: its record, whose id is the task's. */
  readonly slot: Slot
  /** The entry's queue (its name is the queue's). */
  readonly q: QueueState
  /** The stored message: a `Message` normally; anything when written raw. Dropped when the task ends. */
  message: unknown
  readonly priority: number
  place: Place
  /** Bumped at every move, so stale lane entries are skipped. */
  generation: number
  /** Position in the queue's delayed or leased heap (the one its place says); -2 in the leases' FIFO, -1 in neither. */
  heapIndex: number
  /**
   * The heap's key: when the task is due (delayed) or its lease runs out
   * (leased: the lease's deadline, kept nowhere else, so an entry holds one
   * number fewer).
   */
  heapKey: number
  /** Ties between equal keys go first-in first-out. */
  heapSeq: number
  /** The current lease's token (unique across tasks), 0 before the first claim. */
  token: number
  worker: string
  startedAt: number | undefined
  ackedEarly: boolean
  revoked: boolean
  lost: Broker.LostLease | undefined
  readonly dedupId: string | undefined
  waiters: Array<Deferred.Deferred<void>> | undefined
}

/**
 * A task as the broker holds it under its id, for the record's lifetime: the
 * record itself (one object, not a slot pointing at a record: each task kept
 * one object fewer), when it expires, and the live `Entry` while the task has
 * one. When the task ends SUCCESS or REVOKED only `live` is dropped, so the
 * map entry is not replaced and a long tail of ended tasks holds only their
 * records. `snapshot` hands out the record's fields without the slot's own.
 */
interface Slot {
  readonly id: string
  task: string
  queue: string
  state: string
  retries: number
  submittedAt: number
  updatedAt: number
  // the optional fields are there from the start, `undefined` when unset: set
  // later, each went to a properties array of its own (an allocation per
  // ended task), and a delete could move the record to dictionary mode
  eta: number | undefined
  result: unknown
  error: TaskRecord["error"]
  meta: unknown
  revoked: boolean | undefined
  /** The attempts, oldest first, when there are two or more; else `noHistory`. */
  history: Array<Attempt>
  /** The only attempt, when there is exactly one: the usual record holds no array for it. */
  attempt: Attempt | undefined
  /** `false` for a raw message that no step has recorded yet (the record's fields are placeholders). */
  recorded: boolean
  /** When a final record is forgotten (`Infinity`: not final, or kept forever). */
  expiresAt: number
  /** `undefined`: ended SUCCESS or REVOKED (final), or forgotten. */
  live: Entry | undefined
  /**
   * Known under its id but not yet in the `tasks` map: a task enqueued under
   * an id made for it (`Submission.fresh`) waits in `unlisted` until a lookup
   * by id needs it (see `slotOf`).
   */
  unlisted: boolean
}

/** The slot as a record, when it holds one. */
const recordOf = (slot: Slot | undefined): Slot | undefined =>
  slot !== undefined && slot.recorded ? slot : undefined

/**
 * Submissions per `enqueue` of a `submitMany` (`Broker.enqueueChunk`): small,
 * so a worker in the same process runs a large submit's first tasks while
 * the rest are made. With all 100,000 of the bench's in-memory round made
 * first (chunks of 5,000 and no yield) they lived through two young
 * collections and were copied to the old generation, which grew by fresh
 * pages (bench/ANALYSIS.md, session 12).
 */
const ENQUEUE_CHUNK = 1000

/** A shared empty history: replaced by a fresh array at the second append (the first goes to `attempt`). */
const noHistory: Array<Attempt> = []

/**
 * A PENDING task's slot. Every slot is made here, whole, with its optional
 * fields undefined: one literal, so all slots share one shape and none
 * grows a properties array when a field is set later. `recorded` false: a
 * raw message no step has recorded yet (its fields are placeholders).
 */
const newSlot = (
  id: string,
  task: string,
  queue: string,
  retries: number,
  submittedAt: number,
  updatedAt: number,
  eta: number | undefined,
  recorded: boolean
): Slot => ({
  id,
  task,
  queue,
  state: "PENDING",
  retries,
  submittedAt,
  updatedAt,
  eta,
  result: undefined,
  error: undefined,
  meta: undefined,
  revoked: undefined,
  history: noHistory,
  attempt: undefined,
  recorded,
  expiresAt: Infinity,
  live: undefined,
  unlisted: false
})

/**
 * A binary min-heap of entries by `heapKey` (then `heapSeq`) that knows each
 * entry's position, so a task leaving early (acked, revoked, renewed) is
 * removed or re-filed at once instead of lingering until it surfaces.
 */
class EntryHeap {
  private items: Array<Entry> = []

  get size(): number {
    return this.items.length
  }

  peekKey(): number | undefined {
    return this.items.length > 0 ? this.items[0]!.heapKey : undefined
  }

  push(entry: Entry, key: number, seq: number): void {
    entry.heapKey = key
    entry.heapSeq = seq
    entry.heapIndex = this.items.length
    this.items.push(entry)
    this.up(entry.heapIndex)
  }

  peek(): Entry | undefined {
    return this.items[0]
  }

  pop(): Entry | undefined {
    const top = this.items[0]
    if (top !== undefined) this.remove(top)
    return top
  }

  remove(entry: Entry): void {
    const i = entry.heapIndex
    if (i < 0) return
    entry.heapIndex = -1
    const last = this.items.pop()!
    if (i < this.items.length) {
      this.items[i] = last
      last.heapIndex = i
      this.down(i)
      this.up(last.heapIndex)
    }
  }

  update(entry: Entry, key: number): void {
    entry.heapKey = key
    if (entry.heapIndex < 0) return
    this.down(entry.heapIndex)
    this.up(entry.heapIndex)
  }

  private up(i: number): void {
    const items = this.items
    const entry = items[i]!
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = items[parent]!
      if (!before(entry, p)) break
      items[i] = p
      p.heapIndex = i
      i = parent
    }
    items[i] = entry
    entry.heapIndex = i
  }

  private down(i: number): void {
    const items = this.items
    const n = items.length
    const entry = items[i]!
    while (true) {
      const left = 2 * i + 1
      if (left >= n) break
      const right = left + 1
      const child = right < n && before(items[right]!, items[left]!) ? right : left
      const c = items[child]!
      if (!before(c, entry)) break
      items[i] = c
      c.heapIndex = i
      i = child
    }
    items[i] = entry
    entry.heapIndex = i
  }
}

/**
 * The leased entries by deadline. Leases are nearly always taken in deadline
 * order (now plus the same lease time), so they go in a FIFO where an ended
 * or renewed lease is not removed but skipped when it surfaces (an O(1) step
 * instead of a heap's log n cache misses); the FIFO is compacted when skipped
 * items outnumber live ones. A lease that would break the order (a shorter
 * lease time) goes to a heap. `heapIndex` is -2 for an entry in the FIFO, and
 * a FIFO item is live while its entry is leased with the item's `heapSeq`.
 * (A lease renewed to the same deadline as another goes after it.)
 */
class LeaseQueue {
  private items: Array<Entry | undefined> = []
  private keys: Array<number> = []
  private seqs: Array<number> = []
  private head = 0
  /** Live items in the FIFO. */
  private live = 0
  private readonly heap = new EntryHeap()

  push(entry: Entry, key: number, seq: number): void {
    const n = this.items.length
    if (n > this.head && key < this.keys[n - 1]!) {
      this.heap.push(entry, key, seq)
      return
    }
    entry.heapKey = key
    entry.heapSeq = seq
    entry.heapIndex = -2
    this.items.push(entry)
    this.keys.push(key)
    this.seqs.push(seq)
    this.live++
  }

  remove(entry: Entry): void {
    if (entry.heapIndex >= 0) {
      this.heap.remove(entry)
      return
    }
    if (entry.heapIndex !== -2) return
    entry.heapIndex = -1
    this.live--
    // leases mostly end in the order they were taken: the oldest one ending
    // drops the ended ones at the head at once, so the FIFO is seldom
    // compacted (each compaction copied the live items)
    if (this.items[this.head] === entry) {
      if (this.skip()) this.trim()
      return
    }
    const size = this.items.length - this.head
    if (size > 64 && size > 2 * this.live) this.compact()
  }

  /** Re-files a lease with a new deadline (a renew). */
  update(entry: Entry, key: number, seq: number): void {
    if (entry.heapIndex >= 0) {
      this.heap.update(entry, key)
      return
    }
    this.remove(entry)
    this.push(entry, key, seq)
  }

  /** The earliest deadline (`undefined`: none leased). */
  peekKey(): number | undefined {
    const top = this.heap.peek()
    if (!this.skip()) return top?.heapKey
    const key = this.keys[this.head]!
    return top !== undefined && top.heapKey < key ? top.heapKey : key
  }

  /** Takes the entry whose lease runs out first. */
  pop(): Entry | undefined {
    const top = this.heap.peek()
    if (!this.skip()) return this.heap.pop()
    const key = this.keys[this.head]!
    if (top !== undefined && (top.heapKey < key || (top.heapKey === key && top.heapSeq < this.seqs[this.head]!))) {
      return this.heap.pop()
    }
    const entry = this.items[this.head]!
    this.items[this.head] = undefined
    this.head++
    entry.heapIndex = -1
    this.live--
    this.trim()
    return entry
  }

  /** A FIFO item is live while its entry is still leased under the item's `heapSeq`. */
  private isLive(entry: Entry, seq: number): boolean {
    return entry.heapIndex === -2 && entry.heapSeq === seq && entry.place === "leased"
  }

  /** Drops stale items at the head; says whether a live one is there. */
  private skip(): boolean {
    const items = this.items
    while (this.head < items.length) {
      const entry = items[this.head]!
      if (this.isLive(entry, this.seqs[this.head]!)) return true
      items[this.head] = undefined
      this.head++
    }
    this.trim()
    return false
  }

  private trim(): void {
    if (this.head === this.items.length) {
      if (this.head > 0) {
        this.items = []
        this.keys = []
        this.seqs = []
        this.head = 0
      }
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.keys = this.keys.slice(this.head)
      this.seqs = this.seqs.slice(this.head)
      this.head = 0
    }
  }

  /** Keeps only the live items, in order, in place. */
  private compact(): void {
    const { items, keys, seqs } = this
    let j = 0
    for (let i = this.head; i < items.length; i++) {
      const entry = items[i]!
      if (this.isLive(entry, seqs[i]!)) {
        items[j] = entry
        keys[j] = keys[i]!
        seqs[j] = seqs[i]!
        j++
      }
    }
    items.length = j
    keys.length = j
    seqs.length = j
    this.head = 0
  }
}

const before = (a: Entry, b: Entry) => a.heapKey < b.heapKey || (a.heapKey === b.heapKey && a.heapSeq < b.heapSeq)

/**
 * A FIFO of entries, each with a stamp taken when it was added (a
 * generation, or an expiry time); `shift` hands back the entry and its
 * stamp, and callers skip entries whose stamp is no longer current.
 * Push-to-front for tasks that go back first (lost leases, releases).
 */
class Fifo<A> {
  private items: Array<A | undefined> = []
  private stamps: Array<number> = []
  private head = 0
  private front: Array<A> = []
  private frontStamps: Array<number> = []
  /** The stamp of the entry the last `shift` returned. */
  stamp = 0

  get size(): number {
    return this.items.length - this.head + this.front.length
  }

  push(entry: A, stamp: number): void {
    this.items.push(entry)
    this.stamps.push(stamp)
  }

  unshift(entry: A, stamp: number): void {
    this.front.push(entry)
    this.frontStamps.push(stamp)
  }

  /** The stamp of the next entry `shift` returns (`undefined`: empty). */
  peekStamp(): number | undefined {
    if (this.front.length > 0) return this.frontStamps[this.frontStamps.length - 1]
    return this.head < this.items.length ? this.stamps[this.head] : undefined
  }

  shift(): A | undefined {
    if (this.front.length > 0) {
      this.stamp = this.frontStamps.pop()!
      return this.front.pop()
    }
    if (this.head >= this.items.length) return undefined
    const entry = this.items[this.head]
    this.stamp = this.stamps[this.head]!
    this.items[this.head] = undefined
    this.head++
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.stamps = this.stamps.slice(this.head)
      this.head = 0
    }
    return entry
  }
}

interface QueueState {
  readonly name: string
  readonly ready: Array<Fifo<Entry>>
  readonly delayed: EntryHeap
  readonly leased: LeaseQueue
  counts: { ready: number; delayed: number; leased: number; dead: number }
}

/**
 * Options of `makeWith` and `layerWith`.
 *
 * @since 0.1.0
 */
export interface Options {
  /**
   * How long a final record (and its result) is kept after the task ended,
   * measured on the `Clock` (default 1 day; 0 keeps records forever). An
   * expired id is unknown: `get` and `awaitFinal` say `None`, `revoke` says
   * `"unknown"`, and enqueuing it again starts a new task, as on Redis. Dead
   * letters do not expire.
   */
  readonly resultTtl?: Duration.Input | undefined
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
 * Builds a memory broker with options: the `Broker`, the `ResultBackend` and
 * the test hooks.
 *
 * @since 0.1.0
 */
export const makeWith = (options: Options = {}) =>
  Effect.sync(() => {
    const ttl = Math.max(0, Duration.toMillis(Duration.fromInputUnsafe(options.resultTtl ?? "1 day")))
    const tasks = new Map<string, Slot>()
    /**
     * Slots of fresh ids not yet in `tasks`, oldest first (`Slot.unlisted`).
     * Most tasks are enqueued under an id made for them and ended through
     * their lease's `handle`, so nothing ever looks them up by id: they never
     * enter the map, whose insert, lookup and delete (and its growing and
     * shrinking with the backlog) cost more than the rest of their way
     * through the broker. The first lookup by id that misses the map lists
     * them all (`listAll`).
     */
    let unlisted: Array<Slot> = []
    /** How many slots in `unlisted` have since been forgotten (dropped when they are half). */
    let unlistedGone = 0
    /** The last lease token handed out: tokens are unique across tasks. */
    let lastToken = 0
    const queues = new Map<string, QueueState>()
    const dedup = new Map<string, string>()
    const registered = new Map<string, Broker.WorkerInfo>()
    /** Queues a task was enqueued to (what `queues` lists, as on Redis). */
    const known = new Set<string>()
    /** Slots of final records in the order they will expire (stamp: their `expiresAt`). */
    const expiring = new Fifo<Slot>()
    let seq = 0
    let wakeup = Deferred.makeUnsafe<void>()

    const signal = () => {
      const current = wakeup
      wakeup = Deferred.makeUnsafe<void>()
      Deferred.doneUnsafe(current, Effect.void)
    }

    let lastQueue: QueueState | undefined
    const queueOf = (name: string): QueueState => {
      if (lastQueue !== undefined && lastQueue.name === name) return lastQueue
      let q = queues.get(name)
      if (q === undefined) {
        q = {
          name,
          ready: Array.from({ length: 10 }, () => new Fifo<Entry>()),
          delayed: new EntryHeap(),
          leased: new LeaseQueue(),
          counts: { ready: 0, delayed: 0, leased: 0, dead: 0 }
        }
        queues.set(name, q)
      }
      lastQueue = q
      return q
    }

    const newEntry = (
      slot: Slot,
      queue: string,
      message: unknown,
      priority: number,
      dedupId: string | undefined
    ): Entry => {
      const entry: Entry = {
        slot,
        q: queueOf(queue),
        message,
        priority,
        place: "gone",
        generation: 0,
        heapIndex: -1,
        heapKey: 0,
        heapSeq: 0,
        token: 0,
        worker: "",
        startedAt: undefined,
        ackedEarly: false,
        revoked: false,
        lost: undefined,
        dedupId,
        waiters: undefined
      }
      slot.live = entry
      return entry
    }

    const leave = (entry: Entry) => {
      const c = entry.q.counts
      switch (entry.place) {
        case "ready":
          c.ready--
          break
        case "delayed":
          c.delayed--
          entry.q.delayed.remove(entry)
          break
        case "leased":
          c.leased--
          entry.q.leased.remove(entry)
          break
        case "dead":
          c.dead--
          break
        case "failed":
          // only a FAILURE record expires while its entry is live
          entry.slot.expiresAt = Infinity
          break
      }
      entry.generation++
      entry.place = "gone"
    }

    const toReady = (entry: Entry, front: boolean) => {
      leave(entry)
      entry.place = "ready"
      entry.q.counts.ready++
      const lane = entry.q.ready[clampPriority(entry.priority)]!
      if (front) lane.unshift(entry, entry.generation)
      else lane.push(entry, entry.generation)
    }

    const toDelayed = (entry: Entry, dueAt: number) => {
      leave(entry)
      entry.place = "delayed"
      entry.q.counts.delayed++
      entry.q.delayed.push(entry, dueAt, seq++)
    }

    const toLeased = (entry: Entry, worker: string, deadline: number) => {
      leave(entry)
      entry.place = "leased"
      entry.token = ++lastToken
      entry.worker = worker
      entry.startedAt = undefined
      entry.ackedEarly = false
      entry.q.counts.leased++
      entry.q.leased.push(entry, deadline, seq++)
    }

    const toDead = (entry: Entry) => {
      leave(entry)
      entry.place = "dead"
      entry.q.counts.dead++
    }

    const releaseDedup = (entry: Entry) => {
      if (entry.dedupId !== undefined) {
        const key = dedupKey(entry.q.name, entry.dedupId)
        if (dedup.get(key) === entry.slot.id) dedup.delete(key)
      }
    }

    /** Forgets a task: no queue, no record. */
    const forget = (slot: Slot) => {
      const entry = slot.live
      if (entry !== undefined) {
        leave(entry)
        releaseDedup(entry)
        entry.message = undefined
        slot.live = undefined
        slot.recorded = false
      }
      unmap(slot)
    }

    /** Takes a slot out of the map, or out of `unlisted`. */
    const unmap = (slot: Slot) => {
      if (slot.unlisted) {
        slot.unlisted = false
        // the list is compacted once half of it is forgotten: it holds at
        // most twice the tasks that are known under their ids
        if (++unlistedGone > 1024 && unlistedGone * 2 > unlisted.length) {
          unlisted = unlisted.filter((s) => s.unlisted)
          unlistedGone = 0
        }
      } else if (tasks.get(slot.id) === slot) tasks.delete(slot.id)
    }

    /** Puts every slot of `unlisted` in the map. */
    const listAll = () => {
      for (let i = 0; i < unlisted.length; i++) {
        const slot = unlisted[i]!
        if (slot.unlisted) {
          slot.unlisted = false
          tasks.set(slot.id, slot)
        }
      }
      unlisted = []
      unlistedGone = 0
    }

    /** The slot known under `id`, expired or not. */
    const slotOf = (id: string): Slot | undefined => {
      const slot = tasks.get(id)
      if (slot !== undefined || unlisted.length === 0) return slot
      listAll()
      return tasks.get(id)
    }

    /** A slot about to be replaced under its id: its live entry leaves the queues. */
    const detach = (slot: Slot) => {
      const entry = slot.live
      if (entry !== undefined) {
        leave(entry)
        slot.live = undefined
      }
    }

    /** From now on the entry's record expires `ttl` from `now`. */
    const expireLater = (entry: Entry, now: number) => {
      if (ttl <= 0) return
      const slot = entry.slot
      slot.expiresAt = now + ttl
      expiring.push(slot, slot.expiresAt)
    }

    /** Forgets the final records whose time is up (the oldest first). */
    const sweep = (now: number) => {
      let next = expiring.peekStamp()
      while (next !== undefined && next <= now) {
        const slot = expiring.shift()!
        if (slot.expiresAt === expiring.stamp) forget(slot)
        next = expiring.peekStamp()
      }
    }

    /** The task of a known id; an expired final record counts as unknown. */
    const find = (id: string, now: number): Slot | undefined => {
      const slot = slotOf(id)
      if (slot === undefined) return undefined
      if (slot.expiresAt <= now) {
        forget(slot)
        return undefined
      }
      return slot
    }

    /**
     * Ends a task that is not FAILURE: the message goes, the record stays
     * until it expires, or goes with it (`keep` false: `Completion.keepRecord`).
     */
    const toFinal = (entry: Entry, now: number, keep: boolean) => {
      leave(entry)
      releaseDedup(entry)
      entry.message = undefined
      entry.lost = undefined
      const slot = entry.slot
      // a slot replaced under its id (`pushRaw`) or forgotten no longer holds its entry
      if (slot.live !== entry) return
      slot.live = undefined
      if (!slot.recorded || !keep) {
        unmap(slot)
        return
      }
      // the slot stays in place: ending a task does not touch the map
      if (ttl > 0) {
        slot.expiresAt = now + ttl
        expiring.push(slot, slot.expiresAt)
      }
    }

    /** A task that ended FAILURE keeps its message (no queue holds it) for `redeliver`. */
    const toFailed = (entry: Entry, now: number) => {
      leave(entry)
      entry.place = "failed"
      entry.lost = undefined
      entry.revoked = false
      releaseDedup(entry)
      expireLater(entry, now)
    }

    /** Moves due delayed tasks to ready and expired leases back as lost. */
    const promote = (q: QueueState, now: number) => {
      while (q.delayed.size > 0 && q.delayed.peekKey()! <= now) toReady(q.delayed.pop()!, false)
      let key: number | undefined
      while ((key = q.leased.peekKey()) !== undefined && key <= now) {
        const entry = q.leased.pop()!
        // A lease that expired before its attempt started adds nothing: an
        // earlier lost attempt, not yet handled, stays the one reported.
        if (entry.startedAt !== undefined || entry.lost === undefined) {
          entry.lost = {
            worker: entry.worker,
            startedAt: entry.startedAt,
            expiredAt: entry.heapKey,
            ackedEarly: entry.ackedEarly
          }
        }
        toReady(entry, true)
        const record = recordOf(entry.slot)
        if (record !== undefined) {
          record.state = "PENDING"
          record.updatedAt = now
        }
      }
    }

    const nextEvent = (names: Iterable<string>): number | undefined => {
      let next: number | undefined
      for (const name of names) {
        const q = queueOf(name)
        const d = q.delayed.peekKey()
        const l = q.leased.peekKey()
        if (d !== undefined && (next === undefined || d < next)) next = d
        if (l !== undefined && (next === undefined || l < next)) next = l
      }
      return next
    }

    const finish = (entry: Entry) => {
      const list = entry.waiters
      if (list !== undefined) {
        entry.waiters = undefined
        for (const d of list) Deferred.doneUnsafe(d, Effect.void)
      }
    }

    /**
     * The entry a lease stands for, when that lease is still the current one:
     * its `handle` (the entry, as `claim` handed it out), when that is an
     * entry of this broker that is still its task's live one; else the live
     * entry found under its id. Not a map of leases by token: that map cost
     * an insert and a delete per task, and every leased entry is its slot's
     * live one (a replaced or forgotten slot's entry has left its lease).
     */
    const leased = (item: Broker.Lease): Entry | undefined => {
      const handle = item.handle as Entry | undefined
      const entry = typeof handle === "object" && handle !== null &&
          handle.slot?.live === handle && handle.slot.id === item.id &&
          handle.q !== undefined && (handle.q === lastQueue || queues.get(handle.q.name) === handle.q)
        ? handle
        : slotOf(item.id)?.live
      return entry !== undefined && entry.token === item.token && entry.place === "leased" ? entry : undefined
    }

    const appendAttempt = (record: Slot, attempt: Attempt) => {
      if (record.history !== noHistory) record.history.push(attempt)
      else if (record.attempt === undefined) record.attempt = attempt
      else {
        record.history = [record.attempt, attempt]
        record.attempt = undefined
      }
    }

    /** The queue `enqueueOne` last added to `known` (which only grows). */
    let lastKnown: string | undefined
    /** Set by `enqueueOne` when it added a task (`enqueue` then signals). */
    let added = false

    /**
     * Enqueues one submission. A function of its own, called per task, so V8
     * optimizes it soon: `enqueue` runs once per batch, and a loop body inline
     * there stayed in the baseline tier (object literals and property stores
     * through inline-cache stubs).
     */
    const enqueueOne = (submission: Broker.Submission, now: number): Broker.Enqueued => {
      const { dedupId, dueAt, message } = submission
      // an id already known is not enqueued again: a producer retrying a
      // submit whose first try went through must not reset or rerun the task
      // (an id made for this submission, `fresh`, cannot be known: no lookup)
      const existing = submission.fresh === true ? undefined : find(message.id, now)
      if (existing !== undefined && existing.recorded) return { id: message.id }
      if (dedupId !== undefined) {
        const first = dedup.get(dedupKey(message.queue, dedupId))
        if (first !== undefined) return { id: message.id, duplicateOf: first }
        dedup.set(dedupKey(message.queue, dedupId), message.id)
      }
      // a raw message under the same id (`pushRaw`) is replaced
      if (existing !== undefined) detach(existing)
      const slot = newSlot(message.id, message.task, message.queue, message.retries, message.submittedAt, now, message.eta, true)
      const entry = newEntry(slot, message.queue, message, message.priority, dedupId)
      if (submission.fresh === true) {
        // no lookup needs it yet (see `unlisted`)
        slot.unlisted = true
        unlisted.push(slot)
      } else tasks.set(message.id, slot)
      if (message.queue !== lastKnown) {
        known.add(message.queue)
        lastKnown = message.queue
      }
      if (dueAt <= now) toReady(entry, false)
      else toDelayed(entry, dueAt)
      added = true
      return { id: message.id }
    }

    const enqueue = (batch: ReadonlyArray<Broker.Submission>) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        sweep(now)
        const out: Array<Broker.Enqueued> = new Array(batch.length)
        added = false
        for (let i = 0; i < batch.length; i++) out[i] = enqueueOne(batch[i]!, now)
        if (added) signal()
        return out
      })

    const claimNow = (options: Broker.ClaimOptions, now: number): Array<Broker.Delivery> => {
      const out: Array<Broker.Delivery> = []
      const toStart = options.start ?? 0
      let started = 0
      for (const name of options.queues) promote(queueOf(name), now)
      for (let priority = 9; priority >= 0 && out.length < options.max; priority--) {
        for (const name of options.queues) {
          const lane = queueOf(name).ready[priority]!
          while (out.length < options.max) {
            const entry = lane.shift()
            if (entry === undefined) break
            if (entry.generation !== lane.stamp || entry.place !== "ready") continue
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
            const record = recordOf(entry.slot)
            if (record !== undefined) {
              record.state = startNow ? "STARTED" : "RECEIVED"
              record.updatedAt = now
            }
            // each usual shape made whole by one literal: a property added
            // after it goes to a properties array of its own (an allocation,
            // and a load through it for each reader)
            const delivery: {
              -readonly [K in keyof Broker.Delivery]: Broker.Delivery[K]
            } = startNow
              ? {
                id: entry.slot.id,
                token: entry.token,
                queue: entry.q.name,
                handle: entry,
                deadline: entry.heapKey,
                message: entry.message,
                startedAt: now
              }
              : {
                id: entry.slot.id,
                token: entry.token,
                queue: entry.q.name,
                handle: entry,
                deadline: entry.heapKey,
                message: entry.message
              }
            if (lost !== undefined) delivery.lost = lost
            out.push(delivery)
          }
        }
      }
      return out
    }

    const claim = Effect.fnUntraced(function*(options: Broker.ClaimOptions): Effect.fn.Return<ReadonlyArray<Broker.Delivery>> {
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
      Effect.map(Clock.currentTimeMillis, (now) => {
        const out: Array<Broker.LeaseStatus> = new Array(batch.length)
        for (let i = 0; i < batch.length; i++) {
          const item = batch[i]!
          const entry = leased(item)
          if (entry === undefined) {
            out[i] = "stale"
            continue
          }
          if (entry.revoked) {
            out[i] = "revoked"
            continue
          }
          entry.lost = undefined
          entry.startedAt = item.startedAt
          entry.worker = item.worker
          entry.ackedEarly = item.ackEarly
          const record = recordOf(entry.slot)
          if (record !== undefined && !finalStates.has(record.state)) {
            record.state = "STARTED"
            record.updatedAt = now
          }
          out[i] = "ok"
        }
        return out
      })

    const renew = (batch: ReadonlyArray<Broker.Lease>, leaseMillis: number) =>
      Effect.map(Clock.currentTimeMillis, (now) =>
        batch.map((item): Broker.LeaseStatus => {
          const entry = leased(item)
          if (entry === undefined) return "stale"
          entry.q.leased.update(entry, now + leaseMillis, seq++)
          return entry.revoked ? "revoked" : "ok"
        }))

    /** Ends one leased task; false when its lease is not the current one. Per task, like `enqueueOne`. */
    const completeOne = (item: Broker.Completion, now: number): boolean => {
      const entry = leased(item)
      if (entry === undefined) return false
      // a success that keeps no record forgets the task as it ends it
      const keep = item.keepRecord !== false || item.state !== "SUCCESS"
      const record = recordOf(entry.slot)
      if (record !== undefined && keep) {
        record.state = item.state
        record.updatedAt = now
        if (item.storeResult === false && item.state === "SUCCESS") {
          // only the state is kept
          record.result = undefined
          record.error = undefined
          record.meta = undefined
          record.history = noHistory
          record.attempt = undefined
        } else {
          if (item.storeResult !== false && item.result !== undefined) record.result = item.result
          // the final error is this attempt's: a success after retries has none
          if (item.error !== undefined) record.error = item.error
          else record.error = undefined
          appendAttempt(record, item.attempt)
        }
      }
      if (item.state === "FAILURE") toFailed(entry, now)
      else toFinal(entry, now, keep)
      finish(entry)
      return true
    }

    const complete = (batch: ReadonlyArray<Broker.Completion>) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        sweep(now)
        const out: Array<boolean> = new Array(batch.length)
        for (let i = 0; i < batch.length; i++) out[i] = completeOne(batch[i]!, now)
        return out
      })

    const retry = (batch: ReadonlyArray<Broker.Reschedule>) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        let woke = false
        const out = batch.map((item) => {
          const entry = leased(item)
          if (entry === undefined) return false
          entry.lost = undefined
          entry.message = bumpRetries(entry.message)
          if (item.dueAt <= now) toReady(entry, false)
          else toDelayed(entry, item.dueAt)
          woke = true
          const record = recordOf(entry.slot)
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
        batch.map((item) => {
          const entry = leased(item)
          if (entry === undefined) return false
          entry.lost = undefined
          toDead(entry)
          const record = entry.slot
          if (!record.recorded) recordRaw(record, entry, now)
          record.state = "FAILURE"
          record.updatedAt = now
          record.error = item.error
          appendAttempt(record, item.attempt)
          finish(entry)
          return true
        }))

    const release = (batch: ReadonlyArray<Broker.Lease>) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const out = batch.map((item) => {
          const entry = leased(item)
          if (entry === undefined) return false
          toReady(entry, true)
          const record = recordOf(entry.slot)
          if (record !== undefined && !finalStates.has(record.state)) {
            record.state = "PENDING"
            record.updatedAt = now
          }
          return true
        })
        signal()
        return out
      })

    /** A waiting task removed before it ran: REVOKED with `message`. */
    const revokeWaiting = (entry: Entry, now: number, message: string) => {
      const record = recordOf(entry.slot)
      toFinal(entry, now, true)
      if (record !== undefined) {
        record.state = "REVOKED"
        record.updatedAt = now
        record.error = info(new TaskRevoked({ taskId: entry.slot.id, message }))
      }
      finish(entry)
    }

    const revoke = (id: string) =>
      Effect.map(Clock.currentTimeMillis, (now): Broker.RevokeResult => {
        const slot = find(id, now)
        if (slot === undefined) return "unknown"
        const record = recordOf(slot)
        const entry = slot.live
        if (entry === undefined || entry.place === "dead" || entry.place === "failed" || entry.place === "gone") {
          return record === undefined ? "unknown" : "final"
        }
        if (entry.place === "leased") {
          entry.revoked = true
          if (record !== undefined) record.revoked = true
          return "running"
        }
        revokeWaiting(entry, now, `task ${id} was revoked before it ran`)
        return "revoked"
      })

    const redeliver = (id: string) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = find(id, now)?.live
        if (entry === undefined || (entry.place !== "dead" && entry.place !== "failed")) return false
        toReady(entry, false)
        const record = recordOf(entry.slot)
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
        listAll()
        for (const slot of [...tasks.values()]) {
          const entry = slot.live
          if (entry === undefined || (entry.place !== "ready" && entry.place !== "delayed") || !wanted.has(entry.q.name)) continue
          counts.set(entry.q.name, (counts.get(entry.q.name) ?? 0) + 1)
          revokeWaiting(entry, now, `task ${entry.slot.id} was purged from queue ${entry.q.name} before it ran`)
        }
        return names.map((name) => counts.get(name) ?? 0)
      })

    const get = (id: string) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const record = recordOf(find(id, now))
        return record === undefined ? Option.none<TaskRecord>() : Option.some(snapshot(record))
      })

    const setState = (id: string, state: string, meta: unknown) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const record = recordOf(find(id, now))
        if (record === undefined || finalStates.has(record.state)) return false
        record.state = state
        record.updatedAt = now
        if (meta !== undefined) record.meta = meta
        return true
      })

    const recordStale = (id: string, attempt: Attempt) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const record = recordOf(find(id, now))
        if (record !== undefined) appendAttempt(record, attempt)
      })

    const awaitFinal = (id: string): Effect.Effect<Option.Option<TaskRecord>> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const slot = find(id, now)
        const record = recordOf(slot)
        if (slot === undefined || record === undefined) return Effect.succeed(Option.none())
        const entry = slot.live
        if (entry === undefined || finalStates.has(record.state)) {
          return Effect.succeed(Option.some(snapshot(record)))
        }
        const deferred = Deferred.makeUnsafe<void>()
        if (entry.waiters === undefined) entry.waiters = [deferred]
        else entry.waiters.push(deferred)
        return Effect.flatMap(Deferred.await(deferred), () => awaitFinal(id))
      })

    const pushRaw = (queue: string, id: string, message: unknown) =>
      Effect.sync(() => {
        const existing = slotOf(id)
        let slot: Slot
        if (existing === undefined) {
          slot = newSlot(id, "?", queue, 0, 0, 0, undefined, false)
          tasks.set(id, slot)
        } else {
          // the slot, and its record if any, stays: the old entry leaves, and
          // the record no longer expires (its pending expiry is now stale)
          detach(existing)
          slot = existing
          slot.expiresAt = Infinity
        }
        const entry = newEntry(slot, queue, message, 5, undefined)
        known.add(queue)
        toReady(entry, false)
        signal()
      })

    const pending = Effect.sync(() => {
      let n = 0
      for (const q of queues.values()) n += q.counts.ready + q.counts.delayed + q.counts.leased
      return n
    })

    const nextDueAt = Effect.sync(() => Option.fromUndefinedOr(nextEvent(queues.keys())))

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
        enqueueChunk: ENQUEUE_CHUNK,
        heartbeat,
        workers,
        queues: listQueues,
        purge
      }),
      backend: ResultBackend.of({ get, setState, recordStale, awaitFinal }),
      store: MemoryStore.of({ pushRaw, pending, nextDueAt })
    }
  })

/**
 * Builds a memory broker with the default options: the `Broker`, the
 * `ResultBackend` and the test hooks.
 *
 * @since 0.1.0
 */
export const make = makeWith()

/**
 * A record as handed out: a copy of the record's fields (not the slot's own),
 * with a history array of its own, so later steps do not change it.
 */
const snapshot = (slot: Slot): TaskRecord => {
  const record: MutableRecord = {
    id: slot.id,
    task: slot.task,
    queue: slot.queue,
    state: slot.state,
    retries: slot.retries,
    submittedAt: slot.submittedAt,
    updatedAt: slot.updatedAt,
    history: slot.attempt !== undefined ? [slot.attempt] : slot.history.slice()
  }
  // the optional fields only when set, as a record without them was
  if (slot.eta !== undefined) record.eta = slot.eta
  if (slot.result !== undefined) record.result = slot.result
  if (slot.error !== undefined) record.error = slot.error
  if (slot.meta !== undefined) record.meta = slot.meta
  if (slot.revoked !== undefined) record.revoked = slot.revoked
  return record
}

const dedupKey = (queue: string, dedupId: string) => `${queue}\u0000${dedupId}`

const clampPriority = (p: number) => (Number.isInteger(p) ? Math.min(9, Math.max(0, p)) : 5)

const bumpRetries = (message: unknown): unknown =>
  typeof message === "object" && message !== null && "retries" in message && typeof message.retries === "number"
    ? { ...message, retries: message.retries + 1 }
    : message

/** Makes the slot of a raw message a record, from what its message says. */
const recordRaw = (slot: Slot, entry: Entry, now: number): void => {
  const m = typeof entry.message === "object" && entry.message !== null
    ? entry.message as Record<string, unknown>
    : {}
  slot.recorded = true
  slot.task = typeof m.task === "string" ? m.task : "?"
  slot.queue = entry.q.name
  slot.state = "PENDING"
  slot.retries = typeof m.retries === "number" ? m.retries : 0
  slot.submittedAt = typeof m.submittedAt === "number" ? m.submittedAt : now
  slot.updatedAt = now
  slot.history = noHistory
  slot.attempt = undefined
}

const toContext = ({ backend, broker, store }: Effect.Success<ReturnType<typeof makeWith>>) =>
  Context.make(Broker.Broker, broker).pipe(
    Context.add(ResultBackend, backend),
    Context.add(MemoryStore, store)
  )

/**
 * The memory broker as a layer, with options (e.g. `resultTtl`): provides
 * `Broker`, `ResultBackend` and the `MemoryStore` test hooks.
 *
 * @since 0.1.0
 */
export const layerWith = (options: Options = {}): Layer.Layer<Broker.Broker | ResultBackend | MemoryStore> =>
  Layer.effectContext(Effect.map(makeWith(options), toContext))

/**
 * The memory broker as a layer, with the default options: provides
 * `Broker`, `ResultBackend` and the `MemoryStore` test hooks.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<Broker.Broker | ResultBackend | MemoryStore> = layerWith()
