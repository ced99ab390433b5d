/**
 * The Redis broker and result backend: the production `Broker` and
 * `ResultBackend` of errand, on `effect/persistence/Redis` and node-redis.
 *
 * Every step is one atomic Lua script per queue and per batch (see
 * `commands/`), so a batch of tasks costs one round trip. All keys of a queue
 * share the hash tag `{prefix:queue}`, so a Redis Cluster can spread queues
 * over its nodes. See the package README for the key layout.
 *
 * @since 0.1.0
 */
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import {
  Broker,
  type ClaimOptions,
  type Completion,
  type DeadLetter,
  type Delivery,
  type Enqueued,
  type Lease,
  type LeaseStatus,
  type QueueStats,
  type Reschedule,
  type RevokeResult,
  type Start,
  type Submission,
  type WorkerInfo
} from "@errand/core/Broker"
import { BrokerError } from "@errand/core/Errors"
import { noHeaders } from "@errand/core/internal/headers"
import { withSpanIfTraced } from "@errand/core/internal/tracing"
import { type Attempt, finalStates, type Message, TaskRecord } from "@errand/core/Message"
import { ResultBackend } from "@errand/core/ResultBackend"
import {
  Cause,
  Clock,
  Config,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberSet,
  Layer,
  Option,
  Queue,
  Redacted,
  Schedule,
  Schema,
  Scope
} from "effect"
import * as Redis from "effect/persistence/Redis"
import { type Arg, scripts, type StepScript } from "./internal/scripts.ts"
import { Signals } from "./internal/signals.ts"

/**
 * Options of `RedisBroker.layer`.
 *
 * @since 0.1.0
 */
export interface Options {
  /**
   * `redis[s]://[[user][:password]@]host[:port][/db]`. `rediss://` connects
   * with TLS.
   */
  readonly url: string | Redacted.Redacted<string>
  /** Prefix of every key and channel (default `"errand"`). */
  readonly prefix?: string | undefined
  /** How long a final record (and its result) is kept (default 1 day). */
  readonly resultTtl?: Duration.Input | undefined
  /**
   * How long `awaitFinal` waits for a pub/sub notification before it reads
   * the record again anyway, covering notifications lost while a subscriber
   * reconnected (default 5 seconds).
   */
  readonly pollInterval?: Duration.Input | undefined
  /**
   * More node-redis client options (and `Redis.PoolOptions`), e.g.
   * `{ socket: { tls: true, ca } }` to trust a private CA, or
   * `{ disableOfflineQueue: false }` to queue commands while disconnected
   * instead of failing them (the default here is to fail at once).
   */
  readonly client?: ClientOptions | undefined
}

/**
 * node-redis client options, as `NodeRedis.layer` takes them (the URL is
 * given separately).
 *
 * @since 0.1.0
 */
export type ClientOptions = Omit<NonNullable<Parameters<typeof NodeRedis.layer>[0]>, "url">

/**
 * Direct access to the Redis a `RedisBroker` layer uses, for tests and tools.
 *
 * @since 0.1.0
 */
export class Handle extends Context.Service<Handle, {
  readonly prefix: string
  readonly redis: Redis.Redis["Service"]
  /**
   * Puts a raw string in a queue as a ready task with this id, as another
   * program (or a bug) could: workers must report it, not crash on it.
   */
  readonly pushRaw: (queue: string, id: string, raw: string) => Effect.Effect<void, BrokerError>
}>()("@errand/redis/RedisBroker/Handle") {}

/**
 * Puts a raw string in a queue as a ready task (see `Handle.pushRaw`).
 *
 * @since 0.1.0
 */
export const unsafePushRaw = (queue: string, id: string, raw: string): Effect.Effect<void, BrokerError, Handle> =>
  Handle.use((handle) => handle.pushRaw(queue, id, raw))

/**
 * The keys of one queue. All share the hash tag `{prefix:queue}`.
 *
 * @since 0.1.0
 */
export interface QueueKeys {
  /** The tag itself, `{prefix:queue}`; a task's hash is `<tag>:t:<id>`. */
  readonly tag: string
  /**
   * Sorted set of ready ids, by priority then FIFO; normal inserts of
   * priority 5 go to `fifo` instead (see `commands/common.lua`).
   */
  readonly ready: string
  /** List of ids ready at priority 5 (not put back at the front), oldest first. */
  readonly fifo: string
  /** Sorted set of delayed ids, by due time. */
  readonly delayed: string
  /** Sorted set of leased ids, by lease deadline. */
  readonly leased: string
  /** Sorted set of dead-lettered ids, by when they died. */
  readonly dead: string
  /** Hash dedup id -> task id, while that task is not final. */
  readonly dedup: string
  /**
   * Hash id -> `updatedAt|retries|submittedAt|eta|task`: the records of tasks
   * that ended SUCCESS without storing their result, which keep no hash of
   * their own (see `commands/common.lua`).
   */
  readonly done: string
  /** Sorted set of the ids in `done` by expiry time (none: kept forever). */
  readonly doneAt: string
  /**
   * Hash id -> `p|submittedAt|taskLength|<task><message>`: the tasks of the
   * fast lane, which keep no hash of their own while all goes well (see
   * `commands/common.lua`).
   */
  readonly fast: string
  /**
   * Hash id -> the token of the claim it is leased under: bare when the claim
   * started it, `token|` when it did not, `token|startedAt` once a later
   * start did. The fast lane's leases.
   */
  readonly fastLease: string
  /** Hash token -> `claimedAt|worker`: the fast lane's claims. */
  readonly claim: string
  /** Hash token -> the claim's ids, joined by newlines. */
  readonly claimIds: string
  /** Hash token -> how many of the claim's tasks are still leased under it. */
  readonly claimLeft: string
  /** Sorted set of claim tokens, by deadline. */
  readonly claimAt: string
  /**
   * Hash parkId -> `until|max|start|leaseMillis|worker`: the claims parked
   * at the queue, each waiting on its inbox list `<tag>:inbox:<parkId>` for
   * the tasks handed to it (see `commands/park.lua`).
   */
  readonly park: string
}

/**
 * The keys of `queue` under `prefix`.
 *
 * @since 0.1.0
 */
export const queueKeys = (prefix: string, queue: string): QueueKeys => {
  const tag = `{${prefix}:${queue}}`
  return {
    tag,
    ready: `${tag}:ready`,
    fifo: `${tag}:fifo`,
    delayed: `${tag}:delayed`,
    leased: `${tag}:leased`,
    dead: `${tag}:dead`,
    dedup: `${tag}:dedup`,
    done: `${tag}:done`,
    doneAt: `${tag}:doneAt`,
    fast: `${tag}:fast`,
    fastLease: `${tag}:fastLease`,
    claim: `${tag}:claim`,
    claimIds: `${tag}:claimIds`,
    claimLeft: `${tag}:claimLeft`,
    claimAt: `${tag}:claimAt`,
    park: `${tag}:park`
  }
}

/**
 * The key of a task's hash (message, lease and record).
 *
 * @since 0.1.0
 */
export const taskKey = (prefix: string, queue: string, id: string): string => `{${prefix}:${queue}}:t:${id}`

// id and queue are not stored (the key says them; older records had them)
const recordFields = [
  "task",
  "state",
  "retries",
  "submittedAt",
  "updatedAt",
  "eta",
  "result",
  "error",
  "meta",
  "revoked",
  "history"
] as const

const decodeRecord = Schema.decodeUnknownEffect(TaskRecord)

/** A worker registration as stored (JSON in the workers hash). */
const WorkerInfoJson = Schema.fromJsonString(Schema.Struct({
  id: Schema.String,
  host: Schema.String,
  pid: Schema.Number,
  queues: Schema.Array(Schema.String),
  concurrency: Schema.Number,
  startedAt: Schema.Number,
  heartbeatAt: Schema.Number,
  aliveUntil: Schema.Number,
  expiresAt: Schema.Number,
  inFlight: Schema.optional(Schema.Number),
  stoppedAt: Schema.optional(Schema.Number)
}))

const decodeWorkerInfo = Schema.decodeUnknownOption(WorkerInfoJson)

/** How many waiting tasks one purge script removes; the caller repeats until a call removes fewer. */
const purgeChunk = 1000

/** The KEYS of `enqueue.lua`. */
const enqueueKeys = (keys: QueueKeys) => [keys.ready, keys.delayed, keys.dedup, keys.done, keys.doneAt, keys.fast]

/**
 * Tasks per enqueue script: about 1-2 ms of Redis time, so claims are not
 * held up long behind a bulk submit, and few enough scripts that their own
 * cost (the wake-up, the parked claims' check) stays small: end to end, 1,000
 * measured 86.8k tasks/s against 85.5k for 500 (alternated runs), the bulk
 * submit the same.
 */
const ENQUEUE_SLICE = 1000

/**
 * The longest a claim stays parked before it claims again (see
 * `commands/park.lua`): it bounds how long the registration of a worker
 * that died parked can be handed tasks (which then wait out their lease and
 * come back as they were: the worker never took them).
 */
const PARK_MILLIS = 1000
/** How long closing the broker waits for claims that stopped waiting to give their tasks back. */
const GIVE_BACK_MILLIS = 3000

/**
 * The keys of the worker registry: a hash id -> WorkerInfo JSON and a sorted
 * set of ids by expiry, under one hash tag (one slot on a cluster).
 *
 * @since 0.1.0
 */
export const workerKeys = (prefix: string) => ({
  info: `{${prefix}:workers}:info`,
  expiry: `{${prefix}:workers}:expiry`
})

