/**
 * Process-level tests: real worker processes on a real Redis, killed with
 * SIGKILL (their running tasks come back as WorkerLost) and stopped with
 * SIGTERM (warm shutdown: running tasks are rescheduled as WorkerShutdown,
 * prefetched ones released). Every task still ends SUCCESS.
 */
import { describe, expect, it } from "@effect/vitest"
import { Client } from "@errand/core"
import { Effect } from "effect"
import { Sleep } from "./fixtures/tasks.ts"
import { type ScriptProcess, spawnWorker, useTestRedis, waitUntil, withPrefix } from "./utils/process.ts"

const redis = useTestRedis()

const workerScript = new URL("./fixtures/worker.ts", import.meta.url).pathname
const spawn = (prefix: string, id: string) => spawnWorker(workerScript, redis.url(), prefix, id)

describe("worker processes on Redis", () => {
  it.live("SIGKILL: the killed worker's running tasks come back as WorkerLost; every task ends SUCCESS", () =>
    withPrefix(redis.url, (prefix, workers: Array<ScriptProcess>) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const jobs = yield* client.submitMany(Sleep, Array.from({ length: 10 }, () => ({ millis: 600 })))
        const a = spawn(prefix, "w-a")
        workers.push(a)
        const started = () =>
          Effect.forEach(jobs, (job) => client.status(job.id)).pipe(
            Effect.map((ss) => ss.filter((s) => s.state === "STARTED").length)
          )
        yield* waitUntil(Effect.map(started(), (n) => n >= 2), "w-a runs tasks")
        a.child.kill("SIGKILL")
        expect(yield* Effect.promise(() => a.exited)).toBeNull()
        workers.push(spawn(prefix, "w-b"))
        const results = yield* Effect.forEach(jobs, (job) => client.await(job), { concurrency: "unbounded" })
          .pipe(Effect.timeout("40 seconds"))
        expect(results.every((r) => /^attempt \d by w-[ab]$/.test(r))).toBe(true)
        const statuses = yield* Effect.forEach(jobs, (job) => client.status(job.id))
        expect(statuses.every((s) => s.state === "SUCCESS")).toBe(true)
        const lost = statuses.filter((s) => s.history.some((h) => h.outcome === "LOST"))
        expect(lost.length).toBeGreaterThanOrEqual(1)
        for (const s of lost) {
          const entry = s.history.find((h) => h.outcome === "LOST")!
          expect(entry.worker).toBe("w-a")
          expect(entry.error?._tag).toBe("WorkerLost")
          expect(s.history.at(-1)?.worker).toBe("w-b")
        }
      })
    ), 60_000)

  it.live("SIGTERM: warm shutdown reschedules running tasks (WorkerShutdown) and releases prefetched ones", () =>
    withPrefix(redis.url, (prefix, workers: Array<ScriptProcess>) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const jobs = yield* client.submitMany(Sleep, Array.from({ length: 8 }, () => ({ millis: 1500 })))
        const a = spawn(prefix, "w-a")
        workers.push(a)
        yield* waitUntil(
          Effect.forEach(jobs, (job) => client.status(job.id)).pipe(
            Effect.map((ss) => ss.filter((s) => s.state === "STARTED").length === 4)
          ),
          "w-a runs 4 tasks"
        )
        const t0 = Date.now()
        a.child.kill("SIGTERM")
        yield* Effect.promise(() => a.exited)
        expect(Date.now() - t0).toBeLessThan(5_000)
        const afterStop = yield* Effect.forEach(jobs, (job) => client.status(job.id))
        const rescheduled = afterStop.filter((s) => s.history.some((h) => h.error?._tag === "WorkerShutdown"))
        expect(rescheduled.length).toBe(4)
        // nothing is left leased by the stopped worker
        expect(
          afterStop.filter((s) => s.state !== "RETRY" && s.state !== "PENDING").map((s) => ({
            state: s.state,
            history: s.history.map((h) => `${h.worker} ${h.outcome} ${h.error?._tag ?? ""}`)
          }))
        ).toEqual([])
        workers.push(spawn(prefix, "w-b"))
        yield* Effect.forEach(jobs, (job) => client.await(job), { concurrency: "unbounded" })
          .pipe(Effect.timeout("40 seconds"))
        const statuses = yield* Effect.forEach(jobs, (job) => client.status(job.id))
        expect(statuses.every((s) => s.state === "SUCCESS" && s.history.at(-1)?.worker === "w-b")).toBe(true)
      })
    ), 60_000)
})
