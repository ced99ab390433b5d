/**
 * The demo's scenarios: the Celery seed task and what errand does when its
 * attempts fail, when the worker running it dies, and when that worker shuts
 * down. Each scenario submits one task, shows what happens live, and returns
 * the task's final record plus the checks that say whether errand behaved as
 * the design promises. `main.ts` prints them; the tests assert on them.
 *
 * Time is compressed: the reference countdown step of 10 s is 150 ms here,
 * so 15 ms of the demo stand for 1 s of the reference.
 */
import { Cause, Clock, Context, Deferred, Duration, Effect, Exit, Fiber, Schema, Scope } from "effect"
import { Client, MaxRetriesExceeded, Message, Retry, Task, TaskContext, Worker } from "@errand/core"
import type { Broker, ResultBackend } from "@errand/core"

// ---------------------------------------------------------------------------
// Time scale
// ---------------------------------------------------------------------------

/** Demo milliseconds that stand for one second of the reference Celery task. */
export const MS_PER_REF_SECOND = 15

/** The retry step: Celery's countdown of 10 s, compressed. */
export const STEP_MS = 10 * MS_PER_REF_SECOND

/** The seed's retry policy: countdown (retries + 1) × step, at most 5 retries. */
export const seedPolicy = Retry.linear({ step: Duration.millis(STEP_MS), maxRetries: 5 })

/** `ms` as seconds of the reference, e.g. `150` -> `"10 s"`. */
export const refSeconds = (ms: number): string => {
  const s = ms / MS_PER_REF_SECOND
  return Number.isInteger(s) ? `${s} s` : `${s.toFixed(1)} s`
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/**
 * Where the live view goes: stdout by default; tests collect or drop it.
 */
export const View = Context.Reference<{ readonly line: (text: string) => void }>("@errand/demo/View", {
  defaultValue: () => ({ line: (text) => console.log(text) })
})

const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length))
const padStart = (s: string, n: number) => (s.length >= n ? s : " ".repeat(n - s.length) + s)

/** Prints one line of a scenario's live view: `[  452 ms] who  text`, time since the scenario began. */
const say = (t0: number, who: string, text: string) =>
  Effect.gen(function*() {
    const view = yield* View
    const now = yield* Clock.currentTimeMillis
    view.line(`  [${padStart(String(Math.max(0, now - t0)), 5)} ms] ${pad(who, 9)} ${text}`)
  })

// ---------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------

/** The failure of the seed task's `do_something()`. */
export class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { message: Schema.String }) {}

/**
 * The Celery seed: `@celery.task(bind=True, max_retries=5, acks_late=True)`
 * with `countdown=(2 * (retries + 1)) * 5`. It fails while it has been
 * retried fewer than `failTimes` times.
 */
export const Seed = Task.make("seed.some_task", {
  payload: Schema.Struct({ failTimes: Schema.Int }),
  success: Schema.Struct({ ok: Schema.Boolean, retries: Schema.Int }),
  failure: Flaky,
  retry: seedPolicy,
  acksLate: true,
  queue: "seed"
})

/** A task that works for a while (used to lose it with its worker, or to shut its worker down). */
export const Work = Task.make("demo.work", {
  payload: Schema.Struct({ millis: Schema.Int }),
  success: Schema.Struct({ worker: Schema.String }),
  retry: seedPolicy,
  acksLate: true,
  queue: "work"
})

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

/** One expectation of a scenario. */
export interface Check {
  readonly label: string
  readonly ok: boolean
  readonly detail?: string | undefined
}

/** One run of a handler, as the handler itself saw it. */
export interface Run {
  readonly worker: string
  readonly attempt: number
  readonly startedAt: number
  /** How the handler's run ended, seen from inside: returned, failed, or interrupted. */
  end?: "returned" | "failed" | "interrupted"
}

/** What a scenario returns. */
export interface ScenarioResult {
  readonly key: string
  readonly title: string
  readonly task: string
  readonly jobId: string
  /** The task's record from `client.status`: state, retries, error and history. */
  readonly status: Client.Status
  /** What `client.await` gave: the result, or the error's `_tag` and message. */
  readonly awaited: Exit.Exit<unknown, unknown>
  readonly runs: ReadonlyArray<Run>
  readonly checks: ReadonlyArray<Check>
}

