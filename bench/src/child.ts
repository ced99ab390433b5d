/**
 * Entry point of every Node child process: `child.ts <role> <config json>`.
 * Roles are `<system>.<part>`: errand.worker, errand.producer, errand.paced,
 * errand.memory, bullmq.worker, bullmq.producer, bullmq.paced, and the
 * latency workload's floor, raw.worker and raw.paced (node-redis alone).
 */
import type { RoleConfig } from "./config.ts"
import { report } from "./ipc.ts"

const [role, raw] = process.argv.slice(2)
const config = JSON.parse(raw ?? "{}") as RoleConfig

const main = async () => {
  switch (role) {
    case "errand.worker":
      return (await import("./errand.ts")).worker(config)
    case "errand.producer":
      return (await import("./errand.ts")).producer(config)
    case "errand.paced":
      return (await import("./errand.ts")).paced(config)
    case "errand.memory":
      return (await import("./errand.ts")).inMemory(config)
    case "errand.steps":
      return (await import("./errand.ts")).steps(config)
    case "bullmq.worker":
      return (await import("./bullmq.ts")).worker(config)
    case "bullmq.producer":
      return (await import("./bullmq.ts")).producer(config)
    case "bullmq.paced":
      return (await import("./bullmq.ts")).paced(config)
    case "raw.worker":
      return (await import("./raw.ts")).worker(config)
    case "raw.paced":
      return (await import("./raw.ts")).paced(config)
    default:
      throw new Error(`unknown role ${role}`)
  }
}

main().then(
  () => {
    // Let the last IPC message flush, then leave (open connections would keep us alive).
    setTimeout(() => process.exit(0), 50)
  },
  (error: unknown) => {
    report({ type: "error", message: error instanceof Error ? error.stack ?? error.message : String(error) })
    setTimeout(() => process.exit(1), 50)
  }
)
