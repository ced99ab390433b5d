/**
 * Readable assertions on a task's history: one expected entry per attempt,
 * each naming only what the test cares about (outcome, countdown, error,
 * worker, times). A mismatch fails with a table of expected and actual
 * attempts that marks what differs, and carries `actual` / `expected` so
 * vitest shows a diff.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@errand/core"
 * import * as History from "@errand/core/testing/History"
 *
 * const check = (client: Client.Service, id: string) =>
 *   Effect.gen(function*() {
 *     const status = yield* client.status(id)
 *     yield* History.expect(status, [
 *       { outcome: "RETRY", countdown: "10 seconds", error: "GatewayUnavailable" },
 *       { outcome: "RETRY", countdown: "20 seconds" },
 *       "SUCCESS"
 *     ])
 *   })
 * ```
 *
 * @since 0.1.0
 */
import { Duration, Effect } from "effect"
import type { Attempt, Outcome, TaskRecord } from "../Message.ts"

/**
 * What one attempt should look like. Every field is optional: only the
 * fields given are compared. A bare outcome (`"SUCCESS"`) is short for
 * `{ outcome: "SUCCESS" }`.
 *
 * - `countdown`: the delay chosen for the next try; `null` means none.
 * - `error`: the error's `_tag`, or `{ _tag, message }` where `message` is a
 *   substring or a RegExp; `null` means no error.
 * - `startedAt`, `endedAt`: time since the test began (the TestClock's 0).
 * - `took`: `endedAt - startedAt`.
 *
 * @example
 * ```ts
 * import type * as History from "@errand/core/testing/History"
 *
 * const lost: History.Expected = { outcome: "LOST", worker: "w-1", error: { _tag: "WorkerLost", message: /w-1/ } }
 * ```
 *
 * @since 0.1.0
 */
export type Expected = Outcome | {
  readonly outcome?: Outcome | undefined
  readonly attempt?: number | undefined
  readonly worker?: string | undefined
  readonly countdown?: Duration.Input | null | undefined
  readonly error?: string | { readonly _tag?: string | undefined; readonly message?: string | RegExp | undefined } | null | undefined
  readonly startedAt?: Duration.Input | undefined
  readonly endedAt?: Duration.Input | undefined
  readonly took?: Duration.Input | undefined
}

/**
 * A history that does not match. Its message is the full comparison;
 * `actual` and `expected` hold one line per attempt, reduced to the fields
 * that were expected, for a test runner's diff.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as History from "@errand/core/testing/History"
 *
 * declare const status: Parameters<typeof History.expect>[0]
 * const failed = Effect.flip(Effect.catchDefect(History.expect(status, ["SUCCESS"]), (e) => Effect.fail(e)))
 * ```
 *
 * @since 0.1.0
 */
export class HistoryMismatch extends Error {
  override readonly name = "HistoryMismatch"
  /** Read by vitest to show a diff. */
  readonly showDiff = true
  constructor(
    message: string,
    readonly actual: string,
    readonly expected: string
  ) {
    super(message)
  }
}

const ms = (input: Duration.Input) => Duration.toMillis(Duration.fromInputUnsafe(input))

const fmt = (millis: number) => Duration.format(Duration.millis(millis))

const normalize = (e: Expected): Exclude<Expected, Outcome> => (typeof e === "string" ? { outcome: e } : e)

type Field = "outcome" | "attempt" | "worker" | "countdown" | "error" | "startedAt" | "endedAt" | "took"

const fields: ReadonlyArray<Field> = ["outcome", "attempt", "worker", "countdown", "error", "startedAt", "endedAt", "took"]

const showExpected = (e: Exclude<Expected, Outcome>, field: Field): string => {
  switch (field) {
    case "outcome":
      return e.outcome!
    case "attempt":
      return `attempt ${e.attempt}`
    case "worker":
      return `on ${e.worker}`
    case "countdown":
      return e.countdown === null ? "no countdown" : `countdown ${fmt(ms(e.countdown!))}`
    case "error": {
      const err = e.error
      if (err === null) return "no error"
      if (typeof err === "string") return `error ${err}`
      const msg = err!.message === undefined ? "" : ` ~ ${err!.message instanceof RegExp ? err!.message : JSON.stringify(err!.message)}`
      return `error ${err!._tag ?? "*"}${msg}`
    }
    case "startedAt":
      return `started ${fmt(ms(e.startedAt!))}`
    case "endedAt":
      return `ended ${fmt(ms(e.endedAt!))}`
    case "took":
      return `took ${fmt(ms(e.took!))}`
  }
}

