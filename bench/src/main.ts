/**
 * errand's benchmarks, side by side with BullMQ and Celery on the same Redis.
 *
 *   pnpm bench                         # full run (a few minutes), writes bench/RESULTS.md
 *   pnpm bench --quick                 # 5,000 tasks, short latency run, 50,000-task backlog (< 1 min)
 *   pnpm bench --tasks 50000 --only e2e,latency --systems errand,bullmq
 *   pnpm bench --help                  # every flag (effect/cli)
 *
 * Redis: REDIS_URL (default redis://127.0.0.1:6379).
 *
 * Workloads: e2e, e2e-stored, submit, latency, memory, inmemory.
 * Systems: errand (Redis broker), bullmq, celery.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect, Option } from "effect"
import { CliError, Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Celery from "./celery.ts"
import type { RoleConfig } from "./config.ts"
import { cpuOf, faultsOf, forkNode, now, type Proc, rssOf, sleep, timeout } from "./proc.ts"
import * as Profile from "./profile.ts"
import * as R from "./redis.ts"

const here = path.dirname(fileURLToPath(import.meta.url))
const benchDir = path.join(here, "..")

// ---------------------------------------------------------------------------
// Flags (effect/cli: `pnpm bench --help` lists them)
// ---------------------------------------------------------------------------

const argv = process.argv.slice(2)

const WORKLOADS = ["e2e", "e2e-stored", "submit", "latency", "memory", "inmemory"] as const
type Workload = (typeof WORKLOADS)[number]
/**
 * The order the workloads run in: (6) before (5), whose backlogs of
 * 1,000,000 tasks per system are the most memory any workload frees. Freed,
 * they disturb the VM for a while: the in-memory row right after Celery's
 * backlog did 103k–226k/s even with Redis's memory purged and 5 s waited,
 * against 251k–315k/s in eight runs on their own (see `redisQuiet`).
 */
const RUN_ORDER: ReadonlyArray<Workload> = ["e2e", "e2e-stored", "submit", "latency", "inmemory", "memory"]
const SYSTEMS = ["errand", "bullmq", "celery"] as const
type System = (typeof SYSTEMS)[number]
/** What runs in a workload's processes: a system, or the latency floor (`raw.ts`, node-redis alone). */
type Runner = System | "raw"

/** A comma-separated subset of `all` (default: all of them). */
const listFlag = <T extends string>(name: string, all: ReadonlyArray<T>, description: string) =>
  Flag.String(name).pipe(
    Flag.withMetavar(all.join(",")),
    Flag.withDescription(`${description} (default: all)`),
    Flag.withDefault(all.join(",")),
    Flag.mapTryCatch((v): ReadonlyArray<T> => {
      const wanted = v.split(",").map((w) => w.trim()).filter((w) => w !== "")
      for (const w of wanted) {
        if (!all.includes(w as T)) throw new Error(`--${name}: unknown "${w}" (one of ${all.join(", ")})`)
      }
      return all.filter((w) => wanted.includes(w))
    }, (e) => (e instanceof Error ? e.message : String(e)))
  )

/** A whole number of at least `least` (1 unless given). */
const countFlag = (name: string, description: string, least = 1) =>
  Flag.Int(name).pipe(
    Flag.withDescription(description),
    Flag.mapTryCatch((n) => {
      if (n < least) throw new Error(`--${name} wants a whole number of at least ${least}, got ${n}`)
      return n
    }, (e) => (e instanceof Error ? e.message : String(e))),
    Flag.optional
  )

const flags = {
  quick: Flag.Boolean("quick").pipe(
    Flag.withDescription("5,000 tasks, a short latency run, a 50,000-task backlog (under a minute)"),
    Flag.withDefault(false)
  ),
  tasks: countFlag("tasks", "Tasks per throughput run (default 100,000; 5,000 with --quick)"),
  only: listFlag("only", WORKLOADS, "Workloads to run"),
  systems: listFlag("systems", SYSTEMS, "Systems to run (Celery's rows are skipped with a note when it is absent)"),
  repeat: countFlag("repeat", "Throughput runs per system, the best kept (default 1)"),
  warmup: countFlag(
    "warmup",
    "Tasks each Node system's processes run before a measured end-to-end run, as a long-running worker has (default: as many as --tasks; 0: none, a cold start)",
    0
  ),
  prefetch: countFlag("prefetch", "errand's prefetch (default 200)"),
  backlog: countFlag("backlog", "The memory workload's large backlog (default 1,000,000; 50,000 with --quick)"),
  rate: countFlag("rate", "The latency workload's submits per second (default 200)"),
  seconds: countFlag("seconds", "The latency workload's length in seconds (default 5; 2 with --quick)"),
  profile: Flag.Boolean("profile").pipe(
    Flag.withDescription("CPU profiles of errand's hot paths (default: when a target is missed in a full run)"),
    Flag.optional
  ),
  write: Flag.Boolean("write").pipe(
    Flag.withDescription("Write the results (--no-write: print them only)"),
    Flag.withDefault(true)
  ),
  out: Flag.String("out").pipe(
    Flag.withMetavar("file"),
    Flag.withDescription("Where to write the results (default bench/RESULTS.md)"),
    Flag.optional
  )
}

type Input = { readonly [K in keyof typeof flags]: (typeof flags)[K] extends Flag.Flag<infer A> ? A : never }

interface Settings {
  url: string
  tasks: number
  concurrency: number
  prefetch: number
  repeat: number
  warmup: number
  rate: number
  seconds: number
  backlogSmall: number
  backlogLarge: number
  settleMs: number
  /** How long the bench waits after Redis is purged and quiet, before each workload (`redisQuiet`). */
  quietMs: number
  only: ReadonlyArray<Workload>
  systems: ReadonlyArray<System>
  profile: boolean | "on-miss"
  write: boolean
  out: string
}

