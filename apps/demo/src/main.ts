/**
 * errand demo: producer and workers in one process on the memory broker,
 * running the Celery seed scenarios with the clock compressed. Prints a live
 * view, then each task's history; exits non-zero unless every scenario ended
 * as expected, so it doubles as a smoke test.
 *
 *   pnpm demo                 # from the repository root
 *   ERRAND_LOG=info pnpm demo # also show errand's own log lines
 */
import { Cause, Clock, Effect, Exit, Layer, type LogLevel, References } from "effect"
import { Client, MemoryBroker } from "@errand/core"
import { scenarioReport, summaryOf } from "./report.ts"
import { all, MS_PER_REF_SECOND, passed, type ScenarioResult, STEP_MS } from "./scenarios.ts"

const SCENARIO_TIMEOUT = "8 seconds"

const levels: ReadonlyArray<LogLevel.LogLevel> = ["All", "Fatal", "Error", "Warn", "Info", "Debug", "Trace", "None"]
const logLevel = (): LogLevel.LogLevel => {
  const wanted = process.env.ERRAND_LOG?.toLowerCase()
  return levels.find((l) => l.toLowerCase() === wanted) ?? (wanted === "warning" ? "Warn" : "Error")
}

const print = (line = "") => Effect.sync(() => console.log(line))

const program = Effect.gen(function*() {
  const t0 = yield* Clock.currentTimeMillis
  yield* print("errand demo: the Celery seed task on the in-memory broker, producer and workers in one process")
  yield* print(`time is compressed: ${STEP_MS} ms of the demo = 10 s of the reference (${MS_PER_REF_SECOND} ms = 1 s),`)
  yield* print(`so the seed's countdowns of 10, 20, 30, 40, 50 s are Retry.linear({ step: "${STEP_MS} millis", maxRetries: 5 }).`)
  yield* print(`times are real ms since the scenario began; "(.. ref)" converts them to seconds of the reference.`)

  const results: Array<ScenarioResult> = []
  const broken: Array<string> = []
  for (const [i, scenario] of all.entries()) {
    yield* print()
    yield* print(`== ${i + 1}. ${scenario.title} ==`)
    const exit = yield* Effect.exit(Effect.timeout(scenario.run, SCENARIO_TIMEOUT))
    if (Exit.isSuccess(exit)) {
      results.push(exit.value)
    } else {
      const why = Cause.pretty(exit.cause)
      broken.push(`${scenario.key} did not finish within ${SCENARIO_TIMEOUT}: ${why}`)
      yield* print(`  FAIL: scenario ${scenario.key} did not finish: ${why}`)
    }
  }

  yield* print()
  yield* print("== history of each task (client.status(id).history; times since submission) ==")
  for (const [i, result] of results.entries()) {
    yield* print()
    for (const line of scenarioReport(i + 1, result)) yield* print(line)
  }

  const elapsed = ((yield* Clock.currentTimeMillis) - t0) / 1000
  const ok = results.filter(passed).length
  const allOk = broken.length === 0 && ok === all.length
  yield* print()
  yield* print(
    `SUMMARY: ${allOk ? "PASS" : "FAIL"} ${ok}/${all.length} scenarios as expected in ${elapsed.toFixed(1)} s: ` +
      [...results.map(summaryOf), ...broken.map((b) => b.split(":")[0]!)].join(" | ")
  )
  if (!allOk) {
    for (const r of results) {
      for (const c of r.checks) if (!c.ok) yield* print(`  ${r.key}: ${c.label}: ${c.detail ?? "failed"}`)
    }
    for (const b of broken) yield* print(`  ${b}`)
  }
  return allOk
})

const main = program.pipe(
  Effect.provide(Client.layer.pipe(Layer.provideMerge(MemoryBroker.layer))),
  Effect.provideService(References.MinimumLogLevel, logLevel())
)

Effect.runPromiseExit(main).then((exit) => {
  if (Exit.isSuccess(exit)) {
    process.exitCode = exit.value ? 0 : 1
  } else {
    console.error(`demo crashed:\n${Cause.pretty(exit.cause)}`)
    process.exitCode = 2
  }
})
