/**
 * Parked claims (see `src/commands/park.lua`): a claim of one queue that
 * finds it empty registers there and blocks on an inbox list; a script that
 * makes tasks ready leases them to it at once and pushes them there. These
 * tests check the keys behind it, and that nothing handed to a claim that
 * stopped waiting is lost. (The contract suite runs every claim through it.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import type { Message } from "@errand/core/Message"
import { RedisBroker } from "@errand/redis"
import { Clock, Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { createClient } from "redis"
import { claimNow, enqueueFresh, enqueueNow, message, record, withBroker } from "./utils/harness.ts"
import { command, deletePrefix, randomPrefix, useTestRedis } from "./utils/redis.ts"

const server = useTestRedis()

const redis = <A>(...args: ReadonlyArray<string>) => Effect.promise(() => command<A>(server.url(), ...args))

const kinds: ReadonlyArray<readonly [string, Partial<Message>]> = [
  ["hash lane", {}],
  ["fast lane", { storeResult: false }]
]

/** Waits (real time) until `check` holds, for at most 3 s. */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 300; i++) {
      if (yield* check) return
      yield* Effect.sleep(10)
    }
    throw new Error("condition not reached in 3 s")
  })

/** A claim of queue `q` that waits up to `waitMillis`, forked. */
const waitingClaim = (options: { readonly max?: number; readonly start?: number; readonly worker?: string } = {}) =>
  Effect.flatMap(Broker, (broker) =>
    Effect.forkChild(broker.claim({
      queues: ["q"],
      worker: options.worker ?? "w1",
      max: options.max ?? 10,
      leaseMillis: 30_000,
      waitMillis: 10_000,
      start: options.start ?? 0
    })))

// the first test's cases: a fresh submit of a fast-lane task of priority 5
// (what `Client.submit` sends for a task whose result nobody reads) is
// handed over from the script's arguments (see handOff in park.lua)
const handOffs: ReadonlyArray<readonly [string, Partial<Message>, typeof enqueueNow]> = [
  ...kinds.map(([kind, overrides]) => [kind, overrides, enqueueNow] as const),
  ["fast lane, a fresh submit, from the script's arguments", { storeResult: false, priority: 5 }, enqueueFresh]
]

