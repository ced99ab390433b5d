import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Option } from "effect"
import { TestClock } from "effect/testing"
import { type Broker, MemoryBroker } from "@errand/core"
import type { Attempt } from "../src/Message.ts"
import * as BrokerContract from "@errand/core/testing/BrokerContract"

const attempt: Attempt = { attempt: 0, worker: "w", startedAt: 0, endedAt: 0, outcome: "SUCCESS" }

/** A small seeded PRNG (mulberry32), so a failure replays. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/**
 * Leases taken with mixed lease times, renewed, completed, released and run
 * out in random order: the broker's next due time and the leases that come
 * back lost always match a plain model (every lease and its deadline).
 */
const scenario = (seed: number) =>
  Effect.gen(function*() {
    const random = prng(seed)
    const pick = <A>(xs: ReadonlyArray<A>) => xs[Math.floor(random() * xs.length)]!
    const { broker, store } = yield* MemoryBroker.make
    /** id → its current lease and deadline. */
    const model = new Map<string, { lease: Broker.Lease; deadline: number }>()
    let now = yield* Clock.currentTimeMillis
    let next = 0
    for (let step = 0; step < 400; step++) {
      const r = random()
      if (r < 0.35) {
        const n = 1 + Math.floor(random() * 40)
        yield* broker.enqueue(Array.from({ length: n }, () => ({
          message: BrokerContract.message("q", { id: `t${next++}` }),
          dueAt: 0
        })))
        const leaseMillis = pick([1_000, 5_000, 10_000, 10_000, 10_000, 30_000])
        const got = yield* broker.claim({ queues: ["q"], worker: "w", max: n, leaseMillis, waitMillis: 0 })
        for (const d of got) {
          // a lease that ran out comes back lost, never one still running (a
          // released task keeps its earlier lost marker: not in the model)
          const was = model.get(d.id)
          if (was !== undefined) assert.isAtMost(was.deadline, now, `${d.id} was claimed while still leased`)
          model.set(d.id, { lease: { id: d.id, token: d.token }, deadline: d.deadline })
        }
      } else if (r < 0.65 && model.size > 0) {
        const ids = [...model.keys()].filter(() => random() < 0.6)
        const done = yield* broker.complete(ids.map((id) => ({
          ...model.get(id)!.lease,
          state: "SUCCESS" as const,
          storeResult: false,
          attempt
        })))
        assert.deepStrictEqual(done, ids.map(() => true))
        for (const id of ids) model.delete(id)
      } else if (r < 0.75 && model.size > 0) {
        const ids = [...model.keys()].filter(() => random() < 0.3)
        const leaseMillis = pick([500, 2_000, 10_000, 40_000])
        yield* broker.renew(ids.map((id) => model.get(id)!.lease), leaseMillis)
        for (const id of ids) model.get(id)!.deadline = now + leaseMillis
      } else if (r < 0.8 && model.size > 0) {
        const ids = [...model.keys()].filter(() => random() < 0.2)
        yield* broker.release(ids.map((id) => model.get(id)!.lease))
        for (const id of ids) model.delete(id)
      } else {
        const by = pick([100, 1_000, 3_000, 7_000])
        now += by
        yield* TestClock.adjust(by)
        // claim everything ready: exactly the leases that ran out come back lost
        const due = [...model.entries()].filter(([, m]) => m.deadline <= now).map(([id]) => id).sort()
        const got = yield* broker.claim({ queues: ["q"], worker: "w", max: 100_000, leaseMillis: 10_000, waitMillis: 0 })
        const lost = got.filter((d) => model.has(d.id)).map((d) => d.id).sort()
        assert.deepStrictEqual(lost, due, `seed ${seed} step ${step}`)
        for (const d of got) if (model.has(d.id)) assert.isDefined(d.lost)
        for (const d of got) {
          // (an earlier lost lease, never started, stays the one reported)
          const was = model.get(d.id)
          if (was !== undefined) assert.isAtMost(d.lost!.expiredAt, was.deadline)
          model.set(d.id, { lease: { id: d.id, token: d.token }, deadline: d.deadline })
        }
      }
      const nextDue = yield* store.nextDueAt
      const deadlines = [...model.values()].map((m) => m.deadline)
      assert.deepStrictEqual(
        Option.getOrUndefined(nextDue),
        deadlines.length === 0 ? undefined : Math.min(...deadlines),
        `seed ${seed} step ${step}`
      )
    }
    // every lease still held runs out, and comes back lost
    now += 100_000
    yield* TestClock.adjust(100_000)
    const got = yield* broker.claim({ queues: ["q"], worker: "w", max: 100_000, leaseMillis: 10_000, waitMillis: 0 })
    assert.deepStrictEqual(
      got.filter((d) => model.has(d.id) && d.lost !== undefined).map((d) => d.id).sort(),
      [...model.keys()].sort()
    )
  })

