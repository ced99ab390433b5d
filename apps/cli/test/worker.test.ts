/**
 * `errand worker` processes on a real Redis: signals (warm and cold
 * shutdown, exit 0) and a handler that blocks the event loop past its lease,
 * with and without the watchdog.
 */
import { describe, expect, it } from "@effect/vitest"
import { Client } from "@errand/core"
import { Effect } from "effect"
import * as fs from "node:fs"
import { Busy, Sleep } from "./fixtures/tasks.ts"
import {
  readRuns,
  runCli,
  runsFile,
  spawnCli,
  tasksModule,
  useCliRedis,
  waitUntil,
  withDeployment
} from "./utils.ts"

const redis = useCliRedis()

const run = <A, E>(body: Parameters<typeof withDeployment<A, E>>[1]) => withDeployment(redis.url, body)

const statuses = (ids: ReadonlyArray<string>) => Effect.forEach(ids, (id) => Client.Client.use((c) => c.status(id)))

describe("errand worker: signals", () => {
  it.live("SIGTERM: exits 0 within the grace; short tasks finish, long ones finish later elsewhere with WorkerShutdown", () =>
    run((d) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const runs = runsFile()
        const a = d.worker("w-a", ["--concurrency", "4", "--grace", "1s", "--lease", "2s"], { ERRAND_TEST_RUNS: runs })
        yield* Effect.promise(() => a.waitFor("w-a started"))
        const short = yield* client.submitMany(Sleep, [{ millis: 400 }, { millis: 400 }])
        const long = yield* client.submitMany(Sleep, [{ millis: 8_000 }, { millis: 8_000 }])
        const queued = yield* client.submitMany(Sleep, [{ millis: 10 }, { millis: 10 }], { countdown: "300 millis" })
        const ids = [...short, ...long].map((j) => j.id)
        // the four handlers have begun (see the cold-shutdown test)
        yield* waitUntil(Effect.sync(() => readRuns(runs).length === 4), "w-a runs four tasks")
        const t0 = Date.now()
        a.child.kill("SIGTERM")
        const exit = yield* Effect.promise(() => a.exited)
        const took = Date.now() - t0
        expect(exit).toEqual({ code: 0, signal: null })
        expect(took).toBeLessThan(1_000 + 1_500)
        expect(a.stdout()).toContain("errand worker w-a: SIGTERM: warm shutdown, waiting up to 1.0 s for running tasks")
        expect(a.stdout()).toContain("errand worker w-a stopped")

        const afterStop = yield* statuses(ids)
        // the short ones finished within the grace, on w-a
        for (const s of afterStop.slice(0, 2)) {
          expect(s.state).toBe("SUCCESS")
          expect(s.history.map((h) => [h.outcome, h.worker])).toEqual([["SUCCESS", "w-a"]])
        }
        // the long ones were interrupted and rescheduled
        for (const s of afterStop.slice(2)) {
          expect(s.state).toBe("RETRY")
          expect(s.history.map((h) => [h.outcome, h.worker, h.error?._tag])).toEqual([
            ["RETRY", "w-a", "WorkerShutdown"]
          ])
        }

        const b = d.worker("w-b", ["--concurrency", "4"])
        yield* Effect.forEach([...long, ...queued], (job) => client.await(job), { concurrency: "unbounded" })
          .pipe(Effect.timeout("30 seconds"))
        for (const s of (yield* statuses(long.map((j) => j.id)))) {
          expect(s.state).toBe("SUCCESS")
          expect(s.history.map((h) => [h.outcome, h.worker, h.error?._tag])).toEqual([
            ["RETRY", "w-a", "WorkerShutdown"],
            ["SUCCESS", "w-b", undefined]
          ])
        }
        b.child.kill("SIGINT")
        expect(yield* Effect.promise(() => b.exited)).toEqual({ code: 0, signal: null })
      })
    ), 60_000)

  it.live("a second signal: cold shutdown now, tasks rescheduled with WorkerShutdown, exit 0", () =>
    run((d) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const runs = runsFile()
        const a = d.worker("w-a", ["--concurrency", "2", "--grace", "1m"], { ERRAND_TEST_RUNS: runs })
        yield* Effect.promise(() => a.waitFor("w-a started"))
        const jobs = yield* client.submitMany(Sleep, [{ millis: 20_000 }, { millis: 20_000 }])
        // both handlers have begun (a STARTED record alone may come from the
        // claim that hands the tasks over, before the worker has them)
        yield* waitUntil(Effect.sync(() => readRuns(runs).length === 2), "w-a runs both tasks")
        const t0 = Date.now()
        a.child.kill("SIGINT")
        yield* Effect.promise(() => a.waitFor("SIGINT: warm shutdown"))
        yield* Effect.sleep(300)
        expect(a.child.exitCode).toBeNull()
        a.child.kill("SIGTERM")
        expect(yield* Effect.promise(() => a.exited)).toEqual({ code: 0, signal: null })
        expect(Date.now() - t0).toBeLessThan(5_000)
        expect(a.stdout()).toContain("errand worker w-a: SIGTERM: cold shutdown, interrupting running tasks now")
        for (const s of yield* statuses(jobs.map((j) => j.id))) {
          expect(s.state).toBe("RETRY")
          expect(s.history.map((h) => [h.outcome, h.error?._tag])).toEqual([["RETRY", "WorkerShutdown"]])
        }
      })
    ), 60_000)
})

