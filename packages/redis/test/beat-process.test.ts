/**
 * Beat across real processes on a real Redis: three processes run the same
 * beat (a run every second, catch-up "all"); the leader is killed with
 * SIGKILL; another takes over after its lease, and every scheduled second
 * from the first run to the last is submitted exactly once (one task, run
 * once), the ones missed during the takeover (the lease is 2.5 s) caught up.
 */
import { describe, expect, it } from "@effect/vitest"
import { Beat, Client } from "@errand/core"
import { Effect, Option, Schema } from "effect"
import { Tick } from "./fixtures/beat-tasks.ts"
import { type ScriptProcess, spawnWorker, useTestRedis, waitUntil, withPrefix } from "./utils/process.ts"

const redis = useTestRedis()

const script = new URL("./fixtures/beat-worker.ts", import.meta.url).pathname

interface Member extends ScriptProcess {
  readonly id: string
}

const spawnMember = (prefix: string, id: string): Member => ({ id, ...spawnWorker(script, redis.url(), prefix, id) })

const decodeMeta = Schema.decodeUnknownOption(Beat.Meta)

describe("beat across processes on Redis", () => {
  it.live("three processes, the leader killed: each scheduled second is submitted exactly once", () =>
    withPrefix(redis.url, (prefix, members: Array<Member>) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        /** Who leads, and the last second it submitted, from the leader task's record. */
        const leader = Effect.map(Effect.option(client.status(Beat.leaderId("default", 0))), (found) =>
          Option.flatMap(found, (r) => decodeMeta(r.meta)).pipe(
            Option.map((m) => ({ id: m.beat.leader, last: m.beat.entries.tick ?? 0 }))
          ))
        for (const id of ["b-1", "b-2", "b-3"]) members.push(spawnMember(prefix, id))
        const exists = (t: number) => Effect.map(Effect.option(client.status(Beat.runId("default", "tick", t))), Option.isSome)
        // the first leader's checkpoint is its start, then each second it submitted
        yield* waitUntil(
          Effect.flatMap(leader, (l) => Option.isSome(l) ? exists(Math.floor(l.value.last / 1000) * 1000) : Effect.succeed(false)),
          "a leader submits",
          30_000,
          50
        )
        const first = Option.getOrThrow(yield* leader)
        let firstRun = Math.floor(first.last / 1000) * 1000
        while (yield* exists(firstRun - 1000)) firstRun -= 1000
        // let it run a few seconds, then kill it
        yield* waitUntil(Effect.map(leader, (l) => Option.isSome(l) && l.value.last >= firstRun + 2000), "three runs", 20_000, 50)
        const victim = members.find((m) => m.id === first.id)!
        victim.child.kill("SIGKILL")
        expect(yield* Effect.promise(() => victim.exited)).toBeNull()
        const killedAt = Date.now()
        yield* waitUntil(
          Effect.map(leader, (l) => Option.isSome(l) && l.value.id !== first.id),
          "another member leads",
          20_000,
          50
        )
        const second = Option.getOrThrow(yield* leader)
        expect(["b-1", "b-2", "b-3"].filter((id) => id !== first.id)).toContain(second.id)
        // a few runs under the new leader
        yield* waitUntil(Effect.map(leader, (l) => Option.isSome(l) && l.value.last >= killedAt + 3000), "runs after the takeover", 20_000, 50)
        const lastRun = Option.getOrThrow(yield* leader).last

        // every second from the first run to the last has one task, which ran once
        const late: Array<number> = []
        for (let t = firstRun; t <= lastRun; t += 1000) {
          const id = Beat.runId("default", "tick", t)
          const run = yield* client.await({ id, task: Tick }).pipe(Effect.timeout("10 seconds"))
          expect(run).toBe(new Date(t).toISOString())
          const status = yield* client.status(id)
          expect(status.history.filter((h) => h.outcome === "SUCCESS").length).toBe(1)
          if (status.submittedAt - t > 500) late.push(t)
        }
        // the seconds that passed while nobody led were caught up when the new leader took over
        expect(late.length).toBeGreaterThanOrEqual(1)
        // only whole seconds: nothing between them
        expect(yield* exists(firstRun + 500)).toBe(false)
      })), 60_000)
})
