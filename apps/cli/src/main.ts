/**
 * The `errand` executable: runs the command tree with `NodeRuntime.runMain`.
 * A command that fails prints `errand: <message>` on stderr (no stack trace)
 * and exits with its code (1, 3 unknown id, 4 declined, 2 usage); a worker
 * stopped by SIGTERM/SIGINT after a clean shutdown exits 0.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Effect, Exit, type Runtime } from "effect"
import { CliError, Command } from "effect/cli"
import { errand, version } from "./Cli.ts"
import { messageOf } from "./Fatal.ts"
import { processState } from "./ProcessState.ts"

const report = (message: string, code: number) =>
  Effect.sync(() => {
    process.stderr.write(`errand: ${message}\n`)
    processState.exitCode = code
  })

const main = Command.run(errand, { version }).pipe(
  Effect.catch((error) => {
    if (CliError.isCliError(error)) {
      // help and parse errors were printed by the CLI; `--help` alone is not an error
      if (error._tag === "ShowHelp" && error.errors.length === 0) return Effect.void
      return Effect.sync(() => {
        processState.exitCode = 2
      })
    }
    if (typeof error === "object" && error !== null && "_tag" in error && error._tag === "Fatal") {
      const fatal = error as unknown as { message: string; exitCode: number }
      return report(fatal.message, fatal.exitCode)
    }
    return report(messageOf(error), 1)
  }),
  Effect.catchCause((cause) =>
    Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : process.env.ERRAND_DEBUG
      ? report(`unexpected error:\n${Cause.pretty(cause)}`, 1)
      : report(`unexpected error: ${messageOf(Cause.squash(cause))} (set ERRAND_DEBUG=1 for details)`, 1)
  ),
  Effect.provide(NodeServices.layer)
)

const teardown: Runtime.Teardown = (exit, onExit) => {
  if (Exit.isSuccess(exit)) return onExit(processState.exitCode)
  if (Cause.hasInterruptsOnly(exit.cause)) return onExit(processState.stoppedCleanly ? 0 : 130)
  return onExit(1)
}

NodeRuntime.runMain(main, { disableErrorReporting: true, teardown })
