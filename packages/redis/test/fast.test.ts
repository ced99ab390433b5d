/**
 * The fast lane: a task whose result nobody reads (storeResult false), due
 * now, with no eta, dedup id or earlier retries, keeps no hash while all goes
 * well (see `src/commands/common.lua`). The contract suite runs in full on
 * such tasks (contract.test.ts); these tests check the keys behind it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import { noHeaders } from "@errand/core/internal/headers"
import type { Message } from "@errand/core/Message"
import { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import { Clock, Effect, Option } from "effect"
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
        // only what the message does not imply: priority, submit time, task, headers (none), payload
        expect(yield* redis<string>("HGET", keys.fast, "a")).toBe('~0|1234|11|0|fast|tâche{"n":1}')
        expect(yield* record("a")).toMatchObject({ state: "PENDING", task: "fast|tâche", submittedAt: 1234, retries: 0 })
        // the lane's pins (field "\n") are no task's: no id holds a newline
        expect(yield* ResultBackend.use((b) => b.get("\n"))).toEqual(Option.none())

        const [d] = yield* claimNow()
        expect(d!.message).toEqual(lean("a"))
        // no headers: the shared frozen empty ones, as on the memory broker
        expect((d!.message as Message).headers).toBe(noHeaders)
        expect(Object.isFrozen((d!.message as Message).headers)).toBe(true)
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
        expect(yield* redis<number>("EXISTS", hash)).toBe(0)
        // the lane's hashes keep only their pins (common.lua)
        expect(yield* redis<Array<string>>("HKEYS", keys.fast)).toEqual(["\n"])
        expect(yield* redis<Array<string>>("HKEYS", keys.fastLease)).toEqual(["\n"])
        expect(yield* record("a")).toMatchObject({ state: "SUCCESS", task: "fast|tâche", submittedAt: 1234, history: [] })
      })))

  it.live("a step off the lane (a retry, an updateState) turns the task into a hash first; a stored result ends as a done record", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        yield* enqueueNow(lean("r"), lean("s"), lean("k"), message("plain", { storeResult: true }))
        // a task that says storeResult true (not false, nor absent) is a hash from the start
        expect(yield* redis<number>("EXISTS", RedisBroker.taskKey(prefix, "q", "plain"))).toBe(1)
        expect(yield* redis<number>("HLEN", keys.fast)).toBe(3 + 1) // and its pin
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
        // no hash: a done record that keeps the result and the attempt
        expect(yield* redis<number>("EXISTS", RedisBroker.taskKey(prefix, "q", "k"))).toBe(0)
        expect(yield* redis<number>("HEXISTS", keys.done, "k")).toBe(1)
        expect(yield* redis<Array<string>>("HKEYS", keys.fast)).toEqual(["\n"])
        expect(yield* redis<Array<string>>("HKEYS", keys.fastLease)).toEqual(["\n"])
      })))

  it.live("the queue's name is written once, with the fast hash's pin; a task made whole later still names its queue", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        const nameKey = `${keys.tag}:queue`
        yield* enqueueNow(lean("first"))
        expect(yield* redis<string>("GET", nameKey)).toBe("q")
        // later submits find the hash pinned and leave the name alone
        yield* redis("SET", nameKey, "kept")
        yield* enqueueNow(lean("second"))
        expect(yield* redis<string>("GET", nameKey)).toBe("kept")
        yield* redis("SET", nameKey, "q")
        const ds = yield* claimNow(10, 30_000, "w-1")
        const second = ds.find((d) => d.id === "second")!
        const now = yield* Clock.currentTimeMillis
        expect(yield* broker.retry([{ id: "second", token: second.token, dueAt: now, error: { _tag: "Boom", message: "boom" }, attempt: attempt("RETRY") }]))
          .toEqual([true])
        const made = JSON.parse(yield* redis<string>("HGET", RedisBroker.taskKey(prefix, "q", "second"), "m"))
        expect(made).toMatchObject({ id: "second", queue: "q", task: "fast|tâche" })
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

  it.live("a claim's fast-lane tasks share one lease: one token, renewed as a whole, forgotten when its last task ends", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        yield* enqueueNow(lean("a"), lean("b"), lean("c"))
        const now = yield* Clock.currentTimeMillis
        const ds = yield* Broker.use((b) => b.claim({ queues: ["q"], worker: "w-1", max: 10, leaseMillis: 30_000, waitMillis: 0, start: 2 }))
        expect(ds.map((d) => d.id)).toEqual(["a", "b", "c"])
        expect(ds.map((d) => d.startedAt === undefined)).toEqual([false, false, true])
        const token = ds[0]!.token
        expect(ds.every((d) => d.token === token)).toBe(true)
        const t = String(token)
        // one claim entry; no task hash and nothing per task in the leased set
        expect(yield* redis<string>("HGET", keys.claim, t)).toMatch(/^\d+\|w-1$/)
        expect(yield* redis<string>("HGET", keys.claimIds, t)).toBe("a\nb\nc")
        expect(yield* redis<string>("HGET", keys.claimLeft, t)).toBe("3")
        expect(yield* redis<number>("ZCARD", keys.leased)).toBe(0)
        expect(yield* redis<Array<string>>("HMGET", keys.fastLease, "a", "c")).toEqual([t, `${t}|`])
        // hash tables from their first field (their pins), not listpacks,
        // which would find each field by a scan of them all (common.lua)
        expect(yield* redis<string>("OBJECT", "ENCODING", keys.fastLease)).toBe("hashtable")
        expect(yield* redis<string>("OBJECT", "ENCODING", keys.fast)).toBe("hashtable")
        const claimedAt = Number((yield* redis<string>("HGET", keys.claim, t)).split("|")[0])
        expect(yield* record("a")).toMatchObject({ state: "STARTED", updatedAt: claimedAt })
        expect(yield* record("c")).toMatchObject({ state: "RECEIVED", updatedAt: claimedAt })
        expect((yield* broker.stats(["q"]))[0]).toMatchObject({ ready: 0, running: 3 })

        // the claim's worker starts c: it stays in the lane, its lease says when
        expect(yield* broker.start([{ id: "c", token, worker: "w-1", startedAt: now + 5, ackEarly: false }])).toEqual(["ok"])
        expect(yield* redis<string>("HGET", keys.fastLease, "c")).toBe(`${t}|${now + 5}`)
        expect(yield* record("c")).toMatchObject({ state: "STARTED", updatedAt: now + 5 })

        // renewing one task extends the whole claim
        const before = Number(yield* redis<string>("ZSCORE", keys.claimAt, t))
        yield* Effect.sleep(5)
        expect(yield* broker.renew([{ id: "b", token }], 60_000)).toEqual(["ok"])
        expect(Number(yield* redis<string>("ZSCORE", keys.claimAt, t))).toBeGreaterThan(before + 29_000)

        const end = (id: string) => ({
          id,
          token,
          state: "SUCCESS" as const,
          attempt: attempt("SUCCESS"),
          storeResult: false
        })
        expect(yield* broker.complete([end("a"), end("c")])).toEqual([true, true])
        expect(yield* redis<string>("HGET", keys.claimLeft, t)).toBe("1")
        expect(yield* record("c")).toMatchObject({ state: "SUCCESS", task: "fast|tâche", submittedAt: 1234 })
        expect(yield* broker.complete([end("b")])).toEqual([true])
        expect(yield* redis<number>("EXISTS", keys.claim, keys.claimIds, keys.claimLeft, keys.claimAt)).toBe(0)
        expect(yield* redis<Array<string>>("HKEYS", keys.fastLease)).toEqual(["\n"])
        expect((yield* broker.stats(["q"]))[0]).toMatchObject({ running: 0 })
      })))

  it.live("an expired claim brings back only its tasks still leased, as lost attempts; ended and released ones stay", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        yield* enqueueNow(lean("a"), lean("b"), lean("c"), lean("d"))
        const first = yield* Broker.use((b) => b.claim({ queues: ["q"], worker: "w-old", max: 10, leaseMillis: 30_000, waitMillis: 0, start: 4 }))
        const token = first[0]!.token
        expect(first.map((d) => d.startedAt !== undefined)).toEqual([true, true, true, true])
        expect(yield* broker.complete([{ id: "a", token, state: "SUCCESS", attempt: attempt("SUCCESS"), storeResult: false }]))
          .toEqual([true])
        // a release turns d into a hash, ready again; the claim counts it out
        expect(yield* broker.release([{ id: "d", token }])).toEqual([true])
        expect(yield* redis<string>("HGET", keys.claimLeft, String(token))).toBe("2")
        const [again] = yield* claimNow(1, 30_000, "w-mid")
        expect(again).toMatchObject({ id: "d", lost: undefined })
        yield* broker.complete([{ id: "d", token: again!.token, state: "SUCCESS", attempt: attempt("SUCCESS"), storeResult: false }])

        // the claim's time is up (set by hand, so a slow machine cannot run it out early)
        yield* redis("ZADD", keys.claimAt, "XX", "1", String(token))
        const second = yield* claimNow(10, 30_000, "w-new")
        expect(second.map((d) => d.id).sort()).toEqual(["b", "c"])
        for (const d of second) {
          expect(d.token).not.toBe(token)
          expect(d.lost).toMatchObject({ worker: "w-old" })
          expect(d.lost!.startedAt).toBeGreaterThan(0)
        }
        expect(yield* redis<number>("HEXISTS", keys.claim, String(token))).toBe(0)
        expect(yield* record("a")).toMatchObject({ state: "SUCCESS" })
        expect(yield* record("d")).toMatchObject({ state: "SUCCESS" })
        // the old worker's late ends are refused
        const late = yield* broker.complete(["b", "c"].map((id) => ({
          id,
          token,
          state: "SUCCESS" as const,
          attempt: attempt("SUCCESS"),
          storeResult: false
        })))
        expect(late).toEqual([false, false])
      })))

  it.live("a claim's deadline is the queue's next wake-up when it comes first", () =>
    withBroker(server.url, () =>
      Effect.gen(function*() {
        yield* enqueueNow(lean("a"))
        const [d] = yield* claimNow(10, 200, "w-1")
        const t0 = yield* Clock.currentTimeMillis
        // nothing ready: a claim that waits wakes at the claim's deadline and finds a
        yield* Effect.sleep(10)
        const [back] = yield* Broker.use((b) => b.claim({ queues: ["q"], worker: "w-2", max: 10, leaseMillis: 30_000, waitMillis: 5_000 }))
        expect(back).toMatchObject({ id: "a", lost: { worker: "w-1" } })
        expect(back!.token).not.toBe(d!.token)
        expect((yield* Clock.currentTimeMillis) - t0).toBeLessThan(4_000)
      })))

  it.live("leases that name their queue need no lookup; a lean end takes its task and submit time from the message or the entry", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        yield* enqueueNow(lean("a"), lean("b"), lean("c"))
        const ds = yield* claimNow(10, 30_000, "w-1")
        const token = ds[0]!.token
        const now = yield* Clock.currentTimeMillis
        // another process: it never saw these ids, and there is no queue "q" in its lookups
        const answers = yield* Effect.scoped(
          Effect.gen(function*() {
            const broker = yield* Broker
            yield* redis("DEL", `${prefix}:queues`)
            const started = yield* broker.start([
              { id: "a", token, queue: "q", worker: "w-1", startedAt: now, ackEarly: false }
            ])
            const renewed = yield* broker.renew([{ id: "a", token, queue: "q" }], 30_000)
            const ended = yield* broker.complete([
              // the message as delivered: its task and submit time go into the done record
              {
                id: "a",
                token,
                queue: "q",
                message: lean("a"),
                state: "SUCCESS",
                attempt: attempt("SUCCESS"),
                storeResult: false
              },
              // no message: the script reads them from the fast-lane entry
              { id: "b", token, queue: "q", state: "SUCCESS", attempt: attempt("SUCCESS"), storeResult: false },
              // no queue: nothing finds it
              { id: "c", token, state: "SUCCESS", attempt: attempt("SUCCESS"), storeResult: false }
            ])
            return { started, renewed, ended }
          }).pipe(Effect.provide(RedisBroker.layer({ url: server.url(), prefix })))
        )
        expect(answers).toEqual({ started: ["ok"], renewed: ["ok"], ended: [true, true, false] })
        const keys = RedisBroker.queueKeys(prefix, "q")
        expect(yield* redis<Array<string>>("HMGET", keys.done, "a", "b")).toEqual([
          expect.stringMatching(/^@\d+\|\d+\|0\|1234\|\|fast\|tâche$/),
          expect.stringMatching(/^@\d+\|\d+\|0\|1234\|\|fast\|tâche$/)
        ])
        expect(yield* record("c")).toMatchObject({ state: "RECEIVED" })
      })))

  it.live("a batch of ends answers for each item in its place: stale ones among grouped, stored and one-by-one items", () =>
    withBroker(server.url, () =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const stored = (id: string) => message(id, { submittedAt: 1234 })
        yield* enqueueNow(lean("a"), lean("b"), stored("c"), lean("d"), stored("e"), lean("f"), lean("g"))
        const ds = yield* claimNow(10, 30_000, "w-1")
        const token = ds[0]!.token
        expect(ds.map((d) => d.id)).toEqual(["a", "b", "c", "d", "e", "f", "g"])
        // "f" has ended already: a second end of it is stale
        expect(
          yield* broker.complete([{
            id: "f",
            token,
            queue: "q",
            message: lean("f"),
            state: "SUCCESS",
            attempt: attempt("SUCCESS"),
            storeResult: false
          }])
        ).toEqual([true])
        const end = (id: string, t: number, m = lean(id)) => ({
          id,
          token: t,
          queue: "q",
          message: m,
          state: "SUCCESS" as const,
          result: 7,
          attempt: attempt("SUCCESS"),
          ...(m.storeResult === false ? { storeResult: false } : {})
        })
        const ended = yield* broker.complete([
          end("a", token), // grouped, lean
          end("b", token + 1), // not its lease: stale
          end("c", token, stored("c")), // grouped, result stored
          end("e", token + 1, stored("e")), // stored, not its lease: stale
          { ...end("d", token), state: "FAILURE", error: { _tag: "Boom", message: "boom" } }, // one by one
          end("f", token), // ended already: stale
          end("g", token) // grouped, lean
        ])
        expect(ended).toEqual([true, false, true, false, true, false, true])
        expect((yield* record("a")).state).toBe("SUCCESS")
        expect((yield* record("b")).state).toBe("RECEIVED")
        expect(yield* record("c")).toMatchObject({ state: "SUCCESS", result: 7 })
        expect((yield* record("d")).state).toBe("FAILURE")
        expect((yield* record("e")).state).toBe("RECEIVED")
        expect((yield* record("g")).state).toBe("SUCCESS")
      })))

  it.live("a message made whole again: headers, a payload with any JSON, a step off the lane that rebuilds it as submitted", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q/ü:{x}")
        const m = message("h", {
          queue: "q/ü:{x}",
          storeResult: false,
          priority: 7,
          headers: { traceparent: "00-abc-def-01", "x-ü": "a|b\"c" },
          payload: { text: "tâche|{}\n\"/", list: [], nested: { empty: {} }, n: 1.5e300 }
        })
        yield* broker.enqueue([{ message: m, dueAt: 0 }])
        expect(yield* redis<number>("HEXISTS", keys.fast, "h")).toBe(1)
        const [d] = yield* claimNow(10, 30_000, "w-1", ["q/ü:{x}"])
        expect(d!.message).toEqual(m)
        // a retry turns it into a hash; the next claim delivers the same message, retried once
        const now = yield* Clock.currentTimeMillis
        expect(yield* broker.retry([{ id: "h", token: d!.token, dueAt: now, error: { _tag: "Boom", message: "boom" }, attempt: attempt("RETRY") }]))
          .toEqual([true])
        expect(yield* redis<number>("HEXISTS", keys.fast, "h")).toBe(0)
        const [again] = yield* claimNow(10, 30_000, "w-1", ["q/ü:{x}"])
        expect(again!.message).toEqual({ ...m, retries: 1 })
      })))

  it.live("a claim's entries are read apart, whether or not they share their submit's head", () =>
    withBroker(server.url, () =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const a = message("a", { storeResult: false, submittedAt: 5, payload: { n: 1 } })
        const b = message("b", { storeResult: false, submittedAt: 5, payload: { n: 2 } })
        const c = message("c", { storeResult: false, submittedAt: 5, task: "test.taskX", payload: 3 })
        const d = message("d", { storeResult: false, submittedAt: 5, headers: { h: "1" }, payload: [] })
        const e = message("e", { storeResult: false, submittedAt: 55, payload: "x" })
        yield* broker.enqueue([a, b, c, d, e].map((m) => ({ message: m, dueAt: 0 })))
        const ds = yield* claimNow(10)
        expect(ds.map((x) => x.message)).toEqual([a, b, c, d, e])
      })))

  it.live("an entry written by an earlier version (the whole message, in the ready set) is still delivered and handed off", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        const m = message("old", { storeResult: false, priority: 5, submittedAt: 1234, payload: { list: [] } })
        // as the version before compact entries and the priority-5 list wrote it
        yield* redis("HSET", keys.fast, "old", `5|1234|9|test.task${JSON.stringify(m)}`)
        yield* redis("ZADD", keys.ready, String(4 * 10_000_000_000_000 + 5_000_000_000_000 + 1), "old")
        yield* redis("SADD", `${prefix}:queues`, "q")
        expect(yield* record("old")).toMatchObject({ state: "PENDING", task: "test.task", submittedAt: 1234 })
        const [d] = yield* claimNow()
        expect(d!.message).toEqual(m)
        const now = yield* Clock.currentTimeMillis
        expect(yield* broker.retry([{ id: "old", token: d!.token, dueAt: now, error: { _tag: "Boom", message: "boom" }, attempt: attempt("RETRY") }]))
          .toEqual([true])
        const [again] = yield* claimNow()
        expect(again!.message).toEqual({ ...m, retries: 1 })
      })))
})
