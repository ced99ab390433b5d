/**
 * The operator's commands: `status`, `inspect`, `revoke`, `retry`, `purge`.
 * Each connects to the deployment named by `--redis` / `--prefix`, does one
 * thing, and says what it did.
 *
 * @since 0.1.0
 */
import { Broker, workerStatus } from "@errand/core/Broker"
import { finalStates, type TaskRecord } from "@errand/core/Message"
import { ResultBackend } from "@errand/core/ResultBackend"
import { Clock, Console, Context, Effect, Option, type Scope } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as readline from "node:readline"
import * as Connection from "../Connection.ts"
import { ExitCode, fail, type Fatal, messageOf } from "../Fatal.ts"
import * as Format from "../Format.ts"

const jsonFlag = Flag.Boolean("json").pipe(
  Flag.withDescription("Print JSON instead of text, for scripts"),
  Flag.withDefault(false)
)

const idArgument = Argument.String("id").pipe(Argument.withDescription("The task id"))

interface Session {
  readonly broker: Broker["Service"]
  readonly backend: ResultBackend["Service"]
  /** `Redis host:port/db, prefix p`, for messages. */
  readonly where: string
}

/** Connects, then runs `body` with the broker; disconnects after. */
const withSession = <A>(
  connection: Connection.Connection,
  body: (session: Session) => Effect.Effect<A, Fatal, Scope.Scope>
): Effect.Effect<A, Fatal> =>
  Effect.scoped(Effect.gen(function*() {
    const url = yield* Connection.checkUrl(connection)
    const context = yield* Connection.connect(connection)
    const session: Session = {
      broker: Context.get(context, Broker),
      backend: Context.get(context, ResultBackend),
      where: Connection.describe(url, connection.prefix)
    }
    return yield* body(session)
  }))

/** A broker call, its failure turned into a message. */
const call = <A, E extends { readonly message: string }>(effect: Effect.Effect<A, E>) =>
  Effect.catch(effect, (e) => fail(e.message))

/** An optional broker operation, or a message saying the broker lacks it. */
const need = <A>(op: A | undefined, name: string): Effect.Effect<A, Fatal> =>
  op === undefined ? fail(`this broker does not support ${name}`) : Effect.succeed(op)

const notFound = (id: string, session: Session) =>
  fail(
    `no task ${id} in ${session.where}: never submitted there, or its record expired (check --redis and --prefix)`,
    ExitCode.notFound
  )

const getRecord = (session: Session, id: string) =>
  Effect.flatMap(call(session.backend.get(id)), Option.match({
    onNone: () => notFound(id, session),
    onSome: Effect.succeed
  }))

const errorText = (error: TaskRecord["error"]) => error === undefined ? "" : `${error._tag}: ${error.message}`

/** A task's record as text: its fields, then its history as a table. */
export const renderStatus = (r: TaskRecord, now: number): string => {
  const lines: Array<[string, string]> = [
    ["task", `${r.id}  ${r.task}`],
    ["queue", r.queue],
    ["state", r.revoked === true && !finalStates.has(r.state) ? `${r.state} (revoke pending)` : r.state],
    ["retries", String(r.retries)],
    ["submitted", `${Format.time(r.submittedAt)} (${Format.ago(r.submittedAt, now)})`],
    ["updated", `${Format.time(r.updatedAt)} (${Format.ago(r.updatedAt, now)})`]
  ]
  if (r.eta !== undefined) lines.push(["eta", Format.time(r.eta)])
  if (r.result !== undefined) lines.push(["result", Format.json(r.result)])
  if (r.error !== undefined) lines.push(["error", errorText(r.error)])
  if (r.meta !== undefined) lines.push(["meta", Format.json(r.meta)])
  const width = Math.max(...lines.map(([k]) => k.length))
  const head = lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n")
  if (r.history.length === 0) return `${head}\n\nhistory: no attempt yet`
  const rows = r.history.map((a) => [
    String(a.attempt),
    a.worker,
    Format.time(a.startedAt),
    Format.duration(a.endedAt - a.startedAt),
    a.outcome,
    a.error === undefined ? "" : Format.clip(errorText(a.error), 80),
    a.countdown === undefined ? "" : Format.duration(a.countdown)
  ])
  return `${head}\n\nhistory\n${Format.table(["#", "worker", "started", "took", "outcome", "error", "next in"], rows)}`
}

/**
 * `errand status <id>`.
 *
 * @since 0.1.0
 */
