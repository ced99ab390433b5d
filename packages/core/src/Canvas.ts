/**
 * Canvases: typed, durable workflows built from tasks, as Celery's canvas.
 *
 * - `chain(a, b, c)`: each step's result is the next step's payload (checked
 *   at compile time); the chain yields its last step's result.
 * - `group([a, b])`: members run in parallel, each on the group's input; the
 *   group yields the tuple of their results.
 * - `chord([a, b], c)`: a group, then `c` once, on all their results, after
 *   every member succeeded.
 *
 * Canvases nest. A step is a task (it takes its input as payload) or
 * `Canvas.task(T, payload)` (bound: it runs on that payload and ignores its
 * input, Celery's immutable signature). Submit with `Client.submitCanvas`,
 * wait for the typed result with `Client.awaitCanvas`, read it with
 * `Client.status(id)` (members in `meta.canvas.members`) or
 * `Client.canvasStatus`, stop it with `Client.revokeCanvas`.
 *
 * Durability: a canvas is a coordinator task (`errand.canvas`, run by
 * `Canvas.layer` in any number of worker processes) whose payload is the
 * canvas. The coordinator takes every decision from the members' records,
 * whose ids are deterministic (`<canvasId>/<path>`), and submits a member by
 * enqueueing that id, which is idempotent. A coordinator that dies is run
 * again elsewhere (its lease runs out, its retry policy brings it back), finds
 * where the canvas stands and goes on, never submitting a member twice. A
 * chord's body is submitted once, after every header member ended SUCCESS.
 * A member that ends FAILURE or REVOKED (after its own retries) fails the
 * canvas with `CanvasFailed` naming it; members that have not started are
 * revoked, later steps never submitted.
 *
 * Results travel between steps in their JSON form (as stored): the previous
 * step's success Schema and the next step's payload Schema must agree on it,
 * which they do when they are the same Schema or plain JSON types. A
 * mismatch shows as the next member failing with `PayloadInvalid`.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { Canvas, Client, Worker } from "@errand/core"
 * import { Fetch, Parse, Report, Store, Summarise } from "./tasks.ts"
 *
 * const pipeline = Canvas.chain(
 *   Canvas.task(Fetch, { url: "https://example.com" }), // -> string
 *   Parse,                                              // string -> Doc
 *   Canvas.chord([Store, Summarise], Report)            // Doc -> [Stored, Summary] -> Report
 * )
 *
 * Effect.gen(function*() {
 *   const client = yield* Client.Client
 *   const job = yield* client.submitCanvas(pipeline)
 *   const report = yield* client.awaitCanvas(job) // typed; fails with CanvasFailed naming the member
 * })
 *
 * // in worker processes: the tasks, and the coordinators
 * const WorkerLive = Layer.mergeAll(Worker.layer({ tasks: [FetchLive, ParseLive, ...] }), Canvas.layer())
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Option, Pipeable, Queue, Schedule, Schema, type Scope } from "effect"
import * as Broker from "./Broker.ts"
import { type AwaitError, type BrokerError, ErrorInfo, info, PayloadInvalid, TaskDefect, TaskNotFound } from "./Errors.ts"
import * as Internal from "./internal/canvas.ts"
import * as Headers from "./internal/headers.ts"
import { finalStates, type Message, type TaskRecord } from "./Message.ts"
import { ResultBackend } from "./ResultBackend.ts"
import * as Retry from "./Retry.ts"
import * as Task from "./Task.ts"
import { TaskContext } from "./TaskContext.ts"
import * as Worker from "./Worker.ts"

const TypeId = "~@errand/core/Canvas" as const

/**
 * A canvas that takes `In`, yields `Out`, and whose members may fail with `E`.
 *
 * @since 0.1.0
 */
export interface Canvas<in In, out Out, out E = never> extends Pipeable.Pipeable {
  readonly [TypeId]: {
    readonly _In: (_: In) => void
    readonly _Out: () => Out
    readonly _E: () => E
  }
  readonly node: Node
}

/**
 * Any canvas.
 *
 * @since 0.1.0
 */
export interface Any extends Canvas<any, any, any> {}

/**
 * The runtime tree of a canvas.
 *
 * @since 0.1.0
 */