describe("errand worker: options", () => {
  it.live("--broker memory, several --tasks modules, --queues; bad values are usage errors", () =>
    Effect.gen(function*() {
      const w = spawnCli([
        "worker",
        "--broker",
        "memory",
        "-t",
        tasksModule,
        "-t",
        "apps/cli/test/fixtures/more-tasks.ts",
        "-Q",
        "default,other",
        "--id",
        "w-mem"
      ])
      yield* Effect.promise(() => w.waitFor("w-mem started"))
      expect(w.stdout()).toMatch(/^  broker {7}memory \(this process only\)$/m)
      expect(w.stdout()).toMatch(/^  tasks {8}cli\.busy, cli\.failOnce, cli\.flaky, cli\.sleep, cli\.unimplemented$/m)
      expect(w.stdout()).toMatch(/^  queues {7}default, other$/m)
      expect(w.stdout()).toMatch(/^  lease {8}10 s, shutdown grace 30 s, watchdog 5\.0 s$/m)
      w.child.kill("SIGTERM")
      expect(yield* Effect.promise(() => w.exited)).toEqual({ code: 0, signal: null })

      const [zero, lease] = yield* Effect.all([
        Effect.promise(() => runCli(["worker", "-t", tasksModule, "--broker", "memory", "--concurrency", "0"])),
        Effect.promise(() => runCli(["worker", "-t", tasksModule, "--broker", "memory", "--lease", "soon"]))
      ], { concurrency: 2 })
      expect(zero.code).toBe(2)
      expect(zero.stdout + zero.stderr).toContain("--concurrency must be a whole number of at least 1, got 0")
      expect(lease.code).toBe(2)
      expect(lease.stdout + lease.stderr).toContain(`"soon" is not a duration (examples: 500ms, 10s, 2m, 1h, "10 seconds")`)
    }), 60_000)
})

describe("errand worker: a handler that blocks the event loop past its lease", () => {
  it.live("without the watchdog: the task is taken over (LOST), the stalled run's late ack is refused (STALE)", () =>
    run((d) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const runs = runsFile()
        const env = { ERRAND_TEST_RUNS: runs }
        const args = ["--lease", "1s", "--watchdog", "off"]
        const workers = [d.worker("w-1", args, env), d.worker("w-2", args, env)]
        yield* Effect.promise(() => Promise.all(workers.map((w) => w.waitFor("started"))))
        const job = yield* client.submit(Busy, { millis: 3_000 })
        const result = yield* client.await(job).pipe(Effect.timeout("30 seconds"))
        // the stalled attempt wakes up after its replacement succeeded: wait for its STALE entry
        yield* waitUntil(
          Effect.map(client.status(job.id), (s) => s.history.some((h) => h.outcome === "STALE")),
          "the stalled attempt is recorded"
        )
        const status = yield* client.status(job.id)
        const stalled = status.history[0]!.worker
        const other = stalled === "w-1" ? "w-2" : "w-1"
        expect(result).toBe(`attempt 1 by ${other}`)
        expect(status.state).toBe("SUCCESS")
        expect(status.history.map((h) => [h.outcome, h.worker, h.error?._tag])).toEqual([
          ["LOST", stalled, "WorkerLost"],
          ["SUCCESS", other, undefined],
          ["STALE", stalled, undefined]
        ])
        // both ran: the stalled run to its end, beside its replacement; each run is in the history
        const lines = fs.readFileSync(runs, "utf8")
        expect(lines).toContain(`${job.id} done ${stalled}`)
        expect(readRuns(runs).map((r) => [r.worker, r.attempt])).toEqual([[stalled, 0], [other, 1]])
        // the stalled worker itself survived and still works
        const next = yield* client.submit(Sleep, { millis: 1 })
        yield* client.await(next).pipe(Effect.timeout("20 seconds"))
        for (const w of workers) expect(w.child.exitCode).toBeNull()
      })
    ), 60_000)

  it.live("with the watchdog: the stalled process is killed before its lease runs out; no overlap, no STALE", () =>
    run((d) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const runs = runsFile()
        const env = { ERRAND_TEST_RUNS: runs }
        // --watchdog defaults to half the lease: 1.5 s
        const args = ["--lease", "3s"]
        const workers = [d.worker("w-1", args, env), d.worker("w-2", args, env)]
        yield* Effect.promise(() => Promise.all(workers.map((w) => w.waitFor("watchdog 1.5 s"))))
        const killedAt = new Map<string, number>()
        for (const [i, w] of workers.entries()) {
          void w.exited.then(() => killedAt.set(`w-${i + 1}`, Date.now()))
        }
        const job = yield* client.submit(Busy, { millis: 8_000 })
        const result = yield* client.await(job).pipe(Effect.timeout("30 seconds"))
        const status = yield* client.status(job.id)
        const stalled = status.history[0]!.worker
        const other = stalled === "w-1" ? "w-2" : "w-1"
        const victim = workers[stalled === "w-1" ? 0 : 1]!
        expect(yield* Effect.promise(() => victim.exited)).toEqual({ code: null, signal: "SIGKILL" })
        expect(victim.stderr()).toMatch(
          new RegExp(`errand worker ${stalled}: event loop blocked for \\d+ ms \\(watchdog 1500 ms\\); killing this process`)
        )
        expect(result).toBe(`attempt 1 by ${other}`)
        expect(status.history.map((h) => [h.outcome, h.worker, h.error?._tag])).toEqual([
          ["LOST", stalled, "WorkerLost"],
          ["SUCCESS", other, undefined]
        ])
        // killed before its lease ran out, so the replacement never ran beside it
        expect(killedAt.get(stalled)!).toBeLessThan(status.history[0]!.endedAt)
        expect(fs.readFileSync(runs, "utf8")).not.toContain(" done ")
        expect(workers.find((w) => w !== victim)!.child.exitCode).toBeNull()
      })
    ), 60_000)
})
