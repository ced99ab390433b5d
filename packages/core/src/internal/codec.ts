/**
 * Payload and result codecs with a fast path for plain shapes.
 *
 * A task's codecs are the JSON codecs of its Schemas (`Schema.toCodecJson`).
 * For a plain shape (strings, finite numbers, booleans and structs of them:
 * no checks, no transformations, no optional keys, no index signatures)
 * encoding and decoding a value that matches succeeds with a copy of the
 * value that has the declared keys, in their order: the JSON codec of a
 * string, a boolean or a finite number is the value itself. That costs the
 * Schema interpreter several thousand instructions per payload (each producer
 * encodes and each worker decodes one per task); the fast path checks the
 * shape and makes the copy in one generated function.
 *
 * Anything the fast path does not take for certain (another type, a missing
 * key, a non-finite number, an unusual Schema) goes through the Schema
 * codec as before, so results, failures and their messages are the codec's.
 *
 * @internal
 */
import { type Exit, Schema, type SchemaAST } from "effect"

/** What a fast path returns for a value it leaves to the Schema codec. */
const miss: unique symbol = Symbol("errand/codec/miss")

type Fast = (u: unknown) => unknown

/** Annotations that only document a Schema or word its failures (failures take the Schema path). */
const inert = new Set(["identifier", "title", "description", "documentation", "examples", "expected"])

const plainNode = (ast: SchemaAST.AST): boolean => {
  const a = ast as {
    readonly checks?: unknown
    readonly encoding?: unknown
    readonly context?: unknown
    readonly encodingChecks?: unknown
    readonly annotations?: Readonly<Record<string, unknown>> | undefined
  }
  if (a.checks !== undefined || a.encoding !== undefined || a.context !== undefined || a.encodingChecks !== undefined) {
    return false
  }
  if (a.annotations !== undefined) {
    for (const key of Object.keys(a.annotations)) if (!inert.has(key)) return false
  }
  return true
}

/** Whether `ast` is a plain shape, up to a small nesting depth. */
const isPlain = (ast: SchemaAST.AST, depth: number): boolean => {
  if (!plainNode(ast)) return false
  switch (ast._tag) {
    case "String":
    case "Number":
    case "Boolean":
      return true
    case "Objects": {
      if (depth > 4 || ast.indexSignatures.length > 0 || ast.propertySignatures.length > 64) return false
      const names = new Set<string>()
      for (const p of ast.propertySignatures) {
        if (typeof p.name !== "string" || p.name === "__proto__" || names.has(p.name)) return false
        names.add(p.name)
        if (!isPlain(p.type, depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

/** The generated code: statements that return `M` on a miss, and the expression of the copy. */
const emit = (ast: SchemaAST.AST, input: string, vars: { n: number }, out: Array<string>): string => {
  switch (ast._tag) {
    case "String":
      out.push(`if(typeof ${input}!=="string")return M`)
      return input
    case "Number":
      out.push(`if(typeof ${input}!=="number"||${input}-${input}!==0)return M`)
      return input
    case "Boolean":
      out.push(`if(typeof ${input}!=="boolean")return M`)
      return input
    case "Objects": {
      out.push(`if(typeof ${input}!=="object"||${input}===null||Array.isArray(${input}))return M`)
      const fields: Array<string> = []
      for (const p of ast.propertySignatures) {
        const key = JSON.stringify(p.name)
        const v = `v${vars.n++}`
        out.push(`const ${v}=${input}[${key}]`)
        fields.push(`${key}:${emit(p.type, v, vars, out)}`)
      }
      return `{${fields.join(",")}}`
    }
    default:
      throw new Error(`codec: not a plain shape (${ast._tag})`)
  }
}

/** The same fast path without generated code (where `new Function` is blocked). */
const interpret = (ast: SchemaAST.AST): Fast => {
  switch (ast._tag) {
    case "String":
      return (u) => typeof u === "string" ? u : miss
    case "Number":
      return (u) => typeof u === "number" && u - u === 0 ? u : miss
    case "Boolean":
      return (u) => typeof u === "boolean" ? u : miss
    case "Objects": {
      const names = ast.propertySignatures.map((p) => p.name as string)
      const fields = ast.propertySignatures.map((p) => interpret(p.type))
      return (u) => {
        if (typeof u !== "object" || u === null || Array.isArray(u)) return miss
        const out: Record<string, unknown> = {}
        for (let i = 0; i < names.length; i++) {
          const v = fields[i]!((u as Record<string, unknown>)[names[i]!])
          if (v === miss) return miss
          out[names[i]!] = v
        }
        return out
      }
    }
    default:
      return () => miss
  }
}

const fastOf = (ast: SchemaAST.AST): Fast | undefined => {
  if (!isPlain(ast, 0)) return undefined
  const body: Array<string> = []
  const expr = emit(ast, "i", { n: 0 }, body)
  try {
    // the copy as one object literal: each shape gets its map at once
    return new Function("M", `return function(i){${body.join(";")};return ${expr}}`)(miss) as Fast
  } catch {
    return interpret(ast)
  }
}

/**
 * A value the codec does not take: the Schema codec's failure. Codecs
 * return the encoded or decoded value itself, with no `Exit` around it (an
 * `Exit` per payload cost a megamorphic property store in its constructor).
 *
 * @internal
 */
export class Invalid {
  readonly exit: Exit.Failure<unknown, Schema.SchemaError>
  constructor(exit: Exit.Failure<unknown, Schema.SchemaError>) {
    this.exit = exit
  }
}

/**
 * A codec: the encoded (or decoded) value, or `Invalid`.
 *
 * @internal
 */
export type Run = (u: unknown) => unknown

const withFast = (full: (u: unknown) => Exit.Exit<unknown, Schema.SchemaError>, ast: SchemaAST.AST): Run => {
  const slow = (u: unknown): unknown => {
    const exit = full(u)
    return exit._tag === "Success" ? exit.value : new Invalid(exit)
  }
  const fast = fastOf(ast)
  if (fast === undefined) return slow
  return (u) => {
    let out: unknown
    try {
      out = fast(u)
    } catch {
      // a getter that throws: the Schema codec says how
      return slow(u)
    }
    return out === miss ? slow(u) : out
  }
}

/**
 * `Schema.encodeUnknownExit(codec)` as a `Run`, with the fast path when
 * `schema` (the Schema `codec` is the JSON codec of) is a plain shape.
 *
 * @internal
 */
export const encoder = (schema: Schema.Top, codec: Schema.Codec<any, unknown>): Run =>
  withFast(Schema.encodeUnknownExit(codec) as (u: unknown) => Exit.Exit<unknown, Schema.SchemaError>, schema.ast)

/**
 * `Schema.decodeUnknownExit(codec)` as a `Run`, with the fast path when
 * `schema` (the Schema `codec` is the JSON codec of) is a plain shape.
 *
 * @internal
 */
export const decoder = (schema: Schema.Top, codec: Schema.Codec<any, unknown>): Run =>
  withFast(Schema.decodeUnknownExit(codec) as (u: unknown) => Exit.Exit<unknown, Schema.SchemaError>, schema.ast)