export type Node =
  | { readonly _tag: "Task"; readonly task: Task.Any; readonly bound: boolean; readonly payload?: unknown }
  | { readonly _tag: "Chain"; readonly steps: ReadonlyArray<Node> }
  | { readonly _tag: "Group"; readonly members: ReadonlyArray<Node> }
  | { readonly _tag: "Chord"; readonly header: Node; readonly body: Node }

/**
 * A step of a chain, a member of a group: a canvas, or a task (which takes
 * its input as payload).
 *
 * @since 0.1.0
 */
export type Step = Any | Task.Any

/**
 * What a step takes.
 *
 * @since 0.1.0
 */
export type Input<S> = S extends Task.Any ? Task.Payload<S> : S extends Canvas<infer I, any, any> ? I : never

/**
 * What a step yields.
 *
 * @since 0.1.0
 */
export type Success<S> = S extends Task.Any ? Task.Success<S> : S extends Canvas<any, infer O, any> ? O : never

/**
 * The typed failures of a step's tasks.
 *
 * @since 0.1.0
 */
export type Failure<S> = S extends Task.Any ? Task.Failure<S> : S extends Canvas<any, any, infer E> ? E : never

/**
 * Where a step does not accept what comes before it: the compile error of a
 * mismatched chain or chord names both types.
 *
 * @since 0.1.0
 */
export interface StepMismatch<Previous, S> {
  readonly "~error": "this step's payload does not accept the result of the step before it"
  readonly previousResult: Previous
  readonly payload: Input<S>
}

type Check<Previous, S> = [Previous] extends [Input<S>] ? S : StepMismatch<Previous, S>

// a tuple is checked step by step; the rest of an array of unknown length is not checked
type CheckChain<Steps, Previous, Acc extends ReadonlyArray<unknown>> = Steps extends readonly [infer H, ...infer R]
  ? CheckChain<R, Success<H>, [...Acc, Check<Previous, H>]>
  : Steps extends readonly [] ? Acc
  : [...Acc, ...(Steps & ReadonlyArray<unknown>)]

type Last<Steps> = Steps extends readonly [...Array<any>, infer L] ? L : never

type GroupInput<M extends ReadonlyArray<Step>> = (M[number] extends infer S ? S extends Step ? (x: Input<S>) => void : never
  : never) extends (x: infer I) => void ? I
  : never

type GroupSuccess<M extends ReadonlyArray<Step>> = { -readonly [K in keyof M]: Success<M[K]> }

const Proto = {
  [TypeId]: { _In: () => {}, _Out: () => undefined, _E: () => undefined },
  pipe() {
    return Pipeable.pipeArguments(this, arguments)
  }
}

const makeCanvas = <In, Out, E>(node: Node): Canvas<In, Out, E> => {
  const self = Object.create(Proto)
  self.node = node
  return self
}

/**
 * Whether a value is a canvas.
 *
 * @since 0.1.0
 */
export const isCanvas = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u && "node" in u

const nodeOf = (step: Step): Node => (isCanvas(step) ? step.node : { _tag: "Task", task: step, bound: false })

/**
 * One task as a canvas. With a payload it is bound: it runs on that payload
 * and ignores the result of the step before it (Celery's immutable
 * signature). Without one, it takes its input as payload.
 *
 * @since 0.1.0
 */
export const task: {
  <T extends Task.Any>(task: T): Canvas<Task.Payload<T>, Task.Success<T>, Task.Failure<T>>
  <T extends Task.Any>(task: T, payload: Task.PayloadInput<T>): Canvas<unknown, Task.Success<T>, Task.Failure<T>>
} = function(task: Task.Any): Any {
  return arguments.length >= 2
    ? makeCanvas({ _tag: "Task", task, bound: true, payload: arguments[1] })
    : makeCanvas({ _tag: "Task", task, bound: false })
}

/**
 * Steps run one after the other; each step's result is the next step's
 * payload (a compile error when it does not fit). The chain takes what its
 * first step takes and yields what its last yields.
 *
 * @since 0.1.0
 */
export const chain = <const Steps extends readonly [Step, ...Array<Step>]>(
  ...steps: Steps & CheckChain<Steps, Input<Steps[0]>, []>
): Canvas<Input<Steps[0]>, Success<Last<Steps>>, Failure<Steps[number]>> =>
  makeCanvas({ _tag: "Chain", steps: (steps as ReadonlyArray<Step>).map(nodeOf) })

