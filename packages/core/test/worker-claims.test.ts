/**
 * How a worker sizes its claims: `prefetch` per claim, grown up to
 * `prefetchMax` only while handlers end faster than a claim round trip and
 * the runners run dry waiting for claims. These run on the live clock (the
 * growth reads measured durations; under TestClock it stays off) against a
 * memory broker whose claims take a few milliseconds, as a Redis round trip
 * does.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import { Broker, type BrokerError, Client, MemoryBroker, Task, Worker } from "@errand/core"

const Noop = Task.make("claims.noop", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
const Sleepy = Task.make("claims.sleepy", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })

/** A Client on the memory broker whose claims go through `around`. */
const claimsThrough = (
  around: (
    claim: Effect.Effect<ReadonlyArray<Broker.Delivery>, BrokerError>,
    options: Broker.ClaimOptions
  ) => Effect.Effect<ReadonlyArray<Broker.Delivery>, BrokerError>
) =>
  Client.layer.pipe(Layer.provideMerge(
    Layer.effect(
      Broker.Broker,
      Effect.map(Effect.service(Broker.Broker), (broker) =>
        Broker.Broker.of({ ...broker, claim: (options) => around(broker.claim(options), options) }))
    ).pipe(Layer.provideMerge(MemoryBroker.layer))
  ))

/** The memory broker, each claim delayed by `rttMillis` and its `max` recorded. */
const recording = (rttMillis: number) => {
  const maxes: Array<number> = []
  const layer = claimsThrough((claim, options) =>
    Effect.andThen(Effect.sync(() => maxes.push(options.max)), Effect.delay(claim, rttMillis))
  )
  return { maxes, layer }
}

const drain = (task: typeof Noop | typeof Sleepy, count: number, done: () => number) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const jobs = yield* client.submitMany(task, Array.from({ length: count }, (_, n) => ({ n })))
    while (done() < count) yield* Effect.sleep(5)
    return jobs
  })

