/**
 * A Redis for tests: `REDIS_URL` when set, else a `redis-server` started on a
 * free port (no persistence) and stopped after the file's tests. Each test
 * gets its own random key prefix and deletes only its own keys.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "@effect/vitest"
import { createClient } from "redis"

const binary = process.env.REDIS_SERVER ?? "redis-server"

const hasBinary = (): boolean => spawnSync(binary, ["--version"], { stdio: "ignore" }).status === 0

/** A free TCP port on 127.0.0.1. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const canConnect = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.end("PING\r\n")
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

/** A `redis-server` process this test started. */
export interface RedisServer {
  readonly url: string
  readonly port: number
  /** Stops the server (SIGTERM, then SIGKILL) and waits for it to exit. */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port with the same options. */
  readonly start: () => Promise<void>
}

/**
 * Starts `redis-server` on a free port (or `port`), in `dir` (default: a new
 * temp dir). Fails with how to get Redis when the binary is missing.
 */
export const startRedisServer = async (options: {
  readonly port?: number | undefined
  readonly appendonly?: boolean | undefined
  readonly dir?: string | undefined
  /** Serve TLS only, with this certificate and key (PEM files). */
  readonly tls?: { readonly cert: string; readonly key: string } | undefined
  readonly password?: string | undefined
  /** More `redis-server` options, e.g. `["--maxmemory-policy", "allkeys-lru"]`. */
  readonly args?: ReadonlyArray<string> | undefined
} = {}): Promise<RedisServer> => {
  if (!hasBinary()) {
    throw new Error(
      "These tests need Redis: install it (`apt-get install redis-server`, `brew install redis`) " +
        "or point REDIS_URL at a running server (e.g. REDIS_URL=redis://127.0.0.1:6379/15)."
    )
  }
  const port = options.port ?? await freePort()
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "errand-redis-"))
  const listen = options.tls === undefined
    ? ["--port", String(port)]
    : [
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--tls-cert-file",
      options.tls.cert,
      "--tls-key-file",
      options.tls.key,
      "--tls-auth-clients",
      "no"
    ]
  const args = [
    ...listen,
    ...(options.password === undefined ? [] : ["--requirepass", options.password]),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--appendonly",
    options.appendonly === true ? "yes" : "no",
    "--appendfsync",
    "always",
    ...(options.args ?? [])
  ]
  let child: ChildProcess | undefined
  let output = ""
  const start = async () => {
    const proc = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] })
    child = proc
    proc.stdout?.on("data", (d) => (output += String(d)))
    proc.stderr?.on("data", (d) => (output += String(d)))
    const until = Date.now() + 10_000
    while (!(await canConnect(port))) {
      if (proc.exitCode !== null || Date.now() > until) {
        proc.kill("SIGKILL")
        throw new Error(`redis-server did not start on port ${port}:\n${output}`)
      }
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  const stop = async () => {
    const proc = child
    child = undefined
    if (proc === undefined || proc.exitCode !== null) return
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()))
    proc.kill("SIGTERM")
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000)
    await exited
    clearTimeout(timer)
  }
  await start()
  const auth = options.password === undefined ? "" : `:${encodeURIComponent(options.password)}@`
  const scheme = options.tls === undefined ? "redis" : "rediss"
  return { url: `${scheme}://${auth}127.0.0.1:${port}`, port, stop, start }
}

/**
 * The Redis to test against: `REDIS_URL`, or a server started for this file.
 * Call in `beforeAll`; call the returned `stop` in `afterAll`.
 */
export const testRedis = async (): Promise<{ readonly url: string; readonly stop: () => Promise<void> }> => {
  const url = process.env.REDIS_URL
  if (url !== undefined && url !== "") return { url, stop: async () => {} }
  const server = await startRedisServer()
  return { url: server.url, stop: server.stop }
}

/** A fresh key prefix for one test. */
export const randomPrefix = (): string => `errand-test-${Math.random().toString(36).slice(2, 10)}`

/** Deletes the keys under `prefix` (`{prefix:…}…` and `prefix:…`), and only those. */
export const deletePrefix = async (url: string, prefix: string): Promise<number> => {
  const client = createClient({ url })
  client.on("error", () => {})
  await client.connect()
  let deleted = 0
  try {
    for (const pattern of [`{${prefix}:*`, `${prefix}:*`]) {
      const keys: Array<string> = []
      for await (const batch of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
        keys.push(...batch)
      }
      for (let i = 0; i < keys.length; i += 500) {
        deleted += await client.del(keys.slice(i, i + 500))
      }
    }
  } finally {
    await client.close()
  }
  return deleted
}

/** Runs one raw command against `url` (for inspecting keys in tests). */
export const command = async <A>(url: string, ...args: Array<string>): Promise<A> => {
  const client = createClient({ url })
  client.on("error", () => {})
  await client.connect()
  try {
    return await client.sendCommand(args) as A
  } finally {
    await client.close()
  }
}

/** The test Redis of this file: started before its tests, stopped after. */
export const useTestRedis = (): { readonly url: () => string } => {
  let url = ""
  let stop: () => Promise<void> = async () => {}
  beforeAll(async () => {
    const redis = await testRedis()
    url = redis.url
    stop = redis.stop
  })
  afterAll(() => stop())
  return { url: () => url }
}