export const passed = (result: ScenarioResult): boolean => result.checks.every((c) => c.ok)

const check = (label: string, ok: boolean, detail?: string): Check => ({ label, ok, detail })

const same = (label: string, actual: unknown, expected: unknown): Check => {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  return check(label, a === e, a === e ? undefined : `expected ${e}, got ${a}`)
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type Services = Client.Client | Broker.Broker | ResultBackend.ResultBackend

/**
 * Starts a worker in a scope of its own (a child of the scenario's scope),
 * so it can be shut down, or killed, on its own.
 */
const startWorker = <const Tasks extends ReadonlyArray<Task.AnyImplemented>>(
  parent: Scope.Scope,
  options: Worker.Options<Tasks>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(parent, "sequential")
    const worker = yield* Worker.make(options).pipe(Scope.provide(scope))
    return { worker, shutdown: Scope.close(scope, Exit.void) }
  })

/**
 * Follows a task's record while it runs and prints each attempt as the
 * result backend records it. Ends when the task reaches a final state.
 */
const follow = (client: Client.Service, id: string, t0: number) =>
  Effect.gen(function*() {
    let seen = 0
    while (true) {
      const status = yield* client.status(id)
      for (const a of status.history.slice(seen)) {
        const error = a.error === undefined ? "" : ` after ${a.error._tag}`
        const next = a.countdown === undefined ? "" : `; next try in ${a.countdown} ms (${refSeconds(a.countdown)} ref)`
        yield* say(t0, "history", `attempt ${a.attempt} on ${a.worker}: ${a.outcome}${error}${next}`)
      }
      seen = status.history.length
      if (Message.finalStates.has(status.state)) return status
      yield* Effect.sleep("5 millis")
    }
  }).pipe(Effect.orDie)

const describeExit = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return `succeeded with ${JSON.stringify(exit.value)}`
  const error = Cause.squash(exit.cause)
  if (typeof error === "object" && error !== null && "_tag" in error) {
    const message = "message" in error ? String(error.message) : ""
    return `failed with ${String(error._tag)}: ${message}`
  }
  return `died: ${String(error)}`
}

/** Submits, follows and awaits one task; the handler runs are recorded by the caller. */
const submitAndAwait = <T extends Task.Any>(
  client: Client.Service,
  t0: number,
  task: T,
  payload: Task.PayloadInput<T>,
  whileRunning?: (job: Client.Job<T>) => Effect.Effect<void, never, Services>
) =>
  Effect.gen(function*() {
    const job = yield* client.submit(task, payload).pipe(Effect.orDie)
    yield* say(t0, "producer", `submit ${task.name} ${JSON.stringify(payload)} -> task ${job.id.slice(0, 8)}`)
    const follower = yield* Effect.forkChild(follow(client, job.id, t0), { startImmediately: true })
    if (whileRunning !== undefined) yield* whileRunning(job)
    const awaited = yield* Effect.exit(client.await(job))
    const status = yield* Fiber.join(follower)
    yield* say(t0, "producer", `client.await ${describeExit(awaited)}`)
    return { job, awaited, status }
  })

/** Implements `Seed` like the reference: fail with `Flaky` while retried fewer than `failTimes` times. */
const seedHandler = (t0: number, runs: Array<Run>) =>
  Task.implement(Seed, ({ failTimes }) =>
    Effect.gen(function*() {
      const ctx = yield* TaskContext
      const run: Run = { worker: ctx.worker, attempt: ctx.retries, startedAt: yield* Clock.currentTimeMillis }
      runs.push(run)
      yield* say(t0, ctx.worker, `attempt ${ctx.retries} started (ctx.retries = ${ctx.retries})`)
      yield* Effect.sleep("10 millis") // do_something()
      if (ctx.retries < failTimes) {
        run.end = "failed"
        yield* say(t0, ctx.worker, `attempt ${ctx.retries} raises Flaky`)
        return yield* new Flaky({ message: `do_something() failed on attempt ${ctx.retries}` })
      }
      run.end = "returned"
      yield* say(t0, ctx.worker, `attempt ${ctx.retries} returns`)
      return { ok: true, retries: ctx.retries }
    }))

