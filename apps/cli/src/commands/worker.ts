/**
 * `errand worker`: runs a worker process for the tasks of a module.
 *
 * Signals: the first SIGTERM or SIGINT starts a warm shutdown (stop claiming,
 * give prefetched tasks back, wait up to the grace for running ones, then
 * interrupt them: they are rescheduled with `WorkerShutdown`); a second one
 * makes it cold (interrupt now, same rescheduling). Exit code 0 once the
 * worker has stopped cleanly.
 *
 * @since 0.1.0
 */
import { MemoryBroker, Worker } from "@errand/core"
import type { Broker } from "@errand/core/Broker"
import type { ResultBackend } from "@errand/core/ResultBackend"
import { Console, Context, Effect, Layer, Option, type Scope } from "effect"
import { Command, Flag } from "effect/cli"
import * as os from "node:os"
import * as Connection from "../Connection.ts"
import { fail, messageOf } from "../Fatal.ts"
import * as Format from "../Format.ts"
import { processState } from "../ProcessState.ts"
import * as TasksModule from "../TasksModule.ts"
import * as Watchdog from "../Watchdog.ts"

const durationFlag = (name: string, fallback: string, description: string) =>
  Flag.String(name).pipe(
    Flag.withMetavar("duration"),
    Flag.withDescription(`${description} (default ${fallback}; e.g. 500ms, 10s, 2m)`),
    Flag.withDefault(fallback),
    Flag.mapTryCatch(Format.parseDuration, messageOf)
  )