describe("RedisBroker parked claims", () => {
  for (const [kind, overrides, enqueue] of handOffs) {
    it.live(`a task enqueued while a claim waits is handed to it, leased and started (${kind})`, () =>
      withBroker(server.url, (prefix) =>
        Effect.gen(function*() {
          const keys = RedisBroker.queueKeys(prefix, "q")
          const claiming = yield* waitingClaim({ start: 1 })
          yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
          const m = message("a", overrides)
          yield* enqueue(m)
          const [d, ...rest] = yield* Fiber.join(claiming)
          expect(rest).toEqual([])
          expect(d!.id).toBe("a")
          expect(d!.queue).toBe("q")
          expect(d!.message).toEqual(m)
          expect(d!.startedAt).toBeTypeOf("number")
          expect(d!.deadline).toBe(d!.startedAt! + 30_000)
          expect(yield* record("a")).toMatchObject({ state: "STARTED" })
          // served: no registration, no inbox, nothing listed
          expect(yield* redis<number>("HLEN", keys.park)).toBe(0)
          expect(yield* redis<number>("EXISTS", keys.fifo)).toBe(0)
          expect(yield* redis<Array<string>>("KEYS", `${keys.tag}:inbox:*`)).toEqual([])
          // the lease is the claim's: it acks as any other
          const broker = yield* Broker
          expect(yield* broker.renew([{ id: "a", token: d!.token }], 30_000)).toEqual(["ok"])
        })))
  }

  it.live("a parked claim takes the highest priority first and no more than its max", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        const claiming = yield* waitingClaim({ max: 2 })
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        yield* enqueueNow(
          message("low", { priority: 1 }),
          message("mid", { priority: 5, storeResult: false }),
          message("high", { priority: 9 })
        )
        const got = yield* Fiber.join(claiming)
        expect(got.map((d) => d.id)).toEqual(["high", "mid"])
        expect((yield* claimNow()).map((d) => d.id)).toEqual(["low"])
      })))

  // fresh fast-lane tasks of priority 5, handed over from the script's arguments
  const lean = (id: string) => message(id, { priority: 5, storeResult: false })

  for (const [how, enqueue] of [["a submit", enqueueNow], ["a fresh submit", enqueueFresh]] as const) {
    it.live(`two parked claims share ${how}, first parked first; what they leave stays ready, in order`, () =>
      withBroker(server.url, (prefix) =>
        Effect.gen(function*() {
          const keys = RedisBroker.queueKeys(prefix, "q")
          const first = yield* waitingClaim({ max: 2, worker: "w1" })
          yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
          const second = yield* waitingClaim({ max: 2, worker: "w2" })
          yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 2))
          yield* enqueue(...["a", "b", "c", "d", "e", "f"].map(lean))
          expect((yield* Fiber.join(first)).map((d) => d.id)).toEqual(["a", "b"])
          expect((yield* Fiber.join(second)).map((d) => d.id)).toEqual(["c", "d"])
          expect(yield* redis<Array<string>>("LRANGE", keys.fifo, "0", "-1")).toEqual(["e", "f"])
          expect((yield* claimNow()).map((d) => d.id)).toEqual(["e", "f"])
        })))
  }

  it.live("a fresh submit to a parked claim while older tasks are ready: the older go first", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        // "old" is listed while a claim is parked, as a task that comes back
        // ready without a hand-off would be (taken off the list so that the
        // claim parks, then put back)
        yield* enqueueFresh(lean("old"))
        expect(yield* redis<string>("LPOP", keys.fifo)).toBe("old")
        const claiming = yield* waitingClaim({ max: 1 })
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        yield* redis("RPUSH", keys.fifo, "old")
        yield* enqueueFresh(lean("new"))
        expect((yield* Fiber.join(claiming)).map((d) => d.id)).toEqual(["old"])
        expect((yield* claimNow()).map((d) => d.id)).toEqual(["new"])
      })))

  it.live("a task released by another worker is handed to a parked claim", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        yield* enqueueNow(message("a"))
        const [d] = yield* claimNow(10, 30_000, "w-leaving")
        const claiming = yield* waitingClaim({ worker: "w-next" })
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        expect(yield* broker.release([{ id: "a", token: d!.token }])).toEqual([true])
        const [again] = yield* Fiber.join(claiming)
        expect(again!.id).toBe("a")
        expect(again!.token).not.toBe(d!.token)
        expect(again!.lost).toBeUndefined()
      })))

  for (const [kind, overrides] of kinds) {
    it.live(`a claim interrupted as it is handed a task unparks and gives the task back, ready (${kind})`, () =>
      withBroker(server.url, (prefix) =>
        Effect.gen(function*() {
          const keys = RedisBroker.queueKeys(prefix, "q")
          const claiming = yield* waitingClaim({ start: 1, worker: "w-gone" })
          yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
          const [parkId] = yield* redis<Array<string>>("HKEYS", keys.park)
          // Redis holds every write for a while: the enqueue goes out first, then
          // the claim is interrupted and unparks; the task is handed to the
          // claim's BLPOP (left to finish) as it stops waiting
          yield* Effect.promise(() => command(server.url(), "CLIENT", "PAUSE", "300", "WRITE"))
          const enqueueing = yield* Effect.forkChild(enqueueNow(message("a", overrides)))
          yield* Effect.sleep(50)
          yield* Fiber.interrupt(claiming)
          yield* Fiber.join(enqueueing)
          // the interrupted claim unparked and gave back what was handed to it
          yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 0))
          yield* eventually(Effect.map(redis<number>("EXISTS", `${keys.tag}:inbox:${parkId}`), (n) => n === 0))
          yield* eventually(Effect.map(record("a"), (r) => r.state === "PENDING"))
          expect((yield* record("a")).history).toEqual([])
          // it was leased once, to the claim that stopped waiting, and released
          expect(yield* redis<string>("HGET", RedisBroker.taskKey(prefix, "q", "a"), "tok")).toBe("1")
          const [d] = yield* claimNow(10, 30_000, "w-next")
          expect(d!.id).toBe("a")
          expect(d!.token).toBe(2)
          expect(d!.lost).toBeUndefined()
        })))
  }

  for (const [kind, overrides] of kinds) {
    it.live(`closing the broker right after a parked claim is interrupted waits for it to give back what it was handed (${kind})`, () => {
      const prefix = randomPrefix()
      return Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(RedisBroker.layer({ url: server.url(), prefix }), scope)
        const broker = Context.get(context, Broker)
        const claiming = yield* Effect.forkChild(
          broker.claim({ queues: ["q"], worker: "w-gone", max: 10, leaseMillis: 30_000, waitMillis: 10_000, start: 1 })
        )
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        const [parkId] = yield* redis<Array<string>>("HKEYS", keys.park)
        // the task is handed to the claim's BLPOP as the claim stops waiting
        // (see above), and the broker is closed at once, as a worker's
        // process does when it shuts down
        yield* Effect.promise(() => command(server.url(), "CLIENT", "PAUSE", "300", "WRITE"))
        const now = yield* Clock.currentTimeMillis
        const enqueueing = yield* Effect.forkChild(broker.enqueue([{ message: message("a", overrides), dueAt: now }]))
        yield* Effect.sleep(50)
        yield* Fiber.interrupt(claiming)
        yield* Fiber.join(enqueueing)
        yield* Scope.close(scope, Exit.void)
        // closed: the registration is gone, the inbox holds at most the
        // wake-up it was sent (the BLPOP had returned with the task; it
        // expires in 2 s), and the task is ready again, at once
        expect(yield* redis<number>("HLEN", keys.park)).toBe(0)
        const inbox = `${keys.tag}:inbox:${parkId}`
        expect(yield* redis<Array<string>>("LRANGE", inbox, "0", "-1")).toEqual([""])
        expect(yield* redis<number>("PTTL", inbox)).toBeLessThanOrEqual(2000)
        const [d, ...rest] = yield* claimNow(10, 30_000, "w-next").pipe(
          Effect.provide(RedisBroker.layer({ url: server.url(), prefix }))
        )
        expect(rest).toEqual([])
        expect(d!.id).toBe("a")
        expect(d!.token).toBe(2)
        expect(d!.lost).toBeUndefined()
      }).pipe(Effect.ensuring(Effect.promise(() => deletePrefix(server.url(), prefix))))
    })
  }

  it.live("a registration past its time is not served, and is dropped", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        const now = yield* Clock.currentTimeMillis
        // a worker that died parked
        yield* redis("HSET", keys.park, "dead:1", `${now - 1}|10|10|30000|w-dead`)
        yield* enqueueNow(message("a", { storeResult: false }))
        expect(yield* redis<number>("HLEN", keys.park)).toBe(0)
        expect(yield* redis<number>("EXISTS", `${keys.tag}:inbox:dead:1`)).toBe(0)
        expect(yield* record("a")).toMatchObject({ state: "PENDING" })
        expect((yield* claimNow()).map((d) => d.id)).toEqual(["a"])
      })))

  it.live("a live registration is served into its inbox, which outlives the lease", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        const now = yield* Clock.currentTimeMillis
        yield* redis("HSET", keys.park, "p:1", `${now + 60_000}|1|0|30000|w-x`)
        yield* enqueueNow(message("a", { storeResult: false }), message("b", { storeResult: false }))
        expect(yield* redis<number>("HLEN", keys.park)).toBe(0)
        const inbox = `${keys.tag}:inbox:p:1`
        const [reply] = yield* redis<Array<string>>("LRANGE", inbox, "0", "-1")
        const parsed = JSON.parse(reply!) as Array<unknown>
        expect(Number(parsed[0])).toBeGreaterThanOrEqual(now)
        expect(parsed[3]).toBe("a")
        expect(parsed.length).toBe(5)
        // kept past the lease (30 s) by 10 minutes: the lease's end can tell whether it was taken
        const ttl = yield* redis<number>("PTTL", inbox)
        expect(ttl).toBeGreaterThan(600_000)
        expect(ttl).toBeLessThanOrEqual(630_000)
        expect(yield* record("a")).toMatchObject({ state: "RECEIVED" })
        expect(yield* record("b")).toMatchObject({ state: "PENDING" })
      })))

  for (const [kind, overrides] of [["hash lane", { storeResult: true }], ["fast lane", { storeResult: false }]] as const) {
    it.live(`tasks handed to a worker that died while parked come back as they were when their lease runs out (${kind})`, () =>
      withBroker(server.url, (prefix) =>
        Effect.gen(function*() {
          const keys = RedisBroker.queueKeys(prefix, "q")
          const now = yield* Clock.currentTimeMillis
          // what a worker killed while parked leaves: its registration (lease 200 ms, starting 2)
          yield* redis("HSET", keys.park, "dead:1", `${now + 60_000}|10|2|200|w-dead`)
          yield* enqueueNow(message("a", overrides), message("b", overrides), message("c", overrides))
          const inbox = `${keys.tag}:inbox:dead:1`
          expect(yield* redis<number>("LLEN", inbox)).toBe(1)
          expect(yield* record("a")).toMatchObject({ state: "STARTED" })
          yield* Effect.sleep(300)
          // the next claim finds the lease run out and the reply never taken
          const ds = yield* claimNow(10, 30_000, "w-next")
          expect(ds.map((d) => d.id)).toEqual(["a", "b", "c"])
          for (const d of ds) {
            expect(d.lost).toBeUndefined()
            expect(d.token).toBe(2)
          }
          for (const id of ["a", "b", "c"]) {
            const r = yield* record(id)
            expect(r.history).toEqual([])
            expect(r.retries).toBe(0)
          }
          expect(yield* redis<number>("EXISTS", inbox)).toBe(0)
        })))
  }

  it.live("a worker that took its hand-off and then died loses the attempts it started, as any claim", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const keys = RedisBroker.queueKeys(prefix, "q")
        const now = yield* Clock.currentTimeMillis
        yield* redis("HSET", keys.park, "gone:1", `${now + 60_000}|10|1|200|w-gone`)
        yield* enqueueNow(message("a", { storeResult: false }))
        // the worker's BLPOP took the reply, then the worker died
        expect(yield* redis<Array<string> | null>("LPOP", `${keys.tag}:inbox:gone:1`)).not.toBeNull()
        yield* Effect.sleep(300)
        const [d] = yield* claimNow(10, 30_000, "w-next")
        expect(d!.id).toBe("a")
        expect(d!.lost).toMatchObject({ worker: "w-gone" })
      })))

  it.live("a delayed task due before a parked claim would claim again nudges it; it then waits for the task", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        const now = yield* Clock.currentTimeMillis
        yield* redis("HSET", keys.park, "p:1", `${now + 60_000}|1|0|30000|w-x`)
        yield* broker.enqueue([{ message: message("later"), dueAt: now + 5_000 }])
        // nudged (an empty reply): it claims again, and parks until the task is due
        expect(yield* redis<Array<string>>("LRANGE", `${keys.tag}:inbox:p:1`, "0", "-1")).toEqual([""])
        expect(yield* redis<number>("HLEN", keys.park)).toBe(0)

        const t0 = yield* Clock.currentTimeMillis
        const claiming = yield* broker.claim({ queues: ["q"], worker: "w1", max: 1, leaseMillis: 30_000, waitMillis: 10_000 })
          .pipe(Effect.forkChild)
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        yield* broker.enqueue([{ message: message("soon"), dueAt: t0 + 200 }])
        const [d] = yield* Fiber.join(claiming)
        expect(d!.id).toBe("soon")
        const waited = (yield* Clock.currentTimeMillis) - t0
        expect(waited).toBeGreaterThanOrEqual(190)
      })))

  it.live("an idle claim parks again and again until its wait is over, and returns nothing", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        const t0 = yield* Clock.currentTimeMillis
        const got = yield* broker.claim({ queues: ["q"], worker: "w1", max: 5, leaseMillis: 30_000, waitMillis: 1_500 })
        expect(got).toEqual([])
        expect((yield* Clock.currentTimeMillis) - t0).toBeGreaterThanOrEqual(1_500)
        expect(yield* redis<number>("HLEN", keys.park)).toBe(0)
        expect(yield* redis<Array<string>>("KEYS", `${keys.tag}:inbox:*`)).toEqual([])
      })))

  it.live("a parked claim's connection goes back to the pool once it is served (one connection serves 30 in a row)", () => {
    const prefix = randomPrefix()
    return Effect.gen(function*() {
      const broker = yield* Broker
      const keys = RedisBroker.queueKeys(prefix, "q")
      for (let i = 0; i < 30; i++) {
        const claiming = yield* broker.claim({ queues: ["q"], worker: "w1", max: 1, leaseMillis: 30_000, waitMillis: 10_000 })
          .pipe(Effect.forkChild)
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        yield* broker.enqueue([{ message: message(`t${i}`), dueAt: Date.now() }])
        // with a pool of one, a connection kept after its claim was served
        // leaves the next claim waiting for it: this would time out
        const [d] = yield* Fiber.join(claiming).pipe(Effect.timeout("5 seconds"))
        expect(d!.id).toBe(`t${i}`)
      }
    }).pipe(
      Effect.provide(RedisBroker.layer({ url: server.url(), prefix, client: { maxConnections: 1 } })),
      Effect.ensuring(Effect.promise(() => deletePrefix(server.url(), prefix)))
    )
  })

  it.live("a submit or release whose tasks parked claims took all wakes no other claim; one that leaves some ready does", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        // what claims of several queues wait for (RedisBroker's wake channel)
        const woken: Array<string> = []
        const subscriber = createClient({ url: server.url() })
        yield* Effect.acquireRelease(
          Effect.promise(async () => {
            await subscriber.connect()
            await subscriber.subscribe(`${prefix}:wake`, (queue) => woken.push(queue))
          }),
          () => Effect.promise(() => subscriber.close())
        )
        const wokenAtLeast = async (n: number) => {
          for (let i = 0; i < 100 && woken.length < n; i++) await new Promise((r) => setTimeout(r, 10))
        }
        // a parked claim takes the one task: nobody else is woken
        const first = yield* waitingClaim({ max: 10 })
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        yield* enqueueNow(message("a"))
        expect((yield* Fiber.join(first)).map((d) => d.id)).toEqual(["a"])
        yield* Effect.sleep(100)
        expect(woken).toEqual([])
        // nothing parked: the task waits, and waiting claims are woken
        yield* enqueueNow(message("b"))
        yield* Effect.promise(() => wokenAtLeast(1))
        expect(woken).toEqual(["q"])
        yield* claimNow(10)
        // a parked claim of one takes one of two: the other is ready, and waiting claims are woken
        const second = yield* waitingClaim({ max: 1 })
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        yield* broker.enqueue([{ message: message("c"), dueAt: Date.now() }, { message: message("d"), dueAt: Date.now() }])
        expect((yield* Fiber.join(second)).map((d) => d.id)).toEqual(["c"])
        yield* Effect.promise(() => wokenAtLeast(2))
        expect(woken).toEqual(["q", "q"])
        const [d] = yield* claimNow(10)
        expect(d!.id).toEqual("d")
        // a task released to a parked claim: nobody else is woken either
        const third = yield* waitingClaim({ worker: "w-next" })
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        expect(yield* broker.release([{ id: "d", token: d!.token }])).toEqual([true])
        expect((yield* Fiber.join(third)).map((x) => x.id)).toEqual(["d"])
        yield* Effect.sleep(100)
        expect(woken).toEqual(["q", "q"])
      })))

  it.live("a claim whose lease is not a whole number of milliseconds parks and is served too", () =>
    withBroker(server.url, (prefix) =>
      Effect.gen(function*() {
        const broker = yield* Broker
        const keys = RedisBroker.queueKeys(prefix, "q")
        const claiming = yield* broker.claim({ queues: ["q"], worker: "w1", max: 1, leaseMillis: 2_500.5, waitMillis: 10_000 })
          .pipe(Effect.forkChild)
        yield* eventually(Effect.map(redis<number>("HLEN", keys.park), (n) => n === 1))
        const t0 = yield* Clock.currentTimeMillis
        yield* enqueueNow(message("a"))
        const [d] = yield* Fiber.join(claiming)
        expect(d!.id).toBe("a")
        // handed over at once, not found by the next claim after the park ran out
        expect((yield* Clock.currentTimeMillis) - t0).toBeLessThan(500)
      })))
})
