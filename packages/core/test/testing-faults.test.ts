import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Client } from "@errand/core"
import * as ErrandTest from "@errand/core/testing/ErrandTest"
import * as FaultPlan from "@errand/core/testing/FaultPlan"
import * as History from "@errand/core/testing/History"
import { Job, JobLive, Probe } from "./testing-fixtures.ts"

const world = (faults: ReadonlyArray<FaultPlan.Fault>, options: Partial<ErrandTest.Options<[typeof JobLive]>> = {}) =>
  ErrandTest.layer({ tasks: [JobLive], faults, ...options }).pipe(Layer.provideMerge(Probe.layer))

const runJob = (seconds: number, always = false) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const job = yield* client.submit(Job, { n: 0, seconds, always })
    yield* ErrandTest.drain()
    const status = yield* client.status(job.id)
    const events = yield* (yield* Probe).events
    const trace = (yield* ErrandTest.trace).filter((e) => e.kind !== "worker").map((e) => `${e.at} ${e.kind}: ${e.detail}`)
    return { job, status, events, trace, summary: History.summarize(status) }
  })

describe("Crash", () => {
  it.effect("beforeStart: the lease runs out unstarted; the task simply runs again, no LOST entry", () =>
    Effect.gen(function*() {
      const { events, job, trace } = yield* runJob(1)
      yield* ErrandTest.expectHistory(job, [{ outcome: "SUCCESS", worker: "w-2", startedAt: "10 seconds" }])
      assert.deepStrictEqual(events, ["begin 0#0@w-2", "end 0#0@w-2"])
      assert.deepStrictEqual(trace, [
        "0 crash: w-1 crashed running test.job-0 (attempt 0), after claiming it, before starting it [fault 1]"
      ])
    }).pipe(Effect.provide(world([FaultPlan.crash({ task: 0, at: "beforeStart" })]))))

  it.effect("beforeHandler: STARTED but the handler never ran; WorkerLost, retried by the policy", () =>
    Effect.gen(function*() {
      const { events, job } = yield* runJob(1)
      yield* ErrandTest.expectHistory(job, [
        { outcome: "LOST", worker: "w-1", error: { _tag: "WorkerLost", message: "w-1" }, countdown: "10 seconds", endedAt: "10 seconds" },
        { outcome: "SUCCESS", worker: "w-2", startedAt: "20 seconds" }
      ])
      assert.deepStrictEqual(events, ["begin 0#1@w-2", "end 0#1@w-2"])
    }).pipe(Effect.provide(world([FaultPlan.crash({ task: 0, at: "beforeHandler" })]))))

  it.effect("inHandler (default): at the handler's first wait, after what it did before", () =>
    Effect.gen(function*() {
      const { events, job, trace } = yield* runJob(5)
      yield* ErrandTest.expectHistory(job, ["LOST", "SUCCESS"])
      assert.deepStrictEqual(trace, [
        "0 crash: w-1 crashed running test.job-0 (attempt 0), at its handler's first wait [fault 1]"
      ])
      assert.deepStrictEqual(events, ["begin 0#0@w-1", "begin 0#1@w-2", "end 0#1@w-2"])
    }).pipe(Effect.provide(world([FaultPlan.crash({ task: 0, at: "inHandler" })]))))

  it.effect("inHandler 3 s into a 5 s sleep: still inside, the rest never ran", () =>
    Effect.gen(function*() {
      const { events, trace } = yield* runJob(5, true)
      assert.deepStrictEqual(events, ["begin 0#0@w-1", "begin 0#1@w-2", "end 0#1@w-2"])
      assert.deepStrictEqual(trace, [
        "3000 crash: w-1 crashed running test.job-0 (attempt 0), 3s into its handler [fault 1]"
      ])
    }).pipe(Effect.provide(world([FaultPlan.crash({ task: 0, at: "inHandler", after: "3 seconds" })]))))

  it.effect("inHandler 6 s into a 5 s handler: it finished, the worker died before the ack", () =>
    Effect.gen(function*() {
      const { events, trace } = yield* runJob(5, true)
      assert.deepStrictEqual(events, ["begin 0#0@w-1", "end 0#0@w-1", "begin 0#1@w-2", "end 0#1@w-2"])
      assert.deepStrictEqual(trace, [
        "5000 crash: w-1 crashed running test.job-0 (attempt 0), as its handler returned, before the ack [fault 1]"
      ])
    }).pipe(Effect.provide(world([FaultPlan.crash({ task: 0, at: "inHandler", after: "6 seconds" })]))))

  it.effect("beforeAck: the handler ran to the end, its outcome was never written: it runs again", () =>
    Effect.gen(function*() {
      const { events, job } = yield* runJob(1)
      yield* ErrandTest.expectHistory(job, [
        { outcome: "LOST", worker: "w-1", took: "10 seconds" },
        { outcome: "SUCCESS", worker: "w-2", attempt: 1 }
      ])
      assert.deepStrictEqual(events, ["begin 0#0@w-1", "end 0#0@w-1", "begin 0#1@w-2", "end 0#1@w-2"])
    }).pipe(Effect.provide(world([FaultPlan.crash({ task: 0, at: "beforeAck" })]))))

  it.effect("a crash on attempt 1 waits for attempt 1", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      const job = yield* client.submit(Job, { n: 0, seconds: 0 })
      yield* ErrandTest.drain()
      yield* ErrandTest.expectHistory(job, ["LOST", "LOST", "SUCCESS"])
      assert.deepStrictEqual((yield* ErrandTest.workers).map((w) => `${w.id} ${w.status}`), [
        "w-1 killed",
        "w-2 killed",
        "w-3 running"
      ])
    }).pipe(Effect.provide(world([
      FaultPlan.crash({ task: 0, attempt: 1, at: "beforeAck" }),
      FaultPlan.crash({ task: 0, attempt: 0, at: "beforeAck" })
    ]))))

  it.effect("without restart, the crashed worker's task is left pending, and drain says so", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      yield* client.submit(Job, { n: 0, seconds: 0 })
      const error = yield* Effect.flip(ErrandTest.drain({ maxSteps: 20 }))
      assert.strictEqual(error._tag, "DrainTimeout")
      assert.deepStrictEqual(error.pending.map((p) => `${p.id} ${p.state}`), ["test.job-0 STARTED"])
      assert.include(error.message, "no worker is running")
    }).pipe(Effect.provide(world([FaultPlan.crash({ task: 0, at: "beforeAck" })], { restart: false }))))
})