export const status = Command.make("status", { id: idArgument, json: jsonFlag, ...Connection.flags }, (input) =>
  withSession(input, (session) =>
    Effect.gen(function*() {
      const record = yield* getRecord(session, input.id)
      const now = yield* Clock.currentTimeMillis
      yield* Console.log(input.json ? JSON.stringify(record, null, 2) : renderStatus(record, now))
    }))).pipe(
    Command.withDescription(
      "Show a task: state, retries, result or error, and one line per attempt (worker, start, duration, " +
        "outcome, error, countdown to the next try)"
    ),
    Command.withExamples([{ command: "errand status 3b1f0c2e-... --json", description: "The record as JSON" }])
  )

/**
 * `errand inspect`.
 *
 * @since 0.1.0
 */
export const inspect = Command.make("inspect", { json: jsonFlag, ...Connection.flags }, (input) =>
  withSession(input, (session) =>
    Effect.gen(function*() {
      const workers = yield* call(yield* need(session.broker.workers, "listing workers"))
      const known = yield* call(yield* need(session.broker.queues, "listing queues"))
      const names = [...new Set([...known, ...workers.flatMap((w) => w.queues)])].sort()
      const queues = yield* call(session.broker.stats(names))
      const now = yield* Clock.currentTimeMillis
      const order = { alive: 0, gone: 1, stopped: 2 } as const
      const listed = workers
        .map((w) => ({ ...w, status: workerStatus(w, now) }))
        .sort((a, b) => order[a.status] - order[b.status] || a.startedAt - b.startedAt)
      if (input.json) {
        return yield* Console.log(JSON.stringify({ at: now, workers: listed, queues }, null, 2))
      }
      const workerRows = listed.map((w) => [
        w.id,
        w.host,
        String(w.pid),
        w.queues.join(","),
        String(w.concurrency),
        w.status === "alive" && w.inFlight !== undefined ? String(w.inFlight) : "",
        Format.ago(w.startedAt, now),
        Format.ago(w.heartbeatAt, now),
        w.status === "gone"
          ? "gone (no heartbeat for " + Format.duration(now - w.heartbeatAt) + ")"
          : w.status === "stopped"
          ? "stopped"
          : "alive"
      ])
      const queueRows = queues.map((q) => [q.queue, String(q.ready), String(q.delayed), String(q.running), String(q.dead)])
      yield* Console.log(
        [
          `${session.where}`,
          "",
          `workers: ${listed.filter((w) => w.status === "alive").length} alive, ${
            listed.filter((w) => w.status === "gone").length
          } gone, ${listed.filter((w) => w.status === "stopped").length} stopped`,
          workerRows.length === 0
            ? "(no worker registered)"
            : Format.table(
              ["id", "host", "pid", "queues", "concurrency", "held", "started", "last heartbeat", "status"],
              workerRows
            ),
          "",
          `queues: ${queues.length}`,
          queueRows.length === 0
            ? "(no queue known)"
            : Format.table(["queue", "ready", "delayed", "running", "dead"], queueRows)
        ].join("\n")
      )
    }))).pipe(
    Command.withDescription(
      "Show the workers (id, host, pid, queues, concurrency, last heartbeat; alive, gone when they stopped " +
        "heartbeating, or stopped) and per-queue counts: ready, delayed, running, dead"
    )
  )

/** States in which a task's handler may be running. */
const isRunning = (state: string) => !finalStates.has(state) && !["PENDING", "RECEIVED", "RETRY"].includes(state)

/**
 * `errand revoke <id> [--terminate]`.
 *
 * @since 0.1.0
 */
export const revoke = Command.make("revoke", {
  id: idArgument,
  terminate: Flag.Boolean("terminate").pipe(
    Flag.withDescription(
      "Also stop it if it is running: its worker interrupts it at its next heartbeat and records it REVOKED"
    ),
    Flag.withDefault(false)
  ),
  wait: Flag.String("wait").pipe(
    Flag.withMetavar("duration"),
    Flag.withDescription("How long to wait for a running task to stop (default 30s)"),
    Flag.withDefault("30s"),
    Flag.mapTryCatch(Format.parseDuration, messageOf)
  ),
  ...Connection.flags
}, (input) =>
  withSession(input, (session) =>
    Effect.gen(function*() {
      const before = yield* getRecord(session, input.id)
      const name = `task ${input.id} (${before.task})`
      if (finalStates.has(before.state)) {
        return yield* Console.log(`${name} already ended ${before.state}; nothing to revoke`)
      }
      if (isRunning(before.state) && !input.terminate) {
        return yield* fail(
          `${name} is running (${before.state}); not revoked. Pass --terminate to interrupt it ` +
            `(its worker stops it at its next heartbeat and records it REVOKED)`
        )
      }
      const result = yield* call(session.broker.revoke(input.id))
      switch (result) {
        case "unknown":
          return yield* notFound(input.id, session)
        case "final":
          return yield* Console.log(`${name} ended before it could be revoked; nothing to revoke`)
        case "revoked":
          return yield* Console.log(`${name} revoked: it was waiting (${before.state}) and will not run`)
        case "running": {
          yield* Console.log(`${name} is held by a worker: revoke requested, waiting for its worker to stop it`)
          const final = yield* call(session.backend.awaitFinal(input.id)).pipe(Effect.timeoutOption(input.wait))
          if (Option.isNone(final) || Option.isNone(final.value)) {
            return yield* fail(
              `${name}: its worker has not stopped it after ${Format.duration(input.wait)} ` +
                `(is the worker alive? \`errand inspect\`); it stays flagged and is revoked when next claimed`
            )
          }
          const record = final.value.value
          return yield* record.state === "REVOKED"
            ? Console.log(`${name} revoked: its worker stopped it`)
            : Console.log(`${name} ended ${record.state} before its worker saw the revoke`)
        }
      }
    }))).pipe(
    Command.withDescription(
      "Revoke a task: a waiting one is removed and marked REVOKED; a running one only with --terminate"
    )
  )