/**
 * Members run in parallel, each on the group's input; the group yields their
 * results in order (a tuple for a literal list, an array otherwise).
 *
 * @since 0.1.0
 */
export const group = <const Members extends ReadonlyArray<Step>>(
  members: Members
): Canvas<GroupInput<Members>, GroupSuccess<Members>, Failure<Members[number]>> =>
  makeCanvas({ _tag: "Group", members: members.map(nodeOf) })

/**
 * A group (`header`), then `body` once, with the results of all its members,
 * after every member succeeded.
 *
 * @since 0.1.0
 */
export const chord: {
  <const Header extends ReadonlyArray<Step>, Body extends Step>(
    header: Header,
    body: Body & Check<GroupSuccess<Header>, Body>
  ): Canvas<GroupInput<Header>, Success<Body>, Failure<Header[number]> | Failure<Body>>
  <Header extends Canvas<any, ReadonlyArray<any>, any>, Body extends Step>(
    header: Header,
    body: Body & Check<Success<Header>, Body>
  ): Canvas<Input<Header>, Success<Body>, Failure<Header> | Failure<Body>>
} = (header: ReadonlyArray<Step> | Any, body: Step): Any =>
  makeCanvas({
    _tag: "Chord",
    header: isCanvas(header) ? header.node : { _tag: "Group", members: header.map(nodeOf) },
    body: nodeOf(body)
  })

/**
 * A member of a canvas ended FAILURE or REVOKED (after its retries), or its
 * record is gone: the canvas fails, the members that had not started are
 * revoked, later steps are never submitted. `member` is the task id of the
 * member, `path` its place in the canvas ("1.0": first member of the group
 * that is the second step), `error` how it ended.
 *
 * `Client.awaitCanvas` sets `cause` to the member's own typed error (its
 * task's failure, or one of errand's, such as `MaxRetriesExceeded`).
 *
 * @since 0.1.0
 */
export class CanvasFailed extends Schema.TaggedError<CanvasFailed>()("CanvasFailed", {
  canvasId: Schema.String,
  member: Schema.String,
  path: Schema.String,
  task: Schema.String,
  state: Schema.String,
  error: ErrorInfo,
  message: Schema.String
}) {}

/**
 * `CanvasFailed` with the member's typed error as `cause`.
 *
 * @since 0.1.0
 */
export interface Failed<E> extends CanvasFailed {
  readonly cause: E
}

/**
 * What `Client.awaitCanvas` may fail with, besides errand's own errors about
 * the canvas itself: a member failed, with its typed error.
 *
 * @since 0.1.0
 */
export type MemberError<C> = Failed<Failure<C> | AwaitError | TaskNotFound>

// ---------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------

/**
 * What the coordinator writes into the canvas record's `meta.canvas`: each
 * member (leaf task) with its id, place and last known state. `WAITING`: not
 * submitted yet (its inputs are not known); `SUBMITTED`: enqueued, not ended;
 * otherwise its final state.
 *
 * @since 0.1.0
 */
export const Member = Schema.Struct({
  path: Schema.String,
  id: Schema.String,
  task: Schema.String,
  state: Schema.String
})

/**
 * @since 0.1.0
 */
export type Member = typeof Member.Type

/**
 * The `meta` of a canvas record.
 *
 * @since 0.1.0
 */
export const Meta = Schema.Struct({
  canvas: Schema.Struct({
    kind: Schema.Literals(["Task", "Chain", "Group", "Chord"]),
    members: Schema.Array(Member)
  })
})

/**
 * @since 0.1.0
 */
export type Meta = typeof Meta.Type

const decodeMeta = Schema.decodeUnknownOption(Meta)

/**
 * The members listed in a canvas record's meta (empty before a coordinator
 * first ran it).
 *
 * @since 0.1.0
 */
export const membersOf = (record: TaskRecord): ReadonlyArray<Member> =>
  Option.match(decodeMeta(record.meta), { onNone: () => [], onSome: (m) => m.canvas.members })

/**
 * The task id of the member at `path` of canvas `canvasId`.
 *
 * @since 0.1.0
 */
export const memberId = (canvasId: string, path: string): string => Internal.leafId(canvasId, path)

/**
 * The leaves of a canvas (one per task invocation), with their paths.
 *
 * @since 0.1.0
 */