/**
 * Implements `Work`: sleeps `millis`, announcing the start of each run on
 * `started` (for the scenario to act while the task runs).
 */
const workHandler = (t0: number, runs: Array<Run>, started: Deferred.Deferred<Run>) =>
  Task.implement(Work, ({ millis }) =>
    Effect.gen(function*() {
      const ctx = yield* TaskContext
      const run: Run = { worker: ctx.worker, attempt: ctx.retries, startedAt: yield* Clock.currentTimeMillis }
      runs.push(run)
      yield* say(t0, ctx.worker, `attempt ${ctx.retries} started, working for ${millis} ms (${refSeconds(millis)} ref)`)
      yield* Deferred.succeed(started, run)
      yield* Effect.sleep(Duration.millis(millis)).pipe(
        Effect.onInterrupt(() =>
          Effect.suspend(() => {
            run.end = "interrupted"
            // A killed worker prints nothing: kill -9 gives no chance to.
            return ctx.worker === "worker-a"
              ? Effect.void
              : say(t0, ctx.worker, `attempt ${ctx.retries} interrupted; its finalizers run`)
          })
        )
      )
      run.end = "returned"
      yield* say(t0, ctx.worker, `attempt ${ctx.retries} returns`)
      return { worker: ctx.worker }
    }))

const outcomes = (status: Client.Status) => status.history.map((a) => a.outcome)
const countdowns = (status: Client.Status) => status.history.map((a) => a.countdown ?? null)
const workers = (status: Client.Status) => status.history.map((a) => a.worker)
const errorTags = (status: Client.Status) => status.history.map((a) => a.error?._tag ?? null)

/** Each attempt started no sooner than the countdown chosen by the one before. */
const delaysHonoured = (status: Client.Status): Check => {
  const late: Array<string> = []
  status.history.forEach((a, i) => {
    const next = status.history[i + 1]
    if (next !== undefined && a.countdown !== undefined && next.startedAt < a.endedAt + a.countdown) {
      late.push(`attempt ${next.attempt} started ${a.endedAt + a.countdown - next.startedAt} ms early`)
    }
  })
  return check("every retry waited at least its countdown", late.length === 0, late.join("; "))
}

// ---------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------

export interface Scenario {
  readonly key: string
  readonly title: string
  readonly run: Effect.Effect<ScenarioResult, never, Services>
}

const scenario = (
  key: string,
  title: string,
  body: (
    t0: number,
    scope: Scope.Scope,
    client: Client.Service
  ) => Effect.Effect<Omit<ScenarioResult, "key" | "title">, never, Services | Scope.Scope>
): Scenario => ({
  key,
  title,
  run: Effect.scoped(Effect.gen(function*() {
    const t0 = yield* Clock.currentTimeMillis
    const scope = yield* Scope.Scope
    const client = yield* Client.Client
    const result = yield* body(t0, scope, client)
    return { key, title, ...result }
  }))
})

/** 1. The seed fails `failTimes` times, then succeeds: SUCCESS with retries = failTimes. */
export const flaky = (failTimes = 3): Scenario =>
  scenario("flaky", `flaky: fails ${failTimes} times, then succeeds`, (t0, scope, client) =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const w = yield* startWorker(scope, { id: "worker-1", tasks: [seedHandler(t0, runs)], shutdownGrace: "1 second" })
      const { awaited, job, status } = yield* submitAndAwait(client, t0, Seed, { failTimes })
      yield* w.shutdown
      const expectedCountdowns = Array.from({ length: failTimes }, (_, i) => (i + 1) * STEP_MS)
      return {
        task: Seed.name,
        jobId: job.id,
        status,
        awaited,
        runs,
        checks: [
          same("client.await returns the result", Exit.isSuccess(awaited) ? awaited.value : describeExit(awaited), {
            ok: true,
            retries: failTimes
          }),
          same("state is SUCCESS", status.state, "SUCCESS"),
          same(`retries is ${failTimes}`, status.retries, failTimes),
          same("history outcomes", outcomes(status), [...expectedCountdowns.map(() => "RETRY"), "SUCCESS"]),
          same(
            `countdowns follow the seed (${expectedCountdowns.map(refSeconds).join(", ")}, scaled)`,
            countdowns(status),
            [...expectedCountdowns, null]
          ),
          delaysHonoured(status)
        ]
      }
    }))

