/** Tasks and a probe shared by the toolkit's own tests. */
import { Context, Duration, Effect, Layer, Random, Schema } from "effect"
import { Retry, Task, TaskContext } from "@errand/core"

/** Records what handlers did, in order. */
export class Probe extends Context.Service<Probe, {
  readonly record: (event: string) => Effect.Effect<void>
  readonly events: Effect.Effect<ReadonlyArray<string>>
}>()("test/Probe") {
  static readonly layer = Layer.sync(Probe, () => {
    const events: Array<string> = []
    return Probe.of({
      record: (event) => Effect.sync(() => void events.push(event)),
      events: Effect.sync(() => [...events])
    })
  })
}

export class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { message: Schema.String }) {}

/**
 * A job that records "begin", sleeps `seconds` on its first attempt only
 * (or on every attempt with `always`), records "end", and returns its attempt.
 */
export const Job = Task.make("test.job", {
  payload: Schema.Struct({ n: Schema.Int, seconds: Schema.Number, always: Schema.optional(Schema.Boolean) }),
  success: Schema.Number,
  failure: Flaky,
  retry: Retry.linear({ step: "10 seconds", maxRetries: 5 })
})

export const JobLive = Task.implement(Job, ({ always, n, seconds }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    const probe = yield* Probe
    const who = `${n}#${ctx.retries}@${ctx.worker}`
    yield* probe.record(`begin ${who}`)
    if (seconds > 0 && (always || ctx.retries === 0)) yield* Effect.sleep(Duration.seconds(seconds))
    yield* probe.record(`end ${who}`)
    return ctx.retries
  }))

/** A job whose handler draws from Effect's Random and sleeps that long. */
export const Dice = Task.make("test.dice", {
  payload: Schema.Struct({ n: Schema.Int }),
  success: Schema.Number,
  retry: Retry.exponential({ base: "1 second", maxRetries: 4, jitter: true })
})

export const DiceLive = Task.implement(Dice, ({ n }) =>
  Effect.gen(function*() {
    const ctx = yield* TaskContext
    const probe = yield* Probe
    const roll = yield* Random.nextIntBetween(0, 6)
    yield* probe.record(`${n}#${ctx.retries}@${ctx.worker} rolled ${roll}`)
    yield* Effect.sleep(Duration.millis(roll * 300))
    if (roll === 0) return yield* Effect.die(new Error(`rolled 0 on ${n}`))
    return roll
  }))