const leaseStatuses: ReadonlyArray<LeaseStatus> = ["ok", "stale", "revoked"]

const revokeResults: ReadonlySet<string> = new Set(["revoked", "running", "final", "unknown"])

const errorMessage = (cause: unknown): string => {
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    return typeof code === "string" && !cause.message.includes(code) ? `${code} ${cause.message}` : cause.message
  }
  return String(cause)
}

const connectionErrors = [
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ETIMEDOUT",
  "EPIPE",
  "ClientOfflineError",
  "ClientClosedError",
  "SocketClosedUnexpectedlyError",
  "ConnectionTimeoutError",
  "SocketTimeoutError"
]

const isConnectionError = (cause: unknown): boolean => {
  if (!(cause instanceof Error)) return false
  const code = (cause as { code?: unknown }).code
  return connectionErrors.includes(cause.name) || (typeof code === "string" && connectionErrors.includes(code)) ||
    /offline|closed|ECONNREFUSED|ECONNRESET/.test(cause.message)
}

/** `host:port/db` of a Redis URL, without credentials. */
const describeUrl = (url: string): string => {
  try {
    const u = new URL(url)
    const port = u.port === "" ? "6379" : u.port
    const db = u.pathname.length > 1 ? u.pathname : ""
    return `${u.hostname}:${port}${db}`
  } catch {
    return "<invalid url>"
  }
}

/** The value of `CONFIG GET <name>`'s reply (a RESP2 pair list or a RESP3 map). */
const configValue = (reply: unknown, name: string): string | undefined => {
  if (Array.isArray(reply)) {
    const at = reply.findIndex((v) => String(v) === name)
    return at >= 0 && at + 1 < reply.length ? String(reply[at + 1]) : undefined
  }
  if (typeof reply === "object" && reply !== null && name in reply) {
    return String((reply as Record<string, unknown>)[name])
  }
  return undefined
}

/**
 * Warns when Redis may evict errand's keys. Under any `maxmemory-policy` but
 * `noeviction` (Redis's default), a Redis that reaches `maxmemory` deletes
 * keys to make room, a task's among them, and the task is gone without a
 * trace; with `noeviction` it refuses the write instead, and the producer
 * gets the error. A Redis that refuses `CONFIG` (managed services often do)
 * is not checked.
 */
const checkEviction = (redis: Redis.Redis["Service"], where: string): Effect.Effect<void> =>
  redis.send<unknown>("CONFIG", "GET", "maxmemory-policy").pipe(
    Effect.flatMap((reply) => {
      const policy = configValue(reply, "maxmemory-policy")
      return policy === undefined || policy === "noeviction" ? Effect.void : Effect.logWarning(
        `Redis at ${where} evicts keys when its memory is full (maxmemory-policy ${policy}), ` +
          `which can delete a task's keys and lose the task; set maxmemory-policy to noeviction ` +
          `(in redis.conf, or CONFIG SET maxmemory-policy noeviction)`
      )
    }),
    Effect.catchCause(() => Effect.void)
  )

const parseJson = (raw: string): unknown => {
  try {
    return JSON.parse(raw)
  } catch {
    return raw
  }
}

const json = (u: unknown): string => JSON.stringify(u) ?? "null"

const num = (s: string | null | undefined): number | undefined => {
  if (s === null || s === undefined || s === "") return undefined
  const n = Number(s)
  return Number.isFinite(n) ? n : undefined
}


const byteLengths = new Map<string, number>()
/** The UTF-8 length of a task name (as Lua's `#` counts it), remembered per name. */
const byteLength = (task: string): number => {
  let n = byteLengths.get(task)
  if (n === undefined) {
    n = Buffer.byteLength(task, "utf8")
    if (byteLengths.size < 10_000) byteLengths.set(task, n)
  }
  return n
}

/**
 * Whether a submission goes to the fast lane (see `commands/common.lua`): its
 * result is not stored, it is due now, it has no eta, dedup id or earlier
 * retries, its submit time is a whole number of milliseconds, its priority
 * an integer from 0 to 9, and it has a payload (the entry keeps the rest of
 * the message implied).
 */
const fastLane = (s: Submission, now: number): boolean => {
  const m = s.message
  return (m.storeResult === false || m.storeResult === undefined) && s.dedupId === undefined &&
    m.eta === undefined && m.retries === 0 &&
    s.dueAt <= now && Number.isSafeInteger(m.submittedAt) && m.submittedAt >= 0 &&
    Number.isInteger(m.priority) && m.priority >= 0 && m.priority <= 9 && m.payload !== undefined
}

/** The index in `s` after `bytes` UTF-8 bytes from `from` (Lua counts bytes, JavaScript UTF-16 units). */
const afterUtf8 = (s: string, from: number, bytes: number): number => {
  let i = from
  while (bytes > 0 && i < s.length) {
    const code = s.charCodeAt(i++)
    if (code < 0x80) bytes -= 1
    else if (code < 0x800) bytes -= 2
    else if (code >= 0xd800 && code < 0xdc00) {
      // a surrogate pair: one code point of 4 bytes
      bytes -= 4
      i++
    } else bytes -= 3
  }
  return i
}

/**
 * A fast-lane entry, `~p|submittedAt|taskLength|headersLength|<task><headers><payload>`
 * (task name and headers JSON as many UTF-8 bytes long as their lengths
 * say, headers "" when empty, then the payload JSON): its priority, submit
 * time, task, headers JSON ("" for none) and the head the payload follows. An entry of an
 * earlier version, `p|submittedAt|taskLength|<task><message>`, has its whole
 * message JSON as `whole`.
 */
/**
 * Whether a task may have this id: not empty and without a newline (ids
 * travel newline-separated: the done channel, claims, done records; and
 * field "\n" is the pin of the fast lane's hashes). `enqueue` refuses any
 * other; a lookup of one finds nothing.
 */
const validId = (id: string): boolean => id !== "" && !id.includes("\n")

const parseFast = (value: string) => {
  const mark = value.charCodeAt(0)
  const old = mark !== 126 && mark !== 61 // "~" or "="
  const a = value.indexOf("|")
  const b = value.indexOf("|", a + 1)
  const c = value.indexOf("|", b + 1)
  const d = old ? c : value.indexOf("|", c + 1)
  if (a < 0 || b < 0 || c < 0 || d < 0) return undefined
  const taskEnd = afterUtf8(value, d + 1, Number(value.slice(b + 1, c)))
  const headersEnd = old ? taskEnd : afterUtf8(value, taskEnd, Number(value.slice(c + 1, d)))
  return {
    priority: Number(value.slice(old ? 0 : 1, a)),
    submittedAt: Number(value.slice(a + 1, b)),
    task: value.slice(d + 1, taskEnd),
    headers: value.slice(taskEnd, headersEnd),
    /** Everything before the payload, which the tasks of one submit share. */
    head: value.slice(0, headersEnd),
    whole: old ? value.slice(taskEnd) : undefined,
    /** "=": storeResult absent (the result is stored); "~": false. */
    stored: mark === 61
  }
}

/**
 * The message of a fast-lane entry, made whole: what the entry leaves out
 * is implied (see `commands/common.lua`). A payload that is not JSON is
 * passed on as its text, as `parseJson` does for a message. One literal per
 * shape (storeResult absent or false), so V8 gives each message of a shape
 * the same hidden class. An entry without headers gets the shared frozen
 * empty headers, as a message submitted with none has on the memory broker:
 * the worker knows them valid by identity instead of walking an object per
 * task.
 */
const fastMessage = (
  id: string,
  queue: string,
  entry: NonNullable<ReturnType<typeof parseFast>>,
  payload: string
): unknown =>
  entry.whole !== undefined
    ? parseJson(entry.whole)
    : entry.stored
    ? {
      id,
      task: entry.task,
      queue,
      payload: parseJson(payload),
      headers: entry.headers === "" ? noHeaders : parseJson(entry.headers),
      priority: entry.priority,
      retries: 0,
      submittedAt: entry.submittedAt
    }
    : {
      id,
      task: entry.task,
      queue,
      payload: parseJson(payload),
      headers: entry.headers === "" ? noHeaders : parseJson(entry.headers),
      priority: entry.priority,
      retries: 0,
      submittedAt: entry.submittedAt,
      storeResult: false
    }

/** The JSON of headers, "" when there are none (a fast-lane entry stores nothing for them). */
const headersJson = (headers: Message["headers"]): string => {
  for (const _ in headers) return json(headers)
  return ""
}

/**
 * A done record's value, `@expiresAt|updatedAt|retries|submittedAt|eta|task`
 * (expiresAt "" when kept forever, eta "" when absent; the task name last,
 * so it may hold "|"). A record of an earlier version has no `@expiresAt|`:
 * its expiry is its doneAt score.
 */
const parseLean = (value: string) => {
  const parts: Array<string> = []
  let from = 0
  let expiresAt: number | undefined
  if (value.startsWith("@")) {
    const at = value.indexOf("|")
    if (at < 0) return undefined
    expiresAt = num(value.slice(1, at))
    from = at + 1
  }
  for (let k = 0; k < 4; k++) {
    const at = value.indexOf("|", from)
    if (at < 0) return undefined
    parts.push(value.slice(from, at))
    from = at + 1
  }
  return {
    expiresAt,
    updatedAt: num(parts[0]) ?? 0,
    retries: num(parts[1]) ?? 0,
    submittedAt: num(parts[2]) ?? 0,
    eta: num(parts[3]),
    task: value.slice(from)
  }
}

