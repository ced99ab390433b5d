import { Deferred, Effect, Exit, type Scope } from "effect"

/**
 * Collects single requests made around the same time into one batch call:
 * while a batch is in flight, new requests queue up and go together in the
 * next. Under load this turns one round trip per task into one per batch;
 * when idle, a request goes out at once.
 *
 * Per batch: the items go in one `call`, in the order they came; the i-th
 * result goes to the i-th item; a failure (or defect) of the call goes to
 * every item of the batch.
 *
 * @internal
 */
export interface Batcher<I, O, E> {
  readonly run: (item: I) => Effect.Effect<O, E>
}

/**
 * Options of `make`.
 *
 * @internal
 */
export interface Options {
  /** The most items in one call. */
  readonly maxBatch: number
  /**
   * When no batch is in flight, the caller's own fiber sends its one-item
   * batch (no hand-off to the loop fiber: one suspend/resume less per
   * request when idle). The call then runs in the caller's fiber: if the
   * caller is interrupted, so is the call. Without it (the default) every
   * call runs in the loop fiber, so a request goes out even when its caller
   * stops waiting. Requests that come while a call is in flight queue up
   * for the loop fiber either way.
   */
  readonly direct?: boolean | undefined
}

/**
 * Starts a batcher in the current scope.
 *
 * @internal
 */
export function make<I, O, E>(
  call: (batch: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E>,
  options: Options
): Effect.Effect<Batcher<I, O, E>, never, Scope.Scope>
export function make<I, O, E, R>(
  call: (batch: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E, R>,
  options: Options & { readonly direct?: false | undefined }
): Effect.Effect<Batcher<I, O, E>, never, R | Scope.Scope>
export function make<I, O, E, R>(
  call: (batch: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E, R>,
  options: Options
): Effect.Effect<Batcher<I, O, E>, never, R | Scope.Scope> {
  return Effect.gen(function*() {
    // a direct call runs in the caller's fiber, which may lack `R`: the
    // overloads allow `direct` only for calls that need no services
    const direct = options.direct === true
    let items: Array<I> = []
    let waiting: Array<Deferred.Deferred<O, E>> = []
    /** A call is in flight (the loop's or a direct one). */
    let busy = false
    /** Completed to wake the loop; a fresh one is made each time the loop sleeps. */
    let kick = Deferred.makeUnsafe<void>()
    let sleeping = false

    const wakeLoop = () => {
      if (sleeping) {
        sleeping = false
        Deferred.doneUnsafe(kick, Exit.void)
      }
    }

    const loop = Effect.gen(function*() {
      while (true) {
        if (items.length === 0 || (busy && direct)) {
          kick = Deferred.makeUnsafe<void>()
          sleeping = true
          yield* Deferred.await(kick)
          continue
        }
        busy = true
        const n = Math.min(items.length, options.maxBatch)
        const batch = n === items.length ? items : items.slice(0, n)
        const ds = n === waiting.length ? waiting : waiting.slice(0, n)
        if (n === items.length) {
          items = []
          waiting = []
        } else {
          items = items.slice(n)
          waiting = waiting.slice(n)
        }
        const exit = yield* Effect.exit(call(batch))
        if (Exit.isSuccess(exit)) {
          for (let i = 0; i < ds.length; i++) Deferred.doneUnsafe(ds[i]!, Exit.succeed(exit.value[i]!))
        } else {
          for (const d of ds) Deferred.doneUnsafe(d, exit as Exit.Exit<never, E>)
        }
        busy = false
      }
    })
    yield* Effect.forkScoped(loop)

    const directDone = Effect.sync(() => {
      busy = false
      if (items.length > 0) wakeLoop()
    })

    const run = (item: I): Effect.Effect<O, E> =>
      Effect.suspend(() => {
        if (direct && !busy && items.length === 0) {
          busy = true
          return call([item]).pipe(
            Effect.map((out) => out[0]!),
            Effect.onExit(() => directDone)
          ) as Effect.Effect<O, E>
        }
        const d = Deferred.makeUnsafe<O, E>()
        items.push(item)
        waiting.push(d)
        if (!busy) wakeLoop()
        return Deferred.await(d)
      })
    return { run } satisfies Batcher<I, O, E>
  })
}
