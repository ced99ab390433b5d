/**
 * The one error the commands fail with: a message for a person and an exit
 * code. `bin.ts` prints it as `errand: <message>` on stderr, never a stack
 * trace.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"

/**
 * A failure the CLI reports and exits with.
 *
 * @since 0.1.0
 */
export class Fatal extends Schema.TaggedError<Fatal>()("Fatal", {
  message: Schema.String,
  /** The process exit code (1 unless said otherwise). */
  exitCode: Schema.Number
}) {}

/**
 * Exit codes.
 *
 * @since 0.1.0
 */
export const ExitCode = {
  /** Something failed: Redis unreachable, a module that does not load, a refused operation. */
  failure: 1,
  /** The id names no task (never submitted, or its record expired). */
  notFound: 3,
  /** The user declined (purge answered "no"). */
  declined: 4
} as const

/**
 * Fails with a `Fatal`.
 *
 * @since 0.1.0
 */
export const fail = (message: string, exitCode: number = ExitCode.failure): Effect.Effect<never, Fatal> =>
  Effect.fail(new Fatal({ message, exitCode }))

/**
 * The message of anything thrown or failed, without a stack.
 *
 * @since 0.1.0
 */
export const messageOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    return error.message
  }
  return String(error)
}
