/**
 * The entry point: turns on Node's compile cache (a worker restarted after a
 * crash starts about twice as fast), then runs the CLI (`main.ts`).
 *
 * @since 0.1.0
 */
import * as module from "node:module"

module.enableCompileCache?.()
await import("./main.ts")
