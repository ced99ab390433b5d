import { Effect } from "effect"

/** Lets every fiber that can run, run (a few scheduler rounds). */
export const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})