export const members = (canvas: Any): ReadonlyArray<{ readonly path: string; readonly task: Task.Any }> => {
  const out: Array<{ path: string; task: Task.Any }> = []
  const go = (node: Node, path: string) => {
    switch (node._tag) {
      case "Task":
        out.push({ path, task: node.task })
        return
      case "Chain":
        return node.steps.forEach((s, i) => go(s, Internal.child(path, i)))
      case "Group":
        return node.members.forEach((s, i) => go(s, Internal.child(path, i)))
      case "Chord":
        go(node.header, Internal.child(path, 0))
        return go(node.body, Internal.child(path, 1))
    }
  }
  go(canvas.node, "")
  return out
}

// ---------------------------------------------------------------------------
// Encoding (producer side)
// ---------------------------------------------------------------------------

const payloadInvalid = (task: Task.Any, what: string, e: { readonly message: string }) =>
  new PayloadInvalid({
    task: task.name,
    issue: e.message,
    message: `${what} of ${task.name} does not match its payload Schema: ${e.message}`
  })

/** The unbound tasks that receive the canvas's input. */
const inputConsumers = (node: Node): Array<Task.Any> => {
  switch (node._tag) {
    case "Task":
      return node.bound ? [] : [node.task]
    case "Chain":
      return node.steps.length === 0 ? [] : inputConsumers(node.steps[0]!)
    case "Group":
      return node.members.flatMap(inputConsumers)
    case "Chord":
      return inputConsumers(node.header)
  }
}

const toSpec = (node: Node): Effect.Effect<Internal.Spec, PayloadInvalid> => {
  switch (node._tag) {
    case "Task": {
      const base = { _tag: "Task", task: node.task.name, queue: node.task.queue, priority: node.task.priority } as const
      if (!node.bound) return Effect.succeed({ ...base, bound: false })
      return Schema.encodeUnknownEffect(node.task.codecs.payload)(node.payload).pipe(
        Effect.mapError((e) => payloadInvalid(node.task, "the bound payload", e)),
        Effect.map((payload) => ({ ...base, bound: true, payload }))
      )
    }
    case "Chain":
      return Effect.map(Effect.forEach(node.steps, toSpec), (steps) => ({ _tag: "Chain", steps }))
    case "Group":
      return Effect.map(Effect.forEach(node.members, toSpec), (members) => ({ _tag: "Group", members }))
    case "Chord":
      return Effect.map(
        Effect.all([toSpec(node.header), toSpec(node.body)]),
        ([header, body]) => ({ _tag: "Chord", header, body })
      )
  }
}

/**
 * The coordinator's payload for a canvas: its tree with bound payloads
 * encoded, and its input encoded by the tasks that take it.
 *
 * @since 0.1.0
 */
export const encode = (canvas: Any, input?: unknown): Effect.Effect<Internal.Root, PayloadInvalid> =>
  Effect.gen(function*() {
    const spec = yield* toSpec(canvas.node)
    const consumers = inputConsumers(canvas.node)
    if (consumers.length === 0) return { canvas: spec }
    const first = consumers[0]!
    const encoded = yield* Schema.encodeUnknownEffect(first.codecs.payload)(input).pipe(
      Effect.mapError((e) => payloadInvalid(first, "the canvas input", e))
    )
    // every task that takes the input reads the same JSON: it must fit all of them
    for (const other of consumers.slice(1)) {
      yield* Schema.decodeUnknownEffect(other.codecs.payload)(encoded).pipe(
        Effect.mapError((e) => payloadInvalid(other, "the canvas input", e))
      )
    }
    return encoded === undefined ? { canvas: spec } : { canvas: spec, input: encoded }
  })

const decodeNode = (node: Node, json: unknown): Effect.Effect<unknown, Schema.SchemaError> => {
  switch (node._tag) {
    case "Task":
      return Schema.decodeUnknownEffect(node.task.codecs.success)(json)
    case "Chain":
      return decodeNode(node.steps[node.steps.length - 1]!, json)
    case "Group": {
      const items = Array.isArray(json) ? json : []
      return Effect.forEach(node.members, (m, i) => decodeNode(m, items[i]))
    }
    case "Chord":
      return decodeNode(node.body, json)
  }
}

/**
 * Decodes a canvas's stored result (JSON) with the success Schemas of the
 * tasks that produced it.
 *
 * @since 0.1.0
 */
