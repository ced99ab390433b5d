/**
 * The contract every `Broker` + `ResultBackend` layer keeps, as a vitest
 * suite. Run it against your layer to show it behaves like the memory and
 * Redis layers:
 *
 * @example
 * ```ts
 * // test/contract.test.ts
 * import { BrokerContract } from "@errand/core/testing/BrokerContract"
 * import { MemoryBroker } from "@errand/core"
 *
 * BrokerContract.suite("memory", MemoryBroker.layer)
 * ```
 *
 * The suite runs on the live clock with short leases (100s of ms), each test
 * on queues of its own, so one layer instance (one Redis prefix) serves all.
 *
 * @since 0.1.0
 */
import { assert, describe, layer } from "@effect/vitest"
import { Clock, Effect, Fiber, type Layer, Option } from "effect"
import * as Broker from "../Broker.ts"
import type { Attempt, Message } from "../Message.ts"
import { ResultBackend } from "../ResultBackend.ts"

const rand = () => Math.random().toString(36).slice(2, 10)

/**
 * A message for the suite.
 *
 * @since 0.1.0
 */
export const message = (queue: string, overrides: Partial<Message> = {}): Message => ({
  id: `t-${rand()}`,
  task: "contract.task",
  queue,
  payload: { n: 1 },
  headers: {},
  priority: 5,
  retries: 0,
  submittedAt: 0,
  ...overrides
})

const attempt = (outcome: Attempt["outcome"], extra: Partial<Attempt> = {}): Attempt => ({
  attempt: 0,
  worker: "w-contract",
  startedAt: 1,
  endedAt: 2,
  outcome,
  ...extra
})

/** An optional broker operation the suite needs: missing ones fail the test that uses them. */
const need = <A>(op: A | undefined, name: string): A => {
  if (op === undefined) throw new Error(`this broker layer does not implement Broker.${name}`)
  return op
}

const workerInfo = (id: string, now: number, extra: Partial<Broker.WorkerInfo> = {}): Broker.WorkerInfo => ({
  id,
  host: "host-1",
  pid: 4242,
  queues: ["a", "b"],
  concurrency: 8,
  startedAt: now - 1000,
  heartbeatAt: now,
  aliveUntil: now + 10_000,
  expiresAt: now + 60_000,
  ...extra
})

const claimOptions = (queue: string, extra: Partial<Broker.ClaimOptions> = {}): Broker.ClaimOptions => ({
  queues: [queue],
  worker: "w-contract",
  max: 100,
  leaseMillis: 10_000,
  waitMillis: 0,
  ...extra
})

/**
 * Options of `suite`.
 *
 * @since 0.1.0
 */
export interface SuiteOptions {
  /**
   * Fields every message of the suite has (a test's own fields win): e.g.
   * `{ storeResult: false }` runs the whole contract on tasks whose result
   * nobody reads, which a broker may keep differently (Redis's fast lane).
   */
  readonly messages?: Partial<Message> | undefined
}

/**
 * Registers the contract suite for a layer providing `Broker` and
 * `ResultBackend`.
 *
 * @since 0.1.0
 */
