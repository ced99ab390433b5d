/**
 * Spawning the errand CLI in tests: `node --import tsx apps/cli/src/bin.ts`,
 * on the Node running the tests (24), against a Redis from
 * packages/redis/test/utils (REDIS_URL, or a private redis-server), each test
 * on a key prefix of its own.
 */
import { afterAll, beforeAll } from "@effect/vitest"
import { Client } from "@errand/core"
import type { Broker } from "@errand/core/Broker"
import type { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import { Effect, Layer } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { waitUntil as waitUntilEvery } from "../../../packages/redis/test/utils/process.ts"
import { deletePrefix, randomPrefix, testRedis } from "../../../packages/redis/test/utils/redis.ts"

export { command, testRedis } from "../../../packages/redis/test/utils/redis.ts"

/** The repository root: processes run from there. */
export const root = new URL("../../..", import.meta.url).pathname

const bin = path.join(root, "apps/cli/src/bin.ts")

/** The tasks module of the tests, relative to the root. */
export const tasksModule = "apps/cli/test/fixtures/tasks.ts"

/** A CLI process. */
export interface CliProcess {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  /** Both streams, interleaved as they came. */
  readonly output: () => string
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** Resolves once `text` appears in the output (rejects after `millis`). */
  readonly waitFor: (text: string | RegExp, millis?: number) => Promise<void>
}

/**
 * How to run the TypeScript: through tsx (as the `errand` bin does), or with
 * Node 24's own type stripping, which starts a process in about half the time
 * (for tests that restart workers many times a second).
 */
export type Runner = "tsx" | "native"

const runnerArgs = (runner: Runner) => runner === "tsx" ? ["--import", "tsx"] : ["--disable-warning=ExperimentalWarning"]

/** Spawns `errand <args>` with extra environment. */
export const spawnCli = (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {},
  runner: Runner = "tsx"
): CliProcess => {
  const child = spawn(process.execPath, [...runnerArgs(runner), bin, ...args], {
    cwd: root,
    env: { ...process.env, ERRAND_REDIS_URL: "", ERRAND_REDIS_PREFIX: "", ...env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  let output = ""
  const listeners = new Set<() => void>()
  const changed = () => listeners.forEach((f) => f())
  child.stdout?.on("data", (d) => {
    stdout += String(d)
    output += String(d)
    changed()
  })
  child.stderr?.on("data", (d) => {
    stderr += String(d)
    output += String(d)
    changed()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      resolve({ code, signal })
      changed()
    })
  )
  const waitFor = (text: string | RegExp, millis = 20_000) =>
    new Promise<void>((resolve, reject) => {
      const found = () => (typeof text === "string" ? output.includes(text) : text.test(output))
      const check = () => {
        if (found()) {
          cleanup()
          resolve()
        } else if (child.exitCode !== null || child.signalCode !== null) {
          cleanup()
          reject(new Error(`process exited before printing ${String(text)}:\n${output}`))
        }
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out waiting for ${String(text)}:\n${output}`))
      }, millis)
      const cleanup = () => {
        clearTimeout(timer)
        listeners.delete(check)
      }
      listeners.add(check)
      check()
    })
  return { child, stdout: () => stdout, stderr: () => stderr, output: () => output, exited, waitFor }
}

/** The outcome of a CLI run. */
export interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `errand <args>` to its end (killed after `millis`), feeding `input` on stdin. */
export const runCli = async (
  args: ReadonlyArray<string>,
  options: { readonly env?: Record<string, string>; readonly input?: string; readonly millis?: number } = {}
): Promise<CliResult> => {
  const p = spawnCli(args, options.env)
  if (options.input !== undefined) p.child.stdin?.write(options.input)
  p.child.stdin?.end()
  const timer = setTimeout(() => p.child.kill("SIGKILL"), options.millis ?? 30_000)
  const { code } = await p.exited
  clearTimeout(timer)
  return { code, stdout: p.stdout(), stderr: p.stderr() }
}

/** A temp file for the handlers' run log ($ERRAND_TEST_RUNS). */
export const runsFile = (): string => path.join(fs.mkdtempSync(path.join(os.tmpdir(), "errand-cli-")), "runs.log")

/** The runs logged to `file`: `<id> <worker> <attempt>` lines. */
export const readRuns = (file: string): Array<{ id: string; worker: string; attempt: number }> =>
  fs.existsSync(file)
    ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "" && !l.includes(" done ")).map((l) => {
      const [id, worker, attempt] = l.split(" ")
      return { id: id!, worker: worker!, attempt: Number(attempt) }
    })
    : []

/** Everything a test on one prefix needs. */
export interface Deployment {
  readonly url: string
  readonly prefix: string
  /** The environment that points a CLI process at this deployment. */
  readonly env: Record<string, string>
  /** Starts `errand worker` with the test tasks (more flags in `args`). */
  readonly worker: (
    id: string,
    args?: ReadonlyArray<string>,
    env?: Record<string, string>,
    runner?: Runner
  ) => CliProcess
  /** Runs an `errand` command against this deployment. */
  readonly cli: (args: ReadonlyArray<string>, options?: { readonly input?: string }) => Promise<CliResult>
}

/**
 * Runs `body` with a Client on a fresh prefix; kills leftover processes and
 * deletes the prefix's keys afterwards.
 */
export const withDeployment = <A, E>(
  url: () => string,
  body: (deployment: Deployment) => Effect.Effect<A, E, Client.Client | Broker | ResultBackend>
) =>
  Effect.suspend(() => {
    const prefix = randomPrefix()
    const env = { ERRAND_REDIS_URL: url(), ERRAND_REDIS_PREFIX: prefix }
    const processes: Array<CliProcess> = []
    const deployment: Deployment = {
      url: url(),
      prefix,
      env,
      worker: (id, args = [], extra = {}, runner = "tsx") => {
        const p = spawnCli(["worker", "--tasks", tasksModule, "--id", id, ...args], { ...env, ...extra }, runner)
        processes.push(p)
        return p
      },
      cli: (args, options = {}) => runCli(args, { ...options, env })
    }
    return body(deployment).pipe(
      Effect.provide(Client.layer.pipe(Layer.provideMerge(RedisBroker.layer({ url: url(), prefix })))),
      Effect.ensuring(Effect.promise(async () => {
        for (const p of processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL")
        await Promise.all(processes.map((p) => p.exited))
        await deletePrefix(url(), prefix)
      }))
    )
  })

/** Polls `check` every 25 ms until it holds (dies after `millis`). */
export const waitUntil = <E, R>(check: Effect.Effect<boolean, E, R>, what: string, millis = 20_000) =>
  waitUntilEvery(check, what, millis, 25)

const lockDir = path.join(os.tmpdir(), "errand-cli-tests.lock")

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Takes the lock that lets one CLI test file at a time spawn its processes
 * (call in `beforeAll`, release in `afterAll`). Each file starts a dozen to
 * dozens of Node processes; run side by side on two cores they starve each
 * other and the chaos test's restarts. A lock left by a dead process is taken
 * over.
 */
export const lockProcesses = async (): Promise<() => void> => {
  const owner = path.join(lockDir, "pid")
  while (true) {
    try {
      fs.mkdirSync(lockDir)
      fs.writeFileSync(owner, String(process.pid))
      return () => fs.rmSync(lockDir, { recursive: true, force: true })
    } catch {
      const pid = Number(fs.existsSync(owner) ? fs.readFileSync(owner, "utf8") : "NaN")
      if (Number.isInteger(pid) && pid > 0 && !alive(pid)) fs.rmSync(lockDir, { recursive: true, force: true })
      await new Promise((r) => setTimeout(r, 200))
    }
  }
}

/**
 * The setup every CLI test file shares: takes the process lock, starts a
 * test Redis before the file's tests and stops it (and releases the lock)
 * after. Returns the Redis URL (read it inside tests).
 */
export const useCliRedis = (): { readonly url: () => string } => {
  let url = ""
  let stop: () => Promise<void> = async () => {}
  let unlock = () => {}
  beforeAll(async () => {
    unlock = await lockProcesses()
    const redis = await testRedis()
    url = redis.url
    stop = redis.stop
  }, 600_000)
  afterAll(async () => {
    await stop()
    unlock()
  })
  return { url: () => url }
}
