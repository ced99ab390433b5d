import { Effect, Exit, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import { Broker, Client, MemoryBroker, ResultBackend, type Task, Worker } from "@errand/core"

/** Lets every fiber that can run, run (a few scheduler rounds). */
export const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/** Advances the TestClock one second at a time, letting fibers run between steps. */
export const advance = (seconds: number) =>
  Effect.gen(function*() {
    yield* settle
    for (let i = 0; i < seconds; i++) {
      yield* TestClock.adjust("1 second")
      yield* settle
    }
  })

/** The memory broker shared by a test's workers and client. */
export const brokerLayer = MemoryBroker.layer

/** Client + one worker for `tasks`, on a fresh memory broker. */
export const app = <const Tasks extends ReadonlyArray<Task.AnyImplemented>>(options: Worker.Options<Tasks>) =>
  Layer.mergeAll(Client.layer, Worker.layer(options)).pipe(Layer.provideMerge(MemoryBroker.layer))

/** Starts a worker in a scope of its own, so a test can close or kill it alone. */
export const startWorker = <const Tasks extends ReadonlyArray<Task.AnyImplemented>>(options: Worker.Options<Tasks>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const worker = yield* Worker.make(options).pipe(Scope.provide(scope))
    return { worker, scope, close: Scope.close(scope, Exit.void) }
  })

export type Services = Broker.Broker | ResultBackend.ResultBackend | Client.Client | MemoryBroker.MemoryStore

/** Client + memory broker, no worker (tests start their own). */
export const base: Layer.Layer<Services> = Client.layer.pipe(Layer.provideMerge(MemoryBroker.layer))

/**
 * Advances the TestClock a second at a time until the memory broker holds no
 * ready, delayed or leased task (at most `maxSeconds`): assertions then see
 * every task ended, however the scheduler interleaved the fibers.
 */
export const drainAll = (maxSeconds: number) =>
  Effect.gen(function*() {
    const store = yield* MemoryBroker.MemoryStore
    yield* settle
    for (let i = 0; i < maxSeconds && (yield* store.pending) > 0; i++) {
      yield* TestClock.adjust("1 second")
      yield* settle
    }
  })
