/**
 * The `ResultBackend` service: what is known of each task, and waiting for it
 * to end. The broker writes records as tasks move; the result backend reads
 * them and takes the writes that happen outside a queue step (custom states,
 * late outcomes of stale attempts).
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Option } from "effect"
import type { BrokerError } from "./Errors.ts"
import type { Attempt, TaskRecord } from "./Message.ts"

/**
 * The result backend.
 *
 * @since 0.1.0
 */
export class ResultBackend extends Context.Service<ResultBackend, {
  readonly get: (id: string) => Effect.Effect<Option.Option<TaskRecord>, BrokerError>
  /** Set a custom state (or a built-in one) with meta, unless the task already ended. `false`: it had. */
  readonly setState: (id: string, state: string, meta: unknown) => Effect.Effect<boolean, BrokerError>
  /** Append the late outcome of an attempt whose lease had been taken over. */
  readonly recordStale: (id: string, attempt: Attempt) => Effect.Effect<void, BrokerError>
  /**
   * Wait until the task is in a final state and return its record. Fails
   * with no error while waiting; interrupt it (or use a timeout) to stop.
   * `None` when the task is unknown.
   */
  readonly awaitFinal: (id: string) => Effect.Effect<Option.Option<TaskRecord>, BrokerError>
}>()("@errand/core/ResultBackend") {}
