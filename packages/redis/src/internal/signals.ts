/**
 * In-process wake-ups keyed by a string (a queue name, a task id), fed by a
 * Redis pub/sub subscription.
 *
 * @internal
 */
import { Deferred, Effect, Exit } from "effect"

interface Entry {
  readonly deferred: Deferred.Deferred<void>
  refs: number
}

/**
 * A one-shot signal per key. Take the signal *before* checking the state you
 * wait for, then await it: a `fire` that happens in between is not missed.
 */
export class Signals {
  private readonly entries = new Map<string, Entry>()

  /** The current signal of `key`; pair with `release`. */
  acquire(key: string): Deferred.Deferred<void> {
    let entry = this.entries.get(key)
    if (entry === undefined) {
      entry = { deferred: Deferred.makeUnsafe<void>(), refs: 0 }
      this.entries.set(key, entry)
    }
    entry.refs++
    return entry.deferred
  }

  /** Gives back a signal taken with `acquire`. */
  release(key: string, deferred: Deferred.Deferred<void>): void {
    const entry = this.entries.get(key)
    if (entry !== undefined && entry.deferred === deferred && --entry.refs <= 0) {
      this.entries.delete(key)
    }
  }

  /** Wakes everyone waiting on `key`. */
  fire(key: string): void {
    const entry = this.entries.get(key)
    if (entry !== undefined) {
      this.entries.delete(key)
      Deferred.doneUnsafe(entry.deferred, Exit.void)
    }
  }

  /** Wakes everyone (after a gap in the subscription). */
  fireAll(): void {
    const entries = [...this.entries.values()]
    this.entries.clear()
    for (const entry of entries) Deferred.doneUnsafe(entry.deferred, Exit.void)
  }

  /**
   * Waits until one of `keys` fires or `millis` pass. The signals must have
   * been acquired before the caller checked its condition: see `acquireAll`.
   */
  static wait(
    taken: ReadonlyArray<Deferred.Deferred<void>>,
    millis: number
  ): Effect.Effect<void> {
    return Effect.raceAll([...taken.map((d) => Deferred.await(d)), Effect.sleep(Math.max(1, millis))])
  }
}