const positive = (name: string) => (n: number) => {
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a whole number of at least 1, got ${n}`)
  return n
}

/**
 * @since 0.1.0
 */
export const command = Command.make("worker", {
  tasks: Flag.String("tasks").pipe(
    Flag.withAlias("t"),
    Flag.withMetavar("module"),
    Flag.withDescription(
      "Module exporting implemented tasks (Task.implement values, named exports or an array; " +
        "an optional `layer` export provides their services): a path or a package. Repeat for more modules"
    ),
    Flag.atLeast(1)
  ),
  queues: Flag.String("queues").pipe(
    Flag.withAlias("Q"),
    Flag.withMetavar("a,b"),
    Flag.withDescription("Queues to consume, comma-separated (default: the queues of the tasks)"),
    Flag.optional
  ),
  concurrency: Flag.Int("concurrency").pipe(
    Flag.withAlias("c"),
    Flag.withDescription("How many tasks run at once"),
    Flag.withDefault(16),
    Flag.mapTryCatch(positive("concurrency"), messageOf)
  ),
  prefetch: Flag.Int("prefetch").pipe(
    Flag.withDescription("Tasks claimed per round trip and held beyond those running (default: concurrency)"),
    Flag.mapTryCatch(positive("prefetch"), messageOf),
    Flag.optional
  ),
  lease: durationFlag("lease", "10s", "How long a claim lasts without a heartbeat; renewed every third of it"),
  grace: durationFlag("grace", "30s", "Warm shutdown: how long to wait for running tasks before interrupting them"),
  watchdog: Flag.String("watchdog").pipe(
    Flag.withMetavar("duration|off"),
    Flag.withDescription(
      "Kill this process when its event loop is blocked this long (a handler in a busy loop), before its " +
        "leases run out, so a stalled attempt never runs beside its replacement; keep it under 2/3 of --lease " +
        "(default: half the lease; off to disable)"
    ),
    Flag.withDefault("auto")
  ),
  id: Flag.String("id").pipe(
    Flag.withDescription("This worker's id in leases, history and inspect (default: <host>:<pid>)"),
    Flag.optional
  ),
  broker: Flag.Literals("broker", ["redis", "memory"]).pipe(
    Flag.withDescription(
      "redis (default), or memory: an in-process broker, to check that a tasks module loads and a worker starts"
    ),
    Flag.withDefault("redis")
  ),
  ...Connection.flags
}, (input) =>
  Effect.gen(function*() {
    const loaded = yield* TasksModule.load(input.tasks)
    const leaseMillis = input.lease
    if (leaseMillis < 100) return yield* fail(`--lease must be at least 100ms, got ${input.lease} ms`)
    const watchdogMillis = input.watchdog === "auto"
      ? Math.floor(leaseMillis / 2)
      : input.watchdog === "off" || input.watchdog === "0"
      ? 0
      : yield* Effect.try({ try: () => Format.parseDuration(input.watchdog), catch: (e) => e }).pipe(
        Effect.catch((e) => fail(`--watchdog: ${messageOf(e)}`))
      )
    const queues = Option.map(input.queues, (q) => q.split(",").map((s) => s.trim()).filter((s) => s !== ""))
    if (Option.isSome(queues) && queues.value.length === 0) return yield* fail("--queues names no queue")
    const host = os.hostname()
    const id = Option.getOrElse(input.id, () => `${host}:${process.pid}`)

    const label = `errand worker ${id}`
    yield* Effect.scoped(Effect.gen(function*() {
      const url = input.broker === "redis" ? yield* Connection.checkUrl(input) : undefined
      const brokerContext: Context.Context<Broker | ResultBackend> = input.broker === "memory"
        ? yield* Layer.build(MemoryBroker.layer)
        : yield* Connection.connect(input)
      const services = loaded.layer === undefined
        ? Context.empty()
        : yield* Layer.build(loaded.layer).pipe(
          Effect.catchCause((cause) => fail(`the tasks module's \`layer\` failed to build: ${messageOf(cause)}`))
        )
      // Started before the worker, stopped after its shutdown (which may run handlers for the grace)
      if (watchdogMillis > 0) yield* Watchdog.start(watchdogMillis, label)
      // The runtime (NodeRuntime.runMain) turns the first SIGTERM/SIGINT into
      // an interruption, which closes this scope: the worker's warm shutdown.
      // A second signal makes that shutdown cold. The listeners are added
      // before the worker starts, so they are removed only after its shutdown.
      let worker: Worker.Service | undefined
      let signals = 0
      const onSignal = (signal: NodeJS.Signals) => {
        signals++
        if (signals === 1) {
          process.stdout.write(
            `${label}: ${signal}: warm shutdown, waiting up to ${Format.duration(input.grace)} for running tasks ` +
              `(${signal} again for a cold shutdown)\n`
          )
        } else if (signals === 2) {
          process.stdout.write(`${label}: ${signal}: cold shutdown, interrupting running tasks now\n`)
          if (worker !== undefined) Effect.runFork(worker.shutdownNow)
        }
      }
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          process.on("SIGTERM", onSignal)
          process.on("SIGINT", onSignal)
        }),
        () =>
          Effect.sync(() => {
            process.off("SIGTERM", onSignal)
            process.off("SIGINT", onSignal)
          })
      )

      worker = yield* Worker.make({
        tasks: loaded.tasks,
        id,
        host,
        pid: process.pid,
        concurrency: input.concurrency,
        prefetch: Option.getOrUndefined(input.prefetch),
        queues: Option.getOrUndefined(queues),
        lease: leaseMillis,
        shutdownGrace: input.grace
      }).pipe(Effect.provideContext(Context.merge(brokerContext, services as Context.Context<never>))) as Effect.Effect<
        Worker.Service,
        never,
        Scope.Scope
      >

      const names = loaded.tasks.map((t) => t.task.name).sort()
      yield* Console.log(
        [
          `${label} started`,
          `  broker       ${url === undefined ? "memory (this process only)" : Connection.describe(url, input.prefix)}`,
          `  tasks        ${names.join(", ")}`,
          `  from         ${loaded.files.join(", ")}`,
          `  queues       ${worker.queues.join(", ")}`,
          `  concurrency  ${input.concurrency}, prefetch ${Option.getOrElse(input.prefetch, () => input.concurrency)}`,
          `  lease        ${Format.duration(leaseMillis)}, shutdown grace ${Format.duration(input.grace)}, watchdog ${
            watchdogMillis > 0 ? Format.duration(watchdogMillis) : "off"
          }${
            watchdogMillis * 3 >= leaseMillis * 2
              ? " (at or above 2/3 of the lease: a stalled attempt may still overlap its replacement)"
              : ""
          }`
        ].join("\n")
      )
      yield* Effect.never
    })).pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          processState.stoppedCleanly = true
          process.stdout.write(`errand worker ${id} stopped\n`)
        })
      )
    )
  })).pipe(
    Command.withDescription(
      "Run a worker for the tasks of a module. SIGTERM/SIGINT: warm shutdown (running tasks get the grace " +
        "period, then are interrupted and rescheduled with WorkerShutdown); a second signal: cold shutdown"
    ),
    Command.withExamples([
      {
        command: "errand worker --tasks ./src/tasks.ts --redis redis://127.0.0.1:6379 --concurrency 32",
        description: "Run the tasks of src/tasks.ts on Redis"
      },
      {
        command: "errand worker -t @acme/billing/tasks -Q billing,default --grace 1m",
        description: "Consume two queues, give running tasks a minute on shutdown"
      }
    ])
  )