describe("claim size", () => {
  it.live("claims grow from prefetch up to prefetchMax while fast handlers wait for claims", () => {
    const { layer, maxes } = recording(3)
    let ran = 0
    const impl = Task.implement(Noop, ({ n }) => Effect.sync(() => (ran++, n)))
    return Effect.gen(function*() {
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 4, prefetchMax: 64 })
      const jobs = yield* drain(Noop, 3000, () => ran)
      const client = yield* Client.Client
      for (let i = 0; i < jobs.length; i += 97) assert.strictEqual(yield* client.await(jobs[i]!), i)
      assert.strictEqual(ran, 3000, "every task ran exactly once")
      assert.isTrue(maxes.some((m) => m > 4), `claims grew beyond prefetch: ${maxes.slice(0, 20).join(", ")}`)
      assert.isTrue(maxes.every((m) => m <= 64), `no claim beyond prefetchMax: ${Math.max(...maxes)}`)
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("grown claims shrink back to prefetch once handlers get slower than a claim round trip", () => {
    const { layer, maxes } = recording(3)
    let ran = 0
    let slow = false
    const impl = Task.implement(Noop, ({ n }) =>
      Effect.as(slow ? Effect.sleep(20) : Effect.void, n).pipe(Effect.ensuring(Effect.sync(() => ran++))))
    return Effect.gen(function*() {
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 4, prefetchMax: 64 })
      yield* drain(Noop, 3000, () => ran)
      assert.isTrue(maxes.some((m) => m > 4), `claims grew first: ${maxes.slice(0, 20).join(", ")}`)
      slow = true
      const before = maxes.length
      yield* drain(Noop, 300, () => ran - 3000)
      const after = maxes.slice(before)
      assert.isAtMost(after.at(-1)!, 4, `the last claims are back at prefetch: ${after.join(", ")}`)
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("claims stay at prefetch while handlers take longer than a claim round trip", () => {
    const { layer, maxes } = recording(1)
    let ran = 0
    const impl = Task.implement(Sleepy, ({ n }) => Effect.as(Effect.sleep(15), n).pipe(Effect.ensuring(Effect.sync(() => ran++))))
    return Effect.gen(function*() {
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 4, prefetchMax: 64 })
      yield* drain(Sleepy, 60, () => ran)
      assert.isTrue(maxes.every((m) => m <= 4), `claims stayed within prefetch: ${maxes.join(", ")}`)
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("prefetchMax equal to prefetch turns the growth off", () => {
    const { layer, maxes } = recording(3)
    let ran = 0
    const impl = Task.implement(Noop, ({ n }) => Effect.sync(() => (ran++, n)))
    return Effect.gen(function*() {
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 4, prefetchMax: 4 })
      yield* drain(Noop, 1000, () => ran)
      assert.isTrue(maxes.every((m) => m <= 4), `claims stayed within prefetch: ${Math.max(...maxes)}`)
    }).pipe(Effect.scoped, Effect.provide(layer))
  })
})

/**
 * The memory broker, each claim delayed by `rttMillis` (0: none, the claim
 * lands at once), recording at each
 * claim how many delivered tasks had not run yet (`notRun`, from `ran()`)
 * how many the previous claim delivered and how many it asked to start,
 * and how many claims are in flight.
 */
const watching = (rttMillis: number, ran: () => number) => {
  const calls: Array<{ readonly notRun: number; readonly previous: number; readonly start: number }> = []
  let delivered = 0
  let previous = 0
  let inFlight = 0
  const layer = claimsThrough((claim, options) =>
    Effect.suspend(() => {
      calls.push({ notRun: delivered - ran(), previous, start: options.start ?? 0 })
      inFlight++
      return (rttMillis > 0 ? Effect.delay(claim, rttMillis) : claim).pipe(
        Effect.tap((batch) =>
          Effect.sync(() => {
            delivered += batch.length
            previous = batch.length
          })
        ),
        Effect.ensuring(Effect.sync(() => inFlight--))
      )
    })
  )
  return { calls, inFlight: () => inFlight, layer }
}

describe("claiming ahead", () => {
  it.live("while a backlog drains, the next claim goes out before the claimed tasks run; each task runs once", () => {
    const seen = new Set<number>()
    let ran = 0
    const { calls, layer } = watching(3, () => ran)
    const impl = Task.implement(Noop, ({ n }) => Effect.sync(() => (seen.add(n), ran++, n)))
    return Effect.gen(function*() {
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 32, prefetchMax: 32 })
      yield* drain(Noop, 3000, () => ran)
      assert.strictEqual(ran, 3000)
      assert.strictEqual(seen.size, 3000, "every task ran exactly once")
      // without claiming ahead a claim leaves once half a batch is free: at
      // most concurrency + batch / 2 (20) tasks not yet run
      const ahead = calls.filter((c) => c.previous === 32 && c.notRun >= 32)
      assert.isAbove(ahead.length, 0, `a claim went out with a full batch not yet run: ${calls.slice(0, 30).map((c) => c.notRun).join(", ")}`)
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("a worker shut down with a claim ahead in flight gives its tasks back at once", () => {
    const seen = new Map<number, number>()
    let ran = 0
    const { calls, inFlight, layer } = watching(5, () => ran)
    const impl = Task.implement(Noop, ({ n }) => Effect.sync(() => (seen.set(n, (seen.get(n) ?? 0) + 1), ran++, n)))
    return Effect.gen(function*() {
      const client = yield* Client.Client
      yield* client.submitMany(Noop, Array.from({ length: 5000 }, (_, n) => ({ n })))
      // a worker whose leases outlive the test: a task left leased would not come back in time
      const first = yield* Scope.make()
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 64, prefetchMax: 64, lease: "10 minutes" }).pipe(
        Scope.provide(first)
      )
      // shut it down while a claim made ahead of a full batch is at the broker
      while (!(inFlight() > 0 && calls.at(-1)!.notRun >= 64)) {
        assert.isBelow(ran, 5000, "the first worker claimed ahead before the backlog ran out")
        yield* Effect.sleep(1)
      }
      yield* Scope.close(first, Exit.void)
      assert.strictEqual(inFlight(), 0, "the claim in flight landed before the worker stopped")
      const before = ran
      assert.isBelow(before, 5000)
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 64 })
      const deadline = Date.now() + 5000
      while (ran < 5000 && Date.now() < deadline) yield* Effect.sleep(5)
      assert.strictEqual(ran, 5000, "the tasks the first worker held came back at once")
      assert.isTrue([...seen.values()].every((k) => k === 1), "each task ran once")
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("a broker whose claims land at once (the memory broker's) gets at most one claim ahead", () => {
    let ran = 0
    const { calls, layer } = watching(0, () => ran)
    const impl = Task.implement(Noop, ({ n }) => Effect.sync(() => (ran++, n)))
    return Effect.gen(function*() {
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 32, prefetchMax: 32 })
      yield* drain(Noop, 3000, () => ran)
      assert.strictEqual(ran, 3000)
      const ahead = calls.filter((c) => c.previous === 32 && c.notRun >= 32)
      assert.isAtMost(ahead.length, 1, `claims made ahead: ${ahead.length}`)
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("no claim ahead while the runners are busy, though the handler time learned so far is quick", () => {
    let started = 0
    let ran = 0
    // at each claim: how many delivered tasks had not started
    const { calls, layer } = watching(3, () => started)
    // the first task ends at once; the others take 300 ms each
    const impl = Task.implement(Sleepy, ({ n }) =>
      Effect.sync(() => started++).pipe(
        Effect.andThen(n === 0 ? Effect.void : Effect.sleep(300)),
        Effect.as(n),
        Effect.ensuring(Effect.sync(() => ran++))
      ))
    return Effect.gen(function*() {
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 4, prefetchMax: 4 })
      yield* drain(Sleepy, 24, () => ran)
      const ahead = calls.filter((c) => c.previous === 4 && c.notRun >= 4)
      // a claim that waits for room is made with at most half a batch not started
      assert.strictEqual(ahead.length, 0, `claims made with a full batch not started: ${calls.map((c) => c.notRun).join(", ")}`)
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("a claim ahead starts none of its tasks while a start round trip is quicker than a handler", () => {
    let ran = 0
    // claims take 20 ms, a batch of 8 runs in ~2 ms: the runners run dry waiting for each
    const { calls, layer } = watching(20, () => ran)
    const impl = Task.implement(Sleepy, ({ n }) => Effect.as(Effect.sleep(1), n).pipe(Effect.ensuring(Effect.sync(() => ran++))))
    return Effect.gen(function*() {
      yield* Worker.make({ tasks: [impl], concurrency: 4, prefetch: 8, prefetchMax: 8 })
      yield* drain(Sleepy, 400, () => ran)
      const ahead = calls.filter((c) => c.previous === 8 && c.notRun >= 8)
      assert.isAbove(ahead.length, 0, "claims were made ahead")
      // the runners idle when it was sent take the batch before it
      assert.isTrue(ahead.every((c) => c.start === 0), `starts asked ahead: ${ahead.map((c) => c.start).join(", ")}`)
    }).pipe(Effect.scoped, Effect.provide(layer))
  })
})
