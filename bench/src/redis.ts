/** The orchestrator's own Redis connection: server info, probes, and deleting a run's keys. */
import { createClient } from "redis"

export type Client = ReturnType<typeof createClient>

export const connect = async (url: string): Promise<Client> => {
  // no reconnect loop: an unreachable Redis fails the connect at once
  const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 5000 } })
  client.on("error", () => {})
  await client.connect()
  return client
}

export const info = async (client: Client) => {
  const text = String(await client.sendCommand(["INFO", "server"]))
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, "m").exec(text)?.[1]?.trim()
  return { version: field("redis_version") ?? "?", mode: field("redis_mode") ?? "?" }
}

export const usedMemory = async (client: Client): Promise<number> => {
  const text = String(await client.sendCommand(["INFO", "memory"]))
  return Number(/^used_memory:(\d+)/m.exec(text)?.[1] ?? NaN)
}

/** Deletes every key matching one of the patterns (SCAN + UNLINK); returns how many. */
export const deleteKeys = async (client: Client, patterns: ReadonlyArray<string>): Promise<number> => {
  let deleted = 0
  for (const pattern of patterns) {
    let cursor = "0"
    do {
      const reply = await client.sendCommand(["SCAN", cursor, "MATCH", pattern, "COUNT", "10000"]) as [string, Array<string>]
      cursor = String(reply[0])
      const keys = reply[1]
      if (keys.length > 0) deleted += Number(await client.sendCommand(["UNLINK", ...keys]))
    } while (cursor !== "0")
  }
  return deleted
}

export const num = async (client: Client, ...args: Array<string>): Promise<number> =>
  Number(await client.sendCommand(args))

/** Redis server CPU seconds so far (user + sys, all threads). */
export const cpu = async (client: Client): Promise<number> => {
  const text = String(await client.sendCommand(["INFO", "cpu"]))
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(text)?.[1] ?? NaN)
  return field("used_cpu_user") + field("used_cpu_sys")
}

/** Time Redis has spent inside scripts so far (`EVALSHA` and `EVAL`, µs) and how many ran. */
export const scriptTime = async (client: Client): Promise<{ readonly micros: number; readonly calls: number }> => {
  const text = String(await client.sendCommand(["INFO", "commandstats"]))
  let micros = 0
  let calls = 0
  for (const m of text.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)/gm)) {
    calls += Number(m[1])
    micros += Number(m[2])
  }
  return { micros, calls }
}