const settingsOf = (input: Input): Settings => {
  const quick = input.quick
  const or = (o: Option.Option<number>, fallback: number) => Option.getOrElse(o, () => fallback)
  return {
    url: process.env.REDIS_URL && process.env.REDIS_URL !== "" ? process.env.REDIS_URL : "redis://127.0.0.1:6379",
    tasks: or(input.tasks, quick ? 5_000 : 100_000),
    concurrency: 50,
    prefetch: or(input.prefetch, 200),
    repeat: or(input.repeat, 1),
    warmup: or(input.warmup, or(input.tasks, quick ? 5_000 : 100_000)),
    rate: or(input.rate, 200),
    seconds: or(input.seconds, quick ? 2 : 5),
    backlogSmall: 1_000,
    backlogLarge: or(input.backlog, quick ? 50_000 : 1_000_000),
    /** How long a worker holding its handlers settles before its memory is read. */
    settleMs: quick ? 1000 : 3000,
    quietMs: quick ? 0 : 5000,
    only: input.only,
    systems: input.systems,
    profile: Option.getOrElse(input.profile, () => (quick ? false : "on-miss" as const)),
    write: input.write,
    out: Option.getOrElse(input.out, () => path.join(benchDir, "RESULTS.md"))
  }
}

/** The run's settings, from its flags (set before `main` runs). */
let settings: Settings

const runId = Math.random().toString(36).slice(2, 8)
const SYSTEM_NAMES: Record<System, string> = { errand: "errand", bullmq: "BullMQ", celery: "Celery" }

const log = (line: string) => process.stderr.write(`${line}\n`)

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

interface Figure {
  readonly value: number | undefined
  readonly note?: string | undefined
}

interface Row {
  readonly key: string
  readonly label: string
  readonly unit: string
  readonly better: "higher" | "lower" | "none"
  readonly figures: Partial<Record<System, Figure>>
  /** Show ratios? (not for deltas near zero, not for single-system rows) */
  readonly ratio: boolean
  readonly digits: number
}

const rows: Array<Row> = []
const notes: Array<string> = []
const details: Array<string> = []
const row = (key: string, label: string, unit: string, better: Row["better"], digits: number, ratio = true): Row => {
  let r = rows.find((x) => x.key === key)
  if (r === undefined) {
    r = { key, label, unit, better, figures: {}, ratio, digits }
    // in the workloads' numbered order, whatever order they ran in (`RUN_ORDER`)
    const at = rows.findIndex((x) => numberOf(x.label) > numberOf(label))
    if (at < 0) rows.push(r)
    else rows.splice(at, 0, r)
  }
  return r
}
/** A row label's workload number, "(3) …" → 3. */
const numberOf = (label: string): number => Number(/^\((\d+)\)/.exec(label)?.[1] ?? Infinity)
const put = (r: Row, system: System, figure: Figure) => {
  ;(r.figures as Record<System, Figure>)[system] = figure
}

const fmt = (value: number | undefined, digits: number) =>
  value === undefined || !Number.isFinite(value)
    ? "—"
    : value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

const MB = 1024 * 1024

// ---------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------

let redis: R.Client = undefined as unknown as R.Client
let celery: Celery.CeleryEnv | undefined

const configFor = (system: Runner | "memory", workload: string, overrides: Partial<RoleConfig> = {}): RoleConfig => ({
  url: settings.url,
  prefix: `errand-bench-${runId}-${system}-${workload}-${Math.random().toString(36).slice(2, 6)}`,
  queue: "bench",
  tasks: settings.tasks,
  concurrency: settings.concurrency,
  prefetch: settings.prefetch,
  storeResults: false,
  mode: "count",
  rate: settings.rate,
  warmup: 0,
  warmTasks: 0,
  laterRounds: 0,
  ...overrides
})

const patternsOf = (system: Runner, config: RoleConfig) =>
  system === "errand"
    ? [`{${config.prefix}:*`, `${config.prefix}:*`]
    : system === "bullmq" || system === "raw"
    ? [`${config.prefix}:*`]
    : [`${config.prefix}:*`, `celery-task-meta-${config.prefix}-*`]

/** Key patterns of runs in progress, deleted on Ctrl-C too. */
const live = new Set<string>()

const cleanup = async (system: Runner, config: RoleConfig) => {
  const patterns = patternsOf(system, config)
  const n = await R.deleteKeys(redis, patterns)
  for (const p of patterns) live.delete(p)
  if (process.env.BENCH_VERBOSE) log(`  deleted ${n} keys of ${config.prefix}`)
}

const procs = new Set<Proc>()

process.once("SIGINT", () => {
  log("interrupted: stopping children and deleting this run's keys …")
  for (const p of procs) p.child.kill("SIGKILL")
  R.deleteKeys(redis, [...live]).catch(() => 0).finally(() => {
    Celery.cleanup()
    process.exit(130)
  })
})

/** Tracks a child for Ctrl-C and the run's keys for deletion. */
const track = (system: Runner, config: RoleConfig, proc: Proc): Proc => {
  procs.add(proc)
  proc.exited.then(() => procs.delete(proc))
  for (const p of patternsOf(system, config)) live.add(p)
  return proc
}

const workerOf = (system: Runner, config: RoleConfig, profile?: string): Proc =>
  track(system, config, workerProc(system, config, profile))

const workerProc = (system: Runner, config: RoleConfig, profile?: string): Proc =>
  system === "celery"
    ? Celery.worker(celery!, config)
    : forkNode(`${system}.worker`, `${system}.worker`, config, profile === undefined ? {} : { profile })

const producerOf = (system: Runner, config: RoleConfig, mode: "bulk" | "paced", profile?: string): Proc =>
  track(system, config, producerProc(system, config, mode, profile))

const producerProc = (system: Runner, config: RoleConfig, mode: "bulk" | "paced", profile?: string): Proc =>
  system === "celery"
    ? Celery.producer(celery!, config, mode)
    : forkNode(
      `${system}.${mode === "bulk" ? "producer" : "paced"}`,
      `${system}.${mode === "bulk" ? "producer" : "paced"}`,
      config,
      profile === undefined ? {} : { profile }
    )

