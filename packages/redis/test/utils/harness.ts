/**
 * Runs an Effect test against a fresh `RedisBroker` layer with its own key
 * prefix, and deletes that prefix's keys afterwards.
 */
import { Broker, type Submission } from "@errand/core/Broker"
import type { BrokerError } from "@errand/core/Errors"
import type { Message } from "@errand/core/Message"
import { ResultBackend } from "@errand/core/ResultBackend"
import { RedisBroker } from "@errand/redis"
import { Clock, type Duration, Effect, type Scope } from "effect"
import { deletePrefix, randomPrefix } from "./redis.ts"

/** What a test body may use. */
export type Services = Broker | ResultBackend | RedisBroker.Handle | Scope.Scope

/** Runs `body` against a fresh broker on `url`. */
export const withBroker = <A, E>(
  url: () => string,
  body: (prefix: string) => Effect.Effect<A, E, Services>,
  options: { readonly resultTtl?: Duration.Input } = {}
): Effect.Effect<A, E | BrokerError, Scope.Scope> =>
  Effect.suspend(() => {
    const prefix = randomPrefix()
    // the body's scope (its workers, forked claims) closes before the broker it runs on
    return body(prefix).pipe(
      Effect.scoped,
      Effect.provide(RedisBroker.layer({ url: url(), prefix, resultTtl: options.resultTtl })),
      Effect.ensuring(Effect.promise(() => deletePrefix(url(), prefix)))
    )
  })

/** A message for queue `q` (override any field). */
export const message = (id: string, overrides: Partial<Message> = {}): Message => ({
  id,
  task: "test.task",
  queue: "q",
  payload: { n: 1 },
  headers: {},
  priority: 0,
  retries: 0,
  submittedAt: Date.now(),
  ...overrides
})

/** Enqueues messages due now. */
export const enqueueNow = (...messages: ReadonlyArray<Message>) =>
  Effect.gen(function*() {
    const broker = yield* Broker
    const now = yield* Clock.currentTimeMillis
    return yield* broker.enqueue(messages.map((m): Submission => ({ message: m, dueAt: now })))
  })

/**
 * Enqueues messages due now as `Client` sends the ids it made (`fresh`:
 * nobody can know them yet, so the script does not look them up).
 */
export const enqueueFresh = (...messages: ReadonlyArray<Message>) =>
  Effect.gen(function*() {
    const broker = yield* Broker
    const now = yield* Clock.currentTimeMillis
    return yield* broker.enqueue(messages.map((m): Submission => ({ message: m, dueAt: now, fresh: true })))
  })

/** Claims from queue `q` without waiting. */
export const claimNow = (max = 10, leaseMillis = 30_000, worker = "w1", queues: ReadonlyArray<string> = ["q"]) =>
  Broker.use((broker) => broker.claim({ queues, worker, max, leaseMillis, waitMillis: 0 }))

/** The record of `id`, which must exist. */
export const record = (id: string) =>
  ResultBackend.use((backend) => backend.get(id)).pipe(
    Effect.map((o) => {
      if (o._tag === "None") throw new Error(`no record for ${id}`)
      return o.value
    })
  )

/** An attempt entry for history. */
export const attempt = (
  outcome: "SUCCESS" | "FAILURE" | "RETRY" | "REVOKED" | "LOST" | "STALE" | "DEAD",
  n = 0,
  worker = "w1"
) => ({ attempt: n, worker, startedAt: 1, endedAt: 2, outcome })
