/**
 * The worker alone, draining a waiting backlog on Redis: what the e2e run's
 * second half is (after the producer is done), without the producer's CPU
 * beside it. Prints tasks/s, the worker's CPU per task and share of a core,
 * and Redis's. A worker that is neither near a full core nor waiting on a
 * busy Redis is waiting on round trips.
 *
 *   node src/drain.ts [tasks=100000] [prefetch=200] [both|submit|drain] [prefix]
 *
 * `submit` and `drain` split the two halves into processes of their own (the
 * same prefix for both), so a profile (`node --cpu-prof`) of `drain` holds
 * only the worker; WORKERS=n runs n workers in the process (concurrency 50
 * shared). REDIS_URL, default redis://127.0.0.1:6379.
 */
import { Client, Task, Worker } from "@errand/core"
import { RedisBroker } from "@errand/redis"
import { Deferred, Effect, Layer, References, Schema } from "effect"
import * as Redis from "./redis.ts"

const N = Number(process.argv[2] ?? 100_000)
const prefetch = Number(process.argv[3] ?? 200)
const mode = process.argv[4] ?? "both"
const prefix = process.argv[5] ?? `drain${Date.now()}`
const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const workers = Math.max(1, Number(process.env.WORKERS ?? 1))

const task = Task.make("bench.noop", {
  payload: Schema.Struct({ n: Schema.Number, t: Schema.Number }),
  success: Schema.Number,
  queue: "q",
  storeResult: false
})

const program = (probe: Redis.Client) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* Client.Client
    if (mode !== "drain") yield* client.submitMany(task, Array.from({ length: N }, (_, n) => ({ n, t: 0 })))
    if (mode === "submit") return
    const finished = Deferred.makeUnsafe<void>()
    let count = 0
    const redis0 = yield* Effect.promise(() => Redis.cpu(probe))
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    const elu0 = performance.eventLoopUtilization()
    for (let w = 0; w < workers; w++) {
      yield* Worker.make({
        tasks: [Task.implement(task, (p) =>
          Effect.sync(() => {
            if (++count === N) Deferred.doneUnsafe(finished, Effect.void)
            return p.n
          }))],
        concurrency: Math.ceil(50 / workers),
        prefetch
      })
    }
    yield* Deferred.await(finished)
    const seconds = (performance.now() - t0) / 1000
    const elu = performance.eventLoopUtilization(elu0)
    const cpu = process.cpuUsage(cpu0)
    const redis = (yield* Effect.promise(() => Redis.cpu(probe))) - redis0
    const micros = cpu.user + cpu.system
    console.log(
      `drain ${N.toLocaleString("en-US")}: ${(N / seconds).toFixed(0)} tasks/s; worker ${(micros / N).toFixed(2)} µs/task (${
        (100 * micros / 1e6 / seconds).toFixed(0)
      }% of a core, its event loop busy ${(100 * elu.utilization).toFixed(0)}%); Redis ${(redis * 1e6 / N).toFixed(2)} µs/task (${(100 * redis / seconds).toFixed(0)}%)`
    )
  })).pipe(
    Effect.provide(Client.layer.pipe(Layer.provideMerge(RedisBroker.layer({ url, prefix })))),
    Effect.provideService(References.MinimumLogLevel, "Warn")
  )

const probe = await Redis.connect(url)
try {
  await Effect.runPromise(program(probe))
  if (mode !== "submit") await Redis.deleteKeys(probe, [`{${prefix}:*`, `${prefix}:*`])
} finally {
  await probe.quit()
}