/** How many tasks still wait or run, by each system's keys (to know a run is drained and acknowledged). */
const outstanding = async (system: System, config: RoleConfig): Promise<number> => {
  if (system === "errand") {
    // ready: the sorted set and the list of priority 5; running: hash leases and fast-lane ones
    const tag = `{${config.prefix}:${config.queue}}`
    return (await R.num(redis, "ZCARD", `${tag}:ready`)) + (await R.num(redis, "LLEN", `${tag}:fifo`)) +
      (await R.num(redis, "ZCARD", `${tag}:leased`)) + (await R.num(redis, "HLEN", `${tag}:fastLease`))
  }
  if (system === "bullmq") {
    const base = `${config.prefix}:${config.queue}`
    return (await R.num(redis, "LLEN", `${base}:wait`)) + (await R.num(redis, "LLEN", `${base}:active`)) +
      (await R.num(redis, "ZCARD", `${base}:prioritized`))
  }
  return (await R.num(redis, "LLEN", `${config.prefix}:${config.queue}`)) +
    (await R.num(redis, "HLEN", `${config.prefix}:unacked`))
}

const withProcs = async <A>(f: (spawned: Array<Proc>) => Promise<A>): Promise<A> => {
  const spawned: Array<Proc> = []
  try {
    return await f(spawned)
  } finally {
    await Promise.all(spawned.map((p) => p.kill()))
  }
}

const best = <A>(runs: ReadonlyArray<A>, by: (a: A) => number): A =>
  runs.reduce((a, b) => (by(b) > by(a) ? b : a))

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

interface E2E {
  readonly perSecond: number
  readonly submitPerSecond: number
  readonly seconds: number
  /** CPU microseconds per task: worker, producer, Redis server. */
  readonly cpu: { readonly worker: number; readonly producer: number; readonly redis: number }
  /** Minor page faults per task in the measured round, worker and producer. */
  readonly faults: { readonly worker: number; readonly producer: number }
  /** The warm-up round's tasks per second (fresh processes), when there was one. */
  readonly cold: number | undefined
}

/** What RESULTS.md says of the warm-up rounds. */
const warmDescription = () =>
  settings.warmup === 0
    ? "with no warm-up round (`--warmup 0`: fresh processes, a cold start)"
    : `after a warm-up round of ${fmt(settings.warmup, 0)} tasks run by the same worker and producer processes (errand and BullMQ; Celery none: CPython compiles nothing as it runs), as a long-running worker has run many before: code compiled, heap grown; each note gives that round's own (cold) rate, and \`--warmup 0\` measures a cold start`

/** What a run's note says of its warm-up round. */
const warmNote = (warmTasks: number, cold: number | undefined) =>
  cold === undefined ? "no warm-up round (a cold start)" : `after a warm-up round of ${fmt(warmTasks, 0)} tasks in the same processes (that round, cold: ${fmt(cold, 0)}/s)`

const cpuNote = (c: E2E["cpu"], f: E2E["faults"]) =>
  `CPU per task: worker ${fmt(c.worker, 1)} µs, producer ${fmt(c.producer, 1)} µs, Redis ${fmt(c.redis, 1)} µs; minor page faults per task: worker ${
    fmt(f.worker, 2)
  }, producer ${fmt(f.producer, 2)}`

/** Workloads 1 and 2: the worker idles, the producer submits everything in bulk, the clock stops when all are acknowledged. */
const e2eOnce = (system: System, stored: boolean, profile?: string): Promise<E2E> => {
  // Celery gets no warm-up round: CPython compiles nothing as it runs, and a
  // round of its ~1,000 tasks/s would add minutes (see `warmTasks`)
  const warmTasks = system === "celery" ? 0 : settings.warmup
  const config = configFor(system, stored ? "e2e-stored" : "e2e", { storeResults: stored, warmTasks })
  return withProcs(async (spawned) => {
    try {
      const worker = workerOf(system, config, profile)
      spawned.push(worker)
      await worker.next("ready", 60_000)
      const producer = producerOf(system, config, "bulk", profile)
      spawned.push(producer)
      await producer.next("ready", 120_000)
      let cold: number | undefined
      if (warmTasks > 0) {
        producer.send({ type: "go", phase: "warm" })
        const warmed = await producer.next("submitted")
        const warm = await worker.next("warm")
        cold = warmTasks / ((Number(warm.at) - Number(warmed.startedAt)) / 1000)
      }
      const cpu0 = { worker: cpuOf(worker.pid) ?? NaN, producer: cpuOf(producer.pid) ?? NaN, redis: await R.cpu(redis) }
      const faults0 = { worker: faultsOf(worker.pid) ?? NaN, producer: faultsOf(producer.pid) ?? NaN }
      producer.send({ type: "go" })
      const submitted = await producer.next("submitted")
      const producerCpu = (cpuOf(producer.pid) ?? NaN) - cpu0.producer
      const producerFaults = (faultsOf(producer.pid) ?? NaN) - faults0.producer
      let at: number
      if (system === "celery") {
        await worker.next("handled")
        while ((await outstanding(system, config)) > 0) await sleep(1)
        at = now()
      } else {
        at = Number((await worker.next("done")).at)
      }
      const perTask = (seconds: number) => (seconds * 1e6) / config.tasks
      const cpu = {
        worker: perTask((cpuOf(worker.pid) ?? NaN) - cpu0.worker),
        producer: perTask(producerCpu),
        redis: perTask((await R.cpu(redis)) - cpu0.redis)
      }
      const faults = {
        worker: ((faultsOf(worker.pid) ?? NaN) - faults0.worker) / config.tasks,
        producer: producerFaults / config.tasks
      }
      const startedAt = Number(submitted.startedAt)
      const perSecond = config.tasks / ((at - startedAt) / 1000)
      const submitPerSecond = config.tasks / ((Number(submitted.endedAt) - startedAt) / 1000)
      return { perSecond, submitPerSecond, seconds: (at - startedAt) / 1000, cpu, faults, cold }
    } finally {
      await Promise.all(spawned.map((p) => p.kill()))
      await cleanup(system, config)
    }
  })
}

