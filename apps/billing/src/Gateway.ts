/**
 * The payment gateway the charge task calls. Talking to it takes time and it
 * is sometimes unavailable; a declined card is final.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, Schema } from "effect"

/**
 * The card was declined: not worth retrying.
 *
 * @since 0.1.0
 */
export class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", { code: Schema.String }) {}

/**
 * The gateway could not be reached: try again later.
 *
 * @since 0.1.0
 */
export class GatewayUnavailable extends Schema.TaggedError<GatewayUnavailable>()("GatewayUnavailable", {
  message: Schema.String
}) {}

/**
 * The gateway service.
 *
 * @since 0.1.0
 */
export class Gateway extends Context.Service<Gateway, {
  readonly authorize: (request: {
    readonly orderId: string
    readonly cents: number
  }) => Effect.Effect<{ readonly reference: string }, CardDeclined | GatewayUnavailable>
}>()("@errand/billing-example/Gateway") {
  /**
   * A scripted gateway: each call takes `latency`; the first `unavailable`
   * calls for an order fail with `GatewayUnavailable`; orders in `declines`
   * are declined.
   */
  static readonly layer = (options: {
    readonly latency?: Duration.Input | undefined
    readonly unavailable?: number | undefined
    readonly declines?: ReadonlyArray<string> | undefined
  } = {}) =>
    Layer.sync(Gateway, () => {
      const calls = new Map<string, number>()
      const latency = Duration.fromInputUnsafe(options.latency ?? "200 millis")
      return Gateway.of({
        authorize: ({ orderId }) =>
          Effect.gen(function*() {
            const n = calls.get(orderId) ?? 0
            calls.set(orderId, n + 1)
            yield* Effect.sleep(latency)
            if (options.declines?.includes(orderId)) return yield* new CardDeclined({ code: "insufficient_funds" })
            if (n < (options.unavailable ?? 0)) {
              return yield* new GatewayUnavailable({ message: `gateway unavailable (call ${n + 1} for ${orderId})` })
            }
            return { reference: `gw-${orderId}` }
          })
      })
    })
}