/**
 * A done record with a result, `#expiresAt|updatedAt|submittedAt|taskLength|resultLength|<task><result><attempt>`
 * (lengths in UTF-8 bytes, expiresAt "" when kept forever, result "" when
 * none): the record, not yet decoded, of a fast-lane task that succeeded
 * with its result stored (see `commands/common.lua`).
 */
const parseResultRecord = (id: string, queue: string, value: string) => {
  const bars: Array<number> = []
  for (let at = 0, k = 0; k < 5; k++) {
    at = value.indexOf("|", at)
    if (at < 0) return undefined
    bars.push(at++)
  }
  const taskEnd = afterUtf8(value, bars[4] + 1, Number(value.slice(bars[2] + 1, bars[3])))
  const resultEnd = afterUtf8(value, taskEnd, Number(value.slice(bars[3] + 1, bars[4])))
  const result = value.slice(taskEnd, resultEnd)
  const raw: Record<string, unknown> = {
    id,
    task: value.slice(bars[4] + 1, taskEnd),
    queue,
    state: "SUCCESS",
    retries: 0,
    submittedAt: num(value.slice(bars[1] + 1, bars[2])) ?? 0,
    updatedAt: num(value.slice(bars[0] + 1, bars[1])) ?? 0,
    history: [parseJson(value.slice(resultEnd))]
  }
  if (result !== "") raw.result = parseJson(result)
  return { expiresAt: num(value.slice(1, bars[0])), raw }
}

/**
 * The record a done record stands for (state SUCCESS; no history, or the
 * attempt a record with a result keeps); none once its time (its own, or
 * `scored`, its doneAt score, for a record of an earlier version; undefined:
 * never) is up. A record with a result is decoded as a hash's record is.
 */
const leanRecord = (
  queue: string,
  id: string,
  value: string,
  scored: number | undefined,
  now: number
): Option.Option<TaskRecord> | { readonly raw: Record<string, unknown> } => {
  if (value.startsWith("#")) {
    const parsed = parseResultRecord(id, queue, value)
    if (parsed === undefined) return Option.none()
    if (parsed.expiresAt !== undefined && parsed.expiresAt <= now) return Option.none()
    return { raw: parsed.raw }
  }
  const parsed = parseLean(value)
  if (parsed === undefined) return Option.none()
  const expiresAt = value.startsWith("@") ? parsed.expiresAt : scored
  if (expiresAt !== undefined && expiresAt <= now) return Option.none()
  const { eta, retries, submittedAt, task, updatedAt } = parsed
  const record: TaskRecord = { id, task, queue, state: "SUCCESS", retries, submittedAt, updatedAt, history: [] }
  return Option.some(eta === undefined ? record : { ...record, eta })
}

/**
 * The record of a fast-lane task (see `commands/common.lua`): PENDING, or
 * RECEIVED / STARTED under its fast lease (`token`, `token|` or
 * `token|startedAt`) of the claim made at `claimedAt`.
 */
const fastRecord = (
  queue: string,
  id: string,
  value: string,
  lease: string | undefined,
  claimedAt: number | undefined
): Option.Option<TaskRecord> => {
  const entry = parseFast(value)
  if (entry === undefined) return Option.none()
  const submittedAt = entry.submittedAt
  const record: TaskRecord = {
    id,
    task: entry.task,
    queue,
    state: "PENDING",
    retries: 0,
    submittedAt,
    updatedAt: submittedAt,
    history: []
  }
  if (lease === undefined) return Option.some(record)
  const bar = lease.indexOf("|")
  const startedAt = bar < 0 ? claimedAt : num(lease.slice(bar + 1))
  const updatedAt = startedAt ?? claimedAt ?? submittedAt
  return Option.some({ ...record, state: startedAt === undefined ? "RECEIVED" : "STARTED", updatedAt })
}

/**
 * Subscribes to a pub/sub channel for the lifetime of the scope: calls
 * `onMessage` per message and `onReady` whenever the subscription is
 * (re)established, so waiters can re-check what they may have missed. It
 * keeps trying in the background until it is subscribed; the returned effect
 * waits for that.
 *
 * @since 0.1.0
 */
export type Subscribe = (
  channel: string,
  onMessage: (message: string) => void,
  onReady: () => void
) => Effect.Effect<Effect.Effect<void>, never, Scope.Scope>

/** How long a first claim or await waits for its subscription before going on without it. */
const subscribeTimeout = "2 seconds"

/**
 * `Subscribe` on the generic `Redis` service: it cannot see reconnects, only
 * failures of the subscription, after which it subscribes again.
 *
 * @since 0.1.0
 */
export const subscribeWith = (redis: Redis.Redis["Service"]): Subscribe => (channel, onMessage, onReady) =>
  Effect.gen(function*() {
    const subscribed = yield* Deferred.make<void>()
    yield* Effect.scoped(Effect.gen(function*() {
      const queue = yield* redis.subscribe(channel)
      yield* Deferred.succeed(subscribed, undefined)
      onReady()
      while (true) {
        const message = yield* Queue.take(queue)
        onMessage(message.message)
      }
    })).pipe(
      Effect.catchCause((cause) =>
        Effect.logWarning(`errand: subscription to ${channel} failed; subscribing again`, Cause.pretty(cause))
      ),
      Effect.andThen(Effect.sleep(500)),
      Effect.forever,
      Effect.forkScoped
    )
    return Deferred.await(subscribed)
  })

type NodeRedisClient = NodeRedis.NodeRedis["Service"]["client"]

/**
 * `Subscribe` on a node-redis client: a duplicate connection that reconnects
 * and resubscribes on its own; its `ready` event (after resubscribing) calls
 * `onReady`.
 *
 * @since 0.1.0
 */
export const subscribeNode = (client: NodeRedisClient): Subscribe => (channel, onMessage, onReady) =>
  Effect.gen(function*() {
    const subscribed = yield* Deferred.make<void>()
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const subscriber = client.duplicate()
        let closed = false
        // failures surface as BrokerErrors of commands; the connection retries by itself
        subscriber.on("error", () => {})
        subscriber.on("ready", () => onReady())
        const attempt = (): void => {
          if (closed) return
          const connected = subscriber.isOpen ? Promise.resolve() : subscriber.connect().then(() => undefined)
          connected
            .then(() => subscriber.subscribe(channel, (message) => onMessage(message)))
            .then(() => {
              Deferred.doneUnsafe(subscribed, Exit.void)
            })
            .catch(() => {
              if (!closed) setTimeout(attempt, 500).unref()
            })
        }
        attempt()
        return {
          close: () => {
            closed = true
            if (subscriber.isOpen) subscriber.destroy()
          }
        }
      }),
      (subscriber) => Effect.sync(() => subscriber.close())
    )
    return Deferred.await(subscribed)
  })

/**
 * Builds the Broker and ResultBackend on an open `Redis` service.
 *
 * @since 0.1.0
 */
export const makeWith: (options: {
  readonly redis: Redis.Redis["Service"]
  readonly prefix?: string | undefined
  readonly resultTtl?: Duration.Input | undefined
  readonly pollInterval?: Duration.Input | undefined
  /** Turns a Redis failure into a message a person can act on. */
  readonly describe?: ((operation: string, cause: unknown) => string) | undefined
  /** How to subscribe to a channel (default: `Redis.subscribe`). */
  readonly subscribe?: Subscribe | undefined
}) => Effect.Effect<
  Context.Context<Broker | ResultBackend | Handle>,
  never,
  Scope.Scope
