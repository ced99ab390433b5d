/**
 * Redis cost of each broker step, per task (a tool, not a test): runs N
 * tasks through enqueue, claim, start and complete in the batch sizes a
 * worker uses, and reads the server's `INFO commandstats` (time spent inside
 * EVALSHA, i.e. the scripts) and `INFO cpu` (all server CPU, parsing and replies included) around each
 * step. Use a Redis nobody else is using: both figures are server-wide.
 *
 *   REDIS_URL=redis://127.0.0.1:6390 node packages/redis/bench/steps.ts [tasks] [rounds]
 *
 * A/B: BASE=<dir> measures another copy of `src/` instead, kept under
 * packages/redis/ so its imports resolve (bench/.gitignore ignores base*):
 *   mkdir -p packages/redis/bench/base && git archive <commit> packages/redis/src \
 *     | tar -x --strip-components=3 -C packages/redis/bench/base
 *
 * Env: HASH=1 sends tasks that take the hash lane (`storeResult: true`); FRESH=0 submits ids as a caller's own (looked up at enqueue), not as
 * ids `Client` made (`Submission.fresh`); CLAIM_START=1 claims with `start` (the claim starts every task, no
 * separate start step); STORE=1 stores results; KEEP=0 completes with
 * `keepRecord: false` (nothing kept of a success); PREFETCH (claim batch, 200),
 * BATCH (start/complete batch, 50); TTL (the result TTL, "1 minute"; a short one, such as "1
 * millis", has complete trim expired done records as it does in a steady state). CALLGRIND=1: the server runs under
 * `valgrind --tool=callgrind` (with its pid as the only one): each phase is
 * zeroed and dumped with `callgrind_control`, and the instruction count per
 * task is printed, a figure that other load on the machine does not move:
 *   cd /tmp/cg && valgrind --tool=callgrind --callgrind-out-file=/tmp/cg/callgrind.out.%p \
 *     redis-server --port 6391 --save "" --appendonly no &
 *   CALLGRIND=1 CALLGRIND_DIR=/tmp/cg REDIS_URL=redis://127.0.0.1:6391 node packages/redis/bench/steps.ts 20000 2
 * Use rounds of many tasks (20,000): every round starts from empty keys, and
 * a hash of few entries with short values is a listpack (up to
 * hash-max-listpack-entries, 128 by default and 512 in Debian's config),
 * whose lookups scan it, so small rounds weigh that phase far more than a
 * busy queue does.
 */
import type * as Broker from "@errand/core/Broker"
import { Broker as BrokerService } from "@errand/core/Broker"
import * as Current from "@errand/redis/RedisBroker"
import { Message } from "@errand/core/Message"
import { Effect, Schema } from "effect"
import { execSync } from "node:child_process"
import { createClient } from "redis"

const decodeMessage = Schema.decodeUnknownSync(Message)

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const n = Number(process.argv[2] ?? 20_000)
const rounds = Number(process.argv[3] ?? 3)
const claimStart = process.env.CLAIM_START === "1"
const store = process.env.STORE === "1"
const keep = process.env.KEEP !== "0"
const prefetch = Number(process.env.PREFETCH ?? 200)
const B = Number(process.env.BATCH ?? 50)

// BASE=<dir>: measure another copy of src/ (e.g. the last commit's, for A/B)
const RedisBroker: typeof Current = process.env.BASE
  ? await import(new URL(`${process.env.BASE}/RedisBroker.ts`, `file://${process.cwd()}/`).href)
  : Current

const admin = createClient({ url })
await admin.connect()

const stats = async () => {
  const cmd = String(await admin.sendCommand(["INFO", "commandstats"]))
  const cpu = String(await admin.sendCommand(["INFO", "cpu"]))
  const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(cmd)
  const f = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(cpu)?.[1] ?? NaN)
  return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0), cpu: f("used_cpu_user") + f("used_cpu_sys") }
}

const callgrind = process.env.CALLGRIND === "1"
// only the Redis server's callgrind (another callgrind run on the machine is left alone)
const target = process.env.CALLGRIND_TARGET ?? "redis-server"
const irs: Record<string, Array<number>> = {}
const instructions = (name: string) => {
  execSync(`callgrind_control -d ${name} ${target}`, { stdio: "ignore" })
  // the newest dump file holds the phase's totals
  const dir = process.env.CALLGRIND_DIR ?? "."
  const files = execSync(`ls ${dir}/callgrind.out.*.* | sort -t. -k4 -n | tail -1`, { encoding: "utf8" }).trim().split("\n")
  const text = execSync(`grep -m1 -E '^(summary|totals):' ${files[0]}`, { encoding: "utf8" })
  ;(irs[name] ??= []).push(Number(text.split(":")[1]!.trim()) / n)
}

const results: Record<string, Array<{ script: number; cpu: number; calls: number }>> = {}

