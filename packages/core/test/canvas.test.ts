import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Schema, Scope } from "effect"
import { Broker, Canvas, Client, ResultBackend, Retry, Task, TaskContext } from "@errand/core"
import { advance, base, settle, startWorker } from "./utils.ts"

class Odd extends Schema.TaggedError<Odd>()("Odd", { n: Schema.Int }) {}

const Add = Task.make("canvas.add", { payload: Schema.Struct({ a: Schema.Int, b: Schema.Int }), success: Schema.Int })
const Double = Task.make("canvas.double", { payload: Schema.Int, success: Schema.Int })
const Show = Task.make("canvas.show", { payload: Schema.Int, success: Schema.String })
const Sum = Task.make("canvas.sum", { payload: Schema.Array(Schema.Int), success: Schema.Int })
const Pair = Task.make("canvas.pair", {
  payload: Schema.Tuple([Schema.Int, Schema.String]),
  success: Schema.String
})
/** Fails with Odd on odd numbers, after its retries. */
const Even = Task.make("canvas.even", {
  payload: Schema.Int,
  success: Schema.Int,
  failure: Odd,
  retry: Retry.fixed({ delay: "1 second", maxRetries: 2 })
})
/** Fails at once, no retry. */
const Fail = Task.make("canvas.fail", { payload: Schema.Int, success: Schema.Int, failure: Odd })
const Sleep = Task.make("canvas.sleep", { payload: Schema.Int, success: Schema.Int })

const runs = new Map<string, number>()
const count = (name: string) => Effect.sync(() => runs.set(name, (runs.get(name) ?? 0) + 1))

const impls = [
  Task.implement(Add, ({ a, b }) => Effect.as(count("add"), a + b)),
  Task.implement(Double, (n) => count("double").pipe(Effect.andThen(Effect.sleep("1 second")), Effect.as(n * 2))),
  Task.implement(Show, (n) => Effect.as(count("show"), `n=${n}`)),
  Task.implement(Sum, (ns) => Effect.as(count("sum"), ns.reduce((a, b) => a + b, 0))),
  Task.implement(Pair, ([n, s]) => Effect.succeed(`${s}:${n}`)),
  Task.implement(Even, (n) => n % 2 === 0 ? Effect.succeed(n) : Effect.fail(new Odd({ n }))),
  Task.implement(Fail, (n) => Effect.fail(new Odd({ n }))),
  Task.implement(Sleep, (n) => count("sleep").pipe(Effect.andThen(Effect.sleep(`${n} seconds`)), Effect.as(n)))
] as const

const setup = Effect.gen(function*() {
  runs.clear()
  yield* startWorker({ tasks: impls, concurrency: 8 })
  yield* Canvas.make({ id: "coordinator-1" })
  return yield* Client.Client
})

