/**
 * The ledger: where a charge is written down. In memory here; in production
 * a table with a unique key on the order id.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Option } from "effect"

/**
 * One charge written to the ledger.
 *
 * @since 0.1.0
 */
export interface Entry {
  readonly orderId: string
  readonly cents: number
  readonly receipt: string
  /** Who wrote it: the task, its attempt and the worker that ran it. */
  readonly taskId: string
  readonly attempt: number
  readonly worker: string
}

/**
 * The ledger service.
 *
 * @since 0.1.0
 */
export class Ledger extends Context.Service<Ledger, {
  /** Append an entry, whatever is already there (not idempotent). */
  readonly append: (entry: Entry) => Effect.Effect<Entry>
  /**
   * Write the entry unless the order is already charged; either way return
   * the order's entry. One atomic step, like an INSERT with a unique key.
   */
  readonly chargeOnce: (entry: Entry) => Effect.Effect<Entry>
  readonly find: (orderId: string) => Effect.Effect<Option.Option<Entry>>
  readonly entries: Effect.Effect<ReadonlyArray<Entry>>
}>()("@errand/billing-example/Ledger") {
  /** A fresh, empty in-memory ledger. */
  static readonly layer = Layer.sync(Ledger, () => {
    const entries: Array<Entry> = []
    const find = (orderId: string) => Option.fromUndefinedOr(entries.find((e) => e.orderId === orderId))
    return Ledger.of({
      append: (entry) => Effect.sync(() => (entries.push(entry), entry)),
      chargeOnce: (entry) =>
        Effect.sync(() => {
          const found = find(entry.orderId)
          if (Option.isSome(found)) return found.value
          entries.push(entry)
          return entry
        }),
      find: (orderId) => Effect.sync(() => find(orderId)),
      entries: Effect.sync(() => [...entries])
    })
  })
}