export const suite = <E>(
  name: string,
  brokerLayer: Layer.Layer<Broker.Broker | ResultBackend, E>,
  options: SuiteOptions = {}
) =>
  describe(`Broker contract: ${name}`, () => {
    const msg = (queue: string, overrides: Partial<Message> = {}): Message =>
      message(queue, { ...options.messages, ...overrides })
    layer(brokerLayer, { timeout: 30_000, excludeTestServices: true })((it) => {
      const setup = Effect.gen(function*() {
        const broker = yield* Broker.Broker
        const backend = yield* ResultBackend
        const now = yield* Clock.currentTimeMillis
        const queue = `q-${rand()}`
        const enqueue = (m: Message, dueAt = now, dedupId?: string) =>
          broker.enqueue([{ message: m, dueAt, dedupId }]).pipe(Effect.map((r) => r[0]!))
        const record = (id: string) => Effect.map(backend.get(id), Option.getOrThrow)
        return { broker, backend, queue, now, enqueue, record }
      })

      it.effect("enqueue writes PENDING records; claim leases highest priority first, then oldest", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue, record } = yield* setup
          const low = msg(queue, { priority: 1 })
          const a = msg(queue, { priority: 5 })
          const b = msg(queue, { priority: 5 })
          const high = msg(queue, { priority: 9 })
          for (const m of [low, a, b, high]) yield* enqueue(m)
          assert.strictEqual((yield* record(a.id)).state, "PENDING")
          const claimed = yield* broker.claim(claimOptions(queue, { max: 3 }))
          assert.deepStrictEqual(claimed.map((d) => d.id), [high.id, a.id, b.id])
          assert.deepStrictEqual(claimed[0]!.message, high)
          assert.strictEqual((yield* record(a.id)).state, "RECEIVED")
          const rest = yield* broker.claim(claimOptions(queue))
          assert.deepStrictEqual(rest.map((d) => d.id), [low.id])
          assert.strictEqual((yield* broker.claim(claimOptions(queue))).length, 0)
        }))

      it.effect("claim order: higher priorities, then tasks given back, then oldest first, then lower priorities", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const a = msg(queue, { priority: 5 })
          const b = msg(queue, { priority: 5 })
          const low = msg(queue, { priority: 4 })
          const high = msg(queue, { priority: 6 })
          for (const m of [a, b, low, high]) yield* enqueue(m)
          const first = yield* broker.claim(claimOptions(queue, { max: 2 }))
          assert.deepStrictEqual(first.map((d) => d.id), [high.id, a.id])
          // a goes back to the front of its priority; c comes after b; b is revoked while waiting
          assert.deepStrictEqual(yield* broker.release([{ id: first[1]!.id, token: first[1]!.token }]), [true])
          const c = msg(queue, { priority: 5 })
          yield* enqueue(c)
          assert.strictEqual(yield* broker.revoke(b.id), "revoked")
          assert.deepStrictEqual(yield* broker.stats([queue]), [{ queue, ready: 3, delayed: 0, running: 1, dead: 0 }])
          const rest = yield* broker.claim(claimOptions(queue))
          assert.deepStrictEqual(rest.map((d) => d.id), [a.id, c.id, low.id])
        }))

      it.effect("a batch of many enqueues and claims in slices of max", () =>
        Effect.gen(function*() {
          const { broker, now, queue } = yield* setup
          const ms = Array.from({ length: 1000 }, () => msg(queue))
          const out = yield* broker.enqueue(ms.map((m) => ({ message: m, dueAt: now })))
          assert.strictEqual(out.length, 1000)
          const first = yield* broker.claim(claimOptions(queue, { max: 300 }))
          assert.strictEqual(first.length, 300)
          assert.deepStrictEqual(first.map((d) => d.id), ms.slice(0, 300).map((m) => m.id))
          const [stats] = yield* broker.stats([queue])
          assert.deepStrictEqual(stats, { queue, ready: 700, delayed: 0, running: 300, dead: 0 })
        }))

      it.effect("a delayed task is held by the broker until it is due", () =>
        Effect.gen(function*() {
          const { broker, enqueue, now, queue } = yield* setup
          const m = msg(queue)
          yield* enqueue(m, now + 300)
          assert.strictEqual((yield* broker.claim(claimOptions(queue))).length, 0)
          assert.strictEqual((yield* broker.stats([queue]))[0]!.delayed, 1)
          yield* Effect.sleep(400)
          const claimed = yield* broker.claim(claimOptions(queue))
          assert.deepStrictEqual(claimed.map((d) => d.id), [m.id])
        }))

      it.effect("an idle claim waits and wakes when a task is submitted", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const fiber = yield* Effect.forkChild(broker.claim(claimOptions(queue, { waitMillis: 5_000 })))
          yield* Effect.sleep(100)
          const m = msg(queue)
          const t0 = yield* Clock.currentTimeMillis
          yield* enqueue(m)
          const claimed = yield* Fiber.join(fiber)
          const t1 = yield* Clock.currentTimeMillis
          assert.deepStrictEqual(claimed.map((d) => d.id), [m.id])
          assert.isBelow(t1 - t0, 2_000)
        }))

      it.effect("an idle claim returns empty after waitMillis", () =>
        Effect.gen(function*() {
          const { broker, queue } = yield* setup
          const claimed = yield* broker.claim(claimOptions(queue, { waitMillis: 150 }))
          assert.strictEqual(claimed.length, 0)
        }))

      it.effect("start, complete: SUCCESS with the result and the attempt in history", () =>
        Effect.gen(function*() {
          const { backend, broker, enqueue, queue, record } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d] = yield* broker.claim(claimOptions(queue))
          const started = yield* broker.start([{ id: d!.id, token: d!.token, worker: "w1", startedAt: 5, ackEarly: false }])
          assert.deepStrictEqual(started, ["ok"])
          assert.strictEqual((yield* record(m.id)).state, "STARTED")
          const waiter = yield* Effect.forkChild(backend.awaitFinal(m.id))
          yield* Effect.sleep(20)
          const done = yield* broker.complete([{
            id: d!.id,
            token: d!.token,
            state: "SUCCESS",
            result: { receipt: "r-1" },
            attempt: attempt("SUCCESS")
          }])
          assert.deepStrictEqual(done, [true])
          const final = Option.getOrThrow(yield* Fiber.join(waiter))
          assert.strictEqual(final.state, "SUCCESS")
          assert.deepStrictEqual(final.result, { receipt: "r-1" })
          assert.deepStrictEqual(final.history, [attempt("SUCCESS")])
          assert.deepStrictEqual(yield* broker.stats([queue]), [{ queue, ready: 0, delayed: 0, running: 0, dead: 0 }])
          // awaitFinal on a task that already ended returns at once
          assert.strictEqual(Option.getOrThrow(yield* backend.awaitFinal(m.id)).state, "SUCCESS")
        }))

      it.effect("storeResult: false keeps the state but not the result", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue, record } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d] = yield* broker.claim(claimOptions(queue))
          yield* broker.complete([{
            id: d!.id,
            token: d!.token,
            state: "SUCCESS",
            result: { big: "x" },
            attempt: attempt("SUCCESS"),
            storeResult: false
          }])
          const r = yield* record(m.id)
          assert.strictEqual(r.state, "SUCCESS")
          assert.isUndefined(r.result)
        }))

      it.effect("storeResult: false keeps a record like any ended task's: known, final, not run again", () =>
        Effect.gen(function*() {
          const { backend, broker, enqueue, now, queue, record } = yield* setup
          // a task name with the characters a compact record might use as separators
          const m = msg(queue, { task: "contract|lean:task", submittedAt: 1234, eta: 5678 })
          yield* enqueue(m)
          const [first] = yield* broker.claim(claimOptions(queue))
          yield* broker.retry([{
            id: first!.id,
            token: first!.token,
            dueAt: 0,
            error: { _tag: "E", message: "m" },
            attempt: attempt("RETRY")
          }])
          const [d] = yield* broker.claim(claimOptions(queue))
          const waiter = yield* Effect.forkChild(backend.awaitFinal(m.id))
          yield* Effect.sleep(20)
          const lean = {
            id: d!.id,
            token: d!.token,
            state: "SUCCESS" as const,
            result: { big: "x" },
            attempt: attempt("SUCCESS"),
            storeResult: false
          }
          assert.deepStrictEqual(yield* broker.complete([lean]), [true])
          assert.strictEqual(Option.getOrThrow(yield* Fiber.join(waiter)).state, "SUCCESS")
          const r = yield* record(m.id)
          assert.strictEqual(r.id, m.id)
          assert.strictEqual(r.task, "contract|lean:task")
          assert.strictEqual(r.queue, queue)
          assert.strictEqual(r.state, "SUCCESS")
          assert.strictEqual(r.retries, 1)
          assert.strictEqual(r.submittedAt, 1234)
          assert.strictEqual(r.eta, 5678)
          assert.isAtLeast(r.updatedAt, now)
          assert.deepStrictEqual(r.history, [])
          assert.isUndefined(r.result)
          // the retry's error was not this attempt's
          assert.isUndefined(r.error)
          assert.isUndefined(r.meta)
          assert.strictEqual(Option.getOrThrow(yield* backend.awaitFinal(m.id)).state, "SUCCESS")
          // the lease is spent; the id is known, so a second submit is a no-op
          assert.deepStrictEqual(yield* broker.complete([lean]), [false])
          assert.deepStrictEqual(yield* enqueue(msg(queue, { id: m.id })), { id: m.id })
          assert.strictEqual((yield* broker.claim(claimOptions(queue))).length, 0)
          assert.deepStrictEqual(yield* broker.stats([queue]), [{ queue, ready: 0, delayed: 0, running: 0, dead: 0 }])
          // ended: nothing to revoke, set or redeliver
          assert.strictEqual(yield* broker.revoke(m.id), "final")
          assert.isFalse(yield* backend.setState(m.id, "PROGRESS", { n: 1 }))
          assert.isFalse(yield* broker.redeliver(m.id))
          assert.deepStrictEqual(yield* record(m.id), r)
          // a superseded attempt's late outcome is still recorded
          yield* backend.recordStale(m.id, attempt("STALE"))
          const after = yield* record(m.id)
          assert.deepStrictEqual(after.history, [attempt("STALE")])
          assert.deepStrictEqual({ ...after, history: [] }, r)
        }))

      it.effect("keepRecord: false forgets a task as it succeeds: unknown after, waiters return None; other ends keep theirs", () =>
        Effect.gen(function*() {
          const { backend, broker, enqueue, queue, record } = yield* setup
          const [gone, retried, failed, kept] = [msg(queue), msg(queue), msg(queue), msg(queue)]
          for (const m of [gone, retried, failed, kept]) yield* enqueue(m)
          const byId = (ds: ReadonlyArray<Broker.Delivery>, id: string) => ds.find((d) => d.id === id)!
          const first = yield* broker.claim(claimOptions(queue))
          assert.strictEqual(first.length, 4)
          // a retried task (a hash on Redis, not its fast lane) is forgotten the same way
          const r0 = byId(first, retried.id)
          yield* broker.retry([{ id: r0.id, token: r0.token, dueAt: 0, error: { _tag: "E", message: "m" }, attempt: attempt("RETRY") }])
          const [again] = yield* broker.claim(claimOptions(queue))
          assert.strictEqual(again!.id, retried.id)
          const waiter = yield* Effect.forkChild(backend.awaitFinal(gone.id))
          yield* Effect.sleep(20)
          const end = (d: Broker.Delivery, state: "SUCCESS" | "FAILURE", keepRecord: boolean): Broker.Completion => ({
            id: d.id,
            token: d.token,
            state,
            result: 1,
            ...(state === "FAILURE" ? { error: { _tag: "E", message: "failed" } } : {}),
            attempt: attempt(state),
            storeResult: false,
            keepRecord
          })
          const batch = [
            end(byId(first, gone.id), "SUCCESS", false),
            end(again!, "SUCCESS", false),
            end(byId(first, failed.id), "FAILURE", false),
            end(byId(first, kept.id), "SUCCESS", true)
          ]
          assert.deepStrictEqual(yield* broker.complete(batch), [true, true, true, true])
          assert.isTrue(Option.isNone(yield* Fiber.join(waiter)))
          assert.isTrue(Option.isNone(yield* backend.get(gone.id)))
          assert.isTrue(Option.isNone(yield* backend.get(retried.id)))
          assert.isTrue(Option.isNone(yield* backend.awaitFinal(gone.id)))
          // a failure keeps its record (and message) whatever keepRecord says; a kept success its state
          assert.strictEqual((yield* record(failed.id)).state, "FAILURE")
          assert.strictEqual((yield* record(kept.id)).state, "SUCCESS")
          assert.deepStrictEqual(yield* broker.stats([queue]), [{ queue, ready: 0, delayed: 0, running: 0, dead: 0 }])
          // the leases are spent
          assert.deepStrictEqual(yield* broker.complete(batch.slice(0, 2)), [false, false])
          assert.strictEqual(yield* broker.revoke(gone.id), "unknown")
          // the id is unknown again: submitting it again makes a new task
          yield* enqueue(msg(queue, { id: gone.id }))
          const [rerun] = yield* broker.claim(claimOptions(queue))
          assert.strictEqual(rerun!.id, gone.id)
          assert.strictEqual((yield* record(gone.id)).state, "RECEIVED")
        }))

      it.effect("leases are fenced: after expiry the next claim gets a new token and the old one is refused", () =>
        Effect.gen(function*() {
          const { backend, broker, enqueue, queue, record } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [first] = yield* broker.claim(claimOptions(queue, { leaseMillis: 150, worker: "w-old" }))
          yield* broker.start([{ id: first!.id, token: first!.token, worker: "w-old", startedAt: 7, ackEarly: false }])
          yield* Effect.sleep(300)
          const [second] = yield* broker.claim(claimOptions(queue, { worker: "w-new" }))
          assert.strictEqual(second!.id, m.id)
          assert.notStrictEqual(second!.token, first!.token)
          assert.strictEqual(second!.lost?.worker, "w-old")
          assert.strictEqual(second!.lost?.startedAt, 7)
          assert.strictEqual(second!.lost?.ackedEarly, false)
          const stale = { id: first!.id, token: first!.token }
          assert.deepStrictEqual(
            yield* broker.start([{ ...stale, worker: "w-old", startedAt: 8, ackEarly: false }]),
            ["stale"]
          )
          assert.deepStrictEqual(yield* broker.renew([stale], 1000), ["stale"])
          assert.deepStrictEqual(
            yield* broker.complete([{ ...stale, state: "SUCCESS", result: 1, attempt: attempt("SUCCESS") }]),
            [false]
          )
          assert.deepStrictEqual(
            yield* broker.retry([{ ...stale, dueAt: 0, error: { _tag: "E", message: "m" }, attempt: attempt("RETRY") }]),
            [false]
          )
          assert.deepStrictEqual(
            yield* broker.deadLetter([{ ...stale, error: { _tag: "E", message: "m" }, attempt: attempt("DEAD") }]),
            [false]
          )
          assert.deepStrictEqual(yield* broker.release([stale]), [false])
          assert.notStrictEqual((yield* record(m.id)).state, "SUCCESS")
          yield* backend.recordStale(m.id, attempt("STALE"))
          assert.deepStrictEqual(
            yield* broker.complete([{
              id: second!.id,
              token: second!.token,
              state: "SUCCESS",
              result: 2,
              attempt: attempt("SUCCESS")
            }]),
            [true]
          )
          const r = yield* record(m.id)
          assert.strictEqual(r.result, 2)
          assert.deepStrictEqual(r.history.map((a) => a.outcome), ["STALE", "SUCCESS"])
          // the lost marker is consumed by the claim that reported it
          assert.strictEqual((yield* broker.claim(claimOptions(queue))).length, 0)
        }))

      it.effect("a lost marker survives a claimer that dies before starting the task", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [first] = yield* broker.claim(claimOptions(queue, { leaseMillis: 100, worker: "w-1" }))
          yield* broker.start([{ id: first!.id, token: first!.token, worker: "w-1", startedAt: 11, ackEarly: false }])
          yield* Effect.sleep(250)
          // w-2 claims the lost task and dies before handling it
          const [second] = yield* broker.claim(claimOptions(queue, { leaseMillis: 100, worker: "w-2" }))
          assert.strictEqual(second!.lost?.worker, "w-1")
          yield* Effect.sleep(250)
          const [third] = yield* broker.claim(claimOptions(queue, { worker: "w-3" }))
          assert.strictEqual(third!.lost?.worker, "w-1")
          assert.strictEqual(third!.lost?.startedAt, 11)
          // once a lease starts the task, the marker is gone
          yield* broker.start([{ id: third!.id, token: third!.token, worker: "w-3", startedAt: 12, ackEarly: false }])
          yield* broker.release([{ id: third!.id, token: third!.token }])
          const [fourth] = yield* broker.claim(claimOptions(queue))
          assert.isUndefined(fourth!.lost)
        }))

      it.effect("a lease acknowledged early reports ackedEarly when lost", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d] = yield* broker.claim(claimOptions(queue, { leaseMillis: 100 }))
          yield* broker.start([{ id: d!.id, token: d!.token, worker: "w1", startedAt: 3, ackEarly: true }])
          yield* Effect.sleep(250)
          const [again] = yield* broker.claim(claimOptions(queue))
          assert.strictEqual(again!.lost?.ackedEarly, true)
        }))

      it.effect("a lease never started comes back lost without startedAt", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          yield* broker.claim(claimOptions(queue, { leaseMillis: 100 }))
          yield* Effect.sleep(250)
          const [again] = yield* broker.claim(claimOptions(queue))
          assert.strictEqual(again!.id, m.id)
          assert.isUndefined(again!.lost?.startedAt)
        }))

      it.effect("claim with start: the first tasks are STARTED in the same step, the rest only leased", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue, record } = yield* setup
          const ms = [msg(queue), msg(queue), msg(queue)]
          for (const m of ms) yield* enqueue(m)
          const before = yield* Clock.currentTimeMillis
          const claimed = yield* broker.claim(claimOptions(queue, { worker: "w-s", start: 2 }))
          assert.deepStrictEqual(claimed.map((d) => d.id), ms.map((m) => m.id))
          assert.isTrue(claimed[0]!.startedAt !== undefined && claimed[0]!.startedAt >= before)
          assert.isDefined(claimed[1]!.startedAt)
          assert.isUndefined(claimed[2]!.startedAt)
          assert.strictEqual((yield* record(ms[0]!.id)).state, "STARTED")
          assert.strictEqual((yield* record(ms[1]!.id)).state, "STARTED")
          assert.strictEqual((yield* record(ms[2]!.id)).state, "RECEIVED")
          // a started lease completes without a start call, and a second start of it is harmless
          assert.deepStrictEqual(
            yield* broker.start([{ id: claimed[1]!.id, token: claimed[1]!.token, worker: "w-s", startedAt: 9, ackEarly: true }]),
            ["ok"]
          )
          assert.deepStrictEqual(
            yield* broker.complete([{ id: claimed[0]!.id, token: claimed[0]!.token, state: "SUCCESS", attempt: attempt("SUCCESS") }]),
            [true]
          )
          assert.strictEqual((yield* record(ms[0]!.id)).state, "SUCCESS")
          // release forgets the attempt the claim started: no lost marker when claimed again
          assert.deepStrictEqual(yield* broker.release([{ id: claimed[1]!.id, token: claimed[1]!.token }, {
            id: claimed[2]!.id,
            token: claimed[2]!.token
          }]), [true, true])
          assert.strictEqual((yield* record(ms[1]!.id)).state, "PENDING")
          const again = yield* broker.claim(claimOptions(queue))
          assert.deepStrictEqual(again.map((d) => d.id).sort(), [ms[1]!.id, ms[2]!.id].sort())
          for (const d of again) {
            assert.isUndefined(d.lost)
            assert.isUndefined(d.startedAt)
          }
        }))

      it.effect("claim with start: a lease it started and then lost comes back lost with that start", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d] = yield* broker.claim(claimOptions(queue, { leaseMillis: 100, worker: "w-1", start: 1 }))
          assert.isDefined(d!.startedAt)
          yield* Effect.sleep(250)
          const [again] = yield* broker.claim(claimOptions(queue, { worker: "w-2", start: 1 }))
          assert.strictEqual(again!.lost?.worker, "w-1")
          assert.strictEqual(again!.lost?.startedAt, d!.startedAt)
          assert.strictEqual(again!.lost?.ackedEarly, false)
          // a delivery that reports a lost attempt is not started by the claim: its marker stays until handled
          assert.isUndefined(again!.startedAt)
        }))

      it.effect("claim with start leaves a task flagged revoked to `start`, which reports it", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d] = yield* broker.claim(claimOptions(queue, { leaseMillis: 100 }))
          assert.strictEqual(yield* broker.revoke(m.id), "running")
          yield* Effect.sleep(250)
          const [again] = yield* broker.claim(claimOptions(queue, { start: 1 }))
          assert.strictEqual(again!.id, d!.id)
          assert.isUndefined(again!.startedAt)
          assert.deepStrictEqual(
            yield* broker.start([{ id: again!.id, token: again!.token, worker: "w", startedAt: 1, ackEarly: false }]),
            ["revoked"]
          )
        }))

      it.effect("renew keeps a lease alive past its first deadline", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          yield* enqueue(msg(queue))
          const [d] = yield* broker.claim(claimOptions(queue, { leaseMillis: 200 }))
          for (let i = 0; i < 4; i++) {
            yield* Effect.sleep(100)
            assert.deepStrictEqual(yield* broker.renew([{ id: d!.id, token: d!.token }], 200), ["ok"])
          }
          assert.strictEqual((yield* broker.claim(claimOptions(queue))).length, 0)
          assert.strictEqual((yield* broker.stats([queue]))[0]!.running, 1)
        }))

      it.effect("retry: retries + 1, state RETRY, held until due, then claimable with the new count", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue, record } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d] = yield* broker.claim(claimOptions(queue))
          const now = yield* Clock.currentTimeMillis
          const error = { _tag: "Flaky", message: "boom" }
          assert.deepStrictEqual(
            yield* broker.retry([{
              id: d!.id,
              token: d!.token,
              dueAt: now + 300,
              error,
              attempt: attempt("RETRY", { error, countdown: 300 })
            }]),
            [true]
          )
          const r = yield* record(m.id)
          assert.strictEqual(r.state, "RETRY")
          assert.strictEqual(r.retries, 1)
          assert.deepStrictEqual(r.error, error)
          assert.deepStrictEqual(r.history, [attempt("RETRY", { error, countdown: 300 })])
          assert.strictEqual((yield* broker.claim(claimOptions(queue))).length, 0)
          yield* Effect.sleep(400)
          const [again] = yield* broker.claim(claimOptions(queue))
          assert.strictEqual(again!.id, m.id)
          assert.strictEqual((again!.message as Message).retries, 1)
          // a success after retries keeps no error in the record
          yield* broker.complete([{
            id: again!.id,
            token: again!.token,
            state: "SUCCESS",
            result: 1,
            attempt: attempt("SUCCESS", { attempt: 1 })
          }])
          const final = yield* record(m.id)
          assert.strictEqual(final.state, "SUCCESS")
          assert.strictEqual(final.retries, 1)
          assert.isUndefined(final.error)
          assert.strictEqual(final.history.length, 2)
        }))

      it.effect("deadLetter: FAILURE, counted as dead, and redeliver brings it back", () =>
        Effect.gen(function*() {
          const { backend, broker, enqueue, queue, record } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d] = yield* broker.claim(claimOptions(queue))
          const error = { _tag: "UnknownTask", message: "no such task" }
          const waiter = yield* Effect.forkChild(backend.awaitFinal(m.id))
          assert.deepStrictEqual(
            yield* broker.deadLetter([{ id: d!.id, token: d!.token, error, attempt: attempt("DEAD", { error }) }]),
            [true]
          )
          assert.strictEqual(Option.getOrThrow(yield* Fiber.join(waiter)).state, "FAILURE")
          const r = yield* record(m.id)
          assert.deepStrictEqual(r.error, error)
          assert.deepStrictEqual((yield* broker.stats([queue]))[0], { queue, ready: 0, delayed: 0, running: 0, dead: 1 })
          assert.isTrue(yield* broker.redeliver(m.id))
          assert.isFalse(yield* broker.redeliver(m.id))
          assert.strictEqual((yield* record(m.id)).state, "PENDING")
          const [again] = yield* broker.claim(claimOptions(queue))
          assert.strictEqual(again!.id, m.id)
          assert.isFalse(yield* broker.redeliver(`nope-${rand()}`))
        }))

      it.effect("release: a claimed task goes back at once, PENDING, no attempt counted", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue, record } = yield* setup
          const a = msg(queue)
          const b = msg(queue)
          yield* enqueue(a)
          yield* enqueue(b)
          const [d] = yield* broker.claim(claimOptions(queue, { max: 1 }))
          assert.deepStrictEqual(yield* broker.release([{ id: d!.id, token: d!.token }]), [true])
          const r = yield* record(a.id)
          assert.strictEqual(r.state, "PENDING")
          assert.strictEqual(r.history.length, 0)
          const again = yield* broker.claim(claimOptions(queue))
          assert.deepStrictEqual(again.map((x) => x.id), [a.id, b.id])
          assert.isUndefined(again[0]!.lost)
        }))

      it.effect("revoke: waiting tasks are removed, running ones flagged, ended ones left", () =>
        Effect.gen(function*() {
          const { backend, broker, enqueue, now, queue, record } = yield* setup
          const waiting = msg(queue)
          const delayed = msg(queue)
          const running = msg(queue)
          yield* enqueue(running)
          const [d] = yield* broker.claim(claimOptions(queue))
          yield* enqueue(waiting)
          yield* enqueue(delayed, now + 60_000)
          assert.strictEqual(yield* broker.revoke(waiting.id), "revoked")
          assert.strictEqual(yield* broker.revoke(delayed.id), "revoked")
          assert.strictEqual((yield* record(waiting.id)).state, "REVOKED")
          assert.strictEqual(Option.getOrThrow(yield* backend.awaitFinal(delayed.id)).state, "REVOKED")
          assert.strictEqual(yield* broker.revoke(running.id), "running")
          assert.deepStrictEqual(yield* broker.renew([{ id: d!.id, token: d!.token }], 10_000), ["revoked"])
          assert.deepStrictEqual(
            yield* broker.start([{ id: d!.id, token: d!.token, worker: "w", startedAt: 1, ackEarly: false }]),
            ["revoked"]
          )
          yield* broker.complete([{ id: d!.id, token: d!.token, state: "REVOKED", attempt: attempt("REVOKED") }])
          assert.strictEqual(yield* broker.revoke(running.id), "final")
          assert.strictEqual(yield* broker.revoke(`nope-${rand()}`), "unknown")
          assert.deepStrictEqual(yield* broker.stats([queue]), [{ queue, ready: 0, delayed: 0, running: 0, dead: 0 }])
        }))

      it.effect("dedup: a second submission with the same dedup id is not enqueued while the first waits", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const a = msg(queue)
          const b = msg(queue)
          const c = msg(queue)
          assert.deepStrictEqual(yield* enqueue(a, undefined, "order-1"), { id: a.id })
          const dup = yield* enqueue(b, undefined, "order-1")
          assert.strictEqual(dup.duplicateOf, a.id)
          const [d] = yield* broker.claim(claimOptions(queue))
          assert.strictEqual(d!.id, a.id)
          yield* broker.complete([{ id: d!.id, token: d!.token, state: "SUCCESS", result: 1, attempt: attempt("SUCCESS") }])
          assert.deepStrictEqual(yield* enqueue(c, undefined, "order-1"), { id: c.id })
        }))

      it.effect("enqueue is idempotent per task id: a resubmitted id neither resets nor reruns the task", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue, record } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d] = yield* broker.claim(claimOptions(queue))
          assert.deepStrictEqual(yield* enqueue({ ...m, payload: { n: 2 } }), { id: m.id })
          assert.strictEqual((yield* record(m.id)).state, "RECEIVED")
          assert.strictEqual((yield* broker.claim(claimOptions(queue))).length, 0)
          yield* broker.complete([{ id: d!.id, token: d!.token, state: "SUCCESS", result: 1, attempt: attempt("SUCCESS") }])
          yield* enqueue(m)
          assert.strictEqual((yield* record(m.id)).state, "SUCCESS")
          assert.strictEqual((yield* broker.claim(claimOptions(queue))).length, 0)
        }))

      it.effect("setState: custom states with meta until the task ends; recordStale appends", () =>
        Effect.gen(function*() {
          const { backend, broker, enqueue, queue, record } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d] = yield* broker.claim(claimOptions(queue))
          assert.isTrue(yield* backend.setState(m.id, "PROGRESS", { done: 3, of: 10 }))
          const r = yield* record(m.id)
          assert.strictEqual(r.state, "PROGRESS")
          assert.deepStrictEqual(r.meta, { done: 3, of: 10 })
          yield* broker.complete([{ id: d!.id, token: d!.token, state: "SUCCESS", result: 1, attempt: attempt("SUCCESS") }])
          assert.isFalse(yield* backend.setState(m.id, "PROGRESS", { done: 4 }))
          yield* backend.recordStale(m.id, attempt("STALE"))
          assert.deepStrictEqual((yield* record(m.id)).history.map((a) => a.outcome), ["SUCCESS", "STALE"])
          assert.isFalse(yield* backend.setState(`nope-${rand()}`, "X", null))
        }))

      it.effect("unknown ids: get and awaitFinal say None", () =>
        Effect.gen(function*() {
          const { backend } = yield* setup
          assert.isTrue(Option.isNone(yield* backend.get(`nope-${rand()}`)))
          assert.isTrue(Option.isNone(yield* backend.awaitFinal(`nope-${rand()}`)))
        }))

      it.effect("heartbeat registers workers, the latest heartbeat wins, entries are forgotten at expiresAt", () =>
        Effect.gen(function*() {
          const { broker, now } = yield* setup
          const heartbeat = need(broker.heartbeat, "heartbeat")
          const workers = need(broker.workers, "workers")
          const a = `w-${rand()}`
          const b = `w-${rand()}`
          yield* heartbeat([workerInfo(a, now), workerInfo(b, now, { aliveUntil: now - 1, expiresAt: now + 300 })])
          const mine = Effect.map(workers, (ws) => ws.filter((w) => w.id === a || w.id === b))
          const listed = yield* mine
          assert.deepStrictEqual(listed.map((w) => w.id).sort(), [a, b].sort())
          assert.deepStrictEqual(listed.find((w) => w.id === a), workerInfo(a, now))
          assert.strictEqual(Broker.workerStatus(listed.find((w) => w.id === a)!, now), "alive")
          assert.strictEqual(Broker.workerStatus(listed.find((w) => w.id === b)!, now), "gone")
          const later = workerInfo(a, now + 50, { inFlight: 3, stoppedAt: now + 50 })
          yield* heartbeat([later])
          const updated = (yield* mine).find((w) => w.id === a)!
          assert.deepStrictEqual(updated, later)
          assert.strictEqual(Broker.workerStatus(updated, now + 50), "stopped")
          yield* Effect.sleep(400)
          assert.deepStrictEqual((yield* mine).map((w) => w.id), [a])
        }))

      it.effect("queues lists every queue a task was enqueued to", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const other = `${queue}-other`
          yield* enqueue(msg(queue))
          yield* enqueue(msg(other))
          const names = yield* need(broker.queues, "queues")
          assert.includeMembers([...names], [queue, other])
          assert.notInclude([...names], `${queue}-never`)
        }))

      it.effect("purge removes ready and delayed tasks as REVOKED (awaiters return), leaves running and dead ones", () =>
        Effect.gen(function*() {
          const { backend, broker, enqueue, now, queue, record } = yield* setup
          const purge = need(broker.purge, "purge")
          const running = msg(queue)
          const dead = msg(queue)
          yield* enqueue(running)
          yield* enqueue(dead)
          const [r, d] = yield* broker.claim(claimOptions(queue))
          yield* broker.deadLetter([{ id: d!.id, token: d!.token, error: { _tag: "E", message: "m" }, attempt: attempt("DEAD") }])
          const ready = [msg(queue), msg(queue), msg(queue)]
          for (const m of ready) yield* enqueue(m, now, m === ready[0] ? "dedup-1" : undefined)
          const delayed = [msg(queue), msg(queue)]
          for (const m of delayed) yield* enqueue(m, now + 60_000)
          const waiter = yield* Effect.forkChild(backend.awaitFinal(ready[1]!.id))
          yield* Effect.sleep(20)
          const other = `${queue}-other`
          const untouched = msg(other)
          yield* enqueue(untouched)
          assert.deepStrictEqual(yield* purge([queue, `${queue}-empty`]), [5, 0])
          assert.deepStrictEqual((yield* broker.stats([queue]))[0], { queue, ready: 0, delayed: 0, running: 1, dead: 1 })
          assert.strictEqual((yield* broker.stats([other]))[0]!.ready, 1)
          assert.strictEqual(Option.getOrThrow(yield* Fiber.join(waiter)).state, "REVOKED")
          for (const m of [...ready, ...delayed]) {
            const rec = yield* record(m.id)
            assert.strictEqual(rec.state, "REVOKED")
            assert.strictEqual(rec.error?._tag, "TaskRevoked")
          }
          // the dedup id of a purged task is free again
          const again = msg(queue)
          assert.deepStrictEqual(yield* enqueue(again, now, "dedup-1"), { id: again.id })
          // the running task is untouched and still completes
          assert.deepStrictEqual(
            yield* broker.complete([{ id: r!.id, token: r!.token, state: "SUCCESS", result: 1, attempt: attempt("SUCCESS") }]),
            [true]
          )
          assert.deepStrictEqual(yield* purge([queue]), [1])
          assert.deepStrictEqual(yield* purge([queue]), [0])
        }))

      it.effect("a task that ended FAILURE keeps its message: redeliver runs it again, retries and history kept", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue, record } = yield* setup
          const m = msg(queue)
          yield* enqueue(m)
          const [d1] = yield* broker.claim(claimOptions(queue))
          const error = { _tag: "Flaky", message: "boom" }
          yield* broker.retry([{ id: d1!.id, token: d1!.token, dueAt: 0, error, attempt: attempt("RETRY", { error }) }])
          const [d2] = yield* broker.claim(claimOptions(queue))
          const final = { _tag: "MaxRetriesExceeded", message: "gave up" }
          yield* broker.complete([{
            id: d2!.id,
            token: d2!.token,
            state: "FAILURE",
            error: final,
            attempt: attempt("FAILURE", { attempt: 1, error: final })
          }])
          assert.strictEqual((yield* record(m.id)).state, "FAILURE")
          assert.deepStrictEqual(yield* broker.stats([queue]), [{ queue, ready: 0, delayed: 0, running: 0, dead: 0 }])
          assert.strictEqual(yield* broker.revoke(m.id), "final")
          assert.isTrue(yield* broker.redeliver(m.id))
          assert.isFalse(yield* broker.redeliver(m.id))
          const pending = yield* record(m.id)
          assert.strictEqual(pending.state, "PENDING")
          assert.strictEqual(pending.retries, 1)
          const [d3] = yield* broker.claim(claimOptions(queue))
          assert.strictEqual(d3!.id, m.id)
          assert.deepStrictEqual(d3!.message, { ...m, retries: 1 })
          yield* broker.complete([{
            id: d3!.id,
            token: d3!.token,
            state: "SUCCESS",
            result: 7,
            attempt: attempt("SUCCESS", { attempt: 1 })
          }])
          const done = yield* record(m.id)
          assert.strictEqual(done.state, "SUCCESS")
          assert.deepStrictEqual(done.history.map((a) => a.outcome), ["RETRY", "FAILURE", "SUCCESS"])
          // succeeded and revoked tasks are not run again
          assert.isFalse(yield* broker.redeliver(m.id))
          const waiting = msg(queue)
          yield* enqueue(waiting)
          yield* broker.revoke(waiting.id)
          assert.isFalse(yield* broker.redeliver(waiting.id))
        }))

      it.effect("claims across several queues; each claim only sees its queues", () =>
        Effect.gen(function*() {
          const { broker, enqueue, queue } = yield* setup
          const other = `${queue}-other`
          const a = msg(queue)
          const b = msg(other)
          yield* enqueue(a)
          yield* enqueue(b)
          const fromOne = yield* broker.claim(claimOptions(queue))
          assert.deepStrictEqual(fromOne.map((d) => d.id), [a.id])
          const both = yield* broker.claim({ ...claimOptions(queue), queues: [queue, other] })
          assert.deepStrictEqual(both.map((d) => d.id), [b.id])
        }))
    })
  })
