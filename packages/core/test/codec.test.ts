import { assert, describe, it } from "@effect/vitest"
import { Exit, Schema } from "effect"
import * as Codec from "../src/internal/codec.ts"

/** The fast codec against the Schema codec it stands for: the same Exit (value, or failure and its message). */
const same = (schema: Schema.Top, inputs: ReadonlyArray<unknown>) => {
  const codec = Schema.toCodecJson(schema) as unknown as Schema.Codec<any, unknown>
  const pairs = [
    [Codec.encoder(schema, codec), Schema.encodeUnknownExit(codec)],
    [Codec.decoder(schema, codec), Schema.decodeUnknownExit(codec)]
  ] as const
  for (const [fast, full] of pairs) {
    for (const input of inputs) {
      const a = fast(input)
      const b = (full as (u: unknown) => Exit.Exit<unknown, Schema.SchemaError>)(input)
      assert.strictEqual(a instanceof Codec.Invalid ? "Failure" : "Success", b._tag, `tag for ${String(input)}`)
      if (a instanceof Codec.Invalid) {
        if (Exit.isFailure(b)) assert.strictEqual(String(a.exit.cause), String(b.cause))
      } else if (Exit.isSuccess(b)) {
        assert.deepStrictEqual(a, b.value)
        assert.deepStrictEqual(Object.keys(a as object ?? {}), Object.keys(b.value as object ?? {}))
        if (typeof b.value === "object" && b.value !== null) assert.notStrictEqual(a, input)
      }
    }
  }
}

describe("internal/codec", () => {
  it("a plain struct: the Schema codec's values, copies and failures", () => {
    const schema = Schema.Struct({
      n: Schema.Number,
      s: Schema.String,
      b: Schema.Boolean,
      o: Schema.Struct({ x: Schema.Number, y: Schema.String })
    })
    const ok = { n: 1.5, s: "a", b: true, o: { x: -0, y: "" } }
    same(schema, [
      ok,
      { ...ok, extra: 1 },
      { o: { y: "z", x: 2 }, b: false, s: "b", n: 3 },
      { ...ok, n: NaN },
      { ...ok, n: Infinity },
      { ...ok, n: "NaN" },
      { ...ok, n: "1" },
      { ...ok, s: 1 },
      { ...ok, o: null },
      { ...ok, o: [] },
      { n: 1, s: "a", b: true },
      null,
      undefined,
      [],
      "x",
      () => 1
    ])
  })

  it("a payload that does not match fails with the Schema's message", () => {
    const schema = Schema.Struct({ n: Schema.Number })
    const codec = Schema.toCodecJson(schema) as unknown as Schema.Codec<any, unknown>
    const invalid = Codec.encoder(schema, codec)({ n: "x" })
    assert.instanceOf(invalid, Codec.Invalid)
    assert.include(String((invalid as Codec.Invalid).exit.cause), "Expected number")
  })

  it("a getter that throws: the Schema codec's defect", () => {
    const schema = Schema.Struct({ n: Schema.Number })
    const codec = Schema.toCodecJson(schema) as unknown as Schema.Codec<any, unknown>
    const input = {
      get n(): number {
        throw new Error("boom")
      }
    }
    const fast = Codec.encoder(schema, codec)(input)
    const full = Schema.encodeUnknownExit(codec)(input)
    assert.instanceOf(fast, Codec.Invalid)
    assert.isTrue(Exit.isFailure(full))
    if (Exit.isFailure(full)) assert.strictEqual(String((fast as Codec.Invalid).exit.cause), String(full.cause))
  })

  it("top-level primitives", () => {
    same(Schema.Number, [1, -0, NaN, -Infinity, "Infinity", "1", null])
    same(Schema.String, ["", "a", 1, null])
    same(Schema.Boolean, [true, false, 0, null])
  })

  it("Schemas outside the fast path keep the Schema codec", () => {
    same(Schema.Struct({ n: Schema.Int }), [{ n: 1 }, { n: 1.5 }])
    same(Schema.Struct({ n: Schema.optional(Schema.Number) }), [{}, { n: 1 }, { n: undefined }])
    same(Schema.Struct({ n: Schema.NumberFromString }), [{ n: 1 }, { n: "1" }])
    same(Schema.Struct({ n: Schema.Number.annotate({ description: "a number" }) }), [{ n: 1 }, { n: "1" }])
    same(Schema.Record(Schema.String, Schema.Number), [{ a: 1 }, { a: "1" }])
    same(Schema.Void, [undefined, 1])
  })
})
