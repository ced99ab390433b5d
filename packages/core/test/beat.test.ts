import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Schedule, Schema, Scope } from "effect"
import { Beat, Broker, Client, ResultBackend, Task, TaskContext } from "@errand/core"
import { advance, base, settle, startWorker } from "./utils.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const Tick = Task.make("beat.tick", { payload: Schema.Struct({ at: Schema.String }), success: Schema.String })

/** Runs of Tick: scheduled time (from the header) and payload, in order. */
const ticks: Array<{ header: string; payload: string; ranAt: number }> = []
const TickLive = Task.implement(Tick, ({ at }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    ticks.push({ header: ctx.headers[Beat.scheduledHeader]!, payload: at, ranAt: Date.parse(at) })
    return at
  }))

const every10 = (options: { catchUp?: Beat.CatchUp } = {}) =>
  Beat.entry({
    id: "tick",
    task: Tick,
    payload: (at) => ({ at: at.toISOString() }),
    schedule: Schedule.spaced("10 seconds"),
    ...options
  })

/** A beat member in a scope of its own, so a test can stop it warmly or kill it. */
const member = (options: Beat.Options) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const beat = yield* Beat.make(options).pipe(Scope.provide(scope))
    return { beat, stop: Scope.close(scope, Exit.void) }
  })

const seconds = (iso: string) => Date.parse(iso) / 1000

const setup = Effect.gen(function*() {
  ticks.length = 0
  yield* startWorker({ tasks: [TickLive] })
  return yield* Client.Client
})

