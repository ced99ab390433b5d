/**
 * The fast lane: a task whose result nobody reads (storeResult false), due
 * now, with no eta, dedup id or earlier retries, keeps no hash while all goes
 * well (see `src/commands/common.lua`). The contract suite runs in full on
 * such tasks (contract.test.ts); these tests check the keys behind it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import { Clock, Effect } from "effect"
import { attempt, claimNow, enqueueNow, message, record, withBroker } from "./utils/harness.ts"
import { command, useTestRedis } from "./utils/redis.ts"

const server = useTestRedis()

const redis = <A>(...args: ReadonlyArray<string>) => Effect.promise(() => command<A>(server.url(), ...args))

const lean = (id: string) => message(id, { storeResult: false, submittedAt: 1234, task: "fast|tâche" })

describe("RedisBroker fast lane", () => {
  it.live("enqueue, claim and a lean SUCCESS touch no task hash; status reads each state", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        const hash = RedisBroker.taskKey(prefix, "q", "a")
        yield* enqueueNow(lean("a"))
        expect(yield* redis<number>("EXISTS", hash)).toBe(0)
        expect(yield* redis<string>("HGET", keys.fast, "a")).toMatch(/^0\|1234\|11\|fast\|tâche\{/)
        expect(yield* record("a")).toMatchObject({ state: "PENDING", task: "fast|tâche", submittedAt: 1234, retries: 0 })

        const [d] = yield* claimNow()
        expect(d!.message).toEqual(lean("a"))
        expect(yield* redis<number>("EXISTS", hash)).toBe(0)
        expect(yield* record("a")).toMatchObject({ state: "RECEIVED", task: "fast|tâche" })
        const now = yield* Clock.currentTimeMillis
        expect(yield* broker.start([{ id: "a", token: d!.token, worker: "w-x", startedAt: now, ackEarly: false }]))
          .toEqual(["ok"])
        expect(yield* record("a")).toMatchObject({ state: "STARTED" })
        expect(yield* broker.renew([{ id: "a", token: d!.token }], 30_000)).toEqual(["ok"])
        expect(yield* broker.renew([{ id: "a", token: 999_999 }], 30_000)).toEqual(["stale"])

        const done = yield* broker.complete([{
          id: "a",
          token: d!.token,
          state: "SUCCESS",
          result: 1,
          attempt: attempt("SUCCESS"),
          storeResult: false
        }])
        expect(done).toEqual([true])
        expect(yield* redis<number>("EXISTS", hash, keys.fast, keys.fastLease)).toBe(0)
        expect(yield* record("a")).toMatchObject({ state: "SUCCESS", task: "fast|tâche", submittedAt: 1234, history: [] })
      })))

  it.live("a step off the lane (a retry, an updateState, a stored result) turns the task into a hash first", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        yield* enqueueNow(lean("r"), lean("s"), lean("k"), message("plain"))
        // a plain task (storeResult not false) is a hash from the start
        expect(yield* redis<number>("EXISTS", RedisBroker.taskKey(prefix, "q", "plain"))).toBe(1)
        expect(yield* redis<number>("HLEN", keys.fast)).toBe(3)
        const ds = yield* claimNow(10, 30_000, "w-1")
        const token = (id: string) => ds.find((d) => d.id === id)!.token
        const now = yield* Clock.currentTimeMillis

        expect(yield* broker.retry([{ id: "r", token: token("r"), dueAt: now, error: { _tag: "Boom", message: "boom" }, attempt: attempt("RETRY") }]))
          .toEqual([true])
        expect(yield* redis<string>("HGET", RedisBroker.taskKey(prefix, "q", "r"), "task")).toBe("fast|tâche")
        expect(yield* record("r")).toMatchObject({ state: "RETRY", retries: 1, submittedAt: 1234 })
        expect(yield* redis<number>("HEXISTS", keys.fast, "r")).toBe(0)

        expect(yield* ResultBackend.use((backend) => backend.setState("s", "PROGRESS", { pct: 50 }))).toBe(true)
        expect(yield* record("s")).toMatchObject({ state: "PROGRESS", meta: { pct: 50 }, task: "fast|tâche" })

        expect(yield* broker.complete([{ id: "k", token: token("k"), state: "SUCCESS", result: 7, attempt: attempt("SUCCESS") }]))
          .toEqual([true])
        expect(yield* record("k")).toMatchObject({ state: "SUCCESS", result: 7, history: [{ outcome: "SUCCESS" }] })
        expect(yield* redis<number>("HLEN", keys.fast)).toBe(0)
        expect(yield* redis<number>("HLEN", keys.fastLease)).toBe(0)
      })))

  it.live("an expired fast lease comes back as a lost attempt, with a fresh token; the old one is refused", () =>
    withBroker(server.url, () =>
      Effect.gen(function*() {
        const broker = yield* Broker
        yield* enqueueNow(lean("x"))
        const now = yield* Clock.currentTimeMillis
        const [first] = yield* claimNow(10, 100, "w-old")
        yield* broker.start([{ id: "x", token: first!.token, worker: "w-old", startedAt: now, ackEarly: false }])
        yield* Effect.sleep(250)
        const [second] = yield* claimNow(10, 30_000, "w-new")
        expect(second!.id).toBe("x")
        expect(second!.token).not.toBe(first!.token)
        expect(second!.lost).toMatchObject({ worker: "w-old", startedAt: now })
        const stale = yield* broker.complete([{
          id: "x",
          token: first!.token,
          state: "SUCCESS",
          attempt: attempt("SUCCESS"),
          storeResult: false
        }])
        expect(stale).toEqual([false])
      })))
})
