/**
 * Child processes of the bench, seen from the orchestrator: Node children
 * forked with an IPC channel, Python children speaking JSON lines on stdout
 * (`@@{...}`). Every system's worker and producer runs in a process of its own,
 * so a worker's memory is its own and a producer's CPU is not the worker's.
 */
import { type ChildProcess, fork, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export const now = (): number => performance.timeOrigin + performance.now()

export interface Message {
  readonly type: string
  readonly [key: string]: unknown
}

const here = path.dirname(fileURLToPath(import.meta.url))

/** A running child: messages in order, commands out, and its end. */
export class Proc {
  private readonly inbox: Array<Message> = []
  private readonly waiters: Array<{ type: string; resolve: (m: Message) => void; reject: (e: Error) => void }> = []
  private stderr = ""
  private exitInfo: string | undefined
  readonly exited: Promise<void>
  readonly name: string
  readonly child: ChildProcess

  constructor(name: string, child: ChildProcess, mode: "ipc" | "lines") {
    this.name = name
    this.child = child
    child.stderr?.on("data", (d) => {
      this.stderr = (this.stderr + String(d)).slice(-8000)
      if (process.env.BENCH_VERBOSE) process.stderr.write(`[${name}] ${String(d)}`)
    })
    if (mode === "ipc") {
      child.on("message", (m) => this.push(m as Message))
    } else {
      let buffer = ""
      child.stdout?.on("data", (d) => {
        buffer += String(d)
        let i: number
        while ((i = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, i)
          buffer = buffer.slice(i + 1)
          if (line.startsWith("@@")) this.push(JSON.parse(line.slice(2)) as Message)
          else if (process.env.BENCH_VERBOSE) process.stderr.write(`[${name}] ${line}\n`)
        }
      })
    }
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`
        const error = new Error(`${this.name} ${this.exitInfo} before it answered:\n${this.stderr.trim().slice(-3000)}`)
        for (const w of this.waiters.splice(0)) w.reject(error)
        resolve()
      })
    })
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  private push(m: Message) {
    if (m.type === "error") {
      const error = new Error(`${this.name} failed: ${String(m.message)}`)
      for (const w of this.waiters.splice(0)) w.reject(error)
      return
    }
    const i = this.waiters.findIndex((w) => w.type === m.type)
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1)
      w!.resolve(m)
    } else {
      this.inbox.push(m)
    }
  }

  /** The next message of this type (or a failure if the child dies or times out first). */
  next<M extends Message = Message>(type: string, timeoutMs = 600_000): Promise<M> {
    const i = this.inbox.findIndex((m) => m.type === type)
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0] as M)
    if (this.exitInfo !== undefined) {
      return Promise.reject(new Error(`${this.name} ${this.exitInfo}:\n${this.stderr.trim().slice(-3000)}`))
    }
    return new Promise<M>((resolve, reject) => {
      const timer = setTimeout(() => {
        const k = this.waiters.indexOf(waiter)
        if (k >= 0) this.waiters.splice(k, 1)
        reject(new Error(`${this.name}: no "${type}" within ${timeoutMs} ms:\n${this.stderr.trim().slice(-3000)}`))
      }, timeoutMs)
      const waiter = {
        type,
        resolve: (m: Message) => {
          clearTimeout(timer)
          resolve(m as M)
        },
        reject: (e: Error) => {
          clearTimeout(timer)
          reject(e)
        }
      }
      this.waiters.push(waiter)
    })
  }

  send(command: Message): void {
    if (this.child.connected) this.child.send(command)
    else this.child.stdin?.write(`${JSON.stringify(command)}\n`)
  }

  /** SIGKILL, then wait for the exit. */
  async kill(): Promise<void> {
    if (this.exitInfo === undefined) this.child.kill("SIGKILL")
    await this.exited
  }
}

/**
 * Forks `child.ts` (run by Node's own type stripping, so profiles keep source
 * lines) in a role, with `config`. `profile`: a directory where the child
 * writes `<name>.cpuprofile`, a CPU profile of its measured round only
 * (`BENCH_PROFILE`, see `ipc.ts`'s `startProfile`).
 */
export const forkNode = (name: string, role: string, config: object, options: { readonly profile?: string } = {}) => {
  const execArgv = ["--expose-gc", "--max-old-space-size=4096", "--disable-warning=ExperimentalWarning"]
  const env = { ...process.env }
  delete env.BENCH_PROFILE
  if (options.profile !== undefined) {
    fs.mkdirSync(options.profile, { recursive: true })
    env.BENCH_PROFILE = path.join(options.profile, `${name}.cpuprofile`)
  }
  const child = fork(path.join(here, "child.ts"), [role, JSON.stringify(config)], {
    execArgv,
    env,
    stdio: ["ignore", "inherit", "pipe", "ipc"],
    cwd: path.join(here, "..")
  })
  return new Proc(name, child, "ipc")
}

/** Spawns a Python process that reports with `@@{json}` lines. */
export const spawnLines = (
  name: string,
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env: NodeJS.ProcessEnv }
) => {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ["pipe", "pipe", "pipe"] })
  return new Proc(name, child, "lines")
}

/** Resident set size of a process, from /proc (bytes); undefined where /proc is missing. */
export const rssOf = (pid: number): number | undefined => {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const m = /VmRSS:\s+(\d+) kB/.exec(status)
    return m ? Number(m[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/**
 * The fields of /proc/<pid>/stat from the third on (state), after the
 * command name (which may hold spaces); undefined where /proc is missing.
 */
const statOf = (pid: number): Array<string> | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  } catch {
    return undefined
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc (utime is field 14, stime 15). */
export const cpuOf = (pid: number): number | undefined => {
  const rest = statOf(pid)
  return rest === undefined ? undefined : (Number(rest[11]) + Number(rest[12])) / 100
}

/** Minor page faults a process has taken so far (field 10): each a fresh page touched, dear on some VMs. */
export const faultsOf = (pid: number): number | undefined => {
  const rest = statOf(pid)
  return rest === undefined ? undefined : Number(rest[7])
}

/** A timeout that does not keep the process alive (for races against a child's exit). */
export const timeout = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref())
