/**
 * errand's side of each workload: a worker process, a bulk producer, a paced
 * producer, and the in-memory run (producer and worker in one process, as the
 * memory broker requires).
 */
import { Broker, Client, MemoryBroker, Message, Task, Worker } from "@errand/core"
import { RedisBroker } from "@errand/redis"
import { Deferred, Effect, Fiber, Layer, References, Schema } from "effect"
import type { RoleConfig } from "./config.ts"
import { command, memory, report, settle, startProfile, summarize } from "./ipc.ts"
import { now } from "./proc.ts"
import { counter, noopTask } from "./task.ts"

const decodeMessage = Schema.decodeUnknownSync(Message.Message)

/** The bench task on the run's queue, its result stored or not as the run says. */
const benchTask = (config: RoleConfig) => noopTask(config.queue, config.storeResults)

/** Broker calls and items per operation, when BENCH_DIAG is set (diagnostics, not for measured runs). */
const calls: Record<string, { calls: number; items: number; ms: number }> = {}

const counted = (broker: Broker.Broker["Service"]): Broker.Broker["Service"] => {
  const wrap = <Args extends ReadonlyArray<any>, A, E>(name: string, f: (...args: Args) => Effect.Effect<A, E>) =>
  (...args: Args): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      const c = (calls[name] ??= { calls: 0, items: 0, ms: 0 })
      c.calls++
      c.items += Array.isArray(args[0]) ? args[0].length : 1
      const t = now()
      return Effect.ensuring(f(...args), Effect.sync(() => (c.ms += now() - t)))
    })
  return Broker.Broker.of({
    ...broker,
    enqueue: wrap("enqueue", broker.enqueue),
    claim: wrap("claim", broker.claim),
    start: wrap("start", broker.start),
    renew: wrap("renew", broker.renew),
    complete: wrap("complete", broker.complete),
    stats: wrap("stats", broker.stats)
  })
}

const diag = process.env.BENCH_DIAG !== undefined && process.env.BENCH_DIAG !== ""

const redisLayer = (config: RoleConfig) => {
  const base = RedisBroker.layer({ url: config.url, prefix: config.prefix })
  return diag
    ? Layer.merge(base, Layer.effect(Broker.Broker, Effect.map(Effect.service(Broker.Broker), counted)).pipe(Layer.provide(base)))
    : base
}

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, References.MinimumLogLevel, "Warn")

const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(quiet(effect))

/** Runs `effect` under the CPU profiler when the orchestrator asked for a profile (`startProfile`). */
const profiled = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.promise(startProfile),
    () => effect,
    (stop) => stop === undefined ? Effect.void : Effect.promise(stop)
  )

/** Done means acknowledged: waits until the broker holds none of the queue's tasks. */
const acknowledged = (broker: Broker.Broker["Service"], queue: string) =>
  Effect.gen(function*() {
    while (true) {
      const [s] = yield* broker.stats([queue])
      if (s === undefined || s.ready + s.delayed + s.running === 0) return
      yield* Effect.sleep(1)
    }
  })

/** The worker: handlers per `mode`; reports `ready`, then `done` (count, latency) or memory on `measure` (block). */
const workerProgram = (config: RoleConfig) =>
  Effect.gen(function*() {
    const task = benchTask(config)
    const broker = yield* Broker.Broker
    // count mode with a warm-up: its tasks are counted first, then `tasks`
    const warm = config.mode === "count" && config.warmTasks > 0 ? counter(config.warmTasks) : undefined
    const handled = counter(config.tasks)
    let counting = warm ?? handled
    const latencies: Array<number> = []
    const handler = config.mode === "count"
      ? (p: { readonly n: number }) => counting.handle(p)
      : config.mode === "latency"
      ? (p: { readonly n: number; readonly t: number }) =>
        Effect.sync(() => {
          const started = now()
          if (p.n >= config.warmup) latencies.push(started - p.t)
          handled.tick()
          return p.n
        })
      : () => Effect.andThen(Effect.sync(handled.tick), Effect.never)
    yield* Worker.make({
      tasks: [Task.implement(task, handler)],
      concurrency: config.concurrency,
      prefetch: config.prefetch
    })
    if (config.mode === "latency") settle()
    report({ type: "ready" })
    if (config.mode === "block") {
      while (handled.count() < config.concurrency) yield* Effect.sleep(20)
      report({ type: "holding", running: handled.count() })
      yield* Effect.promise(() => command("measure"))
      report({ type: "memory", ...memory(), running: handled.count() })
      return yield* Effect.never
    }
    if (warm !== undefined) {
      yield* Deferred.await(warm.finished)
      yield* acknowledged(broker, config.queue)
      counting = handled
    }
    const handledAt = yield* profiled(Effect.gen(function*() {
      if (warm !== undefined) report({ type: "warm", at: now(), count: warm.count() })
      yield* Deferred.await(handled.finished)
      const at = now()
      yield* acknowledged(broker, config.queue)
      return at
    }))
    report({
      type: "done",
      at: now(),
      handledAt,
      count: handled.count(),
      ...(config.mode === "latency" ? { latency: summarize(latencies) } : {}),
      ...(diag ? { calls } : {})
    })
    if (diag) console.error(JSON.stringify(calls))
  })