describe("MemoryBroker: leases with mixed lease times", () => {
  it.effect("run out at their deadlines, whatever the order they were taken, renewed or ended in", () =>
    Effect.gen(function*() {
      for (let seed = 1; seed <= 20; seed++) yield* scenario(seed)
    }))

  it.effect("a shorter lease taken after a longer one runs out first", () =>
    Effect.gen(function*() {
      const { broker, store } = yield* MemoryBroker.make
      const claim = (leaseMillis: number) =>
        broker.claim({ queues: ["q"], worker: "w", max: 1, leaseMillis, waitMillis: 0 })
      yield* broker.enqueue(["a", "b", "c"].map((id) => ({ message: BrokerContract.message("q", { id }), dueAt: 0 })))
      yield* claim(10_000)
      yield* claim(2_000)
      yield* claim(5_000)
      const order: Array<string> = []
      for (const at of [2_000, 5_000, 10_000]) {
        assert.deepStrictEqual(yield* store.nextDueAt, Option.some(at))
        yield* TestClock.adjust(at - (order.length === 0 ? 0 : [2_000, 5_000, 10_000][order.length - 1]!))
        const [d] = yield* claim(60_000)
        order.push(d!.id)
      }
      assert.deepStrictEqual(order, ["b", "c", "a"])
    }))

  it.effect("many ended leases around a few held ones: the held ones still run out", () =>
    Effect.gen(function*() {
      const { broker, store } = yield* MemoryBroker.make
      const ids = Array.from({ length: 3_000 }, (_, i) => `t${i}`)
      yield* broker.enqueue(ids.map((id) => ({ message: BrokerContract.message("q", { id }), dueAt: 0 })))
      const got = yield* broker.claim({ queues: ["q"], worker: "w", max: 3_000, leaseMillis: 10_000, waitMillis: 0 })
      const held = new Set(["t5", "t1500", "t2999"])
      yield* broker.complete(got.filter((d) => !held.has(d.id)).map((d) => ({
        id: d.id,
        token: d.token,
        state: "SUCCESS" as const,
        storeResult: false,
        attempt
      })))
      const t1500 = got.find((d) => d.id === "t1500")!
      yield* TestClock.adjust(1_000)
      yield* broker.renew([{ id: t1500.id, token: t1500.token }], 20_000)
      assert.deepStrictEqual(yield* store.nextDueAt, Option.some(10_000))
      assert.strictEqual(yield* store.pending, 3)
      yield* TestClock.adjust(9_000)
      const first = yield* broker.claim({ queues: ["q"], worker: "w", max: 10, leaseMillis: 60_000, waitMillis: 0 })
      assert.deepStrictEqual(first.map((d) => d.id).sort(), ["t2999", "t5"])
      assert.deepStrictEqual(yield* store.nextDueAt, Option.some(21_000))
      yield* TestClock.adjust(11_000)
      const second = yield* broker.claim({ queues: ["q"], worker: "w", max: 10, leaseMillis: 60_000, waitMillis: 0 })
      assert.deepStrictEqual(second.map((d) => d.id), ["t1500"])
    }))
})
