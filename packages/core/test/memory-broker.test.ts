import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { TestClock } from "effect/testing"
import { Broker, MemoryBroker, ResultBackend } from "@errand/core"
import type { Attempt, Message } from "../src/Message.ts"
import * as BrokerContract from "@errand/core/testing/BrokerContract"

const message = (id: string, overrides: Partial<Message> = {}): Message =>
  BrokerContract.message("q", { id, task: "memory.task", ...overrides })

const attempt = (outcome: Attempt["outcome"]): Attempt => ({
  attempt: 0,
  worker: "w",
  startedAt: 0,
  endedAt: 0,
  outcome
})

const claimOptions: Broker.ClaimOptions = { queues: ["q"], worker: "w", max: 100, leaseMillis: 10_000, waitMillis: 0 }

/** A memory broker built with `options`, and helpers on it. */
const setup = (options?: MemoryBroker.Options) =>
  Effect.gen(function*() {
    const { backend, broker, store } = yield* (options === undefined ? MemoryBroker.make : MemoryBroker.makeWith(options))
    const submit = (id: string, overrides: Partial<Message> = {}) =>
      broker.enqueue([{ message: message(id, overrides), dueAt: 0 }])
    /** Enqueue, claim and end one task. */
    const run = (id: string, completion: Partial<Broker.Completion> = {}) =>
      Effect.gen(function*() {
        yield* submit(id)
        const [d] = yield* broker.claim(claimOptions)
        assert.strictEqual(d!.id, id)
        const [done] = yield* broker.complete([{
          id: d!.id,
          token: d!.token,
          state: "SUCCESS",
          result: { ok: id },
          attempt: attempt("SUCCESS"),
          ...completion
        }])
        assert.isTrue(done)
      })
    const get = (id: string) => Effect.map(backend.get(id), Option.getOrUndefined)
    return { backend, broker, store, submit, run, get }
  })

describe("MemoryBroker: final records expire after resultTtl", () => {
  it.effect("kept until resultTtl has passed on the Clock, then the id is unknown", () =>
    Effect.gen(function*() {
      const { backend, broker, get, run } = yield* setup({ resultTtl: "1 hour" })
      yield* run("a")
      yield* TestClock.adjust("59 minutes")
      assert.strictEqual((yield* get("a"))?.state, "SUCCESS")
      assert.strictEqual(yield* broker.revoke("a"), "final")
      yield* TestClock.adjust("1 minute")
      assert.isUndefined(yield* get("a"))
      assert.isTrue(Option.isNone(yield* backend.awaitFinal("a")))
      assert.strictEqual(yield* broker.revoke("a"), "unknown")
      assert.isFalse(yield* backend.setState("a", "X", null))
    }))

  it.effect("an expired id enqueued again is a new task", () =>
    Effect.gen(function*() {
      const { broker, get, run, submit } = yield* setup({ resultTtl: "1 hour" })
      yield* run("a")
      yield* TestClock.adjust("2 hours")
      yield* submit("a")
      const record = yield* get("a")
      assert.strictEqual(record?.state, "PENDING")
      assert.deepStrictEqual(record?.history, [])
      assert.strictEqual((yield* broker.claim(claimOptions)).length, 1)
    }))

  it.effect("the default keeps a final record for one day", () =>
    Effect.gen(function*() {
      const { get, run } = yield* setup()
      yield* run("a")
      yield* TestClock.adjust("23 hours")
      assert.strictEqual((yield* get("a"))?.state, "SUCCESS")
      yield* TestClock.adjust("1 hour")
      assert.isUndefined(yield* get("a"))
    }))

  it.effect("resultTtl 0 keeps final records forever", () =>
    Effect.gen(function*() {
      const { get, run } = yield* setup({ resultTtl: 0 })
      yield* run("a")
      yield* TestClock.adjust("1000 days")
      assert.strictEqual((yield* get("a"))?.state, "SUCCESS")
    }))

  it.effect("a revoked waiting task's record expires too; a running task's never does", () =>
    Effect.gen(function*() {
      const { broker, get, submit } = yield* setup({ resultTtl: "1 hour" })
      yield* submit("running")
      const [d] = yield* broker.claim(claimOptions)
      yield* submit("waiting")
      assert.strictEqual(yield* broker.revoke("waiting"), "revoked")
      yield* broker.renew([{ id: d!.id, token: d!.token }], 3 * 3600_000)
      yield* TestClock.adjust("2 hours")
      assert.isUndefined(yield* get("waiting"))
      assert.strictEqual((yield* get("running"))?.state, "RECEIVED")
    }))

  it.effect("a failed task keeps its message until its record expires; redeliver before then starts it over", () =>
    Effect.gen(function*() {
      const { broker, get, run } = yield* setup({ resultTtl: "1 hour" })
      const failure = { state: "FAILURE", error: { _tag: "E", message: "m" }, attempt: attempt("FAILURE") } as const
      yield* run("kept", failure)
      yield* run("expired", failure)
      yield* TestClock.adjust("30 minutes")
      assert.isTrue(yield* broker.redeliver("kept"))
      yield* TestClock.adjust("31 minutes")
      assert.isFalse(yield* broker.redeliver("expired"))
      assert.isUndefined(yield* get("expired"))
      // redelivered before it expired: waiting again, and waiting tasks do not expire
      assert.strictEqual((yield* get("kept"))?.state, "PENDING")
      const [d] = yield* broker.claim(claimOptions)
      assert.strictEqual(d!.id, "kept")
    }))

  it.effect("dead letters do not expire", () =>
    Effect.gen(function*() {
      const { broker, get, submit } = yield* setup({ resultTtl: "1 hour" })
      yield* submit("dead")
      const [d] = yield* broker.claim(claimOptions)
      yield* broker.deadLetter([{ id: d!.id, token: d!.token, error: { _tag: "E", message: "m" }, attempt: attempt("DEAD") }])
      yield* TestClock.adjust("2 days")
      assert.strictEqual((yield* get("dead"))?.state, "FAILURE")
      assert.isTrue(yield* broker.redeliver("dead"))
    }))
})