const showActual = (a: Attempt, field: Field, e?: Exclude<Expected, Outcome>): string => {
  switch (field) {
    case "outcome":
      return a.outcome
    case "attempt":
      return `attempt ${a.attempt}`
    case "worker":
      return `on ${a.worker}`
    case "countdown":
      return a.countdown === undefined ? "no countdown" : `countdown ${fmt(a.countdown)}`
    case "error": {
      if (a.error === undefined) return "no error"
      const wantsMessage = e !== undefined && typeof e.error === "object" && e.error !== null && e.error.message !== undefined
      return wantsMessage ? `error ${a.error._tag} ~ ${JSON.stringify(a.error.message)}` : `error ${a.error._tag}`
    }
    case "startedAt":
      return `started ${fmt(a.startedAt)}`
    case "endedAt":
      return `ended ${fmt(a.endedAt)}`
    case "took":
      return `took ${fmt(a.endedAt - a.startedAt)}`
  }
}

const matches = (a: Attempt, e: Exclude<Expected, Outcome>, field: Field): boolean => {
  switch (field) {
    case "outcome":
      return a.outcome === e.outcome
    case "attempt":
      return a.attempt === e.attempt
    case "worker":
      return a.worker === e.worker
    case "countdown":
      return e.countdown === null ? a.countdown === undefined : a.countdown === ms(e.countdown!)
    case "error": {
      const err = e.error
      if (err === null) return a.error === undefined
      if (a.error === undefined) return false
      if (typeof err === "string") return a.error._tag === err
      if (err!._tag !== undefined && a.error._tag !== err!._tag) return false
      const m = err!.message
      if (m === undefined) return true
      return typeof m === "string" ? a.error.message.includes(m) : m.test(a.error.message)
    }
    case "startedAt":
      return a.startedAt === ms(e.startedAt!)
    case "endedAt":
      return a.endedAt === ms(e.endedAt!)
    case "took":
      return a.endedAt - a.startedAt === ms(e.took!)
  }
}

const attempts = (k: number) => `${k} ${k === 1 ? "attempt" : "attempts"}`

const given = (e: Exclude<Expected, Outcome>): ReadonlyArray<Field> => fields.filter((f) => e[f] !== undefined)

/**
 * One attempt as a short line: outcome, error, countdown, worker, times.
 *
 * @example
 * ```ts
 * import * as History from "@errand/core/testing/History"
 *
 * History.line({ attempt: 0, worker: "w-1", startedAt: 0, endedAt: 0, outcome: "RETRY", countdown: 10_000,
 *   error: { _tag: "Flaky", message: "boom" } })
 * // "#0 RETRY error Flaky: boom, countdown 10s, on w-1, at 0 (took 0)"
 * ```
 *
 * @since 0.1.0
 */
export const line = (a: Attempt): string => {
  const parts = [`#${a.attempt} ${a.outcome}`]
  const details: Array<string> = []
  if (a.error !== undefined) details.push(`error ${a.error._tag}: ${truncate(a.error.message, 80)}`)
  if (a.countdown !== undefined) details.push(`countdown ${fmt(a.countdown)}`)
  details.push(`on ${a.worker}`, `at ${fmt(a.startedAt)} (took ${fmt(a.endedAt - a.startedAt)})`)
  return `${parts[0]} ${details.join(", ")}`
}

const truncate = (s: string, n: number) => (s.length <= n ? s : `${s.slice(0, n - 1)}…`)