const e2e = async (system: System, stored: boolean) => {
  const runs: Array<E2E> = []
  for (let i = 0; i < settings.repeat; i++) runs.push(await e2eOnce(system, stored))
  const b = best(runs, (r) => r.perSecond)
  const key = stored ? "e2e-stored" : "e2e"
  put(row(key, `(${stored ? 2 : 1}) end-to-end, ${settings.tasks.toLocaleString("en-US")} no-op tasks, results ${stored ? "stored" : "not stored"}`, "tasks/s", "higher", 0), system, {
    value: b.perSecond,
    note: `${b.seconds.toFixed(2)} s; ${warmNote(settings.warmup, b.cold)}; submit phase ${fmt(b.submitPerSecond, 0)}/s; ${cpuNote(b.cpu, b.faults)}${runs.length > 1 ? `; best of ${runs.map((r) => fmt(r.perSecond, 0)).join(", ")}` : ""}`
  })
}

/** Workload 3: bulk submit with no worker running. */
const submitOnce = (system: System) => {
  const config = configFor(system, "submit")
  return withProcs(async (spawned) => {
    try {
      const producer = producerOf(system, config, "bulk")
      spawned.push(producer)
      await producer.next("ready", 120_000)
      producer.send({ type: "go" })
      const m = await producer.next("submitted")
      const waiting = await outstanding(system, config)
      if (waiting !== config.tasks) notes.push(`${SYSTEM_NAMES[system]} bulk submit: ${waiting} tasks found waiting, expected ${config.tasks}`)
      return config.tasks / ((Number(m.endedAt) - Number(m.startedAt)) / 1000)
    } finally {
      await Promise.all(spawned.map((p) => p.kill()))
      await cleanup(system, config)
    }
  })
}

const submit = async (system: System) => {
  const runs: Array<number> = []
  for (let i = 0; i < settings.repeat; i++) runs.push(await submitOnce(system))
  const api = system === "errand" ? "client.submitMany" : system === "bullmq" ? "queue.addBulk ×1,000" : "apply_async loop, one producer"
  put(row("submit", `(3) bulk submit, ${settings.tasks.toLocaleString("en-US")} tasks`, "tasks/s", "higher", 0), system, {
    value: Math.max(...runs),
    note: api
  })
}

interface Latency {
  readonly n: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

/** One submit at a time at a light steady rate, after a warm-up; the worker's latency summary. */
const pacedRun = (system: Runner) => {
  const warmup = Math.round(settings.rate / 2)
  const total = Math.round(settings.rate * settings.seconds) + warmup
  const config = configFor(system, "latency", { mode: "latency", tasks: total, warmup })
  return withProcs(async (spawned): Promise<Latency> => {
    try {
      const worker = workerOf(system, config)
      spawned.push(worker)
      await worker.next("ready", 60_000)
      const producer = producerOf(system, config, "paced")
      spawned.push(producer)
      await producer.next("ready", 60_000)
      await sleep(200)
      producer.send({ type: "go" })
      const m = await worker.next(system === "celery" ? "handled" : "done", (settings.seconds + 60) * 1000)
      return m.latency as Latency
    } finally {
      // children first: a live worker would write its registry keys again
      await Promise.all(spawned.map((p) => p.kill()))
      await cleanup(system, config)
    }
  })
}

/** Workload 4: one submit at a time at a light steady rate; latency from the submit call to the handler's first line. */
const latency = async (system: System) => {
  const l = await pacedRun(system)
  const note = `${l.n} tasks at ${settings.rate}/s; p90 ${fmt(l.p90, 2)}, max ${fmt(l.max, 2)} ms`
  put(row("latency-p50", `(4) submit → handler start, p50, ${settings.rate} tasks/s`, "ms", "lower", 2), system, {
    value: l.p50,
    note
  })
  put(row("latency-p99", `(4) submit → handler start, p99, ${settings.rate} tasks/s`, "ms", "lower", 2), system, {
    value: l.p99
  })
}

/**
 * Workload 4's floor on this machine in this slot, run before the systems:
 * no queue, node-redis alone (`raw.ts`: `LPUSH` → `BLPOP`, the same rate,
 * warm-up and processes). Reported in the details, not as a system.
 */
let latencyFloor: string | undefined
const latencyFloorRun = async () => {
  const l = await pacedRun("raw")
  latencyFloor = `- (4) the machine's floor in this slot, no queue (node-redis alone: \`LPUSH\` → \`BLPOP\` between the same two processes, \`raw.ts\`): p50 ${
    fmt(l.p50, 2)
  }, p90 ${fmt(l.p90, 2)}, p99 ${fmt(l.p99, 2)} ms (${l.n} at ${settings.rate}/s); a system's figure above it is its own work at this VM's speed`
}

interface Mem {
  readonly rss: number
  readonly heapUsed: number | undefined
  readonly waiting: number
}

/** Workload 5: a backlog waits, the worker holds `concurrency` blocked handlers (plus its prefetch); its memory after a full GC. */
const memoryOnce = (system: System, backlog: number): Promise<Mem> => {
  const config = configFor(system, `memory${backlog}`, { tasks: backlog, mode: "block" })
  return withProcs(async (spawned) => {
    try {
      // fill
      if (system === "celery") {
        const filler = track(system, config, Celery.producer(celery!, config, "fill"))
        spawned.push(filler)
        await filler.next("filled", 600_000)
      } else {
        const filler = producerOf(system, config, "bulk")
        spawned.push(filler)
        await filler.next("ready", 120_000)
        filler.send({ type: "go" })
        await filler.next("submitted", 900_000)
      }
      const before = await outstanding(system, config)
      const worker = workerOf(system, config)
      spawned.push(worker)
      await worker.next("ready", 60_000)
      if (system === "celery") {
        let running = 0
        while (running < config.concurrency) running = Number((await worker.next("started", 60_000)).running)
      } else {
        await worker.next("holding", 60_000)
      }
      await sleep(settings.settleMs)
      const waiting = await outstanding(system, config)
      if (system === "celery") {
        return { rss: rssOf(worker.pid) ?? NaN, heapUsed: undefined, waiting: Math.min(before, waiting) }
      }
      worker.send({ type: "measure" })
      const m = await worker.next("memory", 60_000)
      return { rss: Number(m.rss), heapUsed: Number(m.heapUsed), waiting: Math.min(before, waiting) }
    } finally {
      await Promise.all(spawned.map((p) => p.kill()))
      await cleanup(system, config)
    }
  })
}

const memory = async (system: System) => {
  const small = await memoryOnce(system, settings.backlogSmall)
  const large = await memoryOnce(system, settings.backlogLarge)
  const k = (n: number) => n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n)
  const sk = k(settings.backlogSmall)
  const lk = k(settings.backlogLarge)
  put(row("mem-small", `(5) worker RSS, ${sk} tasks waiting`, "MB", "lower", 1), system, {
    value: small.rss / MB,
    note: small.heapUsed === undefined ? "RSS from /proc" : `heap used ${fmt(small.heapUsed / MB, 1)} MB`
  })
  put(row("mem-large", `(5) worker RSS, ${lk} tasks waiting`, "MB", "lower", 1), system, {
    value: large.rss / MB,
    note: `${large.heapUsed === undefined ? "" : `heap used ${fmt(large.heapUsed / MB, 1)} MB; `}${large.waiting.toLocaleString("en-US")} still waiting in Redis at the measurement`
  })
  put(row("mem-delta", `(5) worker RSS delta, ${lk} vs ${sk} waiting`, "MB", "none", 1, false), system, {
    value: (large.rss - small.rss) / MB,
    note: large.heapUsed === undefined || small.heapUsed === undefined
      ? undefined
      : `heap delta ${fmt((large.heapUsed - small.heapUsed) / MB, 1)} MB`
  })
}

