/**
 * The machine's floor for workload (4): no queue at all, node-redis alone.
 * The paced producer pushes each stamped payload with one `LPUSH`; the
 * worker waits on the list with `BLPOP` and reads the clock as the reply
 * arrives. The same rate, warm-up, stamping and processes as the systems'
 * runs, so the difference between a system's latency and this is what the
 * system itself adds to the two hops between sleeping processes (producer →
 * Redis → worker) that any Redis queue makes.
 */
import { createClient } from "redis"
import type { RoleConfig } from "./config.ts"
import { pace, report, settle, summarize } from "./ipc.ts"
import { now } from "./proc.ts"

/** The list the floor's producer pushes to and its worker waits on. */
const listOf = (config: RoleConfig) => `${config.prefix}:raw`

const connect = async (config: RoleConfig) => {
  const client = createClient({ url: config.url })
  client.on("error", (e) => report({ type: "error", message: String(e) }))
  await client.connect()
  return client
}

export const worker = async (config: RoleConfig) => {
  const client = await connect(config)
  const list = listOf(config)
  const latencies: Array<number> = []
  settle()
  report({ type: "ready" })
  for (let n = 0; n < config.tasks; n++) {
    const reply = (await client.sendCommand(["BLPOP", list, "0"])) as [string, string]
    const started = now()
    const [i, t] = reply[1].split(" ").map(Number) as [number, number]
    if (i >= config.warmup) latencies.push(started - t)
  }
  report({ type: "done", at: now(), count: config.tasks, latency: summarize(latencies) })
  await client.close()
}

export const paced = async (config: RoleConfig) => {
  const client = await connect(config)
  const list = listOf(config)
  await pace(config, (n, t) => client.sendCommand(["LPUSH", list, `${n} ${t}`]))
  await client.close()
}