/**
 * The history as short lines, one per attempt: handy for logs, snapshots and
 * property counterexamples.
 *
 * @example
 * ```ts
 * import * as History from "@errand/core/testing/History"
 *
 * declare const status: Parameters<typeof History.summarize>[0]
 * console.log(History.summarize(status).join("\n"))
 * ```
 *
 * @since 0.1.0
 */
export const summarize = (status: TaskRecord | ReadonlyArray<Attempt>): ReadonlyArray<string> =>
  ("history" in status ? status.history : status).map(line)

/**
 * Compares a history with the expected entries. `undefined` when they
 * match, else the report a failed assertion shows.
 *
 * @example
 * ```ts
 * import * as History from "@errand/core/testing/History"
 *
 * declare const status: Parameters<typeof History.diff>[0]
 * const report = History.diff(status, ["RETRY", "SUCCESS"])
 * if (report !== undefined) console.log(report)
 * ```
 *
 * @since 0.1.0
 */
export const diff = (
  status: TaskRecord | ReadonlyArray<Attempt>,
  expected: ReadonlyArray<Expected>
): { readonly message: string; readonly actual: string; readonly expected: string } | undefined => {
  const history = "history" in status ? status.history : status
  const wanted = expected.map(normalize)
  const n = Math.max(history.length, wanted.length)
  const rows: Array<string> = []
  const actualLines: Array<string> = []
  const expectedLines: Array<string> = []
  let bad = history.length !== wanted.length
  for (let i = 0; i < n; i++) {
    const a = history[i]
    const e = wanted[i]
    if (e === undefined) {
      rows.push(`  ✗ #${i} expected nothing, got:  ${line(a!)}`)
      actualLines.push(line(a!))
      continue
    }
    const fs = given(e)
    const exp = fs.map((f) => showExpected(e, f)).join(", ") || "(anything)"
    expectedLines.push(exp)
    if (a === undefined) {
      rows.push(`  ✗ #${i} expected ${exp}\n        got nothing (the history has ${attempts(history.length)})`)
      continue
    }
    const wrong = fs.filter((f) => !matches(a, e, f))
    actualLines.push(fs.map((f) => showActual(a, f, e)).join(", ") || "(anything)")
    if (wrong.length === 0) {
      rows.push(`  ✓ #${i} ${exp}`)
    } else {
      bad = true
      rows.push(
        `  ✗ #${i} expected ${exp}\n        got      ${line(a)}\n        differs: ${
          wrong.map((f) => `${showExpected(e, f)} ≠ ${showActual(a, f, e)}`).join("; ")
        }`
      )
    }
  }
  if (!bad) return undefined
  const who = "history" in status ? `The history of task ${status.id} (${status.task}, ${status.state})` : "The history"
  const count = history.length === wanted.length
    ? attempts(history.length)
    : `expected ${attempts(wanted.length)}, got ${history.length}`
  return {
    message: `${who} does not match (${count}):\n${rows.join("\n")}`,
    actual: actualLines.join("\n"),
    expected: expectedLines.join("\n")
  }
}

/**
 * Asserts the history: succeeds when every attempt matches its expected
 * entry and there are as many attempts as entries; otherwise dies with a
 * `HistoryMismatch` whose message marks each attempt ✓ or ✗ and says which
 * fields differ.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@errand/core"
 * import * as History from "@errand/core/testing/History"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* Client.Client
 *   const status = yield* client.status("billing.charge-0")
 *   yield* History.expect(status, [
 *     { outcome: "LOST", error: "WorkerLost", countdown: "10 seconds" },
 *     { outcome: "SUCCESS", worker: "w-2" }
 *   ])
 * })
 * // ✗ #1 expected SUCCESS, on w-2
 * //       got      #1 SUCCESS on w-3, at 20s (took 0)
 * //       differs: on w-2 ≠ on w-3
 * ```
 *
 * @since 0.1.0
 */
export const expect = (
  status: TaskRecord | ReadonlyArray<Attempt>,
  expected: ReadonlyArray<Expected>
): Effect.Effect<void> =>
  Effect.suspend(() => {
    const result = diff(status, expected)
    return result === undefined
      ? Effect.void
      : Effect.die(new HistoryMismatch(result.message, result.actual, result.expected))
  })