/** Rounds the in-memory run times after its measured one (see RoleConfig.laterRounds). */
const LATER_ROUNDS = 3

/** Workload 6: errand on the in-memory broker, producer and worker in one process. */
const inMemoryOnce = async (profile?: string) => {
  const config = configFor("memory", "inmemory", { warmTasks: settings.warmup, laterRounds: LATER_ROUNDS })
  const proc = forkNode("errand.memory", "errand.memory", config, profile === undefined ? {} : { profile })
  procs.add(proc)
  try {
    const m = await proc.next("done")
    await Promise.race([proc.exited, timeout(20_000)])
    return {
      perSecond: config.tasks / ((Number(m.at) - Number(m.startedAt)) / 1000),
      submitPerSecond: config.tasks / ((Number(m.submittedAt) - Number(m.startedAt)) / 1000),
      cpuPerTask: Number(m.cpuMicros) / config.tasks,
      cold: (m.cold as { readonly perSecond: number } | undefined)?.perSecond,
      later: (m.later as ReadonlyArray<number> | undefined) ?? [],
      heapAfter: Number((m.after as { heapUsed: number }).heapUsed)
    }
  } finally {
    await proc.kill()
  }
}

const inMemory = async () => {
  const runs: Array<Awaited<ReturnType<typeof inMemoryOnce>>> = []
  for (let i = 0; i < settings.repeat; i++) runs.push(await inMemoryOnce())
  const b = best(runs, (r) => r.perSecond)
  put(row("inmemory", `(6) in-memory broker end-to-end, ${settings.tasks.toLocaleString("en-US")} tasks (one process)`, "tasks/s", "higher", 0, false), "errand", {
    value: b.perSecond,
    note: `${warmNote(settings.warmup, b.cold)}; CPU per task ${fmt(b.cpuPerTask, 1)} µs; submitMany ${fmt(b.submitPerSecond, 0)}/s; heap used after the run ${fmt(b.heapAfter / MB, 0)} MB (after a full GC)${
      b.later.length === 0 ? "" : `; the ${b.later.length} rounds of as many tasks after it in the same process (not the row's figure): ${b.later.map((r) => `${fmt(r, 0)}/s`).join(", ")}`
    }`
  })
}

// ---------------------------------------------------------------------------
// Table, targets, RESULTS.md
// ---------------------------------------------------------------------------

const peersOf = (r: Row) => settings.systems.filter((s) => s !== "errand")

const ratioOf = (r: Row): string => {
  if (!r.ratio || r.better === "none") return "—"
  const e = r.figures.errand?.value
  const peers = peersOf(r).map((s) => r.figures[s]?.value).filter((v): v is number => v !== undefined && Number.isFinite(v))
  if (e === undefined || !Number.isFinite(e) || peers.length === 0) return "—"
  const bestPeer = r.better === "higher" ? Math.max(...peers) : Math.min(...peers)
  const factor = r.better === "higher" ? e / bestPeer : bestPeer / e
  return `${factor.toFixed(2)}× ${factor >= 1 ? "better" : "worse"}`
}

/**
 * Before each workload: has Redis give back the memory it freed (`MEMORY PURGE`),
 * waits (at most 15 s) until it uses under 5% of a core, then 5 s more
 * (none with `--quick`).
 * Redis frees deleted runs' keys in the background on the same two cores,
 * its allocator hands freed memory back to the kernel bit by bit over ~20 s,
 * and the VM's host takes a few seconds to take back what was handed back
 * (nothing in the guest shows it: it is idle); a process growing its heap
 * meanwhile pays for each. Measured when (6) still ran right after (5):
 * 113k/s there against 204–210k/s in reruns (session 7; Redis's CPU); the
 * row right after Celery's backlog 119k–142k/s, purged then at once
 * 175k–226k/s, purged then 3–6 s later 250k–318k/s (`RUN_ORDER` now runs
 * (6) before (5)).
 */
const redisQuiet = async (): Promise<void> => {
  if (redis === undefined) return
  try {
    await redis.sendCommand(["MEMORY", "PURGE"])
    for (let i = 0; i < 30; i++) {
      const c0 = await R.cpu(redis)
      await sleep(500)
      if ((await R.cpu(redis)) - c0 < 0.025) break
    }
    await sleep(settings.quietMs)
  } catch {
    // no Redis: nothing to wait for
  }
}

const table = (): Array<string> => {
  const systems = settings.systems
  const header = ["workload", "unit", ...systems.map((s) => SYSTEM_NAMES[s]), "errand vs best peer"]
  const lines = [`| ${header.join(" | ")} |`, `|${header.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`]
  for (const r of rows) {
    const cells = systems.map((s) => {
      const f = r.figures[s]
      if (f === undefined) return r.key === "inmemory" && s !== "errand" ? "n/a" : "—"
      return fmt(f.value, r.digits)
    })
    lines.push(`| ${[r.label, r.unit, ...cells, ratioOf(r)].join(" | ")} |`)
  }
  return lines
}

interface Target {
  readonly label: string
  readonly pass: boolean | undefined
  readonly detail: string
}

const targets = (): Array<Target> => {
  const out: Array<Target> = []
  const get = (key: string, s: System) => rows.find((r) => r.key === key)?.figures[s]?.value
  const e2eE = get("e2e", "errand")
  const e2eB = get("e2e", "bullmq")
  if (e2eE !== undefined) {
    out.push({
      label: "Redis end-to-end ≥ 100,000 tasks/s",
      pass: e2eE >= 100_000,
      detail: `${fmt(e2eE, 0)}/s${e2eE < 100_000 ? `: short by ${fmt(100_000 - e2eE, 0)}/s (${(100_000 / e2eE).toFixed(1)}× to go)` : ""}`
    })
  }
  if (e2eE !== undefined && e2eB !== undefined) {
    const x = e2eE / e2eB
    out.push({
      label: "Redis end-to-end ≥ 5× BullMQ",
      pass: x >= 5,
      detail: `${x.toFixed(2)}× BullMQ (${fmt(e2eE, 0)} vs ${fmt(e2eB, 0)}/s)${x < 5 ? `: needs ${fmt(5 * e2eB, 0)}/s` : ""}`
    })
  }
  const p50 = get("latency-p50", "errand")
  const p99 = get("latency-p99", "errand")
  if (p50 !== undefined) {
    out.push({ label: "submit → start p50 < 1 ms (Redis, light load)", pass: p50 < 1, detail: `${fmt(p50, 2)} ms${p50 >= 1 ? `: over by ${fmt(p50 - 1, 2)} ms` : ""}` })
  }
  if (p99 !== undefined) {
    out.push({ label: "submit → start p99 < 5 ms (Redis, light load)", pass: p99 < 5, detail: `${fmt(p99, 2)} ms${p99 >= 5 ? `: over by ${fmt(p99 - 5, 2)} ms` : ""}` })
  }
  const mem = get("inmemory", "errand")
  if (mem !== undefined) {
    out.push({
      label: "in-memory ≥ 250,000 tasks/s",
      pass: mem >= 250_000,
      detail: `${fmt(mem, 0)}/s${mem < 250_000 ? `: short by ${fmt(250_000 - mem, 0)}/s (${(250_000 / mem).toFixed(1)}× to go)` : ""}`
    })
  }
  const delta = get("mem-delta", "errand")
  if (delta !== undefined) {
    const large = settings.backlogLarge.toLocaleString("en-US")
    out.push({
      label: `worker memory flat (within 50 MB) with 1,000 vs ${large} waiting`,
      pass: Math.abs(delta) <= 50,
      detail: `RSS delta ${fmt(delta, 1)} MB${settings.backlogLarge < 1_000_000 ? " (scaled-down backlog; the target is stated for 1,000,000)" : ""}`
    })
  }
  return out
}

const machine = async () => {
  const cpus = os.cpus()
  const redisInfo = redis === undefined ? { version: "unreachable", mode: "?" } : await R.info(redis)
  const version = (pkg: string) => {
    try {
      return (JSON.parse(fs.readFileSync(path.join(benchDir, "node_modules", pkg, "package.json"), "utf8")) as { version: string }).version
    } catch {
      return "?"
    }
  }
  return [
    `- date: ${new Date().toISOString()}`,
    `- CPU: ${cpus[0]?.model ?? "?"}, ${cpus.length} cores (os.cpus), ${os.arch()}`,
    `- memory: ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    `- OS: ${os.type()} ${os.release()}`,
    `- load average at start: ${os.loadavg().map((x) => x.toFixed(2)).join(", ")} (the machine is shared; figures are single runs unless noted)`,
    `- Node ${process.version}; effect ${version("effect")}; BullMQ ${version("bullmq")} on ioredis ${version("ioredis")}; node-redis ${version("redis")}`,
    `- Redis ${redisInfo.version} (${redisInfo.mode}) at ${settings.url.replace(/\/\/[^@]*@/, "//")}`,
    `- Celery: ${
      celery !== undefined
        ? `${celery.version} (${celery.python}), threads pool`
        : settings.systems.includes("celery")
        ? "not available (rows skipped)"
        : "not run (--systems)"
    }`
  ]
}

// ---------------------------------------------------------------------------
// Profiles of errand's hot paths
// ---------------------------------------------------------------------------


const profiles = async (): Promise<Array<string>> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "errand-bench-prof-"))
  const out: Array<string> = [
    "## Where errand's time goes (CPU profiles)",
    "",
    "Profiled reruns (V8's CPU profiler through `node:inspector`, separate from the measured runs above; profiling slows",
    "them down a little). Each process is profiled over its measured round alone, after its warm-up round (start-up and",
    "warm-up left out): the worker from the measured round's first task to its last acknowledgement, the producer over",
    "its `submitMany`. Self time is time in the function itself, the area table groups it by package, and \"per task\"",
    "divides by the round's tasks. The profiler samples wall time while JavaScript runs, so",
    "`writeUtf8String` (the write of a command to the Redis socket) also holds the time the worker is descheduled right",
    "after waking Redis on this 2-vCPU machine: read it as the cost of a round trip, not of encoding strings. Effect runs",
    "continuations from its own run loop, so errand's functions show little inclusive time; their cost shows up as",
    "Effect runtime frames (`runLoop`, `makeExit`, `evaluate`, …) and GC.",
    ""
  ]
  try {
    if (settings.systems.includes("errand") && (settings.only.includes("e2e") || settings.only.includes("e2e-stored"))) {
      log("profiling errand end-to-end on Redis …")
      const r = await e2eOnce("errand", false, dir)
      out.push(`### Redis end-to-end, results not stored (${fmt(r.perSecond, 0)} tasks/s while profiled)`, "")
      for (const [file, title] of [["errand.worker", "Worker process"], ["errand.producer", "Producer process (submitMany)"]] as const) {
        const f = path.join(dir, `${file}.cpuprofile`)
        if (fs.existsSync(f)) out.push(...Profile.format(Profile.summarize(f, 20), `#### ${title}`, settings.tasks), "")
        else out.push(`(no profile written for ${file})`, "")
      }
    }
    if (settings.systems.includes("errand") && settings.only.some((w) => w === "e2e" || w === "e2e-stored" || w === "latency")) {
      log("measuring errand's broker steps on Redis …")
      const config = configFor("errand", "steps", { tasks: 50_000 })
      const proc = track("errand", config, forkNode("errand.steps", "errand.steps", config))
      try {
        const m = await proc.next("steps", 300_000)
        const cpu = m.cpuPerTask as Record<string, number>
        const rt = m.roundTrips as Record<string, number>
        const total = Object.values(cpu).reduce((a, b) => a + b, 0)
        out.push(
          "### errand's broker steps on Redis",
          "",
          `Redis server CPU per task for each step, batched as the worker batches them (${config.tasks.toLocaleString("en-US")} tasks), and the median round trip of each step for one task (Effect + node-redis + Lua):`,
          "",
          "| step | Redis CPU per task | one-task round trip |",
          "|---|---:|---:|"
        )
        const names = Object.keys(cpu)
        const rtOf = (name: string) => rt[name.split(" ")[0]!]
        for (const name of names) out.push(`| ${name} | ${fmt(cpu[name], 1)} µs | ${fmt(rtOf(name), 3)} ms |`)
        out.push(`| **whole lease cycle** | **${fmt(total, 1)} µs** → Redis alone caps errand at ~${fmt(1e6 / total, 0)} tasks/s on one core | |`)
        out.push(`| PING (node-redis, no Effect, no Lua) | | ${fmt(rt["PING (node-redis, no Effect)"], 3)} ms |`, "")
      } finally {
        await proc.kill()
        await cleanup("errand", config)
      }
    }
    if (settings.only.includes("inmemory") && settings.systems.includes("errand")) {
      log("profiling errand in-memory …")
      const r = await inMemoryOnce(dir)
      out.push(`### In-memory end-to-end (${fmt(r.perSecond, 0)} tasks/s while profiled)`, "")
      const f = path.join(dir, "errand.memory.cpuprofile")
      if (fs.existsSync(f)) out.push(...Profile.format(Profile.summarize(f, 25), "#### Producer + worker process", settings.tasks), "")
    }
  } finally {
    if (process.env.BENCH_KEEP_PROFILES) log(`profiles kept in ${dir}`)
    else fs.rmSync(dir, { recursive: true, force: true })
  }
  return out
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

