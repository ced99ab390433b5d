import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import * as Batcher from "../src/internal/batcher.ts"

/** Lets every fiber that can run, run. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

/**
 * A batch call that records its batches and holds each one until released;
 * items equal to "bad" make the whole call fail.
 */
const recorder = () => {
  const batches: Array<ReadonlyArray<string>> = []
  let gate = Deferred.makeUnsafe<void>()
  const call = (batch: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      batches.push(batch)
      yield* Deferred.await(gate)
      if (batch.includes("bad")) return yield* Effect.fail(`failed: ${batch.join(",")}`)
      return batch.map((item) => `${item}!`)
    })
  const release = Effect.sync(() => {
    const open = gate
    gate = Deferred.makeUnsafe<void>()
    Deferred.doneUnsafe(open, Effect.void)
  })
  return { batches, call, release }
}

for (const direct of [false, true]) {
  describe(`Batcher (direct: ${direct})`, () => {
    it.effect("an idle request goes out alone; requests made while it is in flight go together next, in order", () =>
      Effect.gen(function*() {
        const { batches, call, release } = recorder()
        const batcher = yield* Batcher.make(call, { maxBatch: 10, direct })
        const first = yield* Effect.forkChild(batcher.run("a"))
        yield* settle
        const rest = yield* Effect.forkChild(Effect.forEach(["b", "c", "d"], batcher.run, { concurrency: "unbounded" }))
        yield* settle
        assert.deepStrictEqual(batches, [["a"]])
        yield* release
        yield* settle
        assert.deepStrictEqual(batches, [["a"], ["b", "c", "d"]])
        yield* release
        assert.strictEqual(yield* Fiber.join(first), "a!")
        assert.deepStrictEqual(yield* Fiber.join(rest), ["b!", "c!", "d!"])
      }))

    it.effect("a batch holds at most maxBatch items", () =>
      Effect.gen(function*() {
        const { batches, call, release } = recorder()
        const batcher = yield* Batcher.make(call, { maxBatch: 2, direct })
        const first = yield* Effect.forkChild(batcher.run("a"))
        yield* settle
        const rest = yield* Effect.forkChild(Effect.forEach(["b", "c", "d", "e", "f"], batcher.run, { concurrency: "unbounded" }))
        yield* settle
        for (let i = 0; i < 4; i++) {
          yield* release
          yield* settle
        }
        assert.deepStrictEqual(batches, [["a"], ["b", "c"], ["d", "e"], ["f"]])
        assert.strictEqual(yield* Fiber.join(first), "a!")
        assert.deepStrictEqual(yield* Fiber.join(rest), ["b!", "c!", "d!", "e!", "f!"])
      }))

    it.effect("a failed call fails every item of its batch, and the next batch goes out", () =>
      Effect.gen(function*() {
        const { call, release } = recorder()
        const batcher = yield* Batcher.make(call, { maxBatch: 10, direct })
        const first = yield* Effect.forkChild(batcher.run("a"))
        yield* settle
        const failing = yield* Effect.forkChild(Effect.forEach(["b", "bad"], (item) => Effect.exit(batcher.run(item)), {
          concurrency: "unbounded"
        }))
        yield* settle
        yield* release
        yield* settle
        yield* release
        assert.strictEqual(yield* Fiber.join(first), "a!")
        assert.deepStrictEqual(yield* Fiber.join(failing), [Exit.fail("failed: b,bad"), Exit.fail("failed: b,bad")])
        const after = yield* Effect.forkChild(batcher.run("c"))
        yield* settle
        yield* release
        assert.strictEqual(yield* Fiber.join(after), "c!")
      }))
  })
}

describe("Batcher (direct: true)", () => {
  it.effect("an idle request runs in the caller's fiber, so interrupting the caller frees the batcher", () =>
    Effect.gen(function*() {
      const { batches, call, release } = recorder()
      const batcher = yield* Batcher.make(call, { maxBatch: 10, direct: true })
      const first = yield* Effect.forkChild(batcher.run("a"))
      yield* settle
      yield* Fiber.interrupt(first)
      const next = yield* Effect.forkChild(batcher.run("b"))
      yield* settle
      assert.deepStrictEqual(batches, [["a"], ["b"]])
      yield* release
      assert.strictEqual(yield* Fiber.join(next), "b!")
    }))
})
