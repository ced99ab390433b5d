/**
 * Where the commands find the broker: `--redis` (or `ERRAND_REDIS_URL`) and
 * `--prefix` (or `ERRAND_REDIS_PREFIX`), shared by every subcommand.
 *
 * @since 0.1.0
 */
import type { Broker } from "@errand/core/Broker"
import type { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import { Config, type Context, Effect, Layer, Option, References, type Scope } from "effect"
import { Flag } from "effect/cli"
import { fail, type Fatal } from "./Fatal.ts"

/**
 * `--redis <url>`, falling back to `ERRAND_REDIS_URL`.
 *
 * @since 0.1.0
 */
export const redisFlag = Flag.String("redis").pipe(
  Flag.withMetavar("url"),
  Flag.withDescription(
    "Redis URL, redis[s]://[[user][:password]@]host[:port][/db] (default: $ERRAND_REDIS_URL)"
  ),
  Flag.withFallbackConfig(Config.String("ERRAND_REDIS_URL")),
  Flag.optional
)

/**
 * `--prefix <prefix>`, falling back to `ERRAND_REDIS_PREFIX`, then `errand`.
 *
 * @since 0.1.0
 */
export const prefixFlag = Flag.String("prefix").pipe(
  Flag.withMetavar("prefix"),
  Flag.withDescription("Key prefix of the errand deployment (default: $ERRAND_REDIS_PREFIX, else errand)"),
  Flag.withFallbackConfig(Config.String("ERRAND_REDIS_PREFIX")),
  Flag.withDefault("errand")
)

/**
 * The connection flags, to spread into a command's config.
 *
 * @since 0.1.0
 */
export const flags = { redis: redisFlag, prefix: prefixFlag } as const

/**
 * What the connection flags parsed to.
 *
 * @since 0.1.0
 */
export interface Connection {
  readonly redis: Option.Option<string>
  readonly prefix: string
}

/** `host:port/db` of a Redis URL, without credentials. */
export const where = (url: string): string => {
  try {
    const u = new URL(url)
    const db = u.pathname.replace(/^\//, "") || "0"
    return `${u.hostname}:${u.port || "6379"}/${db}`
  } catch {
    return "?"
  }
}

/**
 * Checks the URL before any connection is tried, so a typo says what is
 * wrong instead of timing out.
 *
 * @since 0.1.0
 */
export const checkUrl = (connection: Connection): Effect.Effect<string, Fatal> => {
  if (Option.isNone(connection.redis) || connection.redis.value.trim() === "") {
    return fail("no Redis to connect to: pass --redis <url> or set ERRAND_REDIS_URL")
  }
  const url = connection.redis.value.trim()
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return fail(`--redis "${redact(url)}" is not a URL; expected redis[s]://[[user][:password]@]host[:port][/db]`)
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    return fail(`--redis "${redact(url)}" is not a redis:// or rediss:// URL`)
  }
  if (parsed.hostname === "") return fail(`--redis "${redact(url)}" names no host`)
  const db = parsed.pathname.replace(/^\//, "")
  if (db !== "" && !/^\d+$/.test(db)) return fail(`--redis "${redact(url)}": the database must be a number, got "${db}"`)
  return Effect.succeed(url)
}

/** The URL with its password replaced by `***`. */
export const redact = (url: string): string => url.replace(/\/\/([^/@]*):([^/@]*)@/, "//$1:***@")

/**
 * Describes the deployment for headers: `Redis 127.0.0.1:6379/0, prefix errand`.
 *
 * @since 0.1.0
 */
export const describe = (url: string, prefix: string): string => `Redis ${where(url)}, prefix ${prefix}`

/**
 * Connects to Redis: the `Broker`, `ResultBackend` and `Handle` in the current
 * scope. Fails with a `Fatal` saying where and why when Redis does not answer.
 *
 * @since 0.1.0
 */
export const connect = (
  connection: Connection
): Effect.Effect<Context.Context<Broker | ResultBackend | RedisBroker.Handle>, Fatal, Scope.Scope> =>
  Effect.gen(function*() {
    const url = yield* checkUrl(connection)
    return yield* Layer.build(
      RedisBroker.layer({ url, prefix: connection.prefix, client: { socket: { connectTimeout: 5_000 } } })
    ).pipe(
      Effect.catch((error) => fail(`${error.message}`)),
      // The client logs every socket error with its stack; the broker's own
      // errors already say where and why (ERRAND_DEBUG=1 shows both).
      process.env.ERRAND_DEBUG ? (effect) => effect : Effect.provideService(References.MinimumLogLevel, "Error")
    )
  })