export const decodeResult = <C extends Any>(canvas: C, canvasId: string, json: unknown): Effect.Effect<Success<C>, TaskDefect> =>
  decodeNode(canvas.node, json).pipe(
    Effect.mapError((e) =>
      new TaskDefect({
        taskId: canvasId,
        message: `the result of canvas ${canvasId} does not match the success Schemas of its tasks: ${e.message}`
      })
    )
  ) as Effect.Effect<Success<C>, TaskDefect>

/**
 * The task at `path` in a canvas.
 *
 * @since 0.1.0
 */
export const taskAt = (canvas: Any, path: string): Task.Any | undefined =>
  members(canvas).find((m) => m.path === path)?.task

// ---------------------------------------------------------------------------
// The coordinator (worker side)
// ---------------------------------------------------------------------------

/**
 * The queue coordinators use unless told otherwise.
 *
 * @since 0.1.0
 */
export const defaultQueue = "errand.canvas"

/**
 * The task that runs a canvas. Its record is the canvas's record: `meta`
 * lists the members, `result` is the canvas's result (JSON), `error` a
 * `CanvasFailed`. Lost coordinators are retried (every 0.2 s, doubling up
 * to 5 s) many times; only `CanvasFailed` ends it.
 *
 * @since 0.1.0
 */
export const Coordinator = Task.make("errand.canvas", {
  payload: Internal.Root,
  success: Schema.Unknown,
  failure: CanvasFailed,
  retry: Retry.exponential({
    base: "200 millis",
    max: "5 seconds",
    maxRetries: 10_000,
    retryOn: (e) => e._tag !== "CanvasFailed"
  }),
  queue: defaultQueue
})

const outage = Schedule.exponential("50 millis").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(2))))
)

/** Retried through broker outages: the coordinator only moves on what landed. */
const persistent = <A>(op: string, effect: Effect.Effect<A, BrokerError>): Effect.Effect<A> =>
  effect.pipe(
    Effect.tapError((e) => Effect.logWarning(`canvas: broker ${op} failed, retrying: ${e.message}`)),
    Effect.retry(outage),
    Effect.orDie
  )

const notFound = (id: string): ErrorInfo =>
  info(new TaskNotFound({ taskId: id, message: `member ${id} was submitted but its record is gone (expired or purged)` }))

const stateOf = (id: string, record: Option.Option<TaskRecord>, submitted: boolean): Internal.LeafState => {
  if (Option.isNone(record)) {
    return submitted ? { _tag: "Failed", state: "FAILURE", error: notFound(id), at: 0 } : { _tag: "Absent" }
  }
  const r = record.value
  if (!finalStates.has(r.state)) return { _tag: "Waiting" }
  if (r.state === "SUCCESS") return { _tag: "Succeeded", result: r.result }
  return {
    _tag: "Failed",
    state: r.state,
    error: r.error ?? { _tag: "TaskDefect", message: `member ${id} ended ${r.state} without an error` },
    at: r.updatedAt
  }
}

const label = (s: Internal.LeafState | undefined): string => {
  switch (s?._tag) {
    case undefined:
    case "Absent":
      return "WAITING"
    case "Waiting":
      return "SUBMITTED"
    case "Succeeded":
      return "SUCCESS"
    case "Failed":
      return s.state
  }
}

const traceHeaders = new Set(["x-trace-id", "x-span-id"])

/**
 * Revokes the members among `ids` that have not started (waiting in their
 * queue, delayed for a retry, or claimed but not started); running ones are
 * left to finish. Returns the ids revoked.
 *
 * @since 0.1.0
 */
export const revokeMembers = (
  ids: ReadonlyArray<string>
): Effect.Effect<ReadonlySet<string>, BrokerError, Broker.Broker | ResultBackend> =>
  Effect.gen(function*() {
    const broker = yield* Broker.Broker
    const backend = yield* ResultBackend
    const revoked = new Set<string>()
    yield* Effect.forEach(ids, (id) =>
      Effect.gen(function*() {
        const record = yield* backend.get(id)
        if (Option.isNone(record) || !["PENDING", "RECEIVED", "RETRY"].includes(record.value.state)) return
        const result = yield* broker.revoke(id)
        // "running": it was claimed, not started; its worker revokes it when it starts
        if (result === "revoked" || result === "running") revoked.add(id)
      }), { concurrency: 16, discard: true })
    return revoked
  })

