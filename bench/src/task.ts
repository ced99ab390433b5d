/**
 * The bench's task and its counting handler, shared by the workloads
 * (`errand.ts`) and the tools that run the same task (`count.ts`, `drain.ts`).
 */
import { Task } from "@errand/core"
import { Deferred, Effect, Schema } from "effect"

/**
 * The bench task: a no-op. `t` is the submit time (latency workload).
 * `stored`: true stores each result; false keeps nothing of a success
 * (`keepRecord: false`), as the peers' "results not stored" runs do
 * (BullMQ's `removeOnComplete`, Celery's `ignore_result`); absent, the
 * task's defaults (result stored).
 */
export const noopTask = (queue: string, stored?: boolean) =>
  Task.make("bench.noop", {
    payload: Schema.Struct({ n: Schema.Number, t: Schema.Number }),
    success: Schema.Number,
    queue,
    ...(stored === undefined ? {} : stored ? { storeResult: true } : { keepRecord: false })
  })

/**
 * Counts handled tasks: `tick` counts one more and completes `finished` at the
 * `tasks`-th; `handle` is the no-op's handler that does so and returns the
 * payload's `n`.
 */
export const counter = (tasks: number) => {
  const finished = Deferred.makeUnsafe<void>()
  let count = 0
  const tick = () => {
    if (++count === tasks) Deferred.doneUnsafe(finished, Effect.void)
  }
  return {
    finished,
    /** How many were handled so far. */
    count: () => count,
    tick,
    handle: (p: { readonly n: number }) =>
      Effect.sync(() => {
        tick()
        return p.n
      })
  }
}