/**
 * `errand retry <id>`.
 *
 * @since 0.1.0
 */
export const retry = Command.make("retry", { id: idArgument, ...Connection.flags }, (input) =>
  withSession(input, (session) =>
    Effect.gen(function*() {
      const before = yield* getRecord(session, input.id)
      const name = `task ${input.id} (${before.task})`
      const again = yield* call(session.broker.redeliver(input.id))
      if (again) {
        return yield* Console.log(
          `${name} queued again on ${before.queue}, ready now; it had ended ${before.state}` +
            `${before.error === undefined ? "" : ` with ${before.error._tag}`} after ${before.retries} ` +
            `${before.retries === 1 ? "retry" : "retries"}`
        )
      }
      switch (before.state) {
        case "SUCCESS":
          return yield* fail(`${name} succeeded; nothing to retry`)
        case "REVOKED":
          return yield* fail(`${name} was revoked; not run again (submit it anew)`)
        case "FAILURE":
          return yield* fail(`${name} failed, but its message is no longer kept; submit it anew`)
        default:
          return yield* fail(`${name} is ${before.state}, not failed: it is still queued or running; nothing to retry`)
      }
    }))).pipe(
    Command.withDescription(
      "Run a failed or dead-lettered task again: back to its queue, ready now, its history and retry count kept"
    )
  )

/** Asks a yes/no question on the terminal (or reads the answer from a pipe); no answer is no. */
const confirm = (question: string): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: false })
    let answered = false
    process.stdout.write(question)
    rl.once("line", (line) => {
      answered = true
      rl.close()
      resume(Effect.succeed(/^y(es)?$/i.test(line.trim())))
    })
    rl.once("close", () => {
      if (!answered) resume(Effect.succeed(false))
    })
    return Effect.sync(() => rl.close())
  })

/**
 * `errand purge <queue>`.
 *
 * @since 0.1.0
 */
export const purge = Command.make("purge", {
  queue: Argument.String("queue").pipe(Argument.withDescription("The queue whose waiting tasks to remove")),
  yes: Flag.Boolean("yes").pipe(
    Flag.withAlias("y"),
    Flag.withDescription("Do not ask before deleting"),
    Flag.withDefault(false)
  ),
  ...Connection.flags
}, (input) =>
  withSession(input, (session) =>
    Effect.gen(function*() {
      const purgeOp = yield* need(session.broker.purge, "purging queues")
      const [stats] = yield* call(session.broker.stats([input.queue]))
      const waiting = stats!.ready + stats!.delayed
      if (waiting === 0) {
        const known = session.broker.queues === undefined ? [] : yield* call(session.broker.queues)
        return yield* Console.log(
          known.includes(input.queue)
            ? `queue ${input.queue} has no waiting tasks; nothing purged`
            : `queue ${input.queue} is not known to ${session.where} (known: ${known.join(", ") || "none"}); nothing purged`
        )
      }
      if (!input.yes) {
        const ok = yield* confirm(
          `Delete ${waiting} waiting ${waiting === 1 ? "task" : "tasks"} (${stats!.ready} ready, ${stats!.delayed} ` +
            `delayed) from queue ${input.queue} in ${session.where}? Running (${stats!.running}) and dead ` +
            `(${stats!.dead}) tasks are kept. [y/N] `
        )
        if (!ok) return yield* fail(`nothing purged from queue ${input.queue}`, ExitCode.declined)
      }
      const [removed] = yield* call(purgeOp([input.queue]))
      yield* Console.log(
        `purged ${removed} ${removed === 1 ? "task" : "tasks"} from queue ${input.queue}; ` +
          `their records say REVOKED (TaskRevoked)`
      )
    }))).pipe(
    Command.withDescription(
      "Delete the waiting (ready and delayed) tasks of a queue; their records become REVOKED. Asks first"
    )
  )
