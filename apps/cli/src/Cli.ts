/**
 * The `errand` command: run workers and operate a deployment.
 *
 * ```sh
 * errand worker --tasks ./src/tasks.ts --redis redis://127.0.0.1:6379
 * errand status <id> [--json]
 * errand inspect [--json]
 * errand revoke <id> [--terminate]
 * errand retry <id>
 * errand purge <queue> [--yes]
 * ```
 *
 * @since 0.1.0
 */
import { Command } from "effect/cli"
import { inspect, purge, retry, revoke, status } from "./commands/tools.ts"
import * as WorkerCommand from "./commands/worker.ts"

/**
 * The version `errand --version` prints.
 *
 * @since 0.1.0
 */
export const version = "0.1.0"

/**
 * The command tree.
 *
 * @since 0.1.0
 */
export const errand = Command.make("errand").pipe(
  Command.withDescription(
    "errand: typed task queues for Effect. Run workers and inspect, revoke, retry and purge tasks on Redis " +
      "(--redis or $ERRAND_REDIS_URL, --prefix or $ERRAND_REDIS_PREFIX)"
  ),
  Command.withSubcommands([WorkerCommand.command, status, inspect, revoke, retry, purge])
)
