/**
 * `TaskContext`: what a running handler knows about its task (Celery's
 * `bind=True` / `self.request`), and what it can do to it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TaskContext } from "@errand/core"
 *
 * const handler = Effect.gen(function*() {
 *   const ctx = yield* TaskContext.TaskContext
 *   yield* ctx.updateState("PROGRESS", { done: 3, of: 10 })
 *   if (ctx.retries < 2) return yield* ctx.retry({ countdown: "5 seconds" })
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect } from "effect"
import type { BrokerError } from "./Errors.ts"
import { info, RetryRequested } from "./Errors.ts"

/**
 * @since 0.1.0
 */
export interface Service {
  /** The task id. */
  readonly id: string
  /** The task's name. */
  readonly task: string
  readonly queue: string
  /** How often the task was retried before this attempt (0 on the first run). */
  readonly retries: number
  /** When the task was first due, if it had a countdown or eta (ms since the epoch). */
  readonly eta: number | undefined
  readonly headers: Readonly<Record<string, string>>
  /** The worker running this attempt. */
  readonly worker: string
  /** Set a custom state with meta, visible to `Client.status` (Celery's `update_state`). */
  readonly updateState: (state: string, meta?: unknown) => Effect.Effect<void, BrokerError>
  /**
   * Ask to be run again, after `countdown` (default: the policy's next
   * delay). Counts against `maxRetries`; past it the task fails with
   * `MaxRetriesExceeded`.
   */
  readonly retry: (options?: {
    readonly countdown?: Duration.Input | undefined
    readonly reason?: unknown
  }) => Effect.Effect<never, RetryRequested>
}

/**
 * The running task's context.
 *
 * @since 0.1.0
 */
export class TaskContext extends Context.Service<TaskContext, Service>()("@errand/core/TaskContext") {}

/**
 * Builds the `retry` operation of a context.
 *
 * @since 0.1.0
 */
export const retryRequest = (options?: {
  readonly countdown?: Duration.Input | undefined
  readonly reason?: unknown
}): Effect.Effect<never, RetryRequested> => {
  const countdownMillis = options?.countdown === undefined
    ? undefined
    : Duration.toMillis(Duration.fromInputUnsafe(options.countdown))
  const reason = options?.reason
  return Effect.fail(
    new RetryRequested({
      ...(countdownMillis === undefined ? {} : { countdownMillis }),
      ...(reason === undefined ? {} : { reason: info(reason) }),
      message: countdownMillis === undefined
        ? "the handler asked to be retried"
        : `the handler asked to be retried in ${countdownMillis} ms`
    })
  )
}