/** Runs one canvas until it ends; safe to run again at any point. */
const coordinate = Effect.fnUntraced(function*(root: Internal.Root) {
  const ctx = yield* TaskContext
  const broker = yield* Broker.Broker
  const backend = yield* ResultBackend
  const canvasId = ctx.id
  const leaves = Internal.leaves(root.canvas)
  const states = new Map<string, Internal.LeafState>()

  // Where the canvas stands: the members the last coordinator listed as
  // submitted, and the records of all members.
  const own = yield* persistent("get", backend.get(canvasId))
  const submitted = new Set(
    Option.match(own, {
      onNone: () => [],
      onSome: (r) => membersOf(r).filter((m) => m.state !== "WAITING").map((m) => m.path)
    })
  )
  const records = yield* Effect.forEach(
    leaves,
    (leaf) => persistent("get", backend.get(Internal.leafId(canvasId, leaf.path))),
    { concurrency: 16 }
  )
  leaves.forEach((leaf, i) =>
    states.set(leaf.path, stateOf(Internal.leafId(canvasId, leaf.path), records[i]!, submitted.has(leaf.path)))
  )

  // One waiter per submitted member; finished members arrive on `finals`.
  const finals = yield* Queue.unbounded<readonly [string, Option.Option<TaskRecord>]>()
  const watch = (path: string) =>
    Effect.forkChild(
      Effect.flatMap(
        persistent("awaitFinal", backend.awaitFinal(Internal.leafId(canvasId, path))),
        (record) => Queue.offer(finals, [path, record] as const)
      ),
      { startImmediately: true }
    )
  for (const [path, s] of states) if (s._tag === "Waiting") yield* watch(path)

  let written = ""
  const writeMeta = Effect.suspend(() => {
    const meta: Meta = {
      canvas: {
        kind: root.canvas._tag,
        members: leaves.map((leaf) => ({
          path: leaf.path,
          id: Internal.leafId(canvasId, leaf.path),
          task: leaf.spec.task,
          state: label(states.get(leaf.path))
        }))
      }
    }
    const json = JSON.stringify(meta)
    if (json === written) return Effect.void
    written = json
    return Effect.asVoid(persistent("setState", backend.setState(canvasId, "STARTED", meta)))
  })

  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(ctx.headers)) if (!traceHeaders.has(k)) headers[k] = v

  /** Revokes the submitted members that have not started; running ones finish on their own. */
  const revokeWaiting = (why: string) =>
    Effect.gen(function*() {
      const waiting = leaves.filter((leaf) => states.get(leaf.path)?._tag === "Waiting")
      const revoked = yield* persistent(
        "revoke",
        revokeMembers(waiting.map((leaf) => Internal.leafId(canvasId, leaf.path))).pipe(
          Effect.provideService(Broker.Broker, broker),
          Effect.provideService(ResultBackend, backend)
        )
      )
      for (const leaf of waiting) {
        if (!revoked.has(Internal.leafId(canvasId, leaf.path))) continue
        states.set(leaf.path, {
          _tag: "Failed",
          state: "REVOKED",
          error: { _tag: "TaskRevoked", message: `revoked: ${why}` },
          at: Number.MAX_SAFE_INTEGER
        })
      }
    })

  // Revoked while running (Client.revoke / revokeCanvas on the canvas): its
  // worker interrupts this coordinator; the members that wait go too.
  const onRevoke = Effect.gen(function*() {
    const record = yield* backend.get(canvasId)
    if (Option.isNone(record) || record.value.revoked !== true) return
    yield* revokeWaiting(`canvas ${canvasId} was revoked`)
    yield* writeMeta
  }).pipe(Effect.timeout("10 seconds"), Effect.ignore)

  const run = Effect.gen(function*() {
    while (true) {
      const { outcome, submit } = Internal.evaluate(root.canvas, root.input, (path) => states.get(path))
      if (outcome._tag === "Failed") {
        const self = yield* persistent("get", backend.get(canvasId))
        if (Option.isSome(self) && self.value.revoked === true) {
          // the canvas itself was revoked (which revoked this member): its
          // worker interrupts this coordinator at its next heartbeat
          yield* revokeWaiting(`canvas ${canvasId} was revoked`)
          yield* writeMeta
          return yield* Effect.never
        }
        yield* revokeWaiting(`canvas ${canvasId} failed`)
        yield* writeMeta
        const id = Internal.leafId(canvasId, outcome.path)
        return yield* new CanvasFailed({
          canvasId,
          member: id,
          path: outcome.path,
          task: outcome.task,
          state: outcome.state,
          error: outcome.error,
          message: `canvas ${canvasId} failed: member ${outcome.path} (${outcome.task}, task ${id}) ended ${outcome.state}` +
            ` with ${outcome.error._tag}: ${outcome.error.message}`
        })
      }
      if (outcome._tag === "Done") {
        yield* writeMeta
        return outcome.result
      }
      if (submit.length > 0) {
        const now = yield* Clock.currentTimeMillis
        const span = yield* Effect.option(Effect.currentSpan)
        const trace = Option.isSome(span) ? { "x-trace-id": span.value.traceId, "x-span-id": span.value.spanId } : {}
        yield* persistent(
          "enqueue",
          broker.enqueue(submit.map(({ leaf, payload }): Broker.Submission => {
            const message: Message = {
              id: Internal.leafId(canvasId, leaf.path),
              task: leaf.spec.task,
              queue: leaf.spec.queue,
              payload,
              headers: { ...headers, ...trace, "x-errand-canvas": canvasId, "x-errand-canvas-path": leaf.path },
              priority: leaf.spec.priority,
              retries: 0,
              submittedAt: now
            }
            return { message, dueAt: now }
          }))
        )
        for (const { leaf } of submit) {
          states.set(leaf.path, { _tag: "Waiting" })
          yield* watch(leaf.path)
        }
      }
      // the list of submitted members is the checkpoint a later coordinator reads
      yield* writeMeta
      const ended = yield* Queue.takeAll(finals)
      for (const [path, record] of ended) states.set(path, stateOf(Internal.leafId(canvasId, path), record, true))
    }
  })
  return yield* Effect.onInterrupt(run, () => onRevoke)
})

