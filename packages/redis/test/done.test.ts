/**
 * Done records: a task that ends SUCCESS without storing its result keeps no
 * hash, only a field of its queue's done hash, expiring by the doneAt set
 * (see `src/commands/common.lua`). The contract suite checks what callers
 * see; these tests check the keys behind it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import { Clock, Effect, Fiber, Option } from "effect"
import { attempt, claimNow, enqueueNow, message, record, withBroker } from "./utils/harness.ts"
import { command, useTestRedis } from "./utils/redis.ts"

const server = useTestRedis()

const run = <A, E>(body: (prefix: string) => Effect.Effect<A, E, import("./utils/harness.ts").Services>, options = {}) =>
  withBroker(server.url, body, options)

const redis = <A>(...args: ReadonlyArray<string>) => Effect.promise(() => command<A>(server.url(), ...args))

/** Claims everything ready on q and completes it SUCCESS with `result`, stored unless `storeResult` is false. */
const completeAll = (result: unknown, storeResult?: false) =>
  Effect.gen(function*() {
    const broker = yield* Broker
    const ds = yield* claimNow(100)
    return yield* broker.complete(ds.map((d) => ({
      id: d.id,
      token: d.token,
      state: "SUCCESS" as const,
      result,
      attempt: attempt("SUCCESS"),
      ...(storeResult === false ? { storeResult } : {})
    })))
  })

/** `completeAll` without storing the result. */
const completeLean = completeAll({ big: "x" }, false)

const get = (id: string) => ResultBackend.use((backend) => backend.get(id))

/** The result TTL of the first test: long enough for its steps on a loaded machine. */
const TTL = 1500