export const worker = (config: RoleConfig) =>
  run(Effect.scoped(workerProgram(config)).pipe(Effect.provide(redisLayer(config))))

/** Bulk submit with `submitMany` (one round trip per 5,000). */
const bulkProgram = (config: RoleConfig) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const task = benchTask(config)
    const payloads = Array.from({ length: config.tasks }, (_, n) => ({ n, t: 0 }))
    const warm = Array.from({ length: config.warmTasks }, (_, n) => ({ n, t: 0 }))
    report({ type: "ready" })
    while (true) {
      // a warm-up round first, when the orchestrator asks for one (see RoleConfig)
      const go = yield* Effect.promise(() => command("go"))
      const batch = go.phase === "warm" ? warm : payloads
      const submit = client.submitMany(task, batch)
      const startedAt = now()
      yield* (batch === payloads ? profiled(submit) : submit)
      const endedAt = now()
      report({ type: "submitted", startedAt, endedAt, count: batch.length })
      if (batch === payloads) return
    }
  })

export const producer = (config: RoleConfig) =>
  run(bulkProgram(config).pipe(Effect.provide(Client.layer.pipe(Layer.provide(redisLayer(config))))))

/** One `submit` at a time at `rate` per second, each stamped with its submit time. */
export const paced = (config: RoleConfig) =>
  run(
    Effect.gen(function*() {
      const client = yield* Client.Client
      const task = benchTask(config)
      settle()
      report({ type: "ready" })
      yield* Effect.promise(() => command("go"))
      const t0 = now()
      const interval = 1000 / config.rate
      const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
      for (let n = 0; n < config.tasks; n++) {
        const wait = t0 + n * interval - now()
        if (wait > 0) yield* Effect.sleep(wait)
        fibers.push(yield* Effect.forkChild(Effect.suspend(() => client.submit(task, { n, t: now() }))))
      }
      yield* Fiber.joinAll(fibers)
      report({ type: "submitted", startedAt: t0, endedAt: now(), count: config.tasks })
    }).pipe(Effect.provide(Client.layer.pipe(Layer.provide(redisLayer(config)))))
  )

/**
 * Workload 6: producer and worker in one process on the memory broker. With
 * `warmTasks`, a round of that many first (its rate reported as `cold`),
 * then the measured round, then `laterRounds` more (their rates reported as
 * `later`), in the same worker and broker.
 */
export const inMemory = (config: RoleConfig) =>
  run(
    Effect.scoped(Effect.gen(function*() {
      const client = yield* Client.Client
      const broker = yield* Broker.Broker
      const task = benchTask(config)
      let counting = counter(config.warmTasks > 0 ? config.warmTasks : config.tasks)
      yield* Worker.make({
        tasks: [Task.implement(task, (p) => counting.handle(p))],
        concurrency: config.concurrency,
        prefetch: config.prefetch
      })
      const payloadsOf = (count: number) => Array.from({ length: count }, (_, n) => ({ n, t: 0 }))
      /** Submits the tasks in bulk and waits until all are acknowledged. */
      const round = (payloads: ReadonlyArray<{ readonly n: number; readonly t: number }>) =>
        Effect.gen(function*() {
          const startedAt = now()
          yield* client.submitMany(task, payloads)
          const submittedAt = now()
          yield* Deferred.await(counting.finished)
          yield* acknowledged(broker, config.queue)
          return { startedAt, submittedAt, at: now(), count: counting.count() }
        })
      let cold: { readonly perSecond: number } | undefined
      if (config.warmTasks > 0) {
        const w = yield* round(payloadsOf(config.warmTasks))
        cold = { perSecond: w.count / ((w.at - w.startedAt) / 1000) }
        counting = counter(config.tasks)
      }
      const payloads = payloadsOf(config.tasks)
      const cpu0 = process.cpuUsage()
      const r = yield* profiled(round(payloads))
      const cpu = process.cpuUsage(cpu0)
      const later: Array<number> = []
      for (let k = 0; k < config.laterRounds; k++) {
        counting = counter(config.tasks)
        const l = yield* round(payloads)
        later.push(l.count / ((l.at - l.startedAt) / 1000))
      }
      report({ type: "done", ...r, cpuMicros: cpu.user + cpu.system, after: memory(), cold, later })
    })).pipe(Effect.provide(Client.layer.pipe(Layer.provideMerge(MemoryBroker.layer))))
  )