describe("Shutdown", () => {
  it.effect("a warm shutdown mid-task: interrupted after the grace, WorkerShutdown, retried on the replacement", () =>
    Effect.gen(function*() {
      const { events, job, trace } = yield* runJob(60)
      yield* ErrandTest.expectHistory(job, [
        { outcome: "RETRY", worker: "w-1", error: "WorkerShutdown", countdown: "10 seconds", endedAt: "7 seconds" },
        { outcome: "SUCCESS", worker: "w-2", startedAt: "17 seconds" }
      ])
      assert.deepStrictEqual(events, ["begin 0#0@w-1", "begin 0#1@w-2", "end 0#1@w-2"])
      assert.deepStrictEqual(trace, ["5000 shutdown: w-1 shut down (warm) [fault 1]"])
      assert.deepStrictEqual((yield* ErrandTest.workers).map((w) => `${w.id} ${w.status}`), ["w-1 stopped", "w-2 running"])
    }).pipe(Effect.provide(world([FaultPlan.shutdown({ at: "5 seconds" })], { shutdownGrace: "2 seconds" }))))

  it.effect("a task that ends within the grace is not disturbed", () =>
    Effect.gen(function*() {
      const { job } = yield* runJob(6)
      yield* ErrandTest.expectHistory(job, [{ outcome: "SUCCESS", worker: "w-1", took: "6 seconds" }])
    }).pipe(Effect.provide(world([FaultPlan.shutdown({ at: "5 seconds" })]))))
})

