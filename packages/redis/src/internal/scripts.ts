/**
 * The Lua scripts behind every broker step, one file per step under
 * `../commands/`, each prefixed with the shared helpers of `common.lua` (and
 * those of `done.lua` and `fast.lua` for the scripts that read or write done
 * records or the fast lane).
 *
 * @internal
 */
import * as fs from "node:fs"
import * as Redis from "effect/persistence/Redis"

const read = (name: string): string => fs.readFileSync(new URL(`../commands/${name}.lua`, import.meta.url), "utf8")

const common = read("common")

/** A value passed to a script as an ARGV. */
export type Arg = string | number

/**
 * A step script: its keys first (all in one queue's hash slot), then its
 * arguments.
 */
export type StepScript<R> = Redis.Script<{
  params: [keys: ReadonlyArray<string>, args: ReadonlyArray<Arg>]
  result: R
}>

/** The helpers of done records, only in the scripts that use them (see `done.lua`). */
const done = read("done")

/** The helpers of the fast lane, only in the scripts that use them (see `fast.lua`). */
const fast = read("fast")

/** Leasing ready tasks and handing them to parked claims, in the scripts that do (see `park.lua`). */
const park = read("park")

const step = <R>(name: string, helpers: ReadonlyArray<string> = []): StepScript<R> =>
  Redis.script(
    // concat, not a spread: the argument lists of a batch run to thousands
    (keys: ReadonlyArray<string>, args: ReadonlyArray<Arg>) => (keys as ReadonlyArray<Arg>).concat(args),
    { lua: [common, ...helpers, read(name)].join("\n"), numberOfKeys: (keys) => keys.length }
  ).withReturnType<R>()

/** Scripts by step. */
export const scripts = {
  enqueue: step<Array<string>>("enqueue", [done, park]),
  claim: step<Array<string>>("claim", [fast, park]),
  unpark: step<Array<string>>("unpark"),
  start: step<Array<number>>("start", [fast]),
  renew: step<Array<number>>("renew", [fast]),
  complete: step<Array<number>>("complete", [done, fast]),
  retry: step<Array<number>>("retry", [fast, park]),
  deadLetter: step<Array<number>>("deadLetter", [fast]),
  release: step<Array<number>>("release", [fast, park]),
  revoke: step<string>("revoke", [done, fast]),
  redeliver: step<number>("redeliver", [park]),
  setState: step<number>("setState", [fast]),
  recordStale: step<number>("recordStale", [done, fast]),
  stats: step<Array<number>>("stats"),
  heartbeat: step<number>("heartbeat"),
  workers: step<Array<string>>("workers"),
  purge: step<number>("purge", [fast])
} as const