/**
 * The coordinator's implementation. `Canvas.layer` runs it on a worker of its
 * own; add it to a worker's tasks instead only if that worker's concurrency
 * leaves room (a coordinator holds a slot while its canvas runs).
 *
 * @since 0.1.0
 */
export const CoordinatorLive = Task.implement(Coordinator, coordinate)

/**
 * Options of `Canvas.layer` / `Canvas.make`.
 *
 * @since 0.1.0
 */
export interface Options {
  /** The queues of coordinators to run. Default `["errand.canvas"]`. */
  readonly queues?: ReadonlyArray<string> | undefined
  /** How many canvases this process coordinates at once. Default 256. */
  readonly concurrency?: number | undefined
  /** How many coordinators to claim ahead. Default 16. */
  readonly prefetch?: number | undefined
  /** The coordinator's lease; a dead process's canvases resume after it. Default 10 seconds. */
  readonly lease?: Duration.Input | undefined
  readonly idleWait?: Duration.Input | undefined
  /** The worker id of the coordinator. Default `canvas-<random>`. */
  readonly id?: string | undefined
}

/**
 * Starts a coordinator worker in the current scope: it runs the canvases
 * submitted to its queues. Coordinators only wait on the broker, so it
 * shuts down at once (its canvases resume elsewhere). Returns the worker (its
 * `kill` simulates a crash, for tests).
 *
 * @since 0.1.0
 */
export const make = (
  options: Options = {}
): Effect.Effect<Worker.Service, never, Scope.Scope | Broker.Broker | ResultBackend> =>
  Worker.make({
    tasks: [CoordinatorLive],
    queues: options.queues ?? [defaultQueue],
    concurrency: options.concurrency ?? 256,
    prefetch: options.prefetch ?? 16,
    lease: options.lease,
    idleWait: options.idleWait,
    shutdownGrace: 0,
    id: options.id ?? `canvas-${Math.random().toString(36).slice(2, 10)}`
  })

/**
 * Runs canvases in this process: add it next to `Worker.layer` in at least
 * one worker process (any number of processes may run it).
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<never, never, Broker.Broker | ResultBackend> =>
  Layer.effectDiscard(make(options))

/**
 * The header a member's message carries: the id of its canvas.
 *
 * @since 0.1.0
 */
export const canvasHeader: "x-errand-canvas" = Headers.canvasHeader

/**
 * The header a member's message carries: its path in its canvas.
 *
 * @since 0.1.0
 */
export const pathHeader = "x-errand-canvas-path"
