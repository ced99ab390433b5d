/**
 * Instructions per task, for A/B comparisons of the worker and the memory
 * broker that the machine's load does not move: the in-memory run of
 * workload (6), with a clock that advances one microsecond a read (so the
 * worker's batch sizing does not depend on timing), run under callgrind.
 *
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *     node --single-threaded --predictable src/count.ts 10000
 *   (the same with 50000; instructions per task = (I50k − I10k) / 40,000)
 *
 * (`pnpm --filter @errand/bench count 10000` runs it without callgrind.) Repeat
 * runs agree within ~2%: compare changes larger than that, or repeat.
 */
import { Client, MemoryBroker, Task, Worker } from "@errand/core"
import { Clock, Deferred, Effect, Layer } from "effect"
import { counter, noopTask } from "./task.ts"

const N = Number(process.argv[2] ?? 10_000)

let ticks = 1_700_000_000_000_000n
const tick = () => (ticks += 1000n)
/** A clock read advances it by 1 µs; sleeps never end. */
const countingClock: Clock.Clock = {
  currentTimeMillisUnsafe: () => Number(tick() / 1_000_000n),
  currentTimeMillis: Effect.sync(() => Number(tick() / 1_000_000n)),
  currentTimeNanosUnsafe: tick,
  currentTimeNanos: Effect.sync(tick),
  monotonicTimeNanosUnsafe: tick,
  monotonicTimeNanos: Effect.sync(tick),
  // no timer fires: what the run needs happens without one (the heartbeat,
  // whose renewals would come at wall-clock times, never does)
  sleep: () => Effect.never
}

const task = noopTask("bench", false)

const program = Effect.scoped(Effect.gen(function*() {
  const client = yield* Client.Client
  const handled = counter(N)
  yield* Worker.make({
    tasks: [Task.implement(task, handled.handle)],
    concurrency: 50,
    prefetch: 200
  })
  const payloads = Array.from({ length: N }, (_, n) => ({ n, t: 0 }))
  yield* client.submitMany(task, payloads)
  yield* Deferred.await(handled.finished)
})).pipe(
  Effect.provide(Client.layer.pipe(Layer.provideMerge(MemoryBroker.layer))),
  Effect.provideService(Clock.Clock, countingClock)
)

Effect.runPromise(program).then(() => console.log(`${N} tasks handled`))
