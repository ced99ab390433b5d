/**
 * `Task.keepRecord: false`: a task that succeeds leaves nothing behind (as
 * BullMQ's removeOnComplete and Celery's ignore_result). Failures keep their
 * record; canvas members keep theirs (and their results) whatever their task
 * says, since the canvas reads them; `Client.await` refuses such a task at
 * once. The brokers' side is in the contract suite.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule, Schema } from "effect"
import { Beat, Canvas, Client, Task } from "@errand/core"
import { advance, base, startWorker } from "./utils.ts"

class Odd extends Schema.TaggedError<Odd>()("Odd", { n: Schema.Int }) {}

/** Doubles even numbers; fails with Odd on odd ones. Keeps no record of a success. */
const Fire = Task.make("keep.fire", {
  payload: Schema.Int,
  success: Schema.Int,
  failure: Odd,
  keepRecord: false
})
/** Keeps its state, not its result. */
const Lean = Task.make("keep.lean", { payload: Schema.Int, success: Schema.Int, storeResult: false })
const Show = Task.make("keep.show", { payload: Schema.Int, success: Schema.String })

const impls = [
  Task.implement(Fire, (n) => n % 2 === 0 ? Effect.succeed(n * 2) : Effect.fail(new Odd({ n }))),
  Task.implement(Lean, (n) => Effect.succeed(n + 1)),
  Task.implement(Show, (n) => Effect.succeed(`n=${n}`))
] as const

describe("Task.keepRecord", () => {
  it("defaults to true; false implies storeResult false, and refuses storeResult true", () => {
    assert.isTrue(Show.keepRecord)
    assert.isFalse(Fire.keepRecord)
    assert.isFalse(Fire.storeResult)
    assert.throws(
      () => Task.make("keep.bad", { payload: Schema.Int, keepRecord: false, storeResult: true }),
      /keepRecord: false keeps no record/
    )
  })

  it.effect("a success is forgotten as it ends; a failure keeps its record; await is refused at once", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const [even, odd] = yield* client.submitMany(Fire, [2, 3])
      // known while it waits
      assert.strictEqual((yield* client.status(even!.id)).state, "PENDING")
      yield* startWorker({ tasks: impls })
      const error = yield* Effect.flip(client.await(even!))
      assert.strictEqual(error._tag, "TaskNotFound")
      assert.include(error.message, "keepRecord: false")
      yield* advance(2)
      const gone = yield* Effect.flip(client.status(even!.id))
      assert.strictEqual(gone._tag, "TaskNotFound")
      const failed = yield* client.status(odd!.id)
      assert.strictEqual(failed.state, "FAILURE")
      assert.strictEqual(failed.error?._tag, "Odd")
    }).pipe(Effect.provide(base)))

  it.effect("canvas members keep their record and result whatever their task says", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      yield* startWorker({ tasks: impls, concurrency: 4 })
      yield* Canvas.make({ id: "coordinator-keep" })
      const job = yield* client.submitCanvas(Canvas.chain(Canvas.task(Fire, 4), Lean, Show), { id: "k1" })
      yield* advance(5)
      assert.strictEqual(yield* client.awaitCanvas(job), "n=9")
      const first = yield* client.status("k1/0")
      assert.strictEqual(first.state, "SUCCESS")
      assert.strictEqual(first.result, 8)
      assert.strictEqual((yield* client.status("k1/1")).result, 9)
    }).pipe(Effect.provide(base)))

  it.effect("a Beat run keeps its record whatever its task says: its known id keeps the time from running twice", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      yield* startWorker({ tasks: impls })
      yield* Beat.make({
        entries: [Beat.entry({ id: "fire", task: Fire, payload: 6, schedule: Schedule.spaced("10 seconds") })],
        lease: "3 seconds"
      })
      yield* advance(15)
      const run = yield* client.status(Beat.runId("default", "fire", 10_000))
      assert.strictEqual(run.state, "SUCCESS")
      // a second submit of the same time (a stalled leader's) does not run it again
      yield* client.submit(Fire, 6, { id: Beat.runId("default", "fire", 10_000) })
      yield* advance(2)
      assert.strictEqual((yield* client.status(Beat.runId("default", "fire", 10_000))).updatedAt, run.updatedAt)
    }).pipe(Effect.provide(base)))
})