> = Effect.fnUntraced(function*(options) {
  const redis = options.redis
  const prefix = options.prefix ?? "errand"
  // Each queue's keys, built once per queue (a single submit built its sixteen
  // strings anew); a process that meets very many queue names starts over.
  const keysByQueue = new Map<string, QueueKeys>()
  const keysOf = (queue: string): QueueKeys => {
    let keys = keysByQueue.get(queue)
    if (keys === undefined) {
      if (keysByQueue.size >= 1024) keysByQueue.clear()
      keys = queueKeys(prefix, queue)
      keysByQueue.set(queue, keys)
    }
    return keys
  }
  const ttl = Math.max(0, Math.round(Duration.toMillis(Duration.fromInputUnsafe(options.resultTtl ?? "1 day"))))
  const pollMillis = Math.max(
    10,
    Duration.toMillis(Duration.fromInputUnsafe(options.pollInterval ?? "5 seconds"))
  )
  const wakeChannel = `${prefix}:wake`
  const doneChannel = `${prefix}:done`
  const queuesKey = `${prefix}:queues`
  const layerScope = yield* Effect.scope
  // Give-backs of claims that stopped waiting (a worker shutting down) run in
  // the background; closing the broker waits for them (at most
  // GIVE_BACK_MILLIS) before the connection closes, so what they were handed
  // goes back to the queue instead of staying leased to nobody.
  const givingBack = yield* FiberSet.make<void>()
  yield* Effect.addFinalizer(() => Effect.timeoutOption(FiberSet.awaitEmpty(givingBack), GIVE_BACK_MILLIS))
  const inBackground = FiberSet.run(givingBack)
  const describe = options.describe ?? ((operation, cause) => `Redis failed during ${operation}: ${errorMessage(cause)}`)

  const fail = (operation: string) => (error: Redis.RedisError): BrokerError =>
    new BrokerError({ operation, message: describe(operation, error.cause), cause: error.cause })

  const evalIn = <R>(operation: string, script: StepScript<R>, keys: ReadonlyArray<string>, args: ReadonlyArray<Arg>) =>
    redis.eval(script)(keys, args).pipe(Effect.mapError(fail(operation)))

  const invalid = (operation: string, message: string) =>
    Effect.fail(new BrokerError({ operation, message: `${operation}: ${message}; nothing was written` }))

  const send = <A>(operation: string, command: string, ...args: ReadonlyArray<string>) =>
    redis.send<A>(command, ...args).pipe(Effect.mapError(fail(operation)))

  // ---------------------------------------------------------------------------
  // Which queue holds a task: ids are the client's, so a bare id is looked up
  // by probing the known queues (`<prefix>:queues`), remembered once found.
  // ---------------------------------------------------------------------------

  // Sent with an enqueue batch, concurrently with its scripts (same round
  // trip), at most once a second per queue: a producer submitting one task at
  // a time does not pay a second command per task, and a Redis that lost its
  // data has the queue listed again within a second of the next enqueue.
  // Claims need no registration: every task reaches a queue through enqueue.
  const registeredAt = new Map<string, number>()
  const register = (operation: string, queues: ReadonlyArray<string>, now: number): Effect.Effect<void, BrokerError> => {
    const due = queues.filter((q) => !(now - (registeredAt.get(q) ?? Number.NEGATIVE_INFINITY) < 1000))
    if (due.length === 0) return Effect.void
    return send(operation, "SADD", queuesKey, ...due).pipe(
      Effect.tap(() => Effect.sync(() => due.forEach((q) => registeredAt.set(q, now))))
    )
  }

  // Two generations of at most 100k ids each: O(1) and bounded. (Evicting the
  // oldest key of one Map one by one is O(n) per eviction in V8.)
  let recent = new Map<string, string>()
  let older = new Map<string, string>()
  const remember = (id: string, queue: string) => {
    if (recent.size >= 100_000) {
      older = recent
      recent = new Map()
    }
    recent.set(id, queue)
  }
  // Enqueued and claimed ids go in as whole batches and into the maps only
  // when a lookup misses: a producer that never reads its tasks back, or a
  // worker that names each lease's queue (`Lease.queue`), pays one array per
  // batch instead of a Map.set per task. Bounded like the maps.
  let batches: Array<{ readonly queue: string; readonly ids: ReadonlyArray<string> }> = []
  let batched = 0
  const rememberBatch = (queue: string, ids: ReadonlyArray<string>) => {
    if (ids.length === 0) return
    batches.push({ queue, ids })
    batched += ids.length
    if (batched > 200_000) {
      let drop = 0
      while (batched > 100_000 && drop < batches.length - 1) batched -= batches[drop++].ids.length
      batches = batches.slice(drop)
    }
  }
  const locations = {
    get: (id: string): string | undefined => {
      const known = recent.get(id) ?? older.get(id)
      if (known !== undefined || batched === 0) return known
      for (const batch of batches) for (const one of batch.ids) remember(one, batch.queue)
      batches = []
      batched = 0
      return recent.get(id) ?? older.get(id)
    }
  }

  const locate = (operation: string, id: string): Effect.Effect<Option.Option<string>, BrokerError> =>
    Effect.suspend(() => {
      // no task has such an id (enqueue refuses them), the pins' "\n" included
      if (!validId(id)) return Effect.succeed(Option.none())
      const known = locations.get(id)
      if (known !== undefined) return Effect.succeed(Option.some(known))
      return send<Array<string>>(operation, "SMEMBERS", queuesKey).pipe(
        Effect.flatMap((queues) =>
          Effect.forEach(
            queues,
            // a hash, a done record (one whose time is up is found too; reading it says none) or the fast lane
            (queue) =>
              Effect.all([
                send<number>(operation, "EXISTS", taskKey(prefix, queue, id)),
                send<number>(operation, "HEXISTS", keysOf(queue).done, id),
                send<number>(operation, "HEXISTS", keysOf(queue).fast, id)
              ], { concurrency: "unbounded" }),
            { concurrency: "unbounded" }
          ).pipe(Effect.map((found) => {
            const index = found.findIndex(([hash, done, fast]) => Number(hash) > 0 || Number(done) > 0 || Number(fast) > 0)
            if (index < 0) return Option.none<string>()
            remember(id, queues[index])
            return Option.some(queues[index])
          }))
        )
      )
    })

  // ---------------------------------------------------------------------------
  // Pub/sub: one subscription per channel and layer, started on first use.
  // When a subscription is (re)established every waiter re-checks, covering
  // messages published while it was down.
  // ---------------------------------------------------------------------------

  const subscribe = options.subscribe ?? subscribeWith(redis)
  const wake = new Signals()
  const done = new Signals()
  // Started once (uninterruptibly, in the layer's scope); each caller then
  // waits for it, interruptibly and for at most `subscribeTimeout`.
  const started = (channel: string, onMessage: (message: string) => void, onReady: () => void) =>
    Effect.cached(Effect.uninterruptible(Scope.provide(layerScope)(subscribe(channel, onMessage, onReady))))
  const ready = (start: Effect.Effect<Effect.Effect<void>>) =>
    Effect.flatMap(start, (subscribed) => Effect.asVoid(Effect.timeoutOption(subscribed, subscribeTimeout)))
  const ensureWake = ready(yield* started(wakeChannel, (queue) => wake.fire(queue), () => wake.fireAll()))
  const ensureDone = ready(
    yield* started(doneChannel, (ids) => {
      for (const id of ids.split("\n")) done.fire(id)
    }, () => done.fireAll())
  )

  // ---------------------------------------------------------------------------
  // Broker
  // ---------------------------------------------------------------------------

  const groupBy = <A>(items: ReadonlyArray<A>, queueOf: (a: A) => string) => {
    const groups = new Map<string, Array<number>>()
    items.forEach((item, i) => {
      const q = queueOf(item)
      const group = groups.get(q)
      if (group === undefined) groups.set(q, [i])
      else group.push(i)
    })
    return groups
  }

  /**
   * The groups cut into slices of at most `size` items, each its own script.
   * The slices are sent together (one round trip), but Redis runs other
   * clients' commands between them: a bulk submit of thousands of tasks does
   * not hold up the workers' claims for the whole of it.
   */
  const slices = (groups: Map<string, Array<number>>, size: number) => {
    const out: Array<readonly [string, Array<number>]> = []
    for (const [queue, indices] of groups) {
      if (indices.length <= size) out.push([queue, indices])
      else for (let i = 0; i < indices.length; i += size) out.push([queue, indices.slice(i, i + size)])
    }
    return out
  }

  /**
   * Runs one script per queue of the batch, and puts the answers back in
   * order. `queues[i]` is item i's queue (undefined: unknown task, `missing`).
   */
  const perQueue = <A, R>(
    operation: string,
    items: ReadonlyArray<A>,
    queues: ReadonlyArray<string | undefined>,
    run: (queue: string, items: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<R>, BrokerError>,
    missing: R
  ): Effect.Effect<ReadonlyArray<R>, BrokerError> => {
    if (items.length === 0) return Effect.succeed([])
    const span = withSpanIfTraced(`RedisBroker.${operation}`, { attributes: { size: items.length } })
    // the usual batch: one queue, every task located; no regrouping
    const first = queues[0]
    let one = first !== undefined
    for (let i = 1; one && i < queues.length; i++) one = queues[i] === first
    if (one) {
      return run(first!, items).pipe(
        Effect.map((answers) => answers.length === items.length ? answers : items.map((_, i) => answers[i] ?? missing)),
        span
      )
    }
    const out = new Array<R>(items.length).fill(missing)
    const groups = new Map<string, Array<number>>()
    queues.forEach((queue, index) => {
      if (queue === undefined) return
      const group = groups.get(queue)
      if (group === undefined) groups.set(queue, [index])
      else group.push(index)
    })
    return Effect.forEach(
      groups,
      ([queue, indices]) =>
        run(queue, indices.map((i) => items[i])).pipe(
          Effect.tap((answers) =>
            Effect.sync(() => {
              indices.forEach((index, k) => {
                out[index] = answers[k] ?? missing
              })
            })
          )
        ),
      { concurrency: "unbounded", discard: true }
    ).pipe(Effect.as(out), span)
  }

  /** Leases name their task by id only: find each one's queue. */
  const locateAll = <A extends { readonly id: string; readonly queue?: string | undefined }>(
    operation: string,
    items: ReadonlyArray<A>
  ): Effect.Effect<ReadonlyArray<string | undefined>, BrokerError> =>
    Effect.suspend(() => {
      // the common case: every lease names its queue, or every id is cached
      // (claimed or enqueued by this process)
      const out = new Array<string | undefined>(items.length)
      let missing: Array<number> | undefined
      for (let i = 0; i < items.length; i++) {
        const queue = items[i].queue ?? locations.get(items[i].id)
        out[i] = queue
        if (queue === undefined) (missing ??= []).push(i)
      }
      if (missing === undefined) return Effect.succeed(out)
      const unknown = missing
      return Effect.forEach(unknown, (i) => locate(operation, items[i].id), { concurrency: 16 }).pipe(
        Effect.map((found) => {
          unknown.forEach((index, k) => {
            out[index] = Option.getOrUndefined(found[k])
          })
          return out
        })
      )
    })

  /**
   * Sends the slices of a bulk submit, each as soon as it is built (see
   * `enqueue`), and waits for them all.
   */
  const sendSlices = Effect.fnUntraced(function*(
    all: ReadonlyArray<readonly [string, ReadonlyArray<number>]>,
    sendSlice: (queue: string, slice: ReadonlyArray<number>) => Effect.Effect<unknown, BrokerError>
  ) {
    const sent: Array<Fiber.Fiber<unknown, BrokerError>> = []
    for (let k = 0; k < all.length; k++) {
      if (k > 0) yield* Effect.yieldNow
      sent.push(yield* Effect.forkChild(sendSlice(all[k][0], all[k][1]), { startImmediately: true }))
    }
    yield* Fiber.joinAll(sent)
  })

  const leaseOp = Effect.fnUntraced(function*<A extends Lease, R>(
    operation: string,
    items: ReadonlyArray<A>,
    run: (queue: string, items: ReadonlyArray<A>, now: number) => Effect.Effect<ReadonlyArray<R>, BrokerError>,
    stale: R
  ): Effect.fn.Return<ReadonlyArray<R>, BrokerError> {
    if (items.length === 0) return []
    const queues = yield* locateAll(operation, items)
    const now = yield* Clock.currentTimeMillis
    return yield* perQueue(operation, items, queues, (q, group) => run(q, group, now), stale)
  })

  const enqueue = Effect.fnUntraced(function*(
    batch: ReadonlyArray<Submission>
  ): Effect.fn.Return<ReadonlyArray<Enqueued>, BrokerError> {
    if (batch.length === 0) return []
    // checked before any script runs: a script that fails half-way keeps its earlier writes
    const bad = batch.find((s) =>
      !Number.isFinite(s.dueAt) || typeof s.message.id !== "string" || !validId(s.message.id)
    )
    if (bad !== undefined) {
      return yield* invalid(
        "enqueue",
        `task ${JSON.stringify(bad.message.id)} has an invalid id (empty or holding a newline) or dueAt (${bad.dueAt})`
      )
    }
    const now = yield* Clock.currentTimeMillis
    const groups = groupBy(batch, (s) => s.message.queue)
    const out = new Array<Enqueued>(batch.length)
    const sendSlice = (queue: string, slice: ReadonlyArray<number>) => {
      const keys = keysOf(queue)
      // regular tasks first, then those of the fast lane; answers come back in that order
      const regulars: Array<number> = []
      const fast: Array<number> = []
      let fresh = true
      for (const i of slice) {
        if (fastLane(batch[i], now)) fast.push(i)
        else regulars.push(i)
        if (batch[i].fresh !== true) fresh = false
      }
      const regular = regulars.length
      const indices = regulars.concat(fast)
      const args: Array<Arg> = [keys.tag, now, wakeChannel, queue, regular, fresh ? "1" : "0"]
      for (let k = 0; k < regular; k++) {
        const { dedupId, dueAt, message } = batch[indices[k]]
        args.push(
          message.id,
          json(message),
          message.task,
          message.submittedAt,
          message.eta ?? "",
          message.retries,
          message.priority,
          dueAt,
          dedupId ?? ""
        )
      }
      for (let k = regular; k < indices.length; k++) {
        const { message } = batch[indices[k]]
        const headers = headersJson(message.headers)
        args.push(
          message.id,
          `${message.storeResult === false ? "~" : "="}${message.priority}|${message.submittedAt}|${
            byteLength(message.task)
          }|${
            headers === "" ? 0 : Buffer.byteLength(headers)
          }|${message.task}${headers}${json(message.payload)}`
        )
      }
      return evalIn("enqueue", scripts.enqueue, enqueueKeys(keys), args).pipe(
        Effect.tap((answers) =>
          Effect.sync(() => {
            const ids: Array<string> = []
            indices.forEach((index, k) => {
              const id = batch[index].message.id
              const duplicateOf = answers[k]
              if (duplicateOf !== undefined && duplicateOf !== "") {
                out[index] = { id, duplicateOf }
              } else {
                ids.push(id)
                out[index] = { id }
              }
            })
            rememberBatch(queue, ids)
          })
        )
      )
    }
    // Each slice goes out as soon as it is built: its script is sent (the
    // client writes on its next turn of the event loop, which the yield
    // lets come) while the next slice is built, so Redis runs a bulk
    // submit's scripts while the producer encodes the rest.
    const all = slices(groups, ENQUEUE_SLICE)
    const enqueueing = all.length === 1 ? sendSlice(all[0][0], all[0][1]) : sendSlices(all, sendSlice)
    // the registration, when due, goes in the same round trip; most calls
    // have none, and then no fibers are forked for the two
    const registering = register("enqueue", [...groups.keys()], now)
    if (registering === Effect.void) yield* enqueueing
    else yield* Effect.all([registering, enqueueing], { concurrency: "unbounded", discard: true })
    return out
  }, (effect, batch) => withSpanIfTraced("RedisBroker.enqueue", { attributes: { size: batch.length } })(effect))

  const pushRaw = Effect.fnUntraced(function*(queue: string, id: string, raw: string): Effect.fn.Return<void, BrokerError> {
    const now = yield* Clock.currentTimeMillis
    yield* register("pushRaw", [queue], now)
    const keys = keysOf(queue)
    const parsed = parseJson(raw)
    const task = typeof parsed === "object" && parsed !== null && "task" in parsed && typeof parsed.task === "string"
      ? parsed.task
      : ""
    yield* evalIn("pushRaw", scripts.enqueue, enqueueKeys(keys), [
      keys.tag,
      now,
      wakeChannel,
      queue,
      1,
      "0",
      id,
      raw,
      task,
      now,
      "",
      0,
      5,
      now,
      ""
    ])
    remember(id, queue)
  })

  /**
   * The deliveries of a claim reply (see `commands/claim.lua`), leased at
   * `now` on `queue`.
   */
  const deliveriesOf = (queue: string, reply: ReadonlyArray<string>, now: number, leaseMillis: number) => {
    const deliveries: Array<Delivery> = []
    const deadline = now + leaseMillis
    // the fast-lane claim's token, and how many of its deliveries (the first) it started
    const fastToken = Number(reply[1])
    let fastStarted = Number(reply[2])
    const ids: Array<string> = []
    // the last entry parsed: the next one from the same submit starts with its head
    let last: ReturnType<typeof parseFast>
    for (let i = 3; i + 1 < reply.length;) {
      const id = String(reply[i])
      const entry = String(reply[i + 1])
      ids.push(id)
      if (entry !== "") {
        i += 2
        if (last === undefined || last.whole !== undefined || !entry.startsWith(last.head)) last = parseFast(entry)
        deliveries.push({
          id,
          token: fastToken,
          queue,
          deadline,
          message: last === undefined ? entry : fastMessage(id, queue, last, entry.slice(last.head.length)),
          lost: undefined,
          startedAt: fastStarted-- > 0 ? now : undefined
        })
        continue
      }
      const token = Number(reply[i + 2])
      const retries = Number(reply[i + 4])
      let message = parseJson(String(reply[i + 3]))
      if (
        typeof message === "object" && message !== null && !Array.isArray(message) && "retries" in message &&
        typeof message.retries === "number" && message.retries !== retries
      ) {
        message = { ...message, retries }
      }
      const lostWorker = String(reply[i + 5])
      deliveries.push({
        id,
        token,
        queue,
        deadline,
        message,
        lost: lostWorker === "" ? undefined : {
          worker: lostWorker,
          startedAt: num(reply[i + 6]),
          expiredAt: num(reply[i + 7]) ?? now,
          ackedEarly: reply[i + 8] === "1"
        },
        startedAt: reply[i + 9] === "1" ? now : undefined
      })
      i += 10
    }
    rememberBatch(queue, ids)
    return deliveries
  }

  /** One claim script call on one queue; `park`: park there if it leases nothing (see `commands/park.lua`). */
  const claimQueue = (
    queue: string,
    options: ClaimOptions,
    max: number,
    toStart: number,
    now: number,
    park?: { readonly id: string; readonly until: number } | undefined
  ) => {
    const keys = keysOf(queue)
    const args: Array<Arg> = [keys.tag, now, max, options.leaseMillis, options.worker, toStart]
    if (park !== undefined) args.push(park.id, park.until)
    return evalIn("claim", scripts.claim, [keys.ready, keys.delayed, keys.leased, keys.fast, keys.fastLease], args).pipe(
      Effect.map((reply) => ({ deliveries: deliveriesOf(queue, reply, now, options.leaseMillis), nextAt: num(reply[0]) }))
    )
  }

  const claimOnce = Effect.fnUntraced(function*(
    options: ClaimOptions,
    now: number,
    park?: { readonly id: string; readonly until: number }
  ) {
    const deliveries: Array<Delivery> = []
    let nextAt: number | undefined
    // the start budget is shared by the queues, in claim order
    const max = Math.max(0, Math.floor(options.max))
    let toStart = Math.min(max, Math.max(0, Math.floor(options.start ?? 0) || 0))
    for (const queue of options.queues) {
      const result = yield* claimQueue(queue, options, max - deliveries.length, toStart, now, park)
      for (const d of result.deliveries) {
        if (d.startedAt !== undefined) toStart--
        deliveries.push(d)
      }
      if (result.nextAt !== undefined && (nextAt === undefined || result.nextAt < nextAt)) nextAt = result.nextAt
    }
    return { deliveries, nextAt }
  })

  // ---------------------------------------------------------------------------
  // Parked claims (see `commands/park.lua`): a claim of one queue that finds
  // it empty registers there and waits on its inbox (BLPOP, on a connection
  // of its own); a script that makes tasks ready leases them to it and
  // pushes them to the inbox, so they arrive without a wake-up and a claim's
  // round trip.
  // ---------------------------------------------------------------------------

  const instance = crypto.randomUUID().slice(0, 8)
  let parks = 0

  /** The tasks of the replies pushed to a parked claim's inbox ("": a nudge to claim again). */
  const pushedDeliveries = (queue: string, replies: ReadonlyArray<unknown>, leaseMillis: number) => {
    const deliveries: Array<Delivery> = []
    for (const r of replies) {
      if (r === "" || r === null || r === undefined) continue
      const reply = parseJson(String(r))
      if (!Array.isArray(reply)) continue
      const values = reply.map(String)
      for (const d of deliveriesOf(queue, values, Number(values[0]), leaseMillis)) deliveries.push(d)
    }
    return deliveries
  }

  /** Gives back tasks a claim will not take (`release`: ready again, no attempt counted). */
  const giveBack = (deliveries: ReadonlyArray<Delivery>): Effect.Effect<void, BrokerError> =>
    deliveries.length === 0 ? Effect.void : Effect.asVoid(release(deliveries))

  /** A parked claim stops waiting: its registration goes, and what its inbox holds is its. */
  const unpark = (queue: string, parkId: string, leaseMillis: number, wake: boolean) => {
    const keys = keysOf(queue)
    return evalIn("claim", scripts.unpark, [keys.park], [keys.tag, parkId, wake ? PARK_MILLIS * 2 : 0]).pipe(
      Effect.map((replies) => pushedDeliveries(queue, replies, leaseMillis))
    )
  }

  /**
   * A parked claim that will not take what it is handed (interrupted, or its
   * wait failed) unparks and gives back what it was handed, in the
   * background, as an interrupted claim gives back its tasks.
   */
  const abandon = (queue: string, parkId: string, leaseMillis: number) =>
    unpark(queue, parkId, leaseMillis, true).pipe(
      Effect.flatMap(giveBack),
      Effect.retry({ times: 4, schedule: Schedule.spaced(200) }),
      Effect.catch((e) => Effect.logWarning(`an abandoned claim could not unpark at Redis: ${e.message}`))
    )

  /**
   * Closes `scope` on the fiber's scheduler's next turn, in a fiber of its
   * own, instead of now: what the caller does with its result in this turn
   * goes first. A forked fiber would do the same, but it is made at once,
   * which costs about as much as closing the scope.
   */
  const releaseLater = (scope: Scope.Closeable, exit: Exit.Exit<unknown, unknown>) =>
    Effect.withFiber((fiber) => {
      fiber.currentDispatcher.scheduleTask(() => Effect.runForkWith(fiber.context)(Scope.close(scope, exit)), 0)
      return Effect.void
    })

  /**
   * BLPOP on the inbox of parked claim `parkId` for at most `millis`, on a
   * connection of its own. The connection goes back to the pool on the
   * scheduler's next turn (`releaseLater`), after the reply has gone on to
   * the claim and its worker: released at once, the pool's bookkeeping ran
   * between a pushed task's arrival and its handler's start (40-57 us of a
   * light-load submit's latency on the bench VM, 5 us left).
   */
  const blockOnInbox = (queue: string, parkId: string, millis: number) =>
    Effect.flatMap(Scope.make(), (scope) =>
      Effect.flatMap(
        redis.reserve,
        (connection) =>
          connection.send<ReadonlyArray<unknown> | null>(
            "BLPOP",
            `${keysOf(queue).tag}:inbox:${parkId}`,
            (Math.max(1, millis) / 1000).toFixed(3)
          )
      ).pipe(Scope.provide(scope), Effect.onExit((exit) => releaseLater(scope, exit)))).pipe(
        Effect.mapError(fail("claim"))
      )

  /**
   * Waits on the inbox of parked claim `parkId` for at most `millis`; the
   * tasks it was handed. The BLPOP runs in a fiber of its own and is never
   * cut short: a claim interrupted while its tasks are on their way (a
   * worker shutting down just as they are submitted) unparks, so nothing
   * more comes, and gives back what the inbox held and what the BLPOP
   * brings (within `PARK_MILLIS`), instead of leaving them leased to nobody
   * until their lease runs out.
   */
  const awaitParked = (queue: string, parkId: string, millis: number, leaseMillis: number) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.forkDetach(blockOnInbox(queue, parkId, millis)), (blocked) =>
        restore(Fiber.join(blocked)).pipe(
          Effect.onInterrupt(() =>
            inBackground(
              abandon(queue, parkId, leaseMillis).pipe(
                Effect.andThen(Fiber.join(blocked)),
                Effect.flatMap((reply) => giveBack(Array.isArray(reply) ? pushedDeliveries(queue, [reply[1]], leaseMillis) : [])),
                Effect.catch((e) => Effect.logWarning(`an interrupted claim could not give back its tasks: ${e.message}`))
              )
            )
          ),
          Effect.flatMap((reply) =>
            Array.isArray(reply)
              ? Effect.succeed(pushedDeliveries(queue, [reply[1]], leaseMillis))
              // the wait is over: whatever was pushed since is still the claim's
              : unpark(queue, parkId, leaseMillis, false)
          ),
          // the BLPOP or the unpark failed: unpark in the background, give back what was handed
          Effect.tapError(() => inBackground(abandon(queue, parkId, leaseMillis)))
        ))
    )

  /**
   * A claim whose scripts are on their way when it is interrupted (a worker
   * shutting down while its claim waits for work) still leases their tasks
   * at Redis. The round trip runs in a fiber of its own, so the claim stops
   * at once, and that fiber gives the tasks back when the reply is in
   * (`release`: ready again, no attempt counted) instead of leaving them
   * leased until their lease runs out; a claim that parked unparks.
   */
  const landed = <A extends { readonly deliveries: ReadonlyArray<Delivery> }, E>(
    once: Effect.Effect<A, E>,
    giveBack: (result: A) => Effect.Effect<void, BrokerError>
  ): Effect.Effect<A, E> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.forkDetach(once), (fiber) =>
        restore(Fiber.join(fiber)).pipe(
          Effect.onInterrupt(() =>
            inBackground(
              Fiber.join(fiber).pipe(
                Effect.flatMap(giveBack),
                Effect.catch((e) => Effect.logWarning(`an interrupted claim could not give back its tasks: ${e}`))
              )
            )
          )
        ))
    )

  const releaseAll = (result: { readonly deliveries: ReadonlyArray<Delivery> }) => giveBack(result.deliveries)

  /**
   * One claim of several queues, or of one that does not park: the tasks
   * it leased, or none after waiting (`taken`: the wake-up signals, taken
   * before the claim so that none is missed) until a wake-up, a due task or
   * `until`.
   */
  const claimRound = Effect.fnUntraced(function*(
    options: ClaimOptions,
    until: number,
    taken: ReadonlyArray<Deferred.Deferred<void>>
  ): Effect.fn.Return<Option.Option<ReadonlyArray<Delivery>>, BrokerError> {
    const now = yield* Clock.currentTimeMillis
    const { deliveries, nextAt } = yield* landed(claimOnce(options, now), releaseAll)
    if (deliveries.length > 0 || now >= until || options.max <= 0) return Option.some(deliveries)
    const wakeAt = nextAt !== undefined && nextAt < until ? nextAt : until
    yield* Signals.wait(taken, wakeAt - now)
    return Option.none()
  })

  const claim = Effect.fnUntraced(function*(options: ClaimOptions): Effect.fn.Return<ReadonlyArray<Delivery>, BrokerError> {
    if (options.queues.length === 0) return []
    if (!(options.leaseMillis > 0) || !Number.isFinite(options.leaseMillis) || !(options.max >= 0)) {
      return yield* invalid("claim", `leaseMillis must be positive and max at least 0 (got ${options.leaseMillis}, ${options.max})`)
    }
    const startedAt = yield* Clock.currentTimeMillis
    const until = startedAt + Math.ceil(Math.max(0, options.waitMillis))
    if (options.waitMillis > 0 && options.queues.length === 1 && options.max >= 1) {
      // one queue: park there while it is empty
      const queue = options.queues[0]
      while (true) {
        const now = yield* Clock.currentTimeMillis
        const park = now < until ? { id: `${instance}:${++parks}`, until: Math.min(until, now + PARK_MILLIS) } : undefined
        const { deliveries, nextAt } = yield* landed(
          claimOnce(options, now, park),
          (result) =>
            park !== undefined && result.deliveries.length === 0
              ? abandon(queue, park.id, options.leaseMillis)
              : releaseAll(result)
        )
        if (deliveries.length > 0 || park === undefined) return deliveries
        // parked (claim.lua) until then, unless that is now (a due task)
        const wakeAt = nextAt !== undefined && nextAt < park.until ? nextAt : park.until
        if (wakeAt <= now) continue
        const pushed = yield* awaitParked(queue, park.id, wakeAt - now, options.leaseMillis)
        if (pushed.length > 0) return pushed
      }
    }
    if (options.waitMillis > 0) yield* ensureWake
    while (true) {
      const taken = options.queues.map((q) => wake.acquire(q))
      const result = yield* claimRound(options, until, taken).pipe(
        Effect.ensuring(Effect.sync(() => options.queues.forEach((q, i) => wake.release(q, taken[i]))))
      )
      if (Option.isSome(result)) return result.value
    }
  }, (effect, options) => withSpanIfTraced("RedisBroker.claim", { attributes: { queues: options.queues, max: options.max } })(effect))

  const start = (batch: ReadonlyArray<Start>) =>
    leaseOp("start", batch, (queue, items, now) => {
      const keys = keysOf(queue)
      const args: Array<Arg> = [keys.tag, now]
      for (const s of items) args.push(s.id, s.token, s.worker, s.startedAt, s.ackEarly ? "1" : "0")
      return evalIn("start", scripts.start, [keys.leased, keys.fastLease], args).pipe(
        Effect.map((codes) => codes.map((c) => leaseStatuses[Number(c)] ?? "stale"))
      )
    }, "stale" as LeaseStatus)

  const renew = (batch: ReadonlyArray<Lease>, leaseMillis: number) =>
    !(leaseMillis > 0) || !Number.isFinite(leaseMillis)
      ? invalid("renew", `leaseMillis must be positive (got ${leaseMillis})`)
      : leaseOp("renew", batch, (queue, items, now) => {
      const keys = keysOf(queue)
      const args: Array<Arg> = [keys.tag, now, leaseMillis]
      for (const l of items) args.push(l.id, l.token)
      return evalIn("renew", scripts.renew, [keys.leased, keys.fastLease], args).pipe(
        Effect.map((codes) => codes.map((c) => leaseStatuses[Number(c)] ?? "stale"))
      )
    }, "stale" as LeaseStatus)

  const toBooleans = (codes: ReadonlyArray<number>) => codes.map((c) => Number(c) === 1)

  const complete = (batch: ReadonlyArray<Completion>) =>
    leaseOp("complete", batch, (queue, items, now) => {
      const keys = keysOf(queue)
      // A SUCCESS goes in a group of consecutive ones that share token,
      // submit time, task and kind (see complete.lua): a lean one (its
      // result not stored) or a forgotten one (no record kept) costs one
      // value, its id; one whose result is stored three, id, result and
      // attempt. The others go one by one, 6 values each.
      const full: Array<Arg> = []
      const groups: Array<Arg> = []
      const order: Array<number> = [] // the full items' indices, then the grouped ones'
      const grouped: Array<number> = []
      let fullCount = 0
      let countAt = -1
      let count = 0
      let token = -1
      let submittedAt = ""
      let task = ""
      let kind: "lean" | "stored" | "forgot" = "lean"
      items.forEach((c, i) => {
        const forgot = c.keepRecord === false
        const lean = c.storeResult === false
        if (c.state === "SUCCESS" && (forgot || lean || c.error === undefined)) {
          // a fast-lane task's done record takes its submit time and task from the message
          // (a forgotten one writes no record: its group needs neither)
          const m = forgot ? undefined : c.message
          const at = m === undefined ? "" : `${m.submittedAt}`
          const name = m === undefined ? "" : m.task
          const k = forgot ? "forgot" : lean ? "lean" : "stored"
          // a group holds one kind: lean, stored or forgotten
          if (countAt < 0 || c.token !== token || at !== submittedAt || name !== task || kind !== k) {
            token = c.token
            submittedAt = at
            task = name
            kind = k
            groups.push(token, at, name, "")
            countAt = groups.length - 1
            count = 0
          }
          groups[countAt] = kind === "stored" ? `=${++count}` : kind === "forgot" ? `-${++count}` : ++count
          if (kind === "stored") groups.push(c.id, c.result === undefined ? "" : json(c.result), json(c.attempt))
          else groups.push(c.id)
          grouped.push(i)
        } else {
          const result = c.storeResult === false || c.result === undefined ? "" : json(c.result)
          full.push(c.id, c.token, c.state, result, c.error === undefined ? "" : json(c.error), json(c.attempt))
          order.push(i)
          fullCount++
        }
      })
      const args: Array<Arg> = [keys.tag, now, ttl, doneChannel, fullCount]
      for (const a of full) args.push(a)
      for (const a of groups) args.push(a)
      for (const i of grouped) order.push(i)
      return evalIn("complete", scripts.complete, [keys.leased, keys.done, keys.doneAt, keys.fast, keys.fastLease], args).pipe(
        // the reply: the positions (1-based, in `order`) of the stale ones
        Effect.map((stale) => {
          const out = new Array<boolean>(items.length).fill(false)
          for (const i of order) out[i] = true
          for (const k of stale) out[order[Number(k) - 1]!] = false
          return out
        })
      )
    }, false)

  const retry = (batch: ReadonlyArray<Reschedule>) =>
    batch.some((r) => !Number.isFinite(r.dueAt))
      ? invalid("retry", `dueAt must be a finite number (task ${batch.find((r) => !Number.isFinite(r.dueAt))?.id})`)
      : leaseOp("retry", batch, (queue, items, now) => {
      const keys = keysOf(queue)
      const args: Array<Arg> = [keys.tag, now, wakeChannel, queue]
      for (const r of items) args.push(r.id, r.token, r.dueAt, json(r.error), json(r.attempt))
      return evalIn("retry", scripts.retry, [keys.ready, keys.delayed, keys.leased], args).pipe(
        Effect.map(toBooleans)
      )
    }, false)

  const deadLetter = (batch: ReadonlyArray<DeadLetter>) =>
    leaseOp("deadLetter", batch, (queue, items, now) => {
      const keys = keysOf(queue)
      const args: Array<Arg> = [keys.tag, now, doneChannel]
      for (const d of items) args.push(d.id, d.token, json(d.error), json(d.attempt))
      return evalIn("deadLetter", scripts.deadLetter, [keys.dead, keys.leased], args).pipe(Effect.map(toBooleans))
    }, false)

  const release = (batch: ReadonlyArray<Lease>) =>
    leaseOp("release", batch, (queue, items, now) => {
      const keys = keysOf(queue)
      const args: Array<Arg> = [keys.tag, now, wakeChannel, queue]
      for (const l of items) args.push(l.id, l.token)
      return evalIn("release", scripts.release, [keys.ready, keys.leased], args).pipe(Effect.map(toBooleans))
    }, false)

  const revoke = Effect.fnUntraced(function*(id: string): Effect.fn.Return<RevokeResult, BrokerError> {
    const queue = yield* locate("revoke", id)
    if (Option.isNone(queue)) return "unknown" as const
    const keys = keysOf(queue.value)
    const now = yield* Clock.currentTimeMillis
    const scriptKeys = [keys.ready, keys.delayed, keys.leased, keys.done, keys.doneAt]
    const result = yield* evalIn("revoke", scripts.revoke, scriptKeys, [
      keys.tag,
      now,
      ttl,
      doneChannel,
      id,
      json({ _tag: "TaskRevoked", message: `task ${id} was revoked before it ran` })
    ])
    return revokeResults.has(result) ? result as RevokeResult : "unknown"
  }, (effect, id) => withSpanIfTraced("RedisBroker.revoke", { attributes: { id } })(effect))

  const redeliver = Effect.fnUntraced(function*(id: string): Effect.fn.Return<boolean, BrokerError> {
    const queue = yield* locate("redeliver", id)
    if (Option.isNone(queue)) return false
    const keys = keysOf(queue.value)
    const now = yield* Clock.currentTimeMillis
    const result = yield* evalIn("redeliver", scripts.redeliver, [keys.ready, keys.dead], [
      keys.tag,
      now,
      wakeChannel,
      queue.value,
      id
    ])
    return Number(result) === 1
  }, (effect, id) => withSpanIfTraced("RedisBroker.redeliver", { attributes: { id } })(effect))

  const stats = (queues: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<QueueStats>, BrokerError> =>
    Effect.forEach(queues, (queue) => {
      const keys = keysOf(queue)
      return evalIn("stats", scripts.stats, [keys.ready, keys.delayed, keys.leased, keys.dead, keys.fastLease, keys.fifo], []).pipe(
        Effect.map(([ready, delayed, running, dead]): QueueStats => ({
          queue,
          ready: Number(ready),
          delayed: Number(delayed),
          running: Number(running),
          dead: Number(dead)
        }))
      )
    }, { concurrency: "unbounded" })

  const registry = workerKeys(prefix)

  const heartbeat = Effect.fnUntraced(function*(batch: ReadonlyArray<WorkerInfo>): Effect.fn.Return<void, BrokerError> {
    if (batch.length === 0) return
    const now = yield* Clock.currentTimeMillis
    const args: Array<Arg> = [now]
    for (const w of batch) args.push(w.id, json(w), w.expiresAt)
    yield* evalIn("heartbeat", scripts.heartbeat, [registry.info, registry.expiry], args)
  })

  const workers: Effect.Effect<ReadonlyArray<WorkerInfo>, BrokerError> = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const values = yield* evalIn("workers", scripts.workers, [registry.info, registry.expiry], [now])
    const out: Array<WorkerInfo> = []
    for (const value of values) {
      const decoded = decodeWorkerInfo(String(value))
      if (Option.isSome(decoded)) out.push(decoded.value)
    }
    return out.sort((a, b) => a.startedAt - b.startedAt || a.id.localeCompare(b.id))
  })

  const listQueues: Effect.Effect<ReadonlyArray<string>, BrokerError> = send<Array<string>>(
    "queues",
    "SMEMBERS",
    queuesKey
  ).pipe(Effect.map((names) => names.map(String).sort()))

  const purge = (queues: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<number>, BrokerError> =>
    Effect.forEach(queues, (queue) =>
      Effect.gen(function*() {
        const keys = keysOf(queue)
        let total = 0
        while (true) {
          const now = yield* Clock.currentTimeMillis
          const removed = Number(
            yield* evalIn("purge", scripts.purge, [keys.ready, keys.delayed], [
              keys.tag,
              now,
              ttl,
              doneChannel,
              queue,
              purgeChunk
            ])
          )
          total += removed
          if (removed < purgeChunk) return total
        }
      }), { concurrency: "unbounded" }).pipe(withSpanIfTraced("RedisBroker.purge", { attributes: { queues } }))

  // ---------------------------------------------------------------------------
  // ResultBackend
  // ---------------------------------------------------------------------------

  const readRecord = (
    operation: string,
    queue: string,
    id: string,
    orLean = true
  ): Effect.Effect<Option.Option<TaskRecord>, BrokerError> =>
    send<Array<string | null>>(operation, "HMGET", taskKey(prefix, queue, id), ...recordFields).pipe(
      Effect.flatMap((values) => {
        const [task, state, retries, submittedAt, updatedAt, eta, result, error, meta, revoked, history] = values
        if (state === null || state === undefined) {
          return orLean ? readLean(operation, queue, id) : Effect.succeed(Option.none<TaskRecord>())
        }
        const raw: Record<string, unknown> = {
          id,
          task: task ?? "",
          queue,
          state,
          retries: num(retries) ?? 0,
          submittedAt: num(submittedAt) ?? 0,
          updatedAt: num(updatedAt) ?? 0,
          history: history === null || history === undefined ? [] : parseJson(history)
        }
        if (eta !== null && eta !== undefined && eta !== "") raw.eta = num(eta)
        if (result !== null && result !== undefined) raw.result = parseJson(result)
        if (error !== null && error !== undefined) raw.error = parseJson(error)
        if (meta !== null && meta !== undefined) raw.meta = parseJson(meta)
        if (revoked === "1") raw.revoked = true
        return decoded(operation, id, taskKey(prefix, queue, id), raw)
      })
    )

  /** A record read from Redis (`where`), decoded: a record that is not valid fails with a BrokerError. */
  const decoded = (operation: string, id: string, where: string, raw: Record<string, unknown>) =>
    decodeRecord(raw).pipe(
      Effect.map(Option.some),
      Effect.mapError((issue) =>
        new BrokerError({
          operation,
          message: `The record of task ${id} in Redis (${where}) is not a valid TaskRecord: ${String(issue)}`,
          cause: issue
        })
      )
    )

  /**
   * The record of a task without a hash: one that ended SUCCESS without
   * storing its result (a field of the queue's done hash, none once its time
   * is up), or one in the fast lane. Read when the task has no hash; if it
   * has one again (a stale attempt recorded in between turns a done record
   * into a hash, any step off the fast lane does too), that is read instead.
   */
  const readLean = (
    operation: string,
    queue: string,
    id: string,
    tries = 3
  ): Effect.Effect<Option.Option<TaskRecord>, BrokerError> => {
    const keys = keysOf(queue)
    return Effect.all([
      send<string | null>(operation, "HGET", keys.done, id),
      send<string | null>(operation, "ZSCORE", keys.doneAt, id),
      send<string | null>(operation, "HGET", keys.fast, id),
      send<string | null>(operation, "HGET", keys.fastLease, id),
      send<number>(operation, "EXISTS", taskKey(prefix, queue, id)),
      Clock.currentTimeMillis
    ], { concurrency: "unbounded" }).pipe(
      Effect.flatMap(([value, expiresAt, fast, lease, hash, now]) => {
        if (value !== null && value !== undefined) {
          const record = leanRecord(queue, id, value, num(expiresAt), now)
          return "raw" in record
            ? decoded(operation, id, `${keys.done} ${id}`, record.raw)
            : Effect.succeed(record)
        }
        if (fast !== null && fast !== undefined) {
          if (lease === null || lease === undefined) return Effect.succeed(fastRecord(queue, id, fast, undefined, undefined))
          // leased: its claim's time, read after the lease; a claim that is
          // gone by then has ended or turned the task into a hash, so read again
          const bar = lease.indexOf("|")
          return send<string | null>(operation, "HGET", keys.claim, bar < 0 ? lease : lease.slice(0, bar)).pipe(
            Effect.flatMap((claim) =>
              claim === null || claim === undefined
                ? (tries > 1 ? readLean(operation, queue, id, tries - 1) : Effect.succeed(Option.none<TaskRecord>()))
                : Effect.succeed(fastRecord(queue, id, fast, lease, num(claim.slice(0, claim.indexOf("|")))))
            )
          )
        }
        return Number(hash) > 0 ? readRecord(operation, queue, id, false) : Effect.succeed(Option.none<TaskRecord>())
      })
    )
  }

  const get = (id: string): Effect.Effect<Option.Option<TaskRecord>, BrokerError> =>
    locate("get", id).pipe(
      Effect.flatMap((queue) => Option.isNone(queue) ? Effect.succeed(Option.none()) : readRecord("get", queue.value, id))
    )

  const setState = Effect.fnUntraced(function*(id: string, state: string, meta: unknown): Effect.fn.Return<boolean, BrokerError> {
    const queue = yield* locate("setState", id)
    if (Option.isNone(queue)) return false
    const now = yield* Clock.currentTimeMillis
    const result = yield* evalIn("setState", scripts.setState, [taskKey(prefix, queue.value, id)], [
      now,
      state,
      meta === undefined ? "" : json(meta),
      keysOf(queue.value).tag,
      id
    ])
    return Number(result) === 1
  })

  const recordStale = Effect.fnUntraced(function*(id: string, attempt: Attempt): Effect.fn.Return<void, BrokerError> {
    const queue = yield* locate("recordStale", id)
    if (Option.isNone(queue)) return
    const keys = keysOf(queue.value)
    const now = yield* Clock.currentTimeMillis
    yield* evalIn("recordStale", scripts.recordStale, [taskKey(prefix, queue.value, id), keys.done, keys.doneAt], [
      json(attempt),
      id,
      now,
      keys.tag
    ])
  })

  const awaitFinal = Effect.fnUntraced(function*(id: string): Effect.fn.Return<Option.Option<TaskRecord>, BrokerError> {
    yield* ensureDone
    const queue = yield* locate("awaitFinal", id)
    if (Option.isNone(queue)) return Option.none()
    while (true) {
      const signal = done.acquire(id)
      const record = yield* readRecord("awaitFinal", queue.value, id).pipe(
        // nothing to wait for once it is final or gone (expired, purged, or
        // forgotten as it ended: keepRecord false)
        Effect.tap((record) =>
          Option.isNone(record) || finalStates.has(record.value.state) ? Effect.void : Signals.wait([signal], pollMillis)
        ),
        Effect.ensuring(Effect.sync(() => done.release(id, signal)))
      )
      if (Option.isNone(record) || finalStates.has(record.value.state)) return record
    }
  }, (effect, id) => withSpanIfTraced("RedisBroker.awaitFinal", { attributes: { id } })(effect))

  return Context.make(Broker, {
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
  }).pipe(
    Context.add(ResultBackend, { get, setState, recordStale, awaitFinal }),
    Context.add(Handle, { prefix, redis, pushRaw })
  )
})