describe("MemoryBroker: records", () => {
  it.effect("a SUCCESS with storeResult: false keeps only the state", () =>
    Effect.gen(function*() {
      const { backend, get, run } = yield* setup()
      yield* run("lean", { storeResult: false })
      yield* run("stored")
      const lean = (yield* get("lean"))!
      assert.strictEqual(lean.state, "SUCCESS")
      assert.isUndefined(lean.result)
      assert.deepStrictEqual(lean.history, [])
      assert.strictEqual(Option.getOrThrow(yield* backend.awaitFinal("lean")).state, "SUCCESS")
      const stored = (yield* get("stored"))!
      assert.deepStrictEqual(stored.result, { ok: "stored" })
      assert.deepStrictEqual(stored.history, [attempt("SUCCESS")])
    }))

  it.effect("a failure with storeResult: false keeps its error and history", () =>
    Effect.gen(function*() {
      const { get, run } = yield* setup()
      const error = { _tag: "E", message: "m" }
      yield* run("a", { state: "FAILURE", error, attempt: attempt("FAILURE"), storeResult: false })
      const record = (yield* get("a"))!
      assert.deepStrictEqual(record.error, error)
      assert.deepStrictEqual(record.history, [attempt("FAILURE")])
    }))

  it.effect("records handed out do not change with later steps", () =>
    Effect.gen(function*() {
      const { backend, broker, get, submit } = yield* setup()
      yield* submit("a")
      const [first] = yield* broker.claim(claimOptions)
      yield* broker.retry([{
        id: "a",
        token: first!.token,
        dueAt: 0,
        error: { _tag: "E", message: "m" },
        attempt: attempt("RETRY")
      }])
      const retried = (yield* get("a"))!
      const [second] = yield* broker.claim(claimOptions)
      yield* broker.complete([{ id: "a", token: second!.token, state: "SUCCESS", result: 1, attempt: attempt("SUCCESS") }])
      const final = Option.getOrThrow(yield* backend.awaitFinal("a"))
      yield* backend.recordStale("a", attempt("STALE"))
      assert.strictEqual(retried.state, "RETRY")
      assert.deepStrictEqual(retried.history.map((a) => a.outcome), ["RETRY"])
      assert.deepStrictEqual(final.history.map((a) => a.outcome), ["RETRY", "SUCCESS"])
      assert.deepStrictEqual((yield* get("a"))!.history.map((a) => a.outcome), ["RETRY", "SUCCESS", "STALE"])
    }))

  it.effect("a lease that ended, or a delayed task revoked, leaves nothing due behind", () =>
    Effect.gen(function*() {
      const { broker, store, submit } = yield* setup()
      yield* submit("a")
      yield* broker.enqueue([{ message: message("later"), dueAt: 60_000 }])
      const [d] = yield* broker.claim(claimOptions)
      assert.deepStrictEqual(yield* store.nextDueAt, Option.some(0 + 10_000))
      yield* broker.complete([{ id: "a", token: d!.token, state: "SUCCESS", attempt: attempt("SUCCESS") }])
      assert.deepStrictEqual(yield* store.nextDueAt, Option.some(60_000))
      assert.strictEqual(yield* broker.revoke("later"), "revoked")
      assert.deepStrictEqual(yield* store.nextDueAt, Option.none())
    }))

  it.effect("delayed tasks due at the same time are claimed in submission order", () =>
    Effect.gen(function*() {
      const { broker } = yield* setup()
      const ids = Array.from({ length: 20 }, (_, i) => `t${i}`)
      yield* broker.enqueue(ids.map((id) => ({ message: message(id), dueAt: 5_000 })))
      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual((yield* broker.claim(claimOptions)).map((d) => d.id), ids)
    }))

  it.effect("a renewed lease runs out at its new deadline, shorter or longer", () =>
    Effect.gen(function*() {
      const { broker, store, submit } = yield* setup()
      yield* submit("a")
      yield* submit("b")
      const [a, b] = yield* broker.claim(claimOptions)
      yield* broker.renew([{ id: a!.id, token: a!.token }], 30_000)
      yield* broker.renew([{ id: b!.id, token: b!.token }], 2_000)
      assert.deepStrictEqual(yield* store.nextDueAt, Option.some(2_000))
      yield* TestClock.adjust("2 seconds")
      const [lost] = yield* broker.claim(claimOptions)
      assert.strictEqual(lost!.id, "b")
      assert.strictEqual(lost!.lost?.expiredAt, 2_000)
      assert.strictEqual((yield* broker.claim(claimOptions)).length, 0)
    }))
})

