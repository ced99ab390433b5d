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
 *
 * TRACE=1 times the worker's broker calls (a `Broker` wrapped around the
 * Redis one) and prints, for claims and completes: calls, tasks per call,
 * the round trip as the worker sees it (write to reply handled, so it holds
 * the time the reply waited for a busy event loop), how many were in flight,
 * and the share of the drain with at least one outstanding; and the mean
 * time Redis spent inside a script (`INFO commandstats`, claims and
 * completes together). TRACE_FILE=<path> also writes every call (op, sent
 * and replied in ms since the drain began, tasks).
 */
import { Broker, Client, Task, Worker } from "@errand/core"
import { RedisBroker } from "@errand/redis"
import { Deferred, Effect, Layer, References } from "effect"
import * as fs from "node:fs"
import * as Redis from "./redis.ts"
import { counter, noopTask } from "./task.ts"

const N = Number(process.argv[2] ?? 100_000)
const prefetch = Number(process.argv[3] ?? 200)
const mode = process.argv[4] ?? "both"
const prefix = process.argv[5] ?? `drain${Date.now()}`
const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const workers = Math.max(1, Number(process.env.WORKERS ?? 1))
const tracing = process.env.TRACE === "1"

/** One broker call of the drain: sent and replied (performance.now, ms), tasks. */
interface Call {
  readonly op: "claim" | "complete"
  readonly sent: number
  readonly replied: number
  readonly tasks: number
}
const calls: Array<Call> = []
let traceFrom = Infinity

/** The Redis broker, its claims and completes timed (TRACE=1). */
const tracedBroker = Layer.effect(
  Broker.Broker,
  Effect.gen(function*() {
    const broker = yield* Broker.Broker
    const timed = <A, E>(op: Call["op"], effect: Effect.Effect<A, E>, tasks: (a: A) => number): Effect.Effect<A, E> =>
      Effect.suspend(() => {
        const sent = performance.now()
        return Effect.map(effect, (a) => {
          if (sent >= traceFrom) calls.push({ op, sent, replied: performance.now(), tasks: tasks(a) })
          return a
        })
      })
    return Broker.Broker.of({
      ...broker,
      claim: (options) => timed("claim", broker.claim(options), (d) => d.length),
      complete: (batch) => timed("complete", broker.complete(batch), () => batch.length)
    })
  })
)

const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

/** What TRACE=1 prints: per operation, and the drain's share with a call outstanding. */
const traceReport = (from: number, to: number, scriptMicros: number, scriptCalls: number) => {
  const span = to - from
  // the share of [from, to] covered by the intervals of some calls
  const covered = (cs: ReadonlyArray<Call>) => {
    const sorted = [...cs].sort((a, b) => a.sent - b.sent)
    let total = 0
    let end = -Infinity
    for (const c of sorted) {
      const start = Math.max(c.sent, end)
      if (c.replied > start) total += c.replied - start
      end = Math.max(end, c.replied)
    }
    return total / span
  }
  const lines = [`trace: ${calls.length} calls over ${span.toFixed(0)} ms; a call outstanding ${(100 * covered(calls)).toFixed(0)}% of it`]
  for (const op of ["claim", "complete"] as const) {
    const cs = calls.filter((c) => c.op === op)
    if (cs.length === 0) continue
    const rtt = cs.map((c) => c.replied - c.sent).sort((a, b) => a - b)
    const tasks = cs.reduce((n, c) => n + c.tasks, 0)
    // calls of this op in flight when each one was sent (itself included)
    const inFlight = cs.map((c) => cs.filter((o) => o.sent <= c.sent && o.replied > c.sent).length)
    lines.push(
      `  ${op}: ${cs.length} calls, ${(tasks / cs.length).toFixed(0)} tasks each; round trip mean ${
        (rtt.reduce((a, b) => a + b, 0) / rtt.length).toFixed(2)
      } ms, p50 ${quantile(rtt, 0.5).toFixed(2)}, p90 ${quantile(rtt, 0.9).toFixed(2)}; in flight when sent: mean ${
        (inFlight.reduce((a, b) => a + b, 0) / inFlight.length).toFixed(2)
      }; outstanding ${(100 * covered(cs)).toFixed(0)}% of the drain`
    )
  }
  lines.push(
    `  Redis inside scripts: ${scriptCalls} calls, mean ${(scriptMicros / Math.max(1, scriptCalls) / 1000).toFixed(2)} ms (${
      (100 * scriptMicros / 1000 / span).toFixed(0)
    }% of the drain)`
  )
  console.log(lines.join("\n"))
  if (process.env.TRACE_FILE) {
    fs.writeFileSync(
      process.env.TRACE_FILE,
      calls.map((c) => `${c.op} ${(c.sent - from).toFixed(3)} ${(c.replied - from).toFixed(3)} ${c.tasks}`).join("\n") + "\n"
    )
  }
}

const task = noopTask("q", false)

const program = (probe: Redis.Client) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* Client.Client
    if (mode !== "drain") yield* client.submitMany(task, Array.from({ length: N }, (_, n) => ({ n, t: 0 })))
    if (mode === "submit") return
    const handled = counter(N)
    const redis0 = yield* Effect.promise(() => Redis.cpu(probe))
    const scripts0 = tracing ? yield* Effect.promise(() => Redis.scriptTime(probe)) : undefined
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    traceFrom = t0
    const elu0 = performance.eventLoopUtilization()
    for (let w = 0; w < workers; w++) {
      yield* Worker.make({
        tasks: [Task.implement(task, handled.handle)],
        concurrency: Math.ceil(50 / workers),
        prefetch,
        ...(process.env.PREFETCH_MAX ? { prefetchMax: Number(process.env.PREFETCH_MAX) } : {})
      })
    }
    yield* Deferred.await(handled.finished)
    const drainedAt = performance.now()
    const seconds = (drainedAt - t0) / 1000
    const elu = performance.eventLoopUtilization(elu0)
    const cpu = process.cpuUsage(cpu0)
    const redis = (yield* Effect.promise(() => Redis.cpu(probe))) - redis0
    const scripts1 = tracing ? yield* Effect.promise(() => Redis.scriptTime(probe)) : undefined
    const micros = cpu.user + cpu.system
    console.log(
      `drain ${N.toLocaleString("en-US")}: ${(N / seconds).toFixed(0)} tasks/s; worker ${(micros / N).toFixed(2)} µs/task (${
        (100 * micros / 1e6 / seconds).toFixed(0)
      }% of a core, its event loop busy ${(100 * elu.utilization).toFixed(0)}%); Redis ${(redis * 1e6 / N).toFixed(2)} µs/task (${(100 * redis / seconds).toFixed(0)}%)`
    )
    if (scripts0 !== undefined && scripts1 !== undefined) {
      traceReport(t0, drainedAt, scripts1.micros - scripts0.micros, scripts1.calls - scripts0.calls)
    }
  })).pipe(
    Effect.provide(Client.layer.pipe(Layer.provideMerge(
      tracing
        ? tracedBroker.pipe(Layer.provideMerge(RedisBroker.layer({ url, prefix })))
        : RedisBroker.layer({ url, prefix })
    ))),
    Effect.provideService(References.MinimumLogLevel, "Warn")
  )

const probe = await Redis.connect(url)
try {
  await Effect.runPromise(program(probe))
  if (mode !== "submit") await Redis.deleteKeys(probe, [`{${prefix}:*`, `${prefix}:*`])
} finally {
  await probe.quit()
}