/**
 * Diagnostics for RESULTS.md: errand's Redis CPU per task for each broker step
 * on the path the e2e worker takes (tasks whose result is not stored, so the
 * fast lane; claims that start what they take, so no `start` step; steps
 * batched as the worker batches them), and the round trip of each step for a
 * single task (the latency budget of submit → start).
 */
export const steps = (config: RoleConfig) =>
  run(
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      const redis = yield* Effect.promise(() => import("./redis.ts").then((R) => R.connect(config.url)))
      const R = yield* Effect.promise(() => import("./redis.ts"))
      const n = config.tasks
      const queue = config.queue
      const submission = (i: number, at: number): Broker.Submission => ({
        message: {
          id: `${config.prefix}-${i}`,
          task: "bench.noop",
          queue,
          payload: { n: i, t: 0 },
          headers: {},
          priority: 5,
          retries: 0,
          submittedAt: at,
          storeResult: false
        },
        dueAt: at,
        // as `Client` submits the ids it makes
        fresh: true
      })
      const at = Date.now()
      const cpuPerTask: Record<string, number> = {}
      const phase = <A>(name: string, effect: Effect.Effect<A, unknown>) =>
        Effect.gen(function*() {
          const c0 = yield* Effect.promise(() => R.cpu(redis))
          const a = yield* effect
          const c1 = yield* Effect.promise(() => R.cpu(redis))
          cpuPerTask[name] = ((c1 - c0) * 1e6) / n
          return a
        })
      yield* phase(
        "enqueue (batches of 1,000)",
        Effect.forEach(
          Array.from({ length: Math.ceil(n / 1000) }, (_, k) => k),
          (k) => broker.enqueue(Array.from({ length: Math.min(1000, n - k * 1000) }, (_, j) => submission(k * 1000 + j, at))),
          { discard: true }
        )
      )
      const deliveries: Array<Broker.Delivery> = []
      yield* phase(
        `claim (starting them; batches of ${config.prefetch})`,
        Effect.gen(function*() {
          while (deliveries.length < n) {
            const got = yield* broker.claim({
              queues: [queue],
              worker: "w",
              max: config.prefetch,
              leaseMillis: 60_000,
              waitMillis: 0,
              start: config.prefetch
            })
            if (got.length === 0) break
            deliveries.push(...got)
          }
        })
      )
      const B = config.prefetch
      const chunks = Array.from({ length: Math.ceil(deliveries.length / B) }, (_, k) => deliveries.slice(k * B, k * B + B))
      yield* phase(
        `complete (batches of ${B})`,
        Effect.forEach(chunks, (c) =>
          broker.complete(c.map((d) => ({
            // as the worker acks: with the delivery's queue and message
            id: d.id,
            token: d.token,
            queue: d.queue,
            message: decodeMessage(d.message),
            state: "SUCCESS" as const,
            result: 1,
            storeResult: false,
            keepRecord: false,
            attempt: { attempt: 0, worker: "w", startedAt: at, endedAt: at, outcome: "SUCCESS" as const }
          }))), { discard: true })
      )
      // single-task round trips
      const rounds = 200
      const rt: Record<string, Array<number>> = { enqueue: [], claim: [], complete: [] }
      const time = <A>(name: string, effect: Effect.Effect<A, unknown>) =>
        Effect.gen(function*() {
          const t = now()
          const a = yield* effect
          rt[name]!.push(now() - t)
          return a
        })
      for (let i = 0; i < rounds; i++) {
        yield* time("enqueue", broker.enqueue([submission(n + i, Date.now())]))
        const [d] = yield* time(
          "claim",
          broker.claim({ queues: [queue], worker: "w", max: 1, leaseMillis: 60_000, waitMillis: 0, start: 1 })
        )
        if (d === undefined) continue
        yield* time("complete", broker.complete([{
          id: d.id,
          token: d.token,
          queue: d.queue,
          message: decodeMessage(d.message),
          state: "SUCCESS",
          storeResult: false,
          keepRecord: false,
          attempt: { attempt: 0, worker: "w", startedAt: at, endedAt: at, outcome: "SUCCESS" }
        }]))
      }
      const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
      const roundTrips = Object.fromEntries(Object.entries(rt).map(([k, v]) => [k, median(v)]))
      const ping: Array<number> = []
      for (let i = 0; i < rounds; i++) {
        const t = now()
        yield* Effect.promise(() => redis.ping())
        ping.push(now() - t)
      }
      yield* Effect.promise(() => redis.close())
      report({ type: "steps", cpuPerTask, roundTrips: { ...roundTrips, "PING (node-redis, no Effect)": median(ping) } })
    }).pipe(Effect.scoped, Effect.provide(redisLayer(config)))
  )
