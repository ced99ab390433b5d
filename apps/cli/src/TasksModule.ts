/**
 * Loading the tasks a worker runs from a module: a path (`./src/tasks.ts`,
 * `/abs/tasks.js`) or a package (`@acme/billing/tasks`), resolved from the
 * current directory. The module exports implemented tasks (`Task.implement`
 * values) as named exports, as arrays, or as its default export; an optional
 * `layer` export (a `Layer`) provides the services their handlers need.
 *
 * @since 0.1.0
 */
import { Task } from "@errand/core"
import { Effect, Layer } from "effect"
import { createRequire } from "node:module"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { fail, type Fatal, messageOf } from "./Fatal.ts"

/**
 * What a tasks module gave.
 *
 * @since 0.1.0
 */
export interface Loaded {
  readonly tasks: ReadonlyArray<Task.AnyImplemented>
  /** The services the handlers need, when the module exports `layer`. */
  readonly layer: Layer.Layer<unknown, unknown, never> | undefined
  /** Where each module was loaded from. */
  readonly files: ReadonlyArray<string>
}

const isImplemented = (u: unknown): u is Task.AnyImplemented =>
  typeof u === "object" && u !== null && "task" in u && "handler" in u && Task.isTask(u.task) &&
  typeof u.handler === "function"

const looksLikePath = (spec: string) =>
  spec.startsWith(".") || spec.startsWith("/") || path.isAbsolute(spec) || /\.[cm]?[jt]sx?$/.test(spec)

/** The URL to import for a module spec, resolved from `cwd`. */
const resolve = (spec: string, cwd: string): string => {
  if (looksLikePath(spec)) return pathToFileURL(path.resolve(cwd, spec)).href
  try {
    return pathToFileURL(createRequire(path.join(cwd, "noop.js")).resolve(spec)).href
  } catch {
    // ESM-only exports (no "require" condition): let import() resolve it
    return spec
  }
}

const collect = (value: unknown, into: Array<Task.AnyImplemented>) => {
  if (isImplemented(value)) into.push(value)
  else if (Array.isArray(value)) for (const v of value) collect(v, into)
}

/**
 * Imports the modules and collects their implemented tasks. Fails with a
 * message (not a stack) when a module is missing, throws while loading, or
 * exports no implemented task, and when two modules implement one task
 * differently.
 *
 * @since 0.1.0
 */
export const load = (specs: ReadonlyArray<string>, cwd = process.cwd()): Effect.Effect<Loaded, Fatal> =>
  Effect.gen(function*() {
    const byName = new Map<string, Task.AnyImplemented>()
    const layers: Array<Layer.Layer<unknown, unknown, never>> = []
    const files: Array<string> = []
    for (const spec of specs) {
      const url = resolve(spec, cwd)
      const mod = yield* Effect.tryPromise({
        try: () => import(url) as Promise<Record<string, unknown>>,
        catch: (error) => error
      }).pipe(
        Effect.catch((error) => {
          const code = typeof error === "object" && error !== null && "code" in error ? error.code : undefined
          const missing = code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND"
          return fail(
            missing && messageOf(error).includes(spec.replace(/^\.\//, ""))
              ? `cannot load the tasks module "${spec}": no such file or package (looked from ${cwd})`
              : `cannot load the tasks module "${spec}": ${messageOf(error).split("\n")[0]}`
          )
        })
      )
      files.push(url.startsWith("file:") ? new URL(url).pathname : url)
      const found: Array<Task.AnyImplemented> = []
      for (const [name, value] of Object.entries(mod)) {
        if (name === "layer") continue
        collect(value, found)
      }
      if (found.length === 0) {
        return yield* fail(
          `the tasks module "${spec}" exports no implemented tasks: export Task.implement(...) values, ` +
            `as named exports or an array (exports found: ${Object.keys(mod).join(", ") || "none"})`
        )
      }
      for (const impl of found) {
        const existing = byName.get(impl.task.name)
        if (existing !== undefined && existing !== impl) {
          return yield* fail(`task "${impl.task.name}" is implemented twice in the tasks modules ${specs.join(", ")}`)
        }
        byName.set(impl.task.name, impl)
      }
      if ("layer" in mod && mod.layer !== undefined) {
        if (!Layer.isLayer(mod.layer)) {
          return yield* fail(`the tasks module "${spec}" exports \`layer\`, but it is not a Layer`)
        }
        layers.push(mod.layer as Layer.Layer<unknown, unknown, never>)
      }
    }
    return {
      tasks: [...byName.values()],
      layer: layers.length === 0
        ? undefined
        : Layer.mergeAll(...(layers as [Layer.Layer<unknown, unknown, never>])) as Layer.Layer<unknown, unknown, never>,
      files
    }
  })
