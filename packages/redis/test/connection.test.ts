/**
 * Connection URLs: password, database number and `rediss://` (TLS) reach the
 * server they name.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core/Broker"
import { RedisBroker } from "@errand/redis"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Exit, Logger, References } from "effect"
import { claimNow, enqueueNow, message } from "./utils/harness.ts"
import { command, type RedisServer, startRedisServer } from "./utils/redis.ts"

let server: RedisServer | undefined
let cert = ""

beforeAll(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "errand-tls-"))
  const made = spawnSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-keyout",
    path.join(dir, "key.pem"),
    "-out",
    path.join(dir, "cert.pem")
  ], { stdio: "pipe" })
  if (made.status !== 0) throw new Error(`openssl could not make a test certificate: ${String(made.stderr)}`)
  cert = fs.readFileSync(path.join(dir, "cert.pem"), "utf8")
  server = await startRedisServer({
    dir,
    password: "s3cret/pw",
    tls: { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem") }
  })
})

afterAll(async () => {
  await server?.stop()
})

describe("RedisBroker connection", () => {
  it.live("rediss:// with a password and a database number", () =>
    Effect.gen(function*() {
      const url = `${server!.url}/3`
      expect(url).toMatch(/^rediss:\/\/:s3cret%2Fpw@127\.0\.0\.1:\d+\/3$/)
      yield* Effect.gen(function*() {
        yield* enqueueNow(message("a"))
        const [d] = yield* claimNow()
        expect(d.id).toBe("a")
        const handle = yield* RedisBroker.Handle
        const info = yield* handle.redis.send<string>("CLIENT", "INFO")
        expect(info).toContain("db=3")
        expect(yield* handle.redis.send<number>("DBSIZE")).toBeGreaterThan(0)
      }).pipe(Effect.provide(RedisBroker.layer({ url, prefix: "conn", client: { socket: { tls: true, ca: cert } } })))
    }))

  it.live("a wrong password fails the layer with a BrokerError", () =>
    Effect.gen(function*() {
      const url = server!.url.replace("s3cret%2Fpw", "wrong")
      const exit = yield* Broker.use((b) => b.stats(["q"])).pipe(
        Effect.provide(RedisBroker.layer({ url, client: { socket: { tls: true, ca: cert } } })),
        Effect.exit
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      const error = reason?._tag === "Fail" ? reason.error : undefined
      expect(error?._tag).toBe("BrokerError")
      expect(error?.message).toMatch(/^Could not connect to Redis at 127\.0\.0\.1:\d+: .*(WRONGPASS|invalid username-password)/)
      expect(error?.message).not.toContain("wrong@")
    }).pipe(Effect.provideService(References.MinimumLogLevel, "Error")))

  it.live("TLS with an untrusted certificate fails with a BrokerError", () =>
    Effect.gen(function*() {
      const exit = yield* Broker.use((b) => b.stats(["q"])).pipe(
        Effect.provide(RedisBroker.layer({ url: server!.url })),
        Effect.exit
      )
      const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      const error = reason?._tag === "Fail" ? reason.error : undefined
      expect(error?._tag).toBe("BrokerError")
      expect(error?.message).toMatch(/certificate/i)
    }).pipe(Effect.provideService(References.MinimumLogLevel, "Error")))
})

describe("RedisBroker and Redis's eviction policy", () => {
  // what the layer logs while it is built, as text
  const warningsOf = (url: string) =>
    Effect.gen(function*() {
      const logged: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel === "Warn") logged.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
      yield* Broker.use((b) => b.stats(["q"])).pipe(
        Effect.provide(RedisBroker.layer({ url, prefix: "evict" })),
        Effect.provide(Logger.layer([logger]))
      )
      return logged
    })

  it.live("a Redis that may evict keys gets a warning that names the policy and the fix; noeviction none", () =>
    Effect.gen(function*() {
      const lru = yield* Effect.acquireRelease(
        Effect.promise(() => startRedisServer({ args: ["--maxmemory-policy", "allkeys-lru"] })),
        (s) => Effect.promise(() => s.stop())
      )
      const warned = yield* warningsOf(lru.url)
      const eviction = warned.filter((w) => w.includes("maxmemory-policy"))
      expect(eviction).toHaveLength(1)
      expect(eviction[0]).toContain(`Redis at 127.0.0.1:${lru.port} evicts keys`)
      expect(eviction[0]).toContain("maxmemory-policy allkeys-lru")
      expect(eviction[0]).toContain("CONFIG SET maxmemory-policy noeviction")

      // Redis's default: nothing to say
      yield* Effect.promise(() => command(lru.url, "CONFIG", "SET", "maxmemory-policy", "noeviction"))
      expect((yield* warningsOf(lru.url)).filter((w) => w.includes("maxmemory-policy"))).toEqual([])
    }).pipe(Effect.scoped), 30_000)
})
