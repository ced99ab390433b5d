/**
 * Producer-side JS CPU of RedisBroker.enqueue per task (process.cpuUsage),
 * in batches of BATCH (default "1,100"), N tasks, the second of two rounds.
 * BASE=<dir> as in steps.ts. On a shared machine prefer instruction counts:
 * run it under `valgrind --tool=callgrind` at two N and divide the
 * difference of the totals by the difference of tasks.
 */
import type * as Broker from "@errand/core/Broker"
import { Broker as BrokerService } from "@errand/core/Broker"
import * as Current from "@errand/redis/RedisBroker"
import { Effect } from "effect"

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const n = Number(process.argv[2] ?? 20_000)
const RedisBroker: typeof Current = process.env.BASE
  ? await import(new URL(`${process.env.BASE}/RedisBroker.ts`, `file://${process.cwd()}/`).href)
  : Current
const prefix = `prod-${Date.now()}`
const out: Array<string> = []
await Effect.runPromise(Effect.gen(function*() {
  const broker = yield* BrokerService
  for (const size of (process.env.BATCH ?? "1,100").split(",").map(Number)) {
    for (let round = 0; round < 2; round++) {
      const at = Date.now()
      const sub = (i: number): Broker.Submission => ({
        message: {
          id: `${prefix}-${size}-${round}-${i}-0123456789abcdef`,
          task: "bench.noop",
          queue: "prod",
          payload: { n: i },
          headers: {},
          priority: 5,
          retries: 0,
          submittedAt: at
        },
        dueAt: at
      })
      const c0 = process.cpuUsage()
      for (let k = 0; k < n; k += size) {
        yield* broker.enqueue(Array.from({ length: Math.min(size, n - k) }, (_, j) => sub(k + j)))
      }
      const c = process.cpuUsage(c0)
      if (round === 1) out.push(`batch ${size}: ${((c.user + c.system) / n).toFixed(2)} µs CPU per task`)
    }
  }
}).pipe(Effect.provide(RedisBroker.layer({ url, prefix, resultTtl: "1 minute" }))))
console.log(out.join("  |  "))
process.exit(0)
