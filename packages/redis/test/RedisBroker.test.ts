import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import { BrokerError } from "@errand/core/Errors"
import { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import * as Redis from "effect/persistence/Redis"
import { Clock, ConfigProvider, Effect, Exit, Fiber, Layer, Option, References } from "effect"
import { attempt, claimNow, enqueueNow, message, record, withBroker } from "./utils/harness.ts"
import { command, deletePrefix, freePort, randomPrefix, useTestRedis } from "./utils/redis.ts"

const server = useTestRedis()

const run = <A, E>(body: (prefix: string) => Effect.Effect<A, E, import("./utils/harness.ts").Services>, options = {}) =>
  withBroker(server.url, body, options)

const err = { _tag: "Boom", message: "boom" }

describe("RedisBroker", () => {
  it.live("enqueue, claim, start, complete: records follow each step", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const [e] = yield* enqueueNow(message("a", { eta: 123 }))
        expect(e).toEqual({ id: "a" })
        const pending = yield* record("a")
        expect(pending.state).toBe("PENDING")
        expect(pending.eta).toBe(123)
        expect(pending.history).toEqual([])

        const [d] = yield* claimNow()
        expect(d.id).toBe("a")
        expect(d.queue).toBe("q")
        expect(d.token).toBe(1)
        expect(d.lost).toBeUndefined()
        expect(d.message).toMatchObject({ id: "a", task: "test.task", payload: { n: 1 } })
        expect((yield* record("a")).state).toBe("RECEIVED")

        const now = yield* Clock.currentTimeMillis
        expect(yield* broker.start([{ id: "a", token: d.token, worker: "w1", startedAt: now, ackEarly: false }]))
          .toEqual(["ok"])
        expect((yield* record("a")).state).toBe("STARTED")
        expect(yield* broker.renew([{ id: "a", token: d.token }], 30_000)).toEqual(["ok"])

        expect(
          yield* broker.complete([{
            id: "a",
            token: d.token,
            state: "SUCCESS",
            result: { receipt: "r" },
            attempt: attempt("SUCCESS")
          }])
        ).toEqual([true])
        const done = yield* record("a")
        expect(done.state).toBe("SUCCESS")
        expect(done.result).toEqual({ receipt: "r" })
        expect(done.retries).toBe(0)
        expect(done.history).toEqual([attempt("SUCCESS")])
        expect(yield* broker.stats(["q"])).toEqual([{ queue: "q", ready: 0, delayed: 0, running: 0, dead: 0 }])

        // the message is gone, the record expires after the default TTL (1 day)
        const key = RedisBroker.taskKey(prefix, "q", "a")
        expect(yield* Effect.promise(() => command<string | null>(server.url(), "HGET", key, "m"))).toBeNull()
        const pttl = yield* Effect.promise(() => command<number>(server.url(), "PTTL", key))
        expect(pttl).toBeGreaterThan(86_400_000 - 60_000)
        expect(pttl).toBeLessThanOrEqual(86_400_000)
      })
    ))

  it.live("storeResult false keeps the state but not the result", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(message("a"))
        const [d] = yield* claimNow()
        yield* broker.complete([{
          id: "a",
          token: d.token,
          state: "SUCCESS",
          result: 42,
          storeResult: false,
          attempt: attempt("SUCCESS")
        }])
        const r = yield* record("a")
        expect(r.state).toBe("SUCCESS")
        expect("result" in r).toBe(false)
      })
    ))

  it.live("fencing: after a lease runs out, the old token is refused everywhere", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(message("a"))
        const [first] = yield* claimNow(1, 50, "w1")
        const startedAt = yield* Clock.currentTimeMillis
        yield* broker.start([{ id: "a", token: first.token, worker: "w1", startedAt, ackEarly: true }])
        yield* Effect.sleep(80)

        const [second] = yield* claimNow(1, 30_000, "w2")
        expect(second.id).toBe("a")
        expect(second.token).toBe(first.token + 1)
        expect(second.lost).toEqual({ worker: "w1", startedAt, expiredAt: first.deadline, ackedEarly: true })

        const stale = { id: "a", token: first.token }
        expect(yield* broker.start([{ ...stale, worker: "w1", startedAt, ackEarly: false }])).toEqual(["stale"])
        expect(yield* broker.renew([stale], 1000)).toEqual(["stale"])
        expect(yield* broker.complete([{ ...stale, state: "SUCCESS", result: 1, attempt: attempt("SUCCESS") }]))
          .toEqual([false])
        expect(yield* broker.retry([{ ...stale, dueAt: 0, error: err, attempt: attempt("RETRY") }])).toEqual([false])
        expect(yield* broker.deadLetter([{ ...stale, error: err, attempt: attempt("DEAD") }])).toEqual([false])
        expect(yield* broker.release([stale])).toEqual([false])
        expect((yield* record("a")).state).toBe("RECEIVED")

        // the late outcome goes to the history only
        const backend = yield* ResultBackend
        yield* backend.recordStale("a", attempt("STALE"))
        expect((yield* record("a")).history).toEqual([attempt("STALE")])

        // the marker stays until a lease starts (or ends) the task: not cleared by a release
        yield* broker.release([{ id: "a", token: second.token }])
        const [third] = yield* claimNow(1)
        expect(third.lost?.worker).toBe("w1")
        expect(yield* broker.start([{ id: "a", token: third.token, worker: "w3", startedAt, ackEarly: false }]))
          .toEqual(["ok"])
        expect(yield* broker.complete([{ id: "a", token: third.token, state: "SUCCESS", attempt: attempt("SUCCESS") }]))
          .toEqual([true])
        // a token of a finished task is stale
        expect(yield* broker.renew([{ id: "a", token: third.token }], 1000)).toEqual(["stale"])
      })
    ))

  it.live("a lost lease that never started has no startedAt; its record goes back to PENDING", () =>
    run(() =>
      Effect.gen(function*() {
        yield* enqueueNow(message("a"))
        const [first] = yield* claimNow(1, 20, "w1")
        yield* Effect.sleep(40)
        const stats = yield* Broker.use((b) => b.stats(["q"]))
        expect(stats[0].running).toBe(1) // lazily expired, on the next claim
        const [second] = yield* claimNow(1, 1000, "w2")
        expect(second.lost).toEqual({ worker: "w1", startedAt: undefined, expiredAt: first.deadline, ackedEarly: false })
      })
    ))

  it.live("priority first (9 highest), then FIFO; several queues", () =>
    run(() =>
      Effect.gen(function*() {
        yield* enqueueNow(
          message("a", { priority: 0 }),
          message("b", { priority: 9 }),
          message("c", { priority: 5 }),
          message("d", { priority: 9 }),
          message("e", { priority: 0 }),
          message("x", { priority: 9, queue: "other" })
        )
        const ds = yield* claimNow(3)
        expect(ds.map((d) => d.id)).toEqual(["b", "d", "c"])
        const rest = yield* claimNow(10, 30_000, "w1", ["q", "other"])
        expect(rest.map((d) => d.id)).toEqual(["a", "e", "x"])
        expect(rest[2].queue).toBe("other")
      })
    ))

  it.live("release puts a task back at the front of its priority, PENDING, no attempt", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(message("a"), message("b"), message("c"))
        const [a] = yield* claimNow(1)
        expect(yield* broker.release([{ id: a.id, token: a.token }])).toEqual([true])
        const r = yield* record("a")
        expect(r.state).toBe("PENDING")
        expect(r.history).toEqual([])
        expect((yield* claimNow(10)).map((d) => d.id)).toEqual(["a", "b", "c"])
      })
    ))

  it.live("delayed tasks are promoted when due; a waiting claim wakes for them", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const now = yield* Clock.currentTimeMillis
        yield* broker.enqueue([{ message: message("later"), dueAt: now + 200 }])
        expect(yield* claimNow()).toEqual([])
        expect((yield* broker.stats(["q"]))[0]).toMatchObject({ ready: 0, delayed: 1 })
        const ds = yield* broker.claim({ queues: ["q"], worker: "w", max: 5, leaseMillis: 1000, waitMillis: 5000 })
        const after = yield* Clock.currentTimeMillis
        expect(ds.map((d) => d.id)).toEqual(["later"])
        expect(after - now).toBeGreaterThanOrEqual(195)
        expect(after - now).toBeLessThan(1500)
      })
    ))

  it.live("an idle claim wakes within milliseconds of a submit", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const fiber = yield* broker.claim({ queues: ["q"], worker: "w", max: 5, leaseMillis: 1000, waitMillis: 10_000 })
          .pipe(Effect.forkChild)
        yield* Effect.sleep(100)
        const submitted = yield* Clock.currentTimeMillis
        yield* enqueueNow(message("a"))
        const ds = yield* Fiber.join(fiber)
        const woke = yield* Clock.currentTimeMillis
        expect(ds.map((d) => d.id)).toEqual(["a"])
        expect(woke - submitted).toBeLessThan(200)
      })
    ))

  it.live("a claim with nothing to do returns after waitMillis", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const t0 = yield* Clock.currentTimeMillis
        expect(yield* broker.claim({ queues: ["q"], worker: "w", max: 5, leaseMillis: 1000, waitMillis: 150 }))
          .toEqual([])
        const t1 = yield* Clock.currentTimeMillis
        expect(t1 - t0).toBeGreaterThanOrEqual(145)
        expect(t1 - t0).toBeLessThan(1000)
      })
    ))

  it.live("dedup: one task per dedup id until it is final", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const now = yield* Clock.currentTimeMillis
        const sub = (id: string, queue = "q") => ({ message: message(id, { queue }), dueAt: now, dedupId: "k" })
        expect(yield* broker.enqueue([sub("a"), sub("b")])).toEqual([{ id: "a" }, { id: "b", duplicateOf: "a" }])
        expect(yield* broker.enqueue([sub("c")])).toEqual([{ id: "c", duplicateOf: "a" }])
        expect(yield* broker.enqueue([sub("z", "other")])).toEqual([{ id: "z" }])
        expect(yield* ResultBackend.use((b) => b.get("c"))).toEqual(Option.none())
        expect((yield* broker.stats(["q"]))[0].ready).toBe(1)
        const [d] = yield* claimNow()
        yield* broker.complete([{ id: d.id, token: d.token, state: "SUCCESS", attempt: attempt("SUCCESS") }])
        expect(yield* broker.enqueue([sub("e")])).toEqual([{ id: "e" }])
      })
    ))

  it.live("enqueue is idempotent per id: a resubmitted id neither resets nor reruns its task", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        expect(yield* enqueueNow(message("a"), message("a"))).toEqual([{ id: "a" }, { id: "a" }])
        const [d] = yield* claimNow()
        yield* broker.complete([{ id: "a", token: d.token, state: "SUCCESS", result: 1, attempt: attempt("SUCCESS") }])
        // a producer retrying after a lost reply
        expect(yield* enqueueNow(message("a"))).toEqual([{ id: "a" }])
        expect(yield* claimNow()).toEqual([])
        expect(yield* record("a")).toMatchObject({ state: "SUCCESS", result: 1, history: [attempt("SUCCESS")] })
      })
    ))

  it.live("fresh ids (made for the submission) are enqueued without a lookup; a batch with one id that is not fresh looks them all up", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const now = yield* Clock.currentTimeMillis
        const fresh = (id: string, storeResult?: false) =>
          ({ message: message(id, storeResult === false ? { storeResult } : {}), dueAt: now, fresh: true }) as const
        // both lanes; an id twice in one batch is still written once
        expect(yield* broker.enqueue([fresh("a"), fresh("b", false), fresh("b", false)])).toEqual([
          { id: "a" },
          { id: "b" },
          { id: "b" }
        ])
        expect((yield* claimNow()).map((d) => d.id).sort()).toEqual(["a", "b"])
        // a resend of a known id is a no-op as soon as one id of its batch is not fresh
        expect(yield* broker.enqueue([fresh("c"), { message: message("a"), dueAt: now }])).toEqual([{ id: "c" }, { id: "a" }])
        expect((yield* claimNow()).map((d) => d.id)).toEqual(["c"])
        expect(yield* record("a")).toMatchObject({ state: "RECEIVED" })
      })
    ))

  it.live("invalid input is refused before any script runs (a script failing half-way keeps its writes)", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const now = yield* Clock.currentTimeMillis
        const bad = yield* Effect.flip(broker.enqueue([
          { message: message("ok"), dueAt: now },
          { message: message("bad"), dueAt: Number.NaN }
        ]))
        expect(bad).toBeInstanceOf(BrokerError)
        expect(bad.message).toContain(`task "bad"`)
        expect(yield* ResultBackend.use((b) => b.get("ok"))).toEqual(Option.none())
        // ids travel newline-separated (done channel, claims, done records): one holding a newline is refused
        const newline = yield* Effect.flip(broker.enqueue([
          { message: message("ok"), dueAt: now },
          { message: message("two\nlines"), dueAt: now }
        ]))
        expect(newline.message).toContain("holding a newline")
        expect(yield* ResultBackend.use((b) => b.get("ok"))).toEqual(Option.none())
        yield* enqueueNow(message("a"))
        const claimError = yield* Effect.flip(
          broker.claim({ queues: ["q"], worker: "w", max: 5, leaseMillis: Number.NaN, waitMillis: 0 })
        )
        expect(claimError.operation).toBe("claim")
        expect((yield* broker.stats(["q"]))[0]).toMatchObject({ ready: 1, running: 0 })
        const [d] = yield* claimNow()
        expect((yield* Effect.flip(broker.renew([d], 0))).operation).toBe("renew")
        expect(
          (yield* Effect.flip(
            broker.retry([{ id: d.id, token: d.token, dueAt: Number.POSITIVE_INFINITY, error: err, attempt: attempt("RETRY") }])
          )).operation
        ).toBe("retry")
        expect((yield* record("a")).state).toBe("RECEIVED")
      })
    ))

  it.live("retry: retries + 1, RETRY, error kept, due at dueAt", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(message("a"))
        const [d] = yield* claimNow()
        const now = yield* Clock.currentTimeMillis
        const retryAttempt = { ...attempt("RETRY"), error: err, countdown: 100 }
        expect(yield* broker.retry([{ id: "a", token: d.token, dueAt: now + 100, error: err, attempt: retryAttempt }]))
          .toEqual([true])
        const r = yield* record("a")
        expect(r).toMatchObject({ state: "RETRY", retries: 1, error: err, history: [retryAttempt] })
        expect((yield* broker.stats(["q"]))[0]).toMatchObject({ ready: 0, delayed: 1, running: 0 })
        expect(yield* claimNow()).toEqual([])
        yield* Effect.sleep(120)
        const [again] = yield* claimNow()
        expect(again.token).toBe(d.token + 1)
        expect(again.message).toMatchObject({ id: "a", retries: 1 })
        // due now: straight to ready
        yield* broker.retry([{ id: "a", token: again.token, dueAt: 0, error: err, attempt: retryAttempt }])
        const [third] = yield* claimNow()
        expect(third.message).toMatchObject({ retries: 2 })
        expect((yield* record("a")).retries).toBe(2)
      })
    ))

  it.live("revoke: waiting, running, final, unknown", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const now = yield* Clock.currentTimeMillis
        yield* broker.enqueue([
          { message: message("ready"), dueAt: now },
          { message: message("delayed"), dueAt: now + 60_000 },
          { message: message("running"), dueAt: now }
        ])
        expect(yield* broker.revoke("ready")).toBe("revoked")
        expect(yield* broker.revoke("delayed")).toBe("revoked")
        expect((yield* record("delayed")).state).toBe("REVOKED")
        expect((yield* record("delayed")).error?._tag).toBe("TaskRevoked")
        const [d] = yield* claimNow()
        expect(d.id).toBe("running")
        expect(yield* broker.revoke("running")).toBe("running")
        expect((yield* record("running")).revoked).toBe(true)
        expect(yield* broker.start([{ id: d.id, token: d.token, worker: "w1", startedAt: now, ackEarly: false }]))
          .toEqual(["revoked"])
        expect(yield* broker.renew([{ id: d.id, token: d.token }], 1000)).toEqual(["revoked"])
        yield* broker.complete([{ id: d.id, token: d.token, state: "REVOKED", attempt: attempt("REVOKED") }])
        const r = yield* record("running")
        expect(r.state).toBe("REVOKED")
        expect(r.revoked).toBeUndefined()
        expect(yield* broker.revoke("running")).toBe("final")
        expect(yield* broker.revoke("nope")).toBe("unknown")
        expect((yield* broker.stats(["q"]))[0]).toEqual({ queue: "q", ready: 0, delayed: 0, running: 0, dead: 0 })
      })
    ))

  it.live("dead letters keep their message; redeliver brings them back", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(message("a"))
        const [d] = yield* claimNow()
        expect(yield* broker.deadLetter([{ id: "a", token: d.token, error: err, attempt: attempt("DEAD") }]))
          .toEqual([true])
        expect(yield* record("a")).toMatchObject({ state: "FAILURE", error: err, history: [attempt("DEAD")] })
        expect((yield* broker.stats(["q"]))[0]).toMatchObject({ ready: 0, running: 0, dead: 1 })
        expect(yield* broker.revoke("a")).toBe("final")
        expect(yield* broker.redeliver("a")).toBe(true)
        expect(yield* broker.redeliver("a")).toBe(false)
        expect(yield* broker.redeliver("nope")).toBe(false)
        expect((yield* record("a")).state).toBe("PENDING")
        expect((yield* broker.stats(["q"]))[0]).toMatchObject({ ready: 1, dead: 0 })
        const [again] = yield* claimNow()
        expect(again.message).toMatchObject({ id: "a" })
        expect(again.token).toBe(d.token + 1)
      })
    ))

  it.live("stats count ready, delayed, running and dead per queue", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const now = yield* Clock.currentTimeMillis
        yield* broker.enqueue([
          { message: message("r1"), dueAt: now },
          { message: message("r2"), dueAt: now },
          { message: message("r3"), dueAt: now },
          { message: message("d1"), dueAt: now + 60_000 },
          { message: message("o1", { queue: "other" }), dueAt: now }
        ])
        const [a, b] = yield* claimNow(2)
        yield* broker.deadLetter([{ id: b.id, token: b.token, error: err, attempt: attempt("DEAD") }])
        void a
        expect(yield* broker.stats(["q", "other", "empty"])).toEqual([
          { queue: "q", ready: 1, delayed: 1, running: 1, dead: 1 },
          { queue: "other", ready: 1, delayed: 0, running: 0, dead: 0 },
          { queue: "empty", ready: 0, delayed: 0, running: 0, dead: 0 }
        ])
      })
    ))

  it.live("awaitFinal: waits for the completion, returns at once when final, None when unknown", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const backend = yield* ResultBackend
        expect(yield* backend.awaitFinal("nope")).toEqual(Option.none())
        yield* enqueueNow(message("a"))
        const waiting = yield* backend.awaitFinal("a").pipe(Effect.forkChild)
        yield* Effect.sleep(50)
        const [d] = yield* claimNow()
        const t0 = yield* Clock.currentTimeMillis
        yield* broker.complete([{ id: "a", token: d.token, state: "FAILURE", error: err, attempt: attempt("FAILURE") }])
        const r = yield* Fiber.join(waiting)
        const t1 = yield* Clock.currentTimeMillis
        expect(Option.getOrThrow(r).state).toBe("FAILURE")
        expect(t1 - t0).toBeLessThan(500)
        expect(Option.getOrThrow(yield* backend.awaitFinal("a")).error).toEqual(err)
        // a revoked waiting task ends an await too
        yield* enqueueNow(message("b"))
        const waitingB = yield* backend.awaitFinal("b").pipe(Effect.forkChild)
        yield* Effect.sleep(50)
        yield* broker.revoke("b")
        expect(Option.getOrThrow(yield* Fiber.join(waitingB)).state).toBe("REVOKED")
      })
    ))

  it.live("setState: custom state and meta until final", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const backend = yield* ResultBackend
        yield* enqueueNow(message("a"))
        const [d] = yield* claimNow()
        expect(yield* backend.setState("a", "PROGRESS", { done: 3, of: 10 })).toBe(true)
        expect(yield* record("a")).toMatchObject({ state: "PROGRESS", meta: { done: 3, of: 10 } })
        yield* broker.complete([{ id: "a", token: d.token, state: "SUCCESS", attempt: attempt("SUCCESS") }])
        expect(yield* backend.setState("a", "PROGRESS", {})).toBe(false)
        expect(yield* backend.setState("nope", "PROGRESS", {})).toBe(false)
        expect((yield* record("a")).state).toBe("SUCCESS")
      })
    ))

  it.live("a malformed raw message is delivered as is, never crashes, and can be dead-lettered", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* RedisBroker.unsafePushRaw("q", "raw1", "this is {not json")
        yield* RedisBroker.unsafePushRaw("q", "raw2", JSON.stringify({ hello: "world", retries: "x" }))
        yield* RedisBroker.unsafePushRaw("q", "raw3", "[1,2")
        const ds = yield* claimNow()
        expect(ds.map((d) => [d.id, d.message])).toEqual([
          ["raw1", "this is {not json"],
          ["raw2", { hello: "world", retries: "x" }],
          ["raw3", "[1,2"]
        ])
        for (const d of ds) {
          expect(yield* broker.deadLetter([{ id: d.id, token: d.token, error: err, attempt: attempt("DEAD") }]))
            .toEqual([true])
        }
        expect((yield* record("raw1")).state).toBe("FAILURE")
      })
    ))

  it.live("records expire resultTtl after they become final", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(message("a"), message("b"))
        const [a, b] = yield* claimNow()
        yield* broker.complete([{ id: a.id, token: a.token, state: "SUCCESS", attempt: attempt("SUCCESS") }])
        expect(Option.isSome(yield* ResultBackend.use((r) => r.get("a")))).toBe(true)
        yield* Effect.sleep(400)
        expect(yield* ResultBackend.use((r) => r.get("a"))).toEqual(Option.none())
        // not final: not expired
        expect((yield* record(b.id)).state).toBe("RECEIVED")
      }), { resultTtl: "200 millis" }))

  it.live("a failed task keeps its message until its record expires; redeliver makes it persistent again", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(message("a"), message("b"))
        const [a, b] = yield* claimNow()
        yield* broker.complete([
          { id: a.id, token: a.token, state: "FAILURE", error: err, attempt: attempt("FAILURE") },
          { id: b.id, token: b.token, state: "FAILURE", error: err, attempt: attempt("FAILURE") }
        ])
        const key = (id: string) => RedisBroker.taskKey(prefix, "q", id)
        expect(yield* Effect.promise(() => command<number>(server.url(), "HEXISTS", key("a"), "m"))).toBe(1)
        const ttl = yield* Effect.promise(() => command<number>(server.url(), "PTTL", key("a")))
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThanOrEqual(1000)
        expect(yield* broker.redeliver("a")).toBe(true)
        expect(yield* Effect.promise(() => command<number>(server.url(), "PTTL", key("a")))).toBe(-1)
        yield* Effect.sleep(1100)
        // b's record, and the message with it, expired: nothing left to run again
        expect(yield* broker.redeliver("b")).toBe(false)
        expect(yield* ResultBackend.use((r) => r.get("b"))).toEqual(Option.none())
        const [again] = yield* claimNow()
        expect(again.id).toBe("a")
      }), { resultTtl: "1 second" }))

  it.live("purge removes a long queue in chunks; records expire; only the queue's keys are touched", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const now = yield* Clock.currentTimeMillis
        const ms = Array.from({ length: 2500 }, (_, i) => message(`p${i}`))
        yield* broker.enqueue(ms.map((m, i) => ({ message: m, dueAt: i % 2 === 0 ? now : now + 60_000 })))
        yield* enqueueNow(message("other", { queue: "r" }))
        expect(yield* broker.purge!(["q", "r", "none"])).toEqual([2500, 1, 0])
        expect(yield* broker.stats(["q", "r"])).toEqual([
          { queue: "q", ready: 0, delayed: 0, running: 0, dead: 0 },
          { queue: "r", ready: 0, delayed: 0, running: 0, dead: 0 }
        ])
        const r = yield* record("p1")
        expect(r.state).toBe("REVOKED")
        expect(r.error?.message).toBe("task p1 was purged from queue q before it ran")
        expect(yield* Effect.promise(() => command<number>(server.url(), "HEXISTS", RedisBroker.taskKey(prefix, "q", "p1"), "m")))
          .toBe(0)
        expect(yield* Effect.promise(() => command<number>(server.url(), "PTTL", RedisBroker.taskKey(prefix, "q", "p1"))))
          .toBeGreaterThan(0)
        expect(yield* broker.queues!).toEqual(["q", "r"])
      })))

  it.live("worker registrations live under {prefix:workers}, are pruned on heartbeat and list, and expire", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const now = yield* Clock.currentTimeMillis
        const info = (id: string, expiresAt: number) => ({
          id,
          host: "h",
          pid: 1,
          queues: ["q"],
          concurrency: 1,
          startedAt: now,
          heartbeatAt: now,
          aliveUntil: now + 100,
          expiresAt
        })
        yield* broker.heartbeat!([info("w1", now + 150), info("w2", now + 60_000)])
        const keys = RedisBroker.workerKeys(prefix)
        expect(yield* Effect.promise(() => command<number>(server.url(), "HLEN", keys.info))).toBe(2)
        yield* Effect.sleep(200)
        yield* broker.heartbeat!([info("w2", now + 60_000)])
        expect(yield* Effect.promise(() => command<number>(server.url(), "HLEN", keys.info))).toBe(1)
        expect(yield* Effect.promise(() => command<number>(server.url(), "ZCARD", keys.expiry))).toBe(1)
        expect((yield* broker.workers!).map((w) => w.id)).toEqual(["w2"])
        // the keys expire with their longest-lived entry
        for (const key of [keys.info, keys.expiry]) {
          const pttl = yield* Effect.promise(() => command<number>(server.url(), "PTTL", key))
          expect(pttl).toBeGreaterThan(55_000)
          expect(pttl).toBeLessThanOrEqual(60_000)
        }
      })))

  it.live("a batch of 2000 tasks is enqueued, claimed and completed in a few round trips", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const n = 2000
        const messages = Array.from({ length: n }, (_, i) => message(`t${i}`, { priority: i % 10 }))
        const t0 = yield* Clock.currentTimeMillis
        yield* enqueueNow(...messages)
        const ds = yield* claimNow(n)
        expect(ds.length).toBe(n)
        // priority 9 first
        expect(ds[0].id).toBe("t9")
        const started = yield* Clock.currentTimeMillis
        expect(
          (yield* broker.start(ds.map((d) => ({ id: d.id, token: d.token, worker: "w1", startedAt: started, ackEarly: false }))))
            .every((s) => s === "ok")
        ).toBe(true)
        const ok = yield* broker.complete(
          ds.map((d) => ({ id: d.id, token: d.token, state: "SUCCESS" as const, result: 1, attempt: attempt("SUCCESS") }))
        )
        expect(ok.every(Boolean)).toBe(true)
        const t1 = yield* Clock.currentTimeMillis
        expect(t1 - t0).toBeLessThan(5000)
        expect((yield* broker.stats(["q"]))[0]).toEqual({ queue: "q", ready: 0, delayed: 0, running: 0, dead: 0 })
      })
    ))

  it.live("concurrent claimers get disjoint tasks; every task ends once; only expiring records are left", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const n = 3000
        yield* enqueueNow(...Array.from({ length: n }, (_, i) => message(`t${i}`, { priority: i % 3 })))
        const seen = new Map<string, number>()
        yield* Effect.forEach([1, 2, 3, 4, 5, 6], (w) =>
          Effect.gen(function*() {
            while (true) {
              const ds = yield* broker.claim({ queues: ["q"], worker: `w${w}`, max: 97, leaseMillis: 30_000, waitMillis: 0 })
              if (ds.length === 0) return
              for (const d of ds) seen.set(d.id, (seen.get(d.id) ?? 0) + 1)
              const ok = yield* broker.complete(
                ds.map((d) => ({ id: d.id, token: d.token, state: "SUCCESS" as const, attempt: attempt("SUCCESS") }))
              )
              expect(ok.every(Boolean)).toBe(true)
            }
          }), { concurrency: "unbounded", discard: true })
        expect(seen.size).toBe(n)
        expect([...seen.values()].every((c) => c === 1)).toBe(true)
        // what is left: the records (done records of the fast lane, each
        // expiring, in keys that expire), the counters, the queue's name,
        // the queue registry and the fast lane's hashes with only their pins
        const keys = yield* Effect.promise(() => command<Array<string>>(server.url(), "KEYS", `*${prefix}*`))
        const q = RedisBroker.queueKeys(prefix, "q")
        expect(keys.sort()).toEqual(
          [`${prefix}:queues`, q.done, q.doneAt, q.fast, q.fastLease, `${q.tag}:queue`, `${q.tag}:seq`, `${q.tag}:tok`]
            .sort()
        )
        for (const key of [q.fast, q.fastLease]) {
          expect(yield* Effect.promise(() => command<Array<string>>(server.url(), "HKEYS", key))).toEqual(["\n"])
        }
        expect(yield* Effect.promise(() => command<number>(server.url(), "HLEN", q.done))).toBe(n)
        for (const key of [q.done, q.doneAt]) {
          expect(yield* Effect.promise(() => command<number>(server.url(), "PTTL", key))).toBeGreaterThan(0)
        }
        expect(yield* record("t7")).toMatchObject({ state: "SUCCESS", history: [{ outcome: "SUCCESS" }] })
      })
    ))

  it.live("makeWith on any Redis service (generic pub/sub) wakes idle claims and awaits", () =>
    Effect.gen(function*() {
      const prefix = randomPrefix()
      const redis = yield* Redis.Redis
      const services = yield* RedisBroker.makeWith({ redis, prefix })
      yield* Effect.gen(function*() {
        const broker = yield* Broker
        const backend = yield* ResultBackend
        const fiber = yield* broker.claim({ queues: ["q"], worker: "w", max: 5, leaseMillis: 1000, waitMillis: 10_000 })
          .pipe(Effect.forkChild)
        yield* Effect.sleep(100)
        const t0 = yield* Clock.currentTimeMillis
        yield* enqueueNow(message("a"))
        const [d] = yield* Fiber.join(fiber)
        expect((yield* Clock.currentTimeMillis) - t0).toBeLessThan(500)
        const waiting = yield* backend.awaitFinal("a").pipe(Effect.forkChild)
        yield* Effect.sleep(50)
        yield* broker.complete([{ id: "a", token: d.token, state: "SUCCESS", result: 1, attempt: attempt("SUCCESS") }])
        expect(Option.getOrThrow(yield* Fiber.join(waiting)).result).toBe(1)
      }).pipe(Effect.provide(services), Effect.ensuring(Effect.promise(() => deletePrefix(server.url(), prefix))))
    }).pipe(Effect.provide(Layer.suspend(() => NodeRedis.layer({ url: server.url() })))))

  it.live("an unreachable Redis fails the layer with a BrokerError that says where", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const exit = yield* Broker.use((b) => b.stats(["q"])).pipe(
        Effect.provide(RedisBroker.layer({ url: `redis://:secret@127.0.0.1:${port}/2` })),
        Effect.exit
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      expect(error?._tag).toBe("Fail")
      const e = error?._tag === "Fail" ? error.error : undefined
      expect(e).toBeInstanceOf(BrokerError)
      expect(e?.message).toContain(`Redis at 127.0.0.1:${port}/2 is unreachable`)
      expect(e?.message).toContain("ECONNREFUSED")
      expect(e?.message).not.toContain("secret")
    }).pipe(Effect.provideService(References.MinimumLogLevel, "Error")))

  it.live("layerConfig reads ERRAND_REDIS_URL, ERRAND_REDIS_PREFIX and ERRAND_RESULT_TTL", () =>
    Effect.gen(function*() {
      const prefix = randomPrefix()
      const provider = ConfigProvider.fromEnvRecord({
        ERRAND_REDIS_URL: server.url(),
        ERRAND_REDIS_PREFIX: prefix,
        ERRAND_RESULT_TTL: "5 seconds"
      })
      yield* Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(message("a"))
        const [d] = yield* claimNow()
        yield* broker.complete([{ id: d.id, token: d.token, state: "SUCCESS", attempt: attempt("SUCCESS") }])
        // a done record that says its expiry (the fast lane: see src/commands/common.lua)
        const now = yield* Clock.currentTimeMillis
        const value = yield* Effect.promise(() =>
          command<string>(server.url(), "HGET", RedisBroker.queueKeys(prefix, "q").done, "a")
        )
        const expiresIn = Number(/^#(\d+)\|/.exec(value)?.[1]) - now
        expect(expiresIn).toBeGreaterThan(0)
        expect(expiresIn).toBeLessThanOrEqual(5000)
      }).pipe(
        Effect.provide(RedisBroker.layerConfig.pipe(Layer.provide(ConfigProvider.layer(provider)))),
        Effect.ensuring(Effect.promise(() => deletePrefix(server.url(), prefix)))
      )
    }))
})
