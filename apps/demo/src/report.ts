/**
 * Plain-text rendering of the demo's results: per-attempt history tables,
 * the checks, and the one-line summary.
 */
import type { Client } from "@errand/core"
import { passed, refSeconds, type ScenarioResult } from "./scenarios.ts"

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): Array<string> => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)]
}

const ms = (n: number) => `${n} ms`

/** The task's history from `client.status`: one row per attempt, times since submission. */
export const historyTable = (status: Client.Status): Array<string> =>
  table(
    ["attempt", "worker", "started", "ended", "outcome", "countdown", "error"],
    status.history.map((a) => [
      String(a.attempt),
      a.worker,
      `${ms(a.startedAt - status.submittedAt)} (${refSeconds(a.startedAt - status.submittedAt)})`,
      ms(a.endedAt - status.submittedAt),
      a.outcome,
      a.countdown === undefined ? "-" : `${ms(a.countdown)} (${refSeconds(a.countdown)})`,
      a.error === undefined ? "-" : `${a.error._tag}: ${a.error.message}`
    ])
  )

/** The history, the final state and the checks of one scenario. */
export const scenarioReport = (index: number, result: ScenarioResult): Array<string> => [
  `${index}. ${result.title}`,
  `   task ${result.task} ${result.jobId}: state ${result.status.state}, retries ${result.status.retries}` +
  (result.status.error === undefined || result.status.state === "SUCCESS" ? "" : `, error ${result.status.error._tag}`),
  ...historyTable(result.status).map((l) => `   ${l}`),
  ...result.checks.map((c) => `   ${c.ok ? "ok  " : "FAIL"} ${c.label}${c.ok || c.detail === undefined ? "" : `: ${c.detail}`}`)
]

/** A short phrase per scenario for the summary line. */
export const summaryOf = (result: ScenarioResult): string => {
  const s = result.status
  const path = s.history.map((a) => a.error?._tag === "WorkerLost" || a.error?._tag === "WorkerShutdown"
    ? `${a.outcome}(${a.error._tag})`
    : a.outcome)
  const runs: Array<[string, number]> = []
  for (const step of path) {
    const last = runs[runs.length - 1]
    if (last !== undefined && last[0] === step) last[1]++
    else runs.push([step, 1])
  }
  const compact = runs.map(([step, n]) => (n > 1 ? `${step} x${n}` : step)).join(" -> ")
  return `${result.key} ${passed(result) ? "ok" : "FAILED"} [${compact}]`
}