describe("MemoryBroker: tasks under fresh ids, and lease handles", () => {
  const fresh = (id: string, keep: boolean) => ({ message: message(id), dueAt: 0, fresh: true, keep })

  it.effect("fresh ids never looked up while their tasks run are found by id afterwards; forgotten ones are not", () =>
    Effect.gen(function*() {
      const { broker, get } = yield* setup()
      // every third task keeps its record; the rest are forgotten as they
      // end, more than the unlisted ones' compaction threshold (1,024)
      const subs = Array.from({ length: 3_000 }, (_, i) => fresh(`f${i}`, i % 3 === 0))
      yield* broker.enqueue(subs)
      const claimed = yield* broker.claim({ ...claimOptions, max: 3_000 })
      assert.strictEqual(claimed.length, 3_000)
      const oks = yield* broker.complete(claimed.map((d, i) => ({
        id: d.id,
        token: d.token,
        handle: d.handle,
        state: "SUCCESS" as const,
        result: i,
        attempt: attempt("SUCCESS"),
        keepRecord: subs[i]!.keep
      })))
      assert.isTrue(oks.every((ok) => ok))
      for (const [i, s] of subs.entries()) {
        const record = yield* get(s.message.id)
        if (s.keep) assert.deepStrictEqual([record?.state, record?.result], ["SUCCESS", i])
        else assert.isUndefined(record)
      }
      // and a fresh id is found by id while it waits, after the list was emptied
      yield* broker.enqueue([fresh("late", true)])
      assert.strictEqual((yield* get("late"))?.state, "PENDING")
      assert.strictEqual(yield* broker.revoke("late"), "revoked")
    }))

  it.effect("a handle that is not the lease's own entry is not trusted: the id decides", () =>
    Effect.gen(function*() {
      const { broker, get } = yield* setup()
      const other = yield* setup()
      yield* broker.enqueue([fresh("a", true), fresh("b", true)])
      yield* other.broker.enqueue([fresh("a", true)])
      const [a, b] = yield* broker.claim(claimOptions)
      const [foreign] = yield* other.broker.claim(claimOptions)
      const end = (id: string, token: number, handle: unknown) =>
        broker.complete([{ id, token, handle, state: "SUCCESS", result: id, attempt: attempt("SUCCESS") }])
      // b's handle with a's lease ends a, not b; another broker's entry, or
      // no entry at all, is looked past
      assert.deepStrictEqual(yield* end(a!.id, a!.token, b!.handle), [true])
      assert.strictEqual((yield* get("a"))?.state, "SUCCESS")
      assert.strictEqual((yield* get("b"))?.state, "RECEIVED")
      assert.deepStrictEqual(yield* end(b!.id, b!.token, foreign!.handle), [true])
      assert.strictEqual((yield* other.get("a"))?.state, "RECEIVED")
      // a handle whose lease has ended does not end the task again
      assert.deepStrictEqual(yield* end(a!.id, a!.token, a!.handle), [false])
      assert.deepStrictEqual(yield* end("x", 1, { slot: null, q: "q" }), [false])
    }))
})
