/**
 * Shared harness of the process-level tests: a test Redis for the file,
 * child processes running a fixture script, a fresh key prefix per test
 * (workers killed and keys deleted after), and polling until a condition.
 */
import { Client } from "@errand/core"
import { RedisBroker } from "@errand/redis"
import { type ChildProcess, spawn } from "node:child_process"
import { Effect, Layer } from "effect"
import { deletePrefix, randomPrefix } from "./redis.ts"

export { useTestRedis } from "./redis.ts"

/** A child process running a fixture script, with its output collected. */
export interface ScriptProcess {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | null>
}

const root = new URL("../../../..", import.meta.url).pathname

/**
 * Runs `script` with the Node running the tests (24, not whatever `node` is
 * on PATH) through tsx, from the repository root, with `env` added.
 */
export const spawnScript = (script: string, env: Record<string, string>): ScriptProcess => {
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout?.on("data", (d) => (output += String(d)))
  child.stderr?.on("data", (d) => (output += String(d)))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  return { child, output: () => output, exited }
}

/** Runs a worker fixture on the Redis at `url`, under `prefix`, as worker `id`. */
export const spawnWorker = (script: string, url: string, prefix: string, id: string): ScriptProcess =>
  spawnScript(script, { ERRAND_REDIS_URL: url, ERRAND_REDIS_PREFIX: prefix, WORKER_ID: id })

/**
 * Runs `body` with a Client on a fresh prefix; SIGKILLs the processes it
 * started (pushed onto `processes`) and deletes the prefix's keys after.
 */
export const withPrefix = <A, E, P extends ScriptProcess>(
  url: () => string,
  body: (prefix: string, processes: Array<P>) => Effect.Effect<A, E, Client.Client>
) =>
  Effect.suspend(() => {
    const prefix = randomPrefix()
    const processes: Array<P> = []
    return body(prefix, processes).pipe(
      Effect.provide(Client.layer.pipe(Layer.provide(RedisBroker.layer({ url: url(), prefix })))),
      Effect.ensuring(Effect.promise(async () => {
        for (const p of processes) if (p.child.exitCode === null) p.child.kill("SIGKILL")
        await Promise.all(processes.map((p) => p.exited))
        await deletePrefix(url(), prefix)
      }))
    )
  })

/** Polls `check` every `pollMillis` until it holds; dies after `millis`, naming `what`. */
export const waitUntil = <E, R>(
  check: Effect.Effect<boolean, E, R>,
  what: string,
  millis = 20_000,
  pollMillis = 20
) =>
  Effect.gen(function*() {
    const until = Date.now() + millis
    while (!(yield* check)) {
      if (Date.now() > until) return yield* Effect.die(new Error(`timed out waiting until ${what}`))
      yield* Effect.sleep(pollMillis)
    }
  })
