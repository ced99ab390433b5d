/**
 * Compile-time checks of canvases: `pnpm test` runs `tsc` first, so each
 * `@ts-expect-error` below must still be an error, or the suite fails.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Canvas, Client, Task } from "@errand/core"

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { url: Schema.String }) {}
class Unparsable extends Schema.TaggedError<Unparsable>()("Unparsable", {}) {}

const Fetch = Task.make("types.fetch", {
  payload: Schema.Struct({ url: Schema.String }),
  success: Schema.String,
  failure: NotFound
})
const Parse = Task.make("types.parse", {
  payload: Schema.String,
  success: Schema.Struct({ words: Schema.Int }),
  failure: Unparsable
})
const Count = Task.make("types.count", { payload: Schema.Struct({ words: Schema.Int }), success: Schema.Int })
const Sum = Task.make("types.sum", { payload: Schema.Array(Schema.Int), success: Schema.Int })
const Pair = Task.make("types.pair", {
  payload: Schema.Tuple([Schema.Int, Schema.String]),
  success: Schema.String
})
const Length = Task.make("types.length", { payload: Schema.String, success: Schema.Int })

describe("canvas types", () => {
  it("a chain step must accept the previous step's result", () => {
    const ok = Canvas.chain(Canvas.task(Fetch, { url: "u" }), Parse, Count)
    const typed: Canvas.Canvas<unknown, number, NotFound | Unparsable> = ok
    // @ts-expect-error Count takes { words }, Fetch yields a string
    const skipped = Canvas.chain(Canvas.task(Fetch, { url: "u" }), Count)
    // @ts-expect-error the third step: Parse takes a string, Parse yields { words }
    const third = Canvas.chain(Canvas.task(Fetch, { url: "u" }), Parse, Parse)
    // a bound step ignores what comes before it (Celery's immutable signature)
    const bound = Canvas.chain(Canvas.task(Fetch, { url: "u" }), Canvas.task(Count, { words: 1 }))
    // @ts-expect-error a bound payload is checked against its task's Schema
    const badPayload = Canvas.task(Fetch, { url: 1 })
    assert.isDefined(typed && skipped && third && bound && badPayload)
  })

  it("a group yields a tuple; a chord's body must accept it", () => {
    const g = Canvas.group([Canvas.task(Length, "ab"), Canvas.task(Fetch, { url: "u" })])
    const tuple: Canvas.Canvas<unknown, [number, string], NotFound> = g
    const ok = Canvas.chord([Canvas.task(Length, "a"), Canvas.task(Fetch, { url: "u" })], Pair)
    const sum = Canvas.chord([1, 2, 3].map((n) => Canvas.task(Count, { words: n })), Sum)
    const fromGroup = Canvas.chord(Canvas.group([Canvas.task(Length, "a"), Canvas.task(Length, "b")]), Sum)
    // @ts-expect-error Pair takes [number, string], the header yields [string, number]
    const swapped = Canvas.chord([Canvas.task(Fetch, { url: "u" }), Canvas.task(Length, "a")], Pair)
    // @ts-expect-error Sum takes numbers, the header yields strings
    const strings = Canvas.chord(Canvas.group([Canvas.task(Fetch, { url: "u" })]), Sum)
    // group members take the group's input: Length and Parse both take a string
    const fanOut = Canvas.chain(Canvas.task(Fetch, { url: "u" }), Canvas.group([Length, Parse]))
    const fanned: Canvas.Canvas<unknown, [number, { readonly words: number }], NotFound | Unparsable> = fanOut
    // @ts-expect-error Count does not take the string Fetch yields
    const wrongMember = Canvas.chain(Canvas.task(Fetch, { url: "u" }), Canvas.group([Length, Count]))
    assert.isDefined(tuple && ok && sum && fromGroup && swapped && strings && fanned && wrongMember)
  })

  it("submitCanvas asks for an input exactly when the first steps take one; awaitCanvas is typed", () => {
    const program = Effect.gen(function*() {
      const client = yield* Client.Client
      const closed = yield* client.submitCanvas(Canvas.chain(Canvas.task(Fetch, { url: "u" }), Parse))
      const open = yield* client.submitCanvas(Canvas.chain(Parse, Count), { input: "some words" })
      // @ts-expect-error the input must be what Parse takes
      yield* client.submitCanvas(Canvas.chain(Parse, Count), { input: 1 })
      // @ts-expect-error an open canvas needs its input
      yield* client.submitCanvas(Canvas.chain(Parse, Count))
      const words: { readonly words: number } = yield* client.awaitCanvas(closed).pipe(
        Effect.catchTag("CanvasFailed", (e) => {
          // the member's own typed error
          const cause: NotFound | Unparsable | { readonly _tag: string } = e.cause
          return Effect.succeed({ words: cause._tag.length })
        }),
        Effect.orDie
      )
      const count: number = yield* Effect.orDie(client.awaitCanvas(open))
      // @ts-expect-error a chain's result is its last step's
      const wrong: string = yield* Effect.orDie(client.awaitCanvas(open))
      return [words, count, wrong]
    })
    assert.isDefined(program)
  })
})