const describeRun = () =>
  `pnpm bench${argv.length > 0 ? ` ${argv.join(" ")}` : ""}`

const main = async () => {
  const started = Date.now()
  const reachable = await R.connect(settings.url).then(
    (client) => {
      redis = client
      return true
    },
    (e: unknown) => {
      notes.push(
        `Redis at ${settings.url} is unreachable (${e instanceof Error ? e.message : String(e)}): ` +
          "only the in-memory row was run. Start Redis or set REDIS_URL."
      )
      return false
    }
  )
  if (!reachable) {
    settings.only = settings.only.filter((w) => w === "inmemory")
    settings.profile = false
  }
  if (settings.systems.includes("celery")) {
    const found = Celery.detect()
    if ("missing" in found) notes.push(found.missing)
    else celery = found
  }
  const systems = settings.systems.filter((s) => s !== "celery" || celery !== undefined)
  const env = await machine()
  log(`errand bench ${runId}: ${settings.tasks.toLocaleString("en-US")} tasks, concurrency ${settings.concurrency}, errand prefetch ${settings.prefetch}`)
  for (const line of env) log(`  ${line.slice(2)}`)
  for (const n of notes) log(`  note: ${n}`)

  const attempt = async (label: string, system: System | undefined, f: () => Promise<void>) => {
    log(`${label}${system === undefined ? "" : ` — ${SYSTEM_NAMES[system]}`} …`)
    const t0 = Date.now()
    try {
      await f()
      log(`  done in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e)
      notes.push(`${label}${system === undefined ? "" : ` on ${SYSTEM_NAMES[system]}`} failed: ${message.split("\n").slice(0, 6).join(" / ")}`)
      log(`  FAILED: ${message}`)
    }
  }

  for (const workload of RUN_ORDER.filter((w) => settings.only.includes(w))) {
    // errand runs first in each workload, right after the last system of the
    // one before (Celery's 100,000-task runs, or BullMQ's) has deleted its keys
    await redisQuiet()
    if (workload === "inmemory") {
      if (settings.systems.includes("errand")) {
        await attempt("(6) in-memory end-to-end", "errand", inMemory)
      }
      continue
    }
    if (workload === "latency") await attempt("(4) the machine's floor (node-redis alone)", undefined, latencyFloorRun)
    for (const system of systems) {
      switch (workload) {
        case "e2e":
          await attempt("(1) end-to-end, results not stored", system, () => e2e(system, false))
          break
        case "e2e-stored":
          await attempt("(2) end-to-end, results stored", system, () => e2e(system, true))
          break
        case "submit":
          await attempt("(3) bulk submit", system, () => submit(system))
          break
        case "latency":
          await attempt("(4) submit → start latency", system, () => latency(system))
          break
        case "memory":
          await attempt("(5) worker memory", system, () => memory(system))
          break
      }
    }
  }

  const tableLines = table()
  const targetList = targets()
  const missed = targetList.some((t) => t.pass === false)
  let profileLines: Array<string> = []
  if (settings.profile === true || (settings.profile === "on-miss" && missed)) {
    try {
      profileLines = await profiles()
    } catch (e) {
      notes.push(`profiling failed: ${e instanceof Error ? e.message : String(e)}`)
    }
  }

  for (const r of rows) {
    for (const s of settings.systems) {
      const f = r.figures[s]
      if (f?.note !== undefined) details.push(`- ${r.label}, ${r.key === "inmemory" ? "errand" : SYSTEM_NAMES[s]}: ${f.note}`)
    }
    if (r.key === "latency-p50" && latencyFloor !== undefined) details.push(latencyFloor)
  }

  console.log()
  for (const line of tableLines) console.log(line)
  console.log()
  for (const line of details) console.log(line)
  console.log()
  for (const t of targetList) console.log(`${t.pass === undefined ? "SKIP" : t.pass ? "PASS" : "MISS"}  ${t.label}: ${t.detail}`)
  for (const n of notes) console.log(`note: ${n}`)
  const elapsed = (Date.now() - started) / 1000
  env.push(`- load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(", ")}`)
  console.log(`\n(${describeRun()}: ${elapsed.toFixed(0)} s)`)

  if (settings.write) {
    const analysisFile = path.join(benchDir, "ANALYSIS.md")
    const analysis = fs.existsSync(analysisFile) ? fs.readFileSync(analysisFile, "utf8").trim().split("\n") : []
    const md = [
      "# errand benchmarks",
      "",
      `Written by \`${describeRun()}\` (${elapsed.toFixed(0)} s). Do not edit by hand: rerun the bench.`,
      "",
      "## Machine",
      "",
      ...env,
      "",
      "## Results",
      "",
      ...tableLines,
      "",
      "Rows 1–5 run every system on the same Redis (errand on `RedisBroker.layer`); row 6 is errand on `MemoryBroker.layer`.",
      "Ratios: errand's figure against the best peer's, oriented so that above 1× means errand is better",
      "(higher throughput, lower latency or memory).",
      "",
      "## Targets",
      "",
      ...targetList.map((t) => `- **${t.pass === undefined ? "SKIP" : t.pass ? "PASS" : "MISS"}** ${t.label}: ${t.detail}`),
      "",
      "## Details",
      "",
      ...details,
      ...notes.map((n) => `- note: ${n}`),
      "",
      "## How each system is run",
      "",
      `- Every worker and producer is its own process; the same Redis, task count (${settings.tasks.toLocaleString("en-US")}) and concurrency (${settings.concurrency}) for all. Before each workload Redis gives back the memory it freed (\`MEMORY PURGE\`) and the bench waits for its CPU to settle${settings.quietMs > 0 ? ` and ${settings.quietMs / 1000} s more` : ""}; (6) runs before (5), whose freed backlogs disturb this VM for a while (ANALYSIS).`,
      `- errand: \`Worker.make({ concurrency: ${settings.concurrency}, prefetch: ${settings.prefetch} })\` (${settings.prefetch} held beyond those running, like Celery's default prefetch of 4 × ${settings.concurrency}) on \`RedisBroker.layer\`; producer \`client.submitMany\` (bulk) or \`client.submit\` (latency); a task's \`storeResult\` follows the workload (results not stored: \`keepRecord: false\`, nothing kept of a success, as BullMQ's \`removeOnComplete\` and Celery's \`ignore_result\`). Done = the handler ran for every task and the broker holds none (acknowledged).`,
      `- BullMQ: \`new Worker(queue, fn, { concurrency: ${settings.concurrency} })\` on ioredis, producer \`queue.addBulk\` in chunks of 1,000 (or \`queue.add\`), \`removeOnComplete: true\` when results are not stored, false when they are. Done = N \`completed\` events.`,
      `- Celery: \`celery worker -P threads -c ${settings.concurrency}\`, Redis broker, \`task_acks_late=True\` (errand's default guarantee), prefetch multiplier 4, Redis result backend only when results are stored; producer \`apply_async\` in a loop on one producer connection. Done = the last task ran and Celery's queue and unacked set are empty.`,
      "- (1)/(2) time from the first submit to the last acknowledgement, the worker already idle and connected, " + warmDescription() + "; (3) the same bulk submit with no worker; (4) one submit at a time at a steady rate, latency = handler start − submit call (wall clock, both processes on this machine), the first half second dropped as warm-up; (5) the worker holds its handlers blocked while the backlog waits in Redis, memory read after a full GC (Node: `process.memoryUsage()` after `gc()`; Celery: VmRSS); (6) producer and worker in one process on `MemoryBroker.layer`, after the same warm-up round in that process.",
      "",
      ...profileLines,
      ...analysis
    ]
    fs.writeFileSync(settings.out, `${md.join("\n")}\n`)
    console.log(`wrote ${path.relative(process.cwd(), settings.out)}`)
  }
}

const bench = Command.make("bench", flags, (input) =>
  Effect.promise(async () => {
    settings = settingsOf(input)
    try {
      await main()
    } catch (e: unknown) {
      console.error(e instanceof Error ? e.message : e)
      process.exitCode = 1
    } finally {
      Celery.cleanup()
      await redis?.close().catch(() => {})
    }
  })).pipe(
    Command.withDescription(
      "errand's benchmarks, side by side with BullMQ and Celery on the same Redis (REDIS_URL, default " +
        "redis://127.0.0.1:6379); writes bench/RESULTS.md"
    )
  )

Command.run(bench, { version: "0.1.0" }).pipe(
  // help and usage errors were printed by the CLI; a usage error exits 2
  Effect.catch((error) =>
    Effect.sync(() => {
      if (!(CliError.isCliError(error) && error._tag === "ShowHelp" && error.errors.length === 0)) process.exitCode = 2
    })
  ),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