describe("Beat", () => {
  it("entries are typed: the payload (or what its function returns) must match the task", () => {
    const ok = Beat.entry({ id: "a", task: Tick, payload: { at: "x" }, schedule: "* * * * *" })
    const fromTime = Beat.entry({ id: "b", task: Tick, payload: (at) => ({ at: at.toISOString() }), schedule: "0 3 * * *" })
    // @ts-expect-error `at` must be a string
    const wrong = Beat.entry({ id: "c", task: Tick, payload: { at: 1 }, schedule: "* * * * *" })
    // @ts-expect-error the function must return the payload
    const wrongFn = Beat.entry({ id: "d", task: Tick, payload: (at) => ({ at }), schedule: Schedule.spaced("1 minute") })
    assert.isDefined(ok && fromTime && wrong && wrongFn)
  })

  it.effect("submits each scheduled time once, on time, with a deterministic id", () =>
    Effect.gen(function*() {
      const client = yield* setup
      yield* member({ entries: [every10()], lease: "3 seconds" })
      yield* advance(35)
      assert.deepStrictEqual(ticks.map((t) => seconds(t.header)), [10, 20, 30])
      assert.deepStrictEqual(ticks.map((t) => t.payload), ticks.map((t) => t.header))
      const run = yield* client.status(Beat.runId("default", "tick", 20_000))
      assert.strictEqual(run.state, "SUCCESS")
      assert.strictEqual(run.submittedAt, 20_000)
    }).pipe(Effect.provide(base)))

  it.effect("cron schedules, 5 or 6 fields, UTC", () =>
    Effect.gen(function*() {
      yield* setup
      yield* member({
        entries: [
          Beat.entry({ id: "quarter", task: Tick, payload: { at: "q" }, schedule: "*/15 * * * * *" }),
          Beat.entry({ id: "minute", task: Tick, payload: { at: "m" }, schedule: "* * * * *" })
        ],
        lease: "3 seconds"
      })
      yield* advance(125)
      assert.deepStrictEqual(
        ticks.map((t) => `${seconds(t.header)}:${t.payload}`).sort(),
        ["15:q", "30:q", "45:q", "60:m", "60:q", "75:q", "90:q", "105:q", "120:m", "120:q"].sort()
      )
    }).pipe(Effect.provide(base)))

  it.effect("three members, one leader; the leader killed: another takes over after its lease, no time doubled or lost", () =>
    Effect.gen(function*() {
      yield* setup
      const options = { entries: [every10({ catchUp: "all" })], lease: "6 seconds" } as const
      const members = [yield* member({ ...options, id: "b-1" }), yield* member({ ...options, id: "b-2" }), yield* member({ ...options, id: "b-3" })]
      yield* advance(1)
      const leaders = yield* Effect.forEach(members, (m) => m.beat.isLeader)
      assert.strictEqual(leaders.filter(Boolean).length, 1)
      const first = leaders.indexOf(true)
      yield* advance(20)
      yield* members[first]!.beat.kill
      // killed at 21 s: its lease (renewed at 20 s) runs out at 26 s; the 30 s run is on time
      yield* advance(4)
      assert.strictEqual((yield* Effect.forEach(members, (m) => m.beat.isLeader)).filter(Boolean).length, 0)
      yield* advance(2)
      const after = yield* Effect.forEach(members, (m) => m.beat.isLeader)
      assert.strictEqual(after.filter(Boolean).length, 1)
      assert.notStrictEqual(after.indexOf(true), first)
      yield* advance(30)
      assert.deepStrictEqual(ticks.map((t) => seconds(t.header)), [10, 20, 30, 40, 50])
    }).pipe(Effect.provide(base)))

  it.effect("a leader that shuts down warmly hands over at once", () =>
    Effect.gen(function*() {
      yield* setup
      const options = { entries: [every10()], lease: "30 seconds" } as const
      const a = yield* member({ ...options, id: "b-a" })
      yield* advance(1)
      const b = yield* member({ ...options, id: "b-b" })
      yield* advance(14)
      assert.isTrue(yield* a.beat.isLeader)
      yield* a.stop
      yield* settle
      assert.isTrue(yield* b.beat.isLeader)
      yield* advance(10)
      assert.deepStrictEqual(ticks.map((t) => seconds(t.header)), [10, 20])
    }).pipe(Effect.provide(base)))

  for (
    const [rule, expected] of <const>[
      ["latest", [10, 20, 60, 70]],
      ["all", [10, 20, 30, 40, 50, 60, 70]],
      ["none", [10, 20, 70]]
    ]
  ) {
    it.effect(`catch-up "${rule}": runs missed while no leader lived`, () =>
      Effect.gen(function*() {
        yield* setup
        const options = { entries: [every10({ catchUp: rule })], lease: "3 seconds" } as const
        const a = yield* member(options)
        yield* advance(25)
        yield* a.beat.kill
        // nobody leads from 25 s to 65 s: 30, 40, 50, 60 are missed
        yield* advance(40)
        yield* member(options)
        yield* advance(10)
        assert.deepStrictEqual(ticks.map((t) => seconds(t.header)), [...expected])
        // a late run is still the run of its scheduled time
        if (rule !== "none") assert.strictEqual(ticks.find((t) => seconds(t.header) === 60)?.payload, new Date(60_000).toISOString())
      }).pipe(Effect.provide(base)))
  }

  it.effect("a leader that stalls past its lease keeps submitting, and so does its successor: each time still runs once", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const broker = yield* Broker.Broker
      const attempts = new Map<string, number>()
      const counting = Client.Client.of({
        ...client,
        submit: (task, payload, options) =>
          Effect.andThen(
            Effect.sync(() => attempts.set(options!.id!, (attempts.get(options!.id!) ?? 0) + 1)),
            client.submit(task, payload, options)
          )
      })
      // A's heartbeats never reach the broker (a network split, a stalled event loop), but it goes on scheduling
      const stalled = Broker.Broker.of({ ...broker, renew: () => Effect.never })
      const options = { entries: [every10()], lease: "6 seconds" } as const
      const a = yield* member({ ...options, id: "b-a" }).pipe(
        Effect.provideService(Broker.Broker, stalled),
        Effect.provideService(Client.Client, counting)
      )
      yield* advance(1)
      const b = yield* member({ ...options, id: "b-b" }).pipe(Effect.provideService(Client.Client, counting))
      yield* advance(40)
      // both believe they lead
      assert.isTrue(yield* a.beat.isLeader)
      assert.isTrue(yield* b.beat.isLeader)
      assert.deepStrictEqual(ticks.map((t) => seconds(t.header)), [10, 20, 30, 40])
      assert.deepStrictEqual([10, 20, 30, 40].map((t) => attempts.get(Beat.runId("default", "tick", t * 1000))), [2, 2, 2, 2])
    }).pipe(Effect.provide(base)))

  it.effect("a leader killed between submitting a run and recording it: its successor submits that time again; it runs once", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const backend = yield* ResultBackend.ResultBackend
      const attempts = new Map<string, number>()
      const counting = Client.Client.of({
        ...client,
        submit: (task, payload, options) =>
          Effect.andThen(
            Effect.sync(() => attempts.set(options!.id!, (attempts.get(options!.id!) ?? 0) + 1)),
            client.submit(task, payload, options)
          )
      })
      // A's first checkpoint lands; the one after its first run never does
      let writes = 0
      const stuck = ResultBackend.ResultBackend.of({
        ...backend,
        setState: (id, state, meta) => (++writes > 1 ? Effect.never : backend.setState(id, state, meta))
      })
      const options = { entries: [every10()], lease: "3 seconds" } as const
      const a = yield* member({ ...options, id: "b-a" }).pipe(
        Effect.provideService(ResultBackend.ResultBackend, stuck),
        Effect.provideService(Client.Client, counting)
      )
      yield* advance(12)
      yield* a.beat.kill
      yield* member({ ...options, id: "b-b" }).pipe(Effect.provideService(Client.Client, counting))
      yield* advance(20)
      assert.deepStrictEqual(attempts.get(Beat.runId("default", "tick", 10_000)), 2)
      assert.deepStrictEqual(ticks.map((t) => seconds(t.header)), [10, 20, 30])
    }).pipe(Effect.provide(base)))

  it.effect("the leader's record says who leads and where each entry stands", () =>
    Effect.gen(function*() {
      const client = yield* setup
      yield* member({ entries: [every10()], lease: "3 seconds", id: "b-x", name: "reports" })
      yield* advance(12)
      const leader = yield* client.status(Beat.leaderId("reports", 0))
      assert.strictEqual(leader.queue, Beat.leaderQueue("reports"))
      assert.deepStrictEqual(leader.meta, { beat: { name: "reports", leader: "b-x", entries: { tick: 10_000 } } })
      assert.strictEqual((yield* client.status(Beat.runId("reports", "tick", 10_000))).state, "SUCCESS")
    }).pipe(Effect.provide(base)))

  it.effect("revoking or purging the leader task elects a new one; the beat goes on", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const broker = yield* Broker.Broker
      const options = { entries: [every10({ catchUp: "all" })], lease: "3 seconds" } as const
      yield* member(options)
      yield* member(options)
      yield* advance(15)
      assert.strictEqual(yield* broker.revoke(Beat.leaderId("default", 0)), "running")
      yield* advance(3)
      assert.strictEqual((yield* client.status(Beat.leaderId("default", 0))).state, "REVOKED")
      const next = yield* client.status(Beat.leaderId("default", 1))
      assert.include(["LEADING", "RECEIVED"], next.state, JSON.stringify(next))
      yield* advance(30)
      assert.deepStrictEqual(ticks.map((t) => seconds(t.header)), [10, 20, 30, 40])
    }).pipe(Effect.provide(base)))

  it.effect.prop(
    "with members killed and restarted at random: one leader at a time, no time submitted twice, skipped times only while no leader lived",
    {
      rule: Schema.Literals(["latest", "all", "none"]),
      // member 3: all of them (an outage)
      crashes: Schema.Array(Schema.Struct({ atSecond: int(0, 80), member: int(0, 3), downFor: int(0, 40) }))
        .check(Schema.isMinLength(1), Schema.isMaxLength(6))
    },
    ({ crashes, rule }) =>
      Effect.gen(function*() {
        yield* setup
        const options = { entries: [every10({ catchUp: rule })], lease: "4 seconds" } as const
        const members = [yield* member(options), yield* member(options), yield* member(options)]
        const restarts = new Map<number, Array<number>>()
        const kills = new Map<number, Array<number>>()
        for (const c of crashes) {
          const which = c.member === 3 ? [0, 1, 2] : [c.member]
          kills.set(c.atSecond, [...(kills.get(c.atSecond) ?? []), ...which])
          restarts.set(c.atSecond + c.downFor, [...(restarts.get(c.atSecond + c.downFor) ?? []), ...which])
        }
        const dead = new Set<number>()
        const led = new Map<number, boolean>()
        for (let s = 0; s <= 160; s++) {
          if (s > 0) yield* advance(1)
          for (const m of restarts.get(s) ?? []) {
            if (!dead.has(m)) continue
            dead.delete(m)
            members[m] = yield* member(options)
            yield* settle
          }
          for (const m of kills.get(s) ?? []) {
            if (dead.has(m)) continue
            yield* members[m]!.beat.kill
            dead.add(m)
          }
          const leaders = (yield* Effect.forEach(members, (m, i) => (dead.has(i) ? Effect.succeed(false) : m.beat.isLeader)))
            .filter(Boolean).length
          assert.isAtMost(leaders, 1, `${leaders} leaders at ${s} s`)
          led.set(s, leaders === 1)
        }
        // every run ran once (one task per scheduled time), and never early
        const times = ticks.map((t) => seconds(t.header))
        assert.deepStrictEqual(times, [...new Set(times)].sort((a, b) => a - b), `runs: ${times}`)
        const client = yield* Client.Client
        for (const t of times) {
          const run = yield* client.status(Beat.runId("default", "tick", t * 1000))
          assert.isAtLeast(run.submittedAt, t * 1000)
          // on time whenever a leader lived at that second
          if (led.get(t) && led.get(t - 1)) assert.strictEqual(run.submittedAt, t * 1000, `run ${t} late`)
        }
        const last = Math.max(0, ...[...led.entries()].filter(([, l]) => l).map(([s]) => s))
        for (let t = 10; t <= Math.min(150, last); t += 10) {
          if (times.includes(t)) continue
          // skipped: no leader at that time, and only when the rule skips
          assert.notStrictEqual(rule, "all", `run ${t} missed with catch-up "all"`)
          assert.isFalse(led.get(t) === true && led.get(t - 1) === true, `run ${t} skipped while a leader lived`)
        }
        if (rule === "all") {
          // nothing missed up to the last time a leader lived
          assert.deepStrictEqual(times.filter((t) => t <= last - 5), Array.from({ length: Math.floor((last - 5) / 10) }, (_, i) => 10 * (i + 1)))
        }
        const backend = yield* ResultBackend.ResultBackend
        assert.isTrue(Option.isSome(yield* backend.get(Beat.leaderId("default", 0))))
      }).pipe(Effect.provide(base)),
    { timeout: 120_000, arbitrary: { runs: 40 } }
  )
})