const program = Effect.gen(function*() {
  const broker = yield* BrokerService
  const queue = "steps"
  const phase = <A, E>(name: string, effect: Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const s0 = yield* Effect.promise(stats)
      if (callgrind) execSync(`callgrind_control -z ${target}`, { stdio: "ignore" })
      const a = yield* effect
      if (callgrind) instructions(name)
      const s1 = yield* Effect.promise(stats)
      ;(results[name] ??= []).push({
        script: (s1.usec - s0.usec) / n,
        cpu: ((s1.cpu - s0.cpu) * 1e6) / n,
        calls: s1.calls - s0.calls
      })
      return a
    })
  for (let r = 0; r < rounds; r++) {
    const at = Date.now()
    const submission = (i: number): Broker.Submission => ({
      message: {
        id: `${at}-${r}-${i}-0123456789abcdef0123`,
        task: "bench.noop",
        queue,
        payload: { n: i, t: 0 },
        headers: {},
        priority: 5,
        retries: 0,
        submittedAt: at,
        // as a Task with storeResult false sends it (Redis's fast lane); HASH=1:
        // storeResult true said outright (the hash lane, as a countdown or a retry takes)
        ...(process.env.HASH === "1" ? { storeResult: true } : store ? {} : { storeResult: false })
      },
      dueAt: at,
      // as `Client` submits the ids it makes (FRESH=0: as a caller's own ids, looked up)
      fresh: process.env.FRESH !== "0"
    })
    yield* phase(
      "enqueue",
      Effect.forEach(
        Array.from({ length: Math.ceil(n / 1000) }, (_, k) => k),
        (k) => broker.enqueue(Array.from({ length: Math.min(1000, n - k * 1000) }, (_, j) => submission(k * 1000 + j))),
        { discard: true }
      )
    )
    const deliveries: Array<Broker.Delivery> = []
    yield* phase(
      claimStart ? "claim+start" : "claim",
      Effect.gen(function*() {
        while (deliveries.length < n) {
          const got = yield* broker.claim({
            queues: [queue],
            worker: "w",
            max: prefetch,
            leaseMillis: 60_000,
            waitMillis: 0,
            start: claimStart ? prefetch : 0
          })
          if (got.length === 0) break
          deliveries.push(...got)
        }
      })
    )
    const chunks = Array.from({ length: Math.ceil(deliveries.length / B) }, (_, k) => deliveries.slice(k * B, k * B + B))
    if (!claimStart) {
      yield* phase(
        "start",
        Effect.forEach(chunks, (c) =>
          broker.start(c.map((d) => ({ id: d.id, token: d.token, queue, worker: "w", startedAt: at, ackEarly: false }))), {
          discard: true
        })
      )
    }
    yield* phase(
      "complete",
      Effect.forEach(chunks, (c) =>
        broker.complete(c.map((d) => ({
          // as a worker completes: with the delivery's queue and message
          id: d.id,
          token: d.token,
          queue,
          message: decodeMessage(d.message),
          state: "SUCCESS" as const,
          result: 1,
          storeResult: store,
          ...(keep ? {} : { keepRecord: false }),
          attempt: { attempt: 0, worker: "w", startedAt: at, endedAt: at, outcome: "SUCCESS" as const }
        }))), { discard: true })
    )
  }
})

const prefix = `steps-${Date.now()}`
const resultTtl = process.env.TTL ?? "1 minute"
await Effect.runPromise(program.pipe(Effect.provide(RedisBroker.layer({ url, prefix, resultTtl }))))

const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
let totalScript = 0
let totalCpu = 0
let minScript = 0
console.log(`${n} tasks x ${rounds} rounds, claim batch ${prefetch}, start/complete batch ${B}${claimStart ? ", claim starts" : ""}${store ? ", results stored" : ""}`)
console.log("step          script µs/task: median (min-max)    server CPU µs/task: median (min)")
for (const [name, rs] of Object.entries(results)) {
  const s = rs.map((x) => x.script)
  const c = rs.map((x) => x.cpu)
  totalScript += median(s)
  minScript += Math.min(...s)
  totalCpu += median(c)
  console.log(
    `${name.padEnd(13)} ${median(s).toFixed(2).padStart(6)} (${Math.min(...s).toFixed(2)}-${Math.max(...s).toFixed(2)})${
      "".padEnd(18)
    } ${median(c).toFixed(1).padStart(6)} (${Math.min(...c).toFixed(1)})`
  )
}
if (callgrind) {
  let total = 0
  for (const [name, xs] of Object.entries(irs)) {
    const m = median(xs)
    total += m
    console.log(`instructions/task ${name.padEnd(13)} ${m.toFixed(0)} (${xs.map((x) => x.toFixed(0)).join(" ")})`)
  }
  console.log(`instructions/task ${"total".padEnd(13)} ${total.toFixed(0)}`)
}
console.log(`${"total".padEnd(13)} ${totalScript.toFixed(2).padStart(6)} (min ${minScript.toFixed(2)})${"".padEnd(19)} ${totalCpu.toFixed(1).padStart(6)}`)
// leave nothing behind
let cursor = "0"
do {
  const reply = await admin.sendCommand(["SCAN", cursor, "MATCH", `*${prefix}*`, "COUNT", "10000"]) as [string, Array<string>]
  cursor = String(reply[0])
  if (reply[1].length > 0) await admin.sendCommand(["UNLINK", ...reply[1]])
} while (cursor !== "0")
await admin.quit()