/** 2. The seed always fails: 5 retries at 10..50 s (scaled), then FAILURE with MaxRetriesExceeded. */
export const failing: Scenario = scenario(
  "failing",
  "always fails: 5 retries, then MaxRetriesExceeded",
  (t0, scope, client) =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const w = yield* startWorker(scope, { id: "worker-1", tasks: [seedHandler(t0, runs)], shutdownGrace: "1 second" })
      const { awaited, job, status } = yield* submitAndAwait(client, t0, Seed, { failTimes: 99 })
      yield* w.shutdown
      const error = Exit.isFailure(awaited) ? Cause.squash(awaited.cause) : undefined
      const expectedCountdowns = [1, 2, 3, 4, 5].map((n) => n * STEP_MS)
      // Celery runs the seed at 0, 10, 30, 60, 100, 150 s.
      const expectedStarts = [0, 1, 3, 6, 10, 15].map((n) => n * STEP_MS)
      const starts = status.history.map((a) => a.startedAt - status.submittedAt)
      return {
        task: Seed.name,
        jobId: job.id,
        status,
        awaited,
        runs,
        checks: [
          check(
            "client.await fails with MaxRetriesExceeded",
            error instanceof MaxRetriesExceeded,
            error instanceof MaxRetriesExceeded ? undefined : describeExit(awaited)
          ),
          same(
            "its last error is kept: Flaky from attempt 5",
            error instanceof MaxRetriesExceeded
              ? { _tag: error.lastError._tag, message: error.lastError.message }
              : undefined,
            { _tag: "Flaky", message: "do_something() failed on attempt 5" }
          ),
          same("MaxRetriesExceeded.retries is 5", error instanceof MaxRetriesExceeded ? error.retries : undefined, 5),
          same("state is FAILURE", status.state, "FAILURE"),
          same("the record's error is MaxRetriesExceeded", status.error?._tag, "MaxRetriesExceeded"),
          same("history outcomes", outcomes(status), ["RETRY", "RETRY", "RETRY", "RETRY", "RETRY", "FAILURE"]),
          same("countdowns are 10, 20, 30, 40, 50 s (scaled)", countdowns(status), [...expectedCountdowns, null]),
          same("every attempt failed with Flaky", errorTags(status), Array(6).fill("Flaky")),
          check(
            "attempts start at 0, 10, 30, 60, 100, 150 s (scaled) or just after",
            starts.length === 6 && starts.every((s, i) => s >= expectedStarts[i]!),
            `started at ${starts.join(", ")} ms; expected ${expectedStarts.join(", ")} ms`
          ),
          delaysHonoured(status)
        ]
      }
    })
)