describe("RedisBroker done records", () => {
  it.live("a lean SUCCESS deletes the hash, frees the dedup id; its record expires, is trimmed, its keys expire", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        const now = yield* Clock.currentTimeMillis
        yield* broker.enqueue([{ message: message("a", { submittedAt: 77 }), dueAt: now, dedupId: "k" }])
        const completing = Date.now()
        expect(yield* completeLean).toEqual([true])
        expect(yield* redis<number>("EXISTS", RedisBroker.taskKey(prefix, "q", "a"))).toBe(0)
        const value = yield* redis<string>("HGET", keys.done, "a")
        // its expiry first, then the record; the call's one doneAt entry lists its ids
        expect(value).toMatch(/^@\d+\|\d+\|0\|77\|\|test\.task$/)
        const expiresAt = Number(yield* redis<string>("ZSCORE", keys.doneAt, "a"))
        expect(value.startsWith(`@${expiresAt}|`)).toBe(true)
        expect(expiresAt).toBeGreaterThanOrEqual(now + TTL)
        expect(expiresAt).toBeLessThanOrEqual(now + TTL + 1000)
        // the keys themselves outlive their entries, then go
        for (const key of [keys.done, keys.doneAt]) {
          const pttl = yield* redis<number>("PTTL", key)
          // at least the TTL, less the time since the complete was sent (a loaded machine is slow)
          expect(pttl).toBeGreaterThanOrEqual(TTL - (Date.now() - completing) - 1)
          expect(pttl).toBeLessThanOrEqual(Math.floor(TTL * 1.125))
        }
        // the dedup id was freed
        const [again] = yield* broker.enqueue([{ message: message("b"), dueAt: now, dedupId: "k" }])
        expect(again).toEqual({ id: "b" })
        expect((yield* record("a")).state).toBe("SUCCESS")

        // its time is up (set by hand): unknown, though not trimmed yet
        yield* redis("HSET", keys.done, "a", value.replace(/^@\d+/, "@1"))
        yield* redis("ZADD", keys.doneAt, "XX", "1", "a")
        expect(yield* redis<number>("HEXISTS", keys.done, "a")).toBe(1)
        expect(yield* get("a")).toEqual(Option.none())
        expect(yield* broker.revoke("a")).toBe("unknown")
        yield* ResultBackend.use((backend) => backend.recordStale("a", attempt("STALE")))
        expect(yield* redis<number>("EXISTS", RedisBroker.taskKey(prefix, "q", "a"))).toBe(0)
        // the next complete trims it (and b is a done record of its own)
        expect(yield* completeLean).toEqual([true])
        expect(yield* redis<number>("HEXISTS", keys.done, "a")).toBe(0)
        expect(yield* redis<string | null>("ZSCORE", keys.doneAt, "a")).toBeNull()
        expect(yield* redis<number>("HEXISTS", keys.done, "b")).toBe(1)
        // a queue nobody completes tasks on any more keeps no done records
        yield* Effect.sleep(TTL * 1.125 + 200)
        expect(yield* redis<number>("EXISTS", keys.done, keys.doneAt)).toBe(0)
      }), { resultTtl: TTL }))

  it.live("an id whose done record expired can be enqueued again; an unexpired one cannot", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        yield* enqueueNow(message("a"), message("b"))
        yield* completeLean
        yield* Effect.sleep(400)
        yield* enqueueNow(message("c"))
        yield* completeLean // c: a fresh done record, trims a and b
        yield* redis("HSET", keys.done, "a", "1|0|1||test.task")
        yield* redis("ZADD", keys.doneAt, "1", "a") // expired, not trimmed
        expect(yield* enqueueNow(message("a"), message("c"), message("a"))).toEqual([{ id: "a" }, { id: "c" }, {
          id: "a"
        }])
        expect((yield* record("a")).state).toBe("PENDING")
        expect(yield* redis<number>("HEXISTS", keys.done, "a")).toBe(0)
        expect((yield* claimNow()).map((d) => d.id)).toEqual(["a"])
        expect((yield* record("c")).state).toBe("SUCCESS")
      }), { resultTtl: "300 millis" }))

  it.live("a record that goes before the trim leaves its entry, so the trim deletes an expired entry's ids unread", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        yield* enqueueNow(message("a"), message("b"), message("c"))
        expect(yield* completeLean).toEqual([true, true, true])
        const [entry] = yield* redis<Array<string>>("ZRANGE", keys.doneAt, "0", "-1")
        expect(entry!.split("\n").sort()).toEqual(["a", "b", "c"])
        // a stale attempt turns c into a hash: c leaves the entry
        yield* ResultBackend.use((backend) => backend.recordStale("c", attempt("STALE")))
        const [left] = yield* redis<Array<string>>("ZRANGE", keys.doneAt, "0", "-1")
        expect(left!.split("\n").sort()).toEqual(["a", "b"])
        // the entry's time is up (set by hand, on its records too), not trimmed yet
        for (const id of ["a", "b"]) {
          const value = yield* redis<string>("HGET", keys.done, id)
          yield* redis("HSET", keys.done, id, value.replace(/^@\d+/, "@1"))
        }
        yield* redis("ZADD", keys.doneAt, "XX", "1", left!)
        // a is enqueued again: its expired record goes, and a leaves the entry
        expect(yield* enqueueNow(message("a"))).toEqual([{ id: "a" }])
        expect(yield* redis<Array<string>>("ZRANGEBYSCORE", keys.doneAt, "1", "1")).toEqual(["b"])
        // a ends again; the same complete trims the expired entry: b goes, a's new record stays
        expect(yield* completeLean).toEqual([true])
        expect(yield* redis<number>("HEXISTS", keys.done, "b")).toBe(0)
        expect(yield* redis<number>("HEXISTS", keys.done, "a")).toBe(1)
        expect((yield* record("a")).state).toBe("SUCCESS")
        expect((yield* record("c")).state).toBe("SUCCESS")
      }), { resultTtl: "1 minute" }))

  it.live("resultTtl 0 keeps done records forever: no doneAt entry, no expiry on the done hash", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        yield* enqueueNow(message("a"))
        yield* completeLean
        expect(yield* redis<number>("EXISTS", keys.doneAt)).toBe(0)
        expect(yield* redis<number>("PTTL", keys.done)).toBe(-1)
        expect((yield* record("a")).state).toBe("SUCCESS")
      }), { resultTtl: 0 }))

  it.live("a broker that never saw the task finds its done record; a stale attempt turns it into a hash", () =>
    run((prefix) =>
      Effect.gen(function*() {
        yield* enqueueNow(message("a", { task: "a|b|c|d|e", retries: 2 }))
        yield* completeLean
        const other = yield* Effect.scoped(
          Effect.gen(function*() {
            const backend = yield* ResultBackend
            const broker = yield* Broker
            const got = Option.getOrThrow(yield* backend.get("a"))
            const revoked = yield* broker.revoke("a")
            const awaited = Option.getOrThrow(yield* backend.awaitFinal("a"))
            yield* backend.recordStale("a", attempt("STALE"))
            return { got, revoked, awaited }
          }).pipe(Effect.provide(RedisBroker.layer({ url: server.url(), prefix, resultTtl: "1 hour" })))
        )
        expect(other.got).toMatchObject({ id: "a", task: "a|b|c|d|e", queue: "q", state: "SUCCESS", retries: 2 })
        expect(other.revoked).toBe("final")
        expect(other.awaited).toEqual(other.got)
        const keys = RedisBroker.queueKeys(prefix, "q")
        const key = RedisBroker.taskKey(prefix, "q", "a")
        expect(yield* redis<number>("HEXISTS", keys.done, "a")).toBe(0)
        expect(yield* redis<string | null>("ZSCORE", keys.doneAt, "a")).toBeNull()
        const pttl = yield* redis<number>("PTTL", key)
        // the expiry the done record had (this broker's resultTtl: 1 day)
        expect(pttl).toBeGreaterThan(86_400_000 - 60_000)
        expect(pttl).toBeLessThanOrEqual(86_400_000)
        const r = yield* record("a")
        expect(r).toEqual({ ...other.got, history: [attempt("STALE")] })
      })))

  it.live("purge leaves done records alone, as it does every ended task's record", () =>
    run(() =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(message("a"))
        yield* completeLean
        yield* enqueueNow(message("w"))
        expect(yield* broker.purge!(["q"])).toEqual([1])
        expect((yield* record("a")).state).toBe("SUCCESS")
        expect((yield* record("w")).state).toBe("REVOKED")
      })))
})

