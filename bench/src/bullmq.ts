/**
 * BullMQ's side of each workload, on ioredis (BullMQ's default driver), with
 * its defaults except what the workload fixes: `concurrency`, and
 * `removeOnComplete` (true when results are not stored, false when they are).
 */
import { type Job, Queue, Worker } from "bullmq"
import { Redis } from "ioredis"
import type { RoleConfig } from "./config.ts"
import { command, memory, pace, report, settle, summarize } from "./ipc.ts"
import { now } from "./proc.ts"

interface Data {
  readonly n: number
  readonly t: number
}

const connection = (config: RoleConfig) => new Redis(config.url, { maxRetriesPerRequest: null })

/** addBulk chunk: BullMQ pipelines every job of one call; 1,000 per call was its fastest here. */
export const CHUNK = 1000

export const worker = async (config: RoleConfig) => {
  let count = 0
  const latencies: Array<number> = []
  // count mode with a warm-up (see RoleConfig): its tasks are counted first, then `tasks`
  const warmTasks = config.mode === "count" ? config.warmTasks : 0
  let target = warmTasks > 0 ? warmTasks : config.tasks
  let finished: () => void = () => {}
  let done = new Promise<void>((resolve) => (finished = resolve))
  const processor = config.mode === "count"
    ? async (job: Job<Data>) => job.data.n
    : config.mode === "latency"
    ? async (job: Job<Data>) => {
      const started = now()
      if (job.data.n >= config.warmup) latencies.push(started - job.data.t)
      return job.data.n
    }
    : async () => {
      count++
      return new Promise<number>(() => {})
    }
  const w = new Worker<Data, number>(config.queue, processor, {
    connection: connection(config),
    prefix: config.prefix,
    concurrency: config.concurrency
  })
  if (config.mode !== "block") {
    w.on("completed", () => {
      if (++count === target) finished()
    })
  }
  w.on("error", (e) => report({ type: "error", message: String(e) }))
  await w.waitUntilReady()
  if (config.mode === "latency") settle()
  report({ type: "ready" })
  if (config.mode === "block") {
    while (count < config.concurrency) await new Promise((r) => setTimeout(r, 20))
    report({ type: "holding", running: count })
    await command("measure")
    report({ type: "memory", ...memory(), running: count })
    await new Promise(() => {})
  }
  if (warmTasks > 0) {
    await done
    report({ type: "warm", at: now(), count })
    count = 0
    target = config.tasks
    done = new Promise<void>((resolve) => (finished = resolve))
  }
  await done
  const at = now()
  report({ type: "done", at, handledAt: at, count, ...(config.mode === "latency" ? { latency: summarize(latencies) } : {}) })
  await w.close(true)
}

const jobOptions = (config: RoleConfig) => ({ removeOnComplete: !config.storeResults })

export const producer = async (config: RoleConfig) => {
  const queue = new Queue<Data>(config.queue, { connection: connection(config), prefix: config.prefix })
  await queue.waitUntilReady()
  const opts = jobOptions(config)
  const jobsOf = (count: number) => Array.from({ length: count }, (_, n) => ({ name: "noop", data: { n, t: 0 }, opts }))
  const jobs = jobsOf(config.tasks)
  const warm = jobsOf(config.warmTasks)
  report({ type: "ready" })
  while (true) {
    // a warm-up round first, when the orchestrator asks for one (see RoleConfig)
    const go = await command("go")
    const batch = go.phase === "warm" ? warm : jobs
    const startedAt = now()
    for (let i = 0; i < batch.length; i += CHUNK) await queue.addBulk(batch.slice(i, i + CHUNK))
    const endedAt = now()
    report({ type: "submitted", startedAt, endedAt, count: batch.length })
    if (batch === jobs) break
  }
  await queue.close()
}

export const paced = async (config: RoleConfig) => {
  const queue = new Queue<Data>(config.queue, { connection: connection(config), prefix: config.prefix })
  await queue.waitUntilReady()
  const opts = jobOptions(config)
  await pace(config, (n, t) => queue.add("noop", { n, t }, opts))
  await queue.close()
}
