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
import { Clock, Effect, Option } from "effect"
import { attempt, claimNow, enqueueNow, message, record, withBroker } from "./utils/harness.ts"
import { command, useTestRedis } from "./utils/redis.ts"

const server = useTestRedis()

const run = <A, E>(body: (prefix: string) => Effect.Effect<A, E, import("./utils/harness.ts").Services>, options = {}) =>
  withBroker(server.url, body, options)

const redis = <A>(...args: ReadonlyArray<string>) => Effect.promise(() => command<A>(server.url(), ...args))

/** Claims everything ready on q and completes it SUCCESS without storing the result. */
const completeLean = Effect.gen(function*() {
  const broker = yield* Broker
  const ds = yield* claimNow(100)
  return yield* broker.complete(ds.map((d) => ({
    id: d.id,
    token: d.token,
    state: "SUCCESS" as const,
    result: { big: "x" },
    attempt: attempt("SUCCESS"),
    storeResult: false
  })))
})

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