describe("broker windows", () => {
  it.effect("BrokerOutage: calls fail with BrokerError for 30 s; the worker retries them and the task runs after", () =>
    Effect.gen(function*() {
      const { job, trace } = yield* runJob(0)
      const status = yield* ErrandTest.expectHistory(job, ["SUCCESS"]).pipe(Effect.andThen(ErrandTest.tasks))
      assert.isAtLeast(status[0]!.history[0]!.startedAt, 30_000)
      assert.deepStrictEqual(trace, [
        "0 outage: broker down from 0 to 30s: first failed call claim [fault 1]"
      ])
    }).pipe(Effect.provide(world([FaultPlan.outage({ from: 0, for: "30 seconds" })]))))

  it.effect("heartbeats failing past the lease: redelivered while still running; the stalled attempt is interrupted at its next heartbeat and recorded STALE", () =>
    Effect.gen(function*() {
      const { events, job } = yield* runJob(30)
      yield* ErrandTest.expectHistory(job, [
        { outcome: "LOST", attempt: 0, worker: "w-1" },
        { outcome: "SUCCESS", attempt: 1 },
        { outcome: "STALE", attempt: 0, worker: "w-1", error: "LeaseLost" }
      ])
      // the first attempt never finishes: once a renewal says its lease is stale, it is interrupted
      assert.deepStrictEqual(events, ["begin 0#0@w-1", "begin 0#1@w-1", "end 0#1@w-1"])
    }).pipe(Effect.provide(world([FaultPlan.outage({ from: "1 second", for: "20 seconds", ops: ["renew"] })]))))

  it.effect("SlowBroker: every call 5 s slower; the task still runs once, later", () =>
    Effect.gen(function*() {
      const { events, job, status } = yield* runJob(0)
      yield* ErrandTest.expectHistory(job, [{ outcome: "SUCCESS", startedAt: "5 seconds", took: "5 seconds" }])
      assert.strictEqual(status.updatedAt, 15_000)
      assert.deepStrictEqual(events, ["begin 0#0@w-1", "end 0#0@w-1"])
    }).pipe(Effect.provide(world([FaultPlan.slowBroker({ from: 0, for: "1 minute", delay: "5 seconds" })]))))
})

describe("Duplicate", () => {
  it.effect("the same attempt runs on two workers at once: same id and attempt; the second outcome is STALE", () =>
    Effect.gen(function*() {
      const { events, job, trace } = yield* runJob(2)
      yield* ErrandTest.expectHistory(job, [
        { outcome: "SUCCESS", attempt: 0, worker: "w-1" },
        { outcome: "STALE", attempt: 0, worker: ErrandTest.duplicateWorker }
      ])
      assert.sameMembers([...events], ["begin 0#0@w-1", "begin 0#0@w-dup", "end 0#0@w-1", "end 0#0@w-dup"])
      assert.deepStrictEqual(trace, ["0 duplicate: test.job-0 (attempt 0) delivered to w-1 and w-dup [fault 1]"])
    }).pipe(Effect.provide(world([FaultPlan.duplicate({ task: 0 })]))))
})

describe("Fail", () => {
  it.effect("before: the attempt dies before its handler; TaskDefect, retried", () =>
    Effect.gen(function*() {
      const { events, job } = yield* runJob(0)
      yield* ErrandTest.expectHistory(job, [
        { outcome: "RETRY", error: { _tag: "TaskDefect", message: "injected by the fault plan" }, countdown: "10 seconds" },
        "SUCCESS"
      ])
      assert.deepStrictEqual(events, ["begin 0#1@w-1", "end 0#1@w-1"])
    }).pipe(Effect.provide(world([FaultPlan.fail({ task: 0, at: "before" })]))))

  it.effect("after: the handler's work is done, then the attempt dies; it runs again", () =>
    Effect.gen(function*() {
      const { events, job } = yield* runJob(0)
      yield* ErrandTest.expectHistory(job, [{ outcome: "RETRY", error: "TaskDefect" }, "SUCCESS"])
      assert.deepStrictEqual(events, ["begin 0#0@w-1", "end 0#0@w-1", "begin 0#1@w-1", "end 0#1@w-1"])
    }).pipe(Effect.provide(world([FaultPlan.fail({ task: 0 })]))))
})