/**
 * Connects to Redis (node-redis) and builds the broker on it. Commands issued
 * while the connection is down fail at once with a `BrokerError` (no offline
 * queue); the client reconnects in the background with backoff.
 *
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<
  Context.Context<Broker | ResultBackend | Handle>,
  BrokerError,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const url = Redacted.isRedacted(options.url) ? Redacted.value(options.url) : options.url
    const where = describeUrl(url)
    let lastSocketError: unknown = undefined
    const describe = (operation: string, cause: unknown): string => {
      if (isConnectionError(cause)) {
        const detail = lastSocketError === undefined ? errorMessage(cause) : errorMessage(lastSocketError)
        return `Redis at ${where} is unreachable (${operation}): ${detail}`
      }
      return `Redis at ${where} failed during ${operation}: ${errorMessage(cause)}`
    }
    const context = yield* Layer.build(NodeRedis.layer({
      disableOfflineQueue: true,
      // a connection of its own for each parked claim (see `commands/park.lua`)
      maxConnections: 256,
      ...options.client,
      url
    })).pipe(
      Effect.mapError((error) =>
        new BrokerError({
          operation: "connect",
          message: isConnectionError(error.cause)
            ? `Redis at ${where} is unreachable: ${errorMessage(error.cause)}`
            : `Could not connect to Redis at ${where}: ${errorMessage(error.cause)}`,
          cause: error.cause
        })
      )
    )
    const node = Context.get(context, NodeRedis.NodeRedis)
    node.client.on("error", (error: unknown) => {
      lastSocketError = error
    })
    node.client.on("ready", () => {
      lastSocketError = undefined
    })
    yield* checkEviction(Context.get(context, Redis.Redis), where)
    return yield* makeWith({
      redis: Context.get(context, Redis.Redis),
      prefix: options.prefix,
      resultTtl: options.resultTtl,
      pollInterval: options.pollInterval,
      describe,
      subscribe: subscribeNode(node.client)
    })
  })

/**
 * The Redis `Broker` and `ResultBackend` (and the `Handle` for tools).
 *
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Broker | ResultBackend | Handle, BrokerError> =>
  Layer.effectContext(make(options))

/**
 * `layer` configured from the environment: `ERRAND_REDIS_URL` (required),
 * `ERRAND_REDIS_PREFIX` (default `errand`), `ERRAND_RESULT_TTL` (a duration,
 * default 1 day).
 *
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<Broker | ResultBackend | Handle, BrokerError | Config.ConfigError> = Layer
  .unwrap(
    Effect.gen(function*() {
      const url = yield* Config.Redacted("ERRAND_REDIS_URL")
      const prefix = yield* Config.String("ERRAND_REDIS_PREFIX").pipe(Config.withDefault("errand"))
      const resultTtl = yield* Config.Duration("ERRAND_RESULT_TTL").pipe(Config.withDefault(Duration.days(1)))
      return layer({ url, prefix, resultTtl })
    })
  )
