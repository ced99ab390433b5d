/**
 * The worker process's watchdog: a thread of its own that watches the main
 * event loop and kills the process (SIGKILL) when the loop has been blocked
 * longer than a limit, e.g. by a handler stuck in a busy loop.
 *
 * Why kill: a blocked loop cannot renew leases. Once a lease runs out another
 * worker takes the task over (a `LOST` entry), and the stalled attempt, when
 * it wakes, would run on beside its replacement until its late ack is refused
 * (a `STALE` entry). Killed before its leases run out, the process leaves its
 * tasks to come back exactly as after a crash, and two attempts of one task
 * never run at once. The limit must therefore stay below two thirds of the
 * lease (a lease is renewed every third of it).
 *
 * @since 0.1.0
 */
import { Effect, type Scope } from "effect"
import { Worker as Thread } from "node:worker_threads"

const threadCode = `
const { workerData } = require("node:worker_threads")
const fs = require("node:fs")
const beat = new Float64Array(workerData.shared)
const now = () => performance.timeOrigin + performance.now()
setInterval(() => {
  const blocked = now() - beat[0]
  if (blocked > workerData.limit) {
    try {
      fs.writeSync(2, workerData.label + ": event loop blocked for " + Math.round(blocked) + " ms (watchdog " +
        workerData.limit + " ms); killing this process (SIGKILL) so its tasks come back on other workers as " +
        "WorkerLost instead of running twice\\n")
    } catch {}
    process.kill(process.pid, "SIGKILL")
  }
}, workerData.tick)
`

/**
 * Starts the watchdog for the lifetime of the scope.
 *
 * @since 0.1.0
 */
export const start = (limitMillis: number, label: string): Effect.Effect<void, never, Scope.Scope> =>
  Effect.asVoid(Effect.acquireRelease(
    Effect.sync(() => {
      const tick = Math.max(10, Math.min(100, Math.floor(limitMillis / 5)))
      const shared = new SharedArrayBuffer(8)
      const beat = new Float64Array(shared)
      const now = () => performance.timeOrigin + performance.now()
      beat[0] = now()
      const timer = setInterval(() => {
        beat[0] = now()
      }, tick)
      timer.unref()
      const thread = new Thread(threadCode, { eval: true, workerData: { shared, limit: limitMillis, tick, label } })
      thread.unref()
      return { timer, thread }
    }),
    ({ thread, timer }) =>
      Effect.promise(async () => {
        clearInterval(timer)
        await thread.terminate()
      })
  ))
