/**
 * The child side of the orchestrator's IPC: report with `report`, receive
 * commands with `command`.
 */
import * as fs from "node:fs"
import { Session } from "node:inspector/promises"
import type { RoleConfig } from "./config.ts"
import { type Message, now } from "./proc.ts"

export const report = (message: Message): void => {
  process.send?.(message)
}

/** Resolves with the next command of this type from the orchestrator. */
export const command = (type: string): Promise<Message> =>
  new Promise((resolve) => {
    const listener = (m: unknown) => {
      if (typeof m === "object" && m !== null && (m as Message).type === type) {
        process.off("message", listener)
        resolve(m as Message)
      }
    }
    process.on("message", listener)
  })

/**
 * What a worker reports about its memory, after a full GC. (Never before a
 * timed run: a forced full GC shrinks V8's heap limits and made the
 * in-memory run up to 2× slower, from major GCs while its heap grew.)
 */
export const memory = () => {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external }
}

/**
 * Before the latency workload (light load, every Node system alike): a full
 * GC of what starting up left behind (module sources, compiled code's
 * garbage), so the run measures a settled process, not the first major GC of
 * a fresh one (up to 30 ms here, inside the 5 s window).
 */
export const settle = (): void => {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
}

/** Latency summary in ms (p50, p99, mean, max) of a list of samples. */
export const summarize = (samples: ReadonlyArray<number>) => {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  const mean = sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length)
  return { n: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] ?? NaN, mean }
}

/**
 * Starts V8's CPU profiler when `BENCH_PROFILE` names a file (the
 * orchestrator's profiled reruns); the function it returns stops it and
 * writes the profile there. A child profiles its measured round alone,
 * without start-up or a warm-up round. `undefined`: not profiling.
 */
export const startProfile = async (): Promise<(() => Promise<void>) | undefined> => {
  const file = process.env.BENCH_PROFILE
  if (file === undefined || file === "") return undefined
  const session = new Session()
  session.connect()
  await session.post("Profiler.enable")
  await session.post("Profiler.start")
  return async () => {
    const { profile } = await session.post("Profiler.stop")
    fs.writeFileSync(file, JSON.stringify(profile))
    session.disconnect()
  }
}

/**
 * The loop of the Promise-based paced producers (BullMQ's, the floor's):
 * once told to go, `tasks` submits at `rate` per second, each started on
 * time and stamped with the time it is made, not awaited one by one; then
 * `submitted`.
 */
export const pace = async (config: RoleConfig, submit: (n: number, t: number) => Promise<unknown>): Promise<void> => {
  settle()
  report({ type: "ready" })
  await command("go")
  const t0 = now()
  const interval = 1000 / config.rate
  const pending: Array<Promise<unknown>> = []
  for (let n = 0; n < config.tasks; n++) {
    const wait = t0 + n * interval - now()
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    pending.push(submit(n, now()))
  }
  await Promise.all(pending)
  report({ type: "submitted", startedAt: t0, endedAt: now(), count: config.tasks })
}
