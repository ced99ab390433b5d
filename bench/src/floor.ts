/**
 * The floor of a batch-oriented worker loop on the memory broker: no per-task
 * fibers, batchers, spans or Schema decode of the wire message. Compare its
 * CPU per task with the in-memory row of the bench (`Worker.make` on the same
 * broker) to see how much of a task's cost is the worker's own machinery.
 *
 *   node src/floor.ts [tasks=100000] [inline|forEach50]
 */
import { type Broker, MemoryBroker } from "@errand/core"
import { Clock, Effect, Exit, Schema } from "effect"

const N = Number(process.argv[2] ?? 100_000)
const mode = process.argv[3] ?? "inline"
const Payload = Schema.Struct({ n: Schema.Number, t: Schema.Number })
const decode = Schema.decodeUnknownExit(Schema.toCodecJson(Payload))
const handler = (p: { readonly n: number }) => Effect.sync(() => p.n)

const program = Effect.gen(function*() {
  const { broker } = yield* MemoryBroker.make
  const now = yield* Clock.currentTimeMillis
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const submissions: Array<Broker.Submission> = []
  for (let i = 0; i < N; i++) {
    submissions.push({
      message: {
        id: crypto.randomUUID(),
        task: "bench.noop",
        queue: "q",
        payload: { n: i, t: 0 },
        headers: {},
        priority: 5,
        retries: 0,
        submittedAt: now
      },
      dueAt: now
    })
  }
  for (let i = 0; i < N; i += 5000) yield* broker.enqueue(submissions.slice(i, i + 5000))
  const runOne = (d: Broker.Delivery): Effect.Effect<Exit.Exit<unknown, unknown>> => {
    const payload = decode((d.message as { readonly payload: unknown }).payload)
    return Exit.isSuccess(payload) ? Effect.exit(handler(payload.value)) : Effect.succeed(payload)
  }
  let done = 0
  while (done < N) {
    const batch = yield* broker.claim({ queues: ["q"], worker: "w", max: 500, leaseMillis: 10_000, waitMillis: 0 })
    const startedAt = yield* Clock.currentTimeMillis
    yield* broker.start(batch.map((d) => ({ id: d.id, token: d.token, worker: "w", startedAt, ackEarly: false })))
    const exits = mode === "inline"
      ? yield* Effect.forEach(batch, runOne)
      : yield* Effect.forEach(batch, runOne, { concurrency: 50 })
    const endedAt = yield* Clock.currentTimeMillis
    yield* broker.complete(batch.map((d, i) => {
      const exit = exits[i]!
      return {
        id: d.id,
        token: d.token,
        state: "SUCCESS" as const,
        result: Exit.isSuccess(exit) ? exit.value : undefined,
        storeResult: false,
        keepRecord: false,
        attempt: { attempt: 0, worker: "w", startedAt, endedAt, outcome: "SUCCESS" as const }
      }
    }))
    done += batch.length
  }
  const cpu = process.cpuUsage(cpu0)
  const seconds = (performance.now() - t0) / 1000
  console.log(
    `${mode}: ${N} tasks, ${(N / seconds).toFixed(0)} tasks/s, CPU ${((cpu.user + cpu.system) / N).toFixed(2)} µs/task`
  )
})

Effect.runPromise(program)