describe("RedisBroker done records with a result", () => {
  it.live("a fast-lane task whose result is stored ends as a done record with its result and attempt; awaitFinal sees it", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        const m = message("a", { task: "tâche|π", submittedAt: 1234 })
        yield* enqueueNow(m)
        // storeResult absent: the fast lane, marked "=" (its result is stored)
        expect((yield* redis<string>("HGET", keys.fast, "a")).startsWith("=0|1234|")).toBe(true)
        const [d] = yield* claimNow()
        // the message comes back as submitted: no storeResult added
        expect(d!.message).toEqual(m)
        const waiting = yield* Effect.forkChild(ResultBackend.use((backend) => backend.awaitFinal("a")))
        yield* Effect.sleep(50)
        const result = { text: "héllo|wörld", n: [1, 2], nested: {} }
        const broker = yield* Broker
        expect(yield* broker.complete([{ id: "a", token: d!.token, state: "SUCCESS", result, attempt: attempt("SUCCESS") }]))
          .toEqual([true])
        expect(yield* redis<number>("EXISTS", RedisBroker.taskKey(prefix, "q", "a"))).toBe(0)
        expect(yield* redis<Array<string>>("HKEYS", keys.fast)).toEqual(["\n"]) // its pin only
        const expected = {
          id: "a",
          task: "tâche|π",
          queue: "q",
          state: "SUCCESS",
          retries: 0,
          submittedAt: 1234,
          result,
          history: [attempt("SUCCESS")]
        }
        expect(yield* record("a")).toMatchObject(expected)
        expect(Option.getOrThrow(yield* Fiber.join(waiting))).toMatchObject(expected)
        // a result of nothing is kept as none
        yield* enqueueNow(message("b"))
        yield* completeAll(undefined)
        const b = yield* record("b")
        expect(b.state).toBe("SUCCESS")
        expect("result" in b).toBe(false)
      })))

  it.live("one complete call mixes stored and lean successes, a hash-lane one, a stale one and a failure", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(
          message("fast"),
          message("hash", { storeResult: true }),
          message("lean", { storeResult: false }),
          message("stale"),
          message("failed")
        )
        const ds = yield* claimNow()
        const d = (id: string) => ds.find((x) => x.id === id)!
        const ok = (id: string, result: unknown, storeResult?: boolean) => ({
          id,
          token: d(id).token,
          state: "SUCCESS" as const,
          result,
          attempt: attempt("SUCCESS"),
          message: d(id).message as import("@errand/core/Message").Message,
          ...(storeResult === undefined ? {} : { storeResult })
        })
        const outcome = yield* broker.complete([
          ok("fast", { a: 1 }),
          ok("hash", "h"),
          ok("lean", 3, false),
          { ...ok("stale", 4), token: d("stale").token + 1000 },
          {
            id: "failed",
            token: d("failed").token,
            state: "FAILURE",
            error: { _tag: "Boom", message: "boom" },
            attempt: attempt("FAILURE")
          }
        ])
        expect(outcome).toEqual([true, true, true, false, true])
        expect(yield* redis<number>("EXISTS", RedisBroker.taskKey(prefix, "q", "fast"))).toBe(0)
        expect(yield* record("fast")).toMatchObject({ state: "SUCCESS", result: { a: 1 }, history: [attempt("SUCCESS")] })
        expect(yield* redis<number>("EXISTS", RedisBroker.taskKey(prefix, "q", "hash"))).toBe(1)
        expect(yield* record("hash")).toMatchObject({ state: "SUCCESS", result: "h", history: [attempt("SUCCESS")] })
        const lean = yield* record("lean")
        expect(lean).toMatchObject({ state: "SUCCESS", history: [] })
        expect("result" in lean).toBe(false)
        expect(yield* record("stale")).toMatchObject({ state: "RECEIVED" })
        expect(yield* record("failed")).toMatchObject({ state: "FAILURE", error: { _tag: "Boom" } })
      })))

  it.live("known to enqueue, revoke and a stale attempt (which turns it into a hash, result and history kept); it expires", () =>
    run((prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const backend = yield* ResultBackend
        const keys = RedisBroker.queueKeys(prefix, "q")
        yield* enqueueNow(message("a"), message("b"))
        yield* completeAll(42)
        // a resubmit of a known id is a no-op; revoking a final task says so
        yield* enqueueNow(message("a"))
        expect(yield* claimNow()).toEqual([])
        expect(yield* broker.revoke("a")).toBe("final")
        // a late attempt is appended to the history of a hash made from the record
        yield* backend.recordStale("a", attempt("STALE", 0, "w-late"))
        expect(yield* redis<number>("HEXISTS", keys.done, "a")).toBe(0)
        expect(yield* record("a")).toMatchObject({
          state: "SUCCESS",
          result: 42,
          history: [attempt("SUCCESS"), attempt("STALE", 0, "w-late")]
        })
        // its time up (set by hand): unknown, and the id is new again
        const now = yield* Clock.currentTimeMillis
        const value = yield* redis<string>("HGET", keys.done, "b")
        yield* redis("HSET", keys.done, "b", value.replace(/^#\d+\|/, `#${now - 1}|`))
        expect(yield* get("b")).toEqual(Option.none())
        yield* enqueueNow(message("b"))
        expect((yield* claimNow()).map((d) => d.id)).toEqual(["b"])
      })))
})
