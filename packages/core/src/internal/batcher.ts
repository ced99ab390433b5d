import { Deferred, Effect, Exit, Queue } from "effect"

/**
 * Collects single requests made around the same time into one batch call:
 * while a batch is in flight, new requests queue up and go together in the
 * next. Under load this turns one round trip per task into one per batch;
 * when idle, a request goes out at once.
 *
 * @internal
 */
export interface Batcher<I, O, E> {
  readonly run: (item: I) => Effect.Effect<O, E>
}

/**
 * Starts a batcher in the current scope.
 *
 * @internal
 */
export const make = <I, O, E, R>(
  call: (batch: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E, R>,
  options: { readonly maxBatch: number }
) =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<readonly [I, Deferred.Deferred<O, E>]>()
    const loop = Effect.gen(function*() {
      while (true) {
        const first = yield* Queue.takeBetween(queue, 1, options.maxBatch)
        const items = first.map(([item]) => item)
        const exit = yield* Effect.exit(call(items))
        if (Exit.isSuccess(exit)) {
          for (let i = 0; i < first.length; i++) Deferred.doneUnsafe(first[i]![1], Effect.succeed(exit.value[i]!))
        } else {
          for (const [, d] of first) Deferred.doneUnsafe(d, exit as Exit.Exit<never, E>)
        }
      }
    })
    yield* Effect.forkScoped(loop)
    const run = (item: I): Effect.Effect<O, E> =>
      Effect.suspend(() => {
        const d = Deferred.makeUnsafe<O, E>()
        Queue.offerUnsafe(queue, [item, d] as const)
        return Deferred.await(d)
      })
    return { run } satisfies Batcher<I, O, E>
  })