describe("Canvas", () => {
  it.effect("chain: each result is the next payload; the canvas's record lists its members", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const job = yield* client.submitCanvas(
        Canvas.chain(Canvas.task(Add, { a: 1, b: 2 }), Double, Double, Show),
        { id: "c1" }
      )
      yield* settle
      const running = yield* client.status("c1")
      assert.strictEqual(running.state, "STARTED")
      const members = Canvas.membersOf(running)
      assert.deepStrictEqual(members.map((m) => [m.path, m.id, m.task]), [
        ["0", "c1/0", "canvas.add"],
        ["1", "c1/1", "canvas.double"],
        ["2", "c1/2", "canvas.double"],
        ["3", "c1/3", "canvas.show"]
      ])
      assert.deepStrictEqual(members.map((m) => m.state), ["SUCCESS", "SUBMITTED", "WAITING", "WAITING"])
      yield* advance(5)
      assert.strictEqual(yield* client.awaitCanvas(job), "n=12")
      const done = yield* client.status("c1")
      assert.strictEqual(done.state, "SUCCESS")
      assert.strictEqual(done.result, "n=12")
      assert.deepStrictEqual(Canvas.membersOf(done).map((m) => m.state), ["SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS"])
      // members carry their canvas in their headers; each ran once
      assert.deepStrictEqual([...runs.entries()].sort(), [["add", 1], ["double", 2], ["show", 1]])
      const live = yield* client.canvasStatus(job)
      assert.deepStrictEqual(live.members.map((m) => Option.map(m.record, (r) => r.result)), [
        Option.some(3),
        Option.some(6),
        Option.some(12),
        Option.some("n=12")
      ])
    }).pipe(Effect.provide(base)))

  it.effect("an open canvas takes its input at submit", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const job = yield* client.submitCanvas(Canvas.chain(Double, Show), { input: 21 })
      yield* advance(3)
      assert.strictEqual(yield* client.awaitCanvas(job), "n=42")
      const invalid = yield* Effect.flip(client.submitCanvas(Canvas.chain(Double, Show), { input: 1.5 }))
      assert.strictEqual(invalid._tag, "PayloadInvalid")
    }).pipe(Effect.provide(base)))

  it.effect("group: members run in parallel and yield a tuple; chord: the body runs once with all results", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const group = yield* client.submitCanvas(Canvas.group([Canvas.task(Sleep, 3), Canvas.task(Show, 7)]))
      const chord = yield* client.submitCanvas(
        Canvas.chord([1, 2, 3, 4].map((n) => Canvas.task(Sleep, n)), Sum),
        { id: "chord" }
      )
      yield* advance(3)
      // the body waits for the last member
      assert.strictEqual((yield* Effect.flip(client.status("chord/1")))._tag, "TaskNotFound")
      yield* advance(3)
      assert.deepStrictEqual(yield* client.awaitCanvas(group), [3, "n=7"])
      assert.strictEqual(yield* client.awaitCanvas(chord), 10)
      // all four ran side by side: the body came 4 s in, not 10
      const body = yield* client.status("chord/1")
      assert.strictEqual(body.history.length, 1)
      assert.isAtMost(body.history[0]!.startedAt, 5000)
      assert.strictEqual(runs.get("sum"), 1)
    }).pipe(Effect.provide(base)))

  it.effect("canvases nest: a chain into a group of chains into a chord", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const canvas = Canvas.chain(
        Canvas.task(Add, { a: 2, b: 3 }),
        Canvas.group([Canvas.chain(Double, Double), Show, Canvas.chord([Double, Double], Sum)]),
        Canvas.chord([Canvas.task(Double, 1), Canvas.task(Show, 2)], Pair)
      )
      const job = yield* client.submitCanvas(canvas, { id: "nested" })
      yield* advance(10)
      assert.strictEqual(yield* client.awaitCanvas(job), "n=2:2")
      const members = yield* client.canvasStatus("nested")
      assert.deepStrictEqual(
        members.members.map((m) => [m.path, m.task, Option.getOrUndefined(Option.map(m.record, (r) => r.result))]),
        [
          ["0", "canvas.add", 5],
          ["1.0.0", "canvas.double", 10],
          ["1.0.1", "canvas.double", 20],
          ["1.1", "canvas.show", "n=5"],
          ["1.2.0.0", "canvas.double", 10],
          ["1.2.0.1", "canvas.double", 10],
          ["1.2.1", "canvas.sum", 20],
          ["2.0.0", "canvas.double", 2],
          ["2.0.1", "canvas.show", "n=2"],
          ["2.1", "canvas.pair", "n=2:2"]
        ]
      )
    }).pipe(Effect.provide(base)))

  it.effect("a member failing after its retries fails the canvas, naming it; waiting members are revoked", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const job = yield* client.submitCanvas(
        Canvas.chord([Canvas.task(Even, 2), Canvas.task(Even, 3), Canvas.task(Sleep, 60)], Sum),
        { id: "failing" }
      )
      // the Sleep member is held back: one worker slot, busy elsewhere
      yield* advance(10)
      const error = yield* Effect.flip(client.awaitCanvas(job))
      assert.strictEqual(error._tag, "CanvasFailed")
      if (error._tag !== "CanvasFailed") return
      assert.strictEqual(error.member, "failing/0.1")
      assert.strictEqual(error.path, "0.1")
      assert.strictEqual(error.task, "canvas.even")
      assert.strictEqual(error.error._tag, "MaxRetriesExceeded")
      assert.strictEqual(error.cause._tag, "MaxRetriesExceeded")
      assert.include(error.message, "canvas.even")
      const status = yield* client.canvasStatus("failing")
      assert.strictEqual(status.state, "FAILURE")
      assert.deepStrictEqual(status.members.map((m) => m.state), ["SUCCESS", "FAILURE", "STARTED", "WAITING"])
      // the body is never submitted
      assert.isTrue(Option.isNone(status.members[3]!.record))
      yield* advance(60)
      assert.strictEqual(runs.get("sum"), undefined)
    }).pipe(Effect.provide(base)))

  it.effect("members that have not started when the canvas fails are revoked", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      runs.clear()
      // two slots: the failing member and the first sleeper start, the others wait
      yield* startWorker({ tasks: impls, concurrency: 2, prefetch: 1 })
      yield* Canvas.make()
      const job = yield* client.submitCanvas(
        Canvas.group([Canvas.task(Fail, 1), Canvas.task(Sleep, 5), Canvas.task(Sleep, 6), Canvas.task(Sleep, 7)])
      )
      yield* advance(30)
      const error = yield* Effect.flip(client.awaitCanvas(job))
      assert.strictEqual(error._tag, "CanvasFailed")
      const status = yield* client.canvasStatus(job)
      // the first sleeper had started (it finishes); the prefetched one may take the failed
      // member's slot before the coordinator hears of the failure (then it finishes too);
      // the last never starts, and every member that did not run is revoked
      const states = status.members.map((m) => m.state)
      assert.deepStrictEqual(states.slice(0, 2), ["FAILURE", "SUCCESS"])
      assert.include(["SUCCESS", "REVOKED"], states[2])
      assert.strictEqual(states[3], "REVOKED")
      assert.strictEqual(runs.get("sleep"), states.filter((s) => s === "SUCCESS").length)
      if (error._tag === "CanvasFailed") assert.instanceOf(error.cause, Odd)
    }).pipe(Effect.provide(base)))

  it.effect("a coordinator killed mid-chord: another resumes it, no member runs twice, the body runs once", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      runs.clear()
      yield* startWorker({ tasks: impls, concurrency: 8 })
      const first = yield* Canvas.make({ id: "coord-a", lease: "3 seconds" })
      const job = yield* client.submitCanvas(
        Canvas.chain(Canvas.task(Sleep, 2), Canvas.chord([Canvas.task(Sleep, 3), Canvas.task(Sleep, 4)], Sum)),
        { id: "resumed" }
      )
      yield* advance(4)
      yield* first.kill
      yield* Canvas.make({ id: "coord-b", lease: "3 seconds" })
      yield* advance(20)
      assert.strictEqual(yield* client.awaitCanvas(job), 7)
      const root = yield* client.status("resumed")
      assert.deepStrictEqual(root.history.map((h) => [h.worker, h.outcome]), [["coord-a", "LOST"], ["coord-b", "SUCCESS"]])
      assert.strictEqual(runs.get("sleep"), 3)
      assert.strictEqual(runs.get("sum"), 1)
      for (const path of ["0", "1.0.0", "1.0.1", "1.1"]) {
        assert.deepStrictEqual((yield* client.status(`resumed/${path}`)).history.map((h) => h.outcome), ["SUCCESS"])
      }
    }).pipe(Effect.provide(base)))

  it.effect("a coordinator shut down warmly gives its canvases back at once; another finishes them", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      runs.clear()
      yield* startWorker({ tasks: impls, concurrency: 8 })
      const scope = yield* Scope.make()
      yield* Canvas.make({ id: "coord-a" }).pipe(Scope.provide(scope))
      const job = yield* client.submitCanvas(Canvas.chain(Canvas.task(Sleep, 3), Canvas.task(Sleep, 3)), { id: "handed-over" })
      yield* advance(1)
      // no waiting for the canvas to end: coordinators hold nothing but a lease
      yield* Scope.close(scope, Exit.void)
      yield* Canvas.make({ id: "coord-b" })
      yield* advance(8)
      assert.strictEqual(yield* client.awaitCanvas(job), 3)
      const root = yield* client.status("handed-over")
      assert.deepStrictEqual(root.history.map((h) => [h.worker, h.outcome, h.error?._tag]), [
        ["coord-a", "RETRY", "WorkerShutdown"],
        ["coord-b", "SUCCESS", undefined]
      ])
      assert.strictEqual(runs.get("sleep"), 2)
    }).pipe(Effect.provide(base)))

  it.effect("a member whose record is gone (expired, purged) fails the canvas instead of running again", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      runs.clear()
      yield* startWorker({ tasks: impls, concurrency: 8 })
      const backend = yield* ResultBackend.ResultBackend
      const first = yield* Canvas.make({ id: "coord-a", lease: "3 seconds" })
      const job = yield* client.submitCanvas(Canvas.chain(Canvas.task(Sleep, 2), Show), { id: "expired" })
      yield* advance(1)
      yield* first.kill
      yield* advance(2)
      // the next coordinator no longer finds the first step's record
      const hidden = ResultBackend.ResultBackend.of({
        ...backend,
        get: (id) => id === "expired/0" ? Effect.succeedNone : backend.get(id),
        awaitFinal: (id) => id === "expired/0" ? Effect.succeedNone : backend.awaitFinal(id)
      })
      yield* Canvas.make({ id: "coord-b" }).pipe(Effect.provideService(ResultBackend.ResultBackend, hidden))
      yield* advance(10)
      const error = yield* Effect.flip(client.awaitCanvas(job))
      assert.strictEqual(error._tag, "CanvasFailed")
      if (error._tag === "CanvasFailed") {
        assert.strictEqual(error.member, "expired/0")
        assert.strictEqual(error.cause._tag, "TaskNotFound")
      }
      assert.strictEqual(runs.get("sleep"), 1)
    }).pipe(Effect.provide(base)))

  it.effect("a member revoked from outside fails the canvas", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const broker = yield* Broker.Broker
      const job = yield* client.submitCanvas(Canvas.chain(Canvas.task(Sleep, 5), Show), { id: "gone" })
      yield* advance(1)
      assert.strictEqual(yield* broker.revoke("gone/0"), "running")
      yield* advance(5)
      const error = yield* Effect.flip(client.awaitCanvas(job))
      assert.strictEqual(error._tag, "CanvasFailed")
      if (error._tag === "CanvasFailed") {
        assert.strictEqual(error.state, "REVOKED")
        assert.strictEqual(error.cause._tag, "TaskRevoked")
      }
    }).pipe(Effect.provide(base)))

  it.effect("revoking a running canvas stops its coordinator and revokes its members that have not started", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      runs.clear()
      yield* startWorker({ tasks: impls, concurrency: 1, prefetch: 1 })
      yield* Canvas.make()
      const job = yield* client.submitCanvas(
        Canvas.chord([5, 5, 5, 5].map((n) => Canvas.task(Sleep, n)), Sum),
        { id: "revoked" }
      )
      yield* advance(1)
      assert.strictEqual(yield* client.revokeCanvas("revoked"), "running")
      yield* advance(10)
      const error = yield* Effect.flip(client.awaitCanvas(job))
      assert.strictEqual(error._tag, "TaskRevoked")
      const status = yield* client.canvasStatus(job)
      assert.strictEqual(status.state, "REVOKED")
      // the first member was running: it finished; the others never ran, the body was never submitted
      assert.deepStrictEqual(status.members.map((m) => m.state), ["SUCCESS", "REVOKED", "REVOKED", "REVOKED", "WAITING"])
      assert.strictEqual(runs.get("sleep"), 1)
    }).pipe(Effect.provide(base)))

  it.effect("revoking a canvas whose coordinator was lost revokes what it had submitted", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      runs.clear()
      yield* startWorker({ tasks: impls, concurrency: 1, prefetch: 1 })
      const coordinator = yield* Canvas.make({ lease: "3 seconds" })
      const job = yield* client.submitCanvas(Canvas.group([5, 5, 5].map((n) => Canvas.task(Sleep, n))), { id: "orphan" })
      yield* advance(1)
      yield* coordinator.kill
      yield* advance(1)
      // its lease has not run out yet: the broker still sees it running
      assert.strictEqual(yield* client.revokeCanvas("orphan"), "running")
      yield* Canvas.make()
      yield* advance(20)
      assert.strictEqual((yield* Effect.flip(client.awaitCanvas(job)))._tag, "TaskRevoked")
      const status = yield* client.canvasStatus(job)
      assert.deepStrictEqual(status.members.map((m) => m.state), ["SUCCESS", "REVOKED", "REVOKED"])
      assert.strictEqual(runs.get("sleep"), 1)
    }).pipe(Effect.provide(base)))

  it.effect("a bound payload that does not match its Schema fails the submit and enqueues nothing", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const error = yield* Effect.flip(
        client.submitCanvas(Canvas.chain(Canvas.task(Add, { a: 1, b: 0.5 }), Show), { id: "invalid" })
      )
      assert.strictEqual(error._tag, "PayloadInvalid")
      assert.include(error.message, "canvas.add")
      assert.strictEqual((yield* Effect.flip(client.status("invalid")))._tag, "TaskNotFound")
    }).pipe(Effect.provide(base)))

  it.effect("members see their canvas in their headers", () =>
    Effect.gen(function*() {
      const Who = Task.make("canvas.who", { payload: Schema.Void, success: Schema.String })
      const WhoLive = Task.implement(Who, () =>
        Effect.gen(function*() {
          const ctx = yield* TaskContext
          return `${ctx.headers[Canvas.canvasHeader]} ${ctx.headers[Canvas.pathHeader]}`
        }))
      const client = yield* Client.Client
      yield* startWorker({ tasks: [WhoLive] })
      yield* Canvas.make()
      const job = yield* client.submitCanvas(Canvas.group([Canvas.task(Who, undefined)]), { id: "hdr" })
      yield* advance(2)
      assert.deepStrictEqual(yield* client.awaitCanvas(job), ["hdr 0"])
    }).pipe(Effect.provide(base)))
})
