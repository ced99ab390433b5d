/**
 * Process-level tests: real worker processes on a real Redis, killed with
 * SIGKILL (their running tasks come back as WorkerLost) and stopped with
 * SIGTERM (warm shutdown: running tasks are rescheduled as WorkerShutdown,
 * prefetched ones released). Every task still ends SUCCESS.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Client } from "@errand/core"
import { RedisBroker } from "@errand/redis"
import { type ChildProcess, spawn } from "node:child_process"
import { Effect, Layer } from "effect"
import { Sleep } from "./fixtures/tasks.ts"
import { deletePrefix, randomPrefix, testRedis } from "./utils/redis.ts"

let url = ""
let stop: () => Promise<void> = async () => {}

beforeAll(async () => {
  const redis = await testRedis()
  url = redis.url
  stop = redis.stop
})

afterAll(() => stop())

const workerScript = new URL("./fixtures/worker.ts", import.meta.url).pathname

interface WorkerProcess {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | null>
}

const spawnWorker = (prefix: string, id: string): WorkerProcess => {
  // process.execPath: the Node running the tests (24), not whatever `node` is on PATH
  const child = spawn(process.execPath, ["--import", "tsx", workerScript], {
    cwd: new URL("../../..", import.meta.url).pathname,
    env: { ...process.env, ERRAND_REDIS_URL: url, ERRAND_REDIS_PREFIX: prefix, WORKER_ID: id },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout?.on("data", (d) => (output += String(d)))
  child.stderr?.on("data", (d) => (output += String(d)))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  return { child, output: () => output, exited }
}

/** Runs `body` with a Client on a fresh prefix; kills leftover workers and deletes the keys after. */
const withPrefix = <A, E>(
  body: (prefix: string, workers: Array<WorkerProcess>) => Effect.Effect<A, E, Client.Client>
) =>
  Effect.suspend(() => {
    const prefix = randomPrefix()
    const workers: Array<WorkerProcess> = []
    return body(prefix, workers).pipe(
      Effect.provide(Client.layer.pipe(Layer.provide(RedisBroker.layer({ url, prefix })))),
      Effect.ensuring(Effect.promise(async () => {
        for (const w of workers) if (w.child.exitCode === null) w.child.kill("SIGKILL")
        await Promise.all(workers.map((w) => w.exited))
        await deletePrefix(url, prefix)
      }))
    )
  })

const waitUntil = <E, R>(check: Effect.Effect<boolean, E, R>, what: string, millis = 20_000) =>
  Effect.gen(function*() {
    const until = Date.now() + millis
    while (!(yield* check)) {
      if (Date.now() > until) return yield* Effect.die(new Error(`timed out waiting until ${what}`))
      yield* Effect.sleep(20)
    }
  })

describe("worker processes on Redis", () => {
  it.live("SIGKILL: the killed worker's running tasks come back as WorkerLost; every task ends SUCCESS", () =>
    withPrefix((prefix, workers) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const jobs = yield* client.submitMany(Sleep, Array.from({ length: 10 }, () => ({ millis: 600 })))
        const a = spawnWorker(prefix, "w-a")
        workers.push(a)
        const started = () =>
          Effect.forEach(jobs, (job) => client.status(job.id)).pipe(
            Effect.map((ss) => ss.filter((s) => s.state === "STARTED").length)
          )
        yield* waitUntil(Effect.map(started(), (n) => n >= 2), "w-a runs tasks")
        a.child.kill("SIGKILL")
        expect(yield* Effect.promise(() => a.exited)).toBeNull()
        workers.push(spawnWorker(prefix, "w-b"))
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
    withPrefix((prefix, workers) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const jobs = yield* client.submitMany(Sleep, Array.from({ length: 8 }, () => ({ millis: 1500 })))
        const a = spawnWorker(prefix, "w-a")
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
        expect(afterStop.every((s) => s.state === "RETRY" || s.state === "PENDING")).toBe(true)
        workers.push(spawnWorker(prefix, "w-b"))
        yield* Effect.forEach(jobs, (job) => client.await(job), { concurrency: "unbounded" })
          .pipe(Effect.timeout("40 seconds"))
        const statuses = yield* Effect.forEach(jobs, (job) => client.status(job.id))
        expect(statuses.every((s) => s.state === "SUCCESS" && s.history.at(-1)?.worker === "w-b")).toBe(true)
      })
    ), 60_000)
})