/** 3. The worker running the task is killed (kill -9); another worker takes it over when the lease runs out. */
export const lost: Scenario = scenario(
  "lost",
  "worker lost: kill -9 while the task runs",
  (t0, scope, client) =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const started = yield* Deferred.make<Run>()
      const impl = workHandler(t0, runs, started)
      const a = yield* startWorker(scope, { id: "worker-a", tasks: [impl], lease: "300 millis", shutdownGrace: "1 second" })
      yield* say(t0, "demo", `worker-a up (lease 300 ms = ${refSeconds(300)} ref, renewed every 100 ms)`)
      let killedAt = 0
      const { awaited, job, status } = yield* submitAndAwait(client, t0, Work, { millis: 400 }, () =>
        Effect.gen(function*() {
          yield* Deferred.await(started)
          yield* startWorker(scope, { id: "worker-b", tasks: [impl], shutdownGrace: "1 second" })
          yield* say(t0, "demo", "worker-b up, waiting for work")
          yield* Effect.sleep("100 millis")
          killedAt = yield* Clock.currentTimeMillis
          yield* say(t0, "demo", "kill -9 worker-a: its fibers stop, it never talks to the broker again")
          yield* a.worker.kill
        }))
      const first = status.history[0]
      return {
        task: Work.name,
        jobId: job.id,
        status,
        awaited,
        runs,
        checks: [
          same("the first run was on worker-a, the second on worker-b", runs.map((r) => r.worker), [
            "worker-a",
            "worker-b"
          ]),
          same("client.await returns the result of worker-b", Exit.isSuccess(awaited) ? awaited.value : describeExit(awaited), {
            worker: "worker-b"
          }),
          same("state is SUCCESS", status.state, "SUCCESS"),
          same("retries is 1", status.retries, 1),
          same("history outcomes: LOST then SUCCESS", outcomes(status), ["LOST", "SUCCESS"]),
          same("history workers", workers(status), ["worker-a", "worker-b"]),
          same("the lost attempt's error is WorkerLost", errorTags(status), ["WorkerLost", null]),
          same("WorkerLost goes through the retry policy (countdown 10 s scaled)", countdowns(status), [STEP_MS, null]),
          check(
            "worker-a's lease ran out after the kill",
            first !== undefined && first.endedAt >= killedAt,
            first === undefined ? "no history" : `lease ended ${first.endedAt - killedAt} ms after the kill`
          ),
          delaysHonoured(status)
        ]
      }
    })
)

/** 4. Warm shutdown: the worker's scope closes with a grace shorter than the task; another worker finishes it. */
export const shutdown: Scenario = scenario(
  "shutdown",
  "warm shutdown: the grace period is shorter than the task",
  (t0, scope, client) =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const started = yield* Deferred.make<Run>()
      const impl = workHandler(t0, runs, started)
      const c = yield* startWorker(scope, { id: "worker-c", tasks: [impl], shutdownGrace: "200 millis" })
      yield* say(t0, "demo", `worker-c up (shutdownGrace 200 ms = ${refSeconds(200)} ref)`)
      const { awaited, job, status } = yield* submitAndAwait(client, t0, Work, { millis: 600 }, () =>
        Effect.gen(function*() {
          yield* Deferred.await(started)
          yield* startWorker(scope, { id: "worker-d", tasks: [impl], shutdownGrace: "1 second" })
          yield* say(t0, "demo", "worker-d up, waiting for work")
          yield* Effect.sleep("50 millis")
          yield* say(t0, "demo", "closing worker-c's scope (SIGTERM): it stops claiming and waits 200 ms")
          yield* c.shutdown
          yield* say(t0, "demo", "worker-c has shut down")
        }))
      return {
        task: Work.name,
        jobId: job.id,
        status,
        awaited,
        runs,
        checks: [
          same("the first run was on worker-c, the second on worker-d", runs.map((r) => r.worker), [
            "worker-c",
            "worker-d"
          ]),
          same("worker-c's run was interrupted (its finalizers ran)", runs[0]?.end, "interrupted"),
          same("client.await returns the result of worker-d", Exit.isSuccess(awaited) ? awaited.value : describeExit(awaited), {
            worker: "worker-d"
          }),
          same("state is SUCCESS", status.state, "SUCCESS"),
          same("retries is 1", status.retries, 1),
          same("history outcomes: RETRY then SUCCESS", outcomes(status), ["RETRY", "SUCCESS"]),
          same("history workers", workers(status), ["worker-c", "worker-d"]),
          same("the interrupted attempt's error is WorkerShutdown", errorTags(status), ["WorkerShutdown", null]),
          same("WorkerShutdown goes through the retry policy (countdown 10 s scaled)", countdowns(status), [STEP_MS, null]),
          delaysHonoured(status)
        ]
      }
    })
)

/** Every scenario, in the order the demo runs them. */
export const all: ReadonlyArray<Scenario> = [flaky(3), failing, lost, shutdown]
