/**
 * Compile-time checks: `pnpm test` runs `tsc` first, so an `@ts-expect-error`
 * that is no longer an error fails the suite.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Client, Task } from "@errand/core"

class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", { code: Schema.String }) {}
class Unrelated extends Schema.TaggedError<Unrelated>()("Unrelated", {}) {}

const Charge = Task.make("types.charge", {
  payload: Schema.Struct({ orderId: Schema.String, cents: Schema.Int }),
  success: Schema.Struct({ receipt: Schema.String }),
  failure: CardDeclined
})

describe("types", () => {
  it("a handler may fail with the task's failure, not with anything else", () => {
    const ok = Task.implement(Charge, ({ orderId }) =>
      orderId === "" ? Effect.fail(new CardDeclined({ code: "x" })) : Effect.succeed({ receipt: orderId }))
    // @ts-expect-error Unrelated is not the task's failure
    const bad = Task.implement(Charge, () => Effect.fail(new Unrelated()))
    // @ts-expect-error the result must match the success Schema
    const wrongResult = Task.implement(Charge, () => Effect.succeed({ receipt: 1 }))
    assert.isDefined(ok && bad && wrongResult)
  })

  it("submit checks the payload type, await returns the typed result and failure", () => {
    const program = Effect.gen(function*() {
      const client = yield* Client.Client
      // @ts-expect-error cents must be a number
      yield* client.submit(Charge, { orderId: "o", cents: "5" })
      const job = yield* client.submit(Charge, { orderId: "o", cents: 5 })
      const receipt: { readonly receipt: string } = yield* client.await(job).pipe(
        Effect.catchTag("CardDeclined", (e) => Effect.succeed({ receipt: e.code })),
        Effect.catchTag("MaxRetriesExceeded", (e) => Effect.succeed({ receipt: e.lastError._tag })),
        Effect.orDie
      )
      return receipt
    })
    assert.isDefined(program)
  })
})
