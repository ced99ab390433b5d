/**
 * The billing example: DESIGN.md's `Charge` task, charging an order through
 * the gateway and writing it to the ledger.
 *
 * Two implementations of the same task: `ChargeLive` is idempotent (a
 * redelivered or duplicated task finds the order already charged),
 * `ChargeNaive` is not (every run appends to the ledger). The test suite
 * proves the first charges each order exactly once under any fault plan and
 * finds, and shrinks, a plan that makes the second charge twice.
 *
 * @since 0.1.0
 */
import { Effect, Option, Schema } from "effect"
import { Retry, Task, TaskContext } from "@errand/core"
import { CardDeclined, Gateway } from "./Gateway.ts"
import { Ledger } from "./Ledger.ts"

export { CardDeclined, Gateway, GatewayUnavailable } from "./Gateway.ts"
export { type Entry, Ledger } from "./Ledger.ts"

/**
 * Charge an order. Celery's `max_retries=5, countdown=(2*(retries+1))*5`:
 * retries after 10, 20, 30, 40, 50 s; a declined card is not retried.
 *
 * @since 0.1.0
 */
export const Charge = Task.make("billing.charge", {
  payload: Schema.Struct({ orderId: Schema.String, cents: Schema.Int }),
  success: Schema.Struct({ receipt: Schema.String }),
  failure: CardDeclined,
  retry: Retry.linear({ step: "10 seconds", maxRetries: 5, retryOn: (e) => e._tag !== "CardDeclined" }),
  acksLate: true,
  softTimeLimit: "30 seconds",
  timeLimit: "45 seconds"
})

// one generator per handler, made when the handler is (see the README's "Writing handlers")
const charge = (write: "chargeOnce" | "append") =>
  Effect.fnUntraced(function*(payload: typeof Charge.payload.Type) {
    const ctx = yield* TaskContext
    const ledger = yield* Ledger
    const gateway = yield* Gateway
    if (write === "chargeOnce") {
      // Already charged: this is a redelivery or a duplicate.
      const done = yield* ledger.find(payload.orderId)
      if (Option.isSome(done)) return { receipt: done.value.receipt }
    }
    const { reference } = yield* gateway.authorize(payload).pipe(
      Effect.catchTag("GatewayUnavailable", (e) => ctx.retry({ reason: e }))
    )
    const entry = yield* ledger[write]({
      orderId: payload.orderId,
      cents: payload.cents,
      receipt: `r-${reference}`,
      taskId: ctx.id,
      attempt: ctx.retries,
      worker: ctx.worker
    })
    return { receipt: entry.receipt }
  })

/**
 * The idempotent handler: the ledger is keyed by order id, so however often
 * the task runs, an order is charged once.
 *
 * @since 0.1.0
 */
export const ChargeLive = Task.implement(Charge, charge("chargeOnce"))

/**
 * A non-idempotent handler, kept to show what the fault-plan property finds:
 * every run appends to the ledger.
 *
 * @since 0.1.0
 */
export const ChargeNaive = Task.implement(Charge, charge("append"))
