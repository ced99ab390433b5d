/**
 * Canvases across real worker processes on a real Redis: a worker process
 * (running members and the coordinator) killed with SIGKILL mid-chord loses
 * nothing; the chord's body runs once, after every member; a failing member
 * fails the canvas and the members still waiting are revoked.
 */
import { describe, expect, it } from "@effect/vitest"
import { Canvas, Client } from "@errand/core"
import { Effect, Option } from "effect"
import { Refuse, Total, Work } from "./fixtures/canvas-tasks.ts"
import { type ScriptProcess, spawnWorker, useTestRedis, waitUntil, withPrefix } from "./utils/process.ts"

const redis = useTestRedis()

const workerScript = new URL("./fixtures/canvas-worker.ts", import.meta.url).pathname
const spawn = (prefix: string, id: string) => spawnWorker(workerScript, redis.url(), prefix, id)

describe("canvases across worker processes on Redis", () => {
  it.live("SIGKILL mid-chord (members and coordinator on the killed process): the canvas ends, its body runs once", () =>
    withPrefix(redis.url, (prefix, workers: Array<ScriptProcess>) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        // a chain into a chord of 8 members into its body
        const canvas = Canvas.chain(
          Canvas.task(Work, { n: 1, millis: 100 }),
          Canvas.chord(
            Array.from({ length: 8 }, (_, n) => Canvas.task(Work, { n, millis: 800 })),
            Total
          )
        )
        const job = yield* client.submitCanvas(canvas, { id: "mid-chord" })
        const a = spawn(prefix, "w-a")
        workers.push(a)
        const started = Effect.map(client.canvasStatus("mid-chord"), (s) =>
          s.members.filter((m) => m.path.startsWith("1.0.") && m.state === "STARTED").length)
        yield* waitUntil(Effect.map(started, (n) => n >= 2), "w-a runs members of the chord", 30_000)
        workers.push(spawn(prefix, "w-b"))
        a.child.kill("SIGKILL")
        expect(yield* Effect.promise(() => a.exited)).toBeNull()

        const result = yield* client.awaitCanvas(job).pipe(Effect.timeout("40 seconds"))
        expect(result).toBe(280)
        const status = yield* client.canvasStatus("mid-chord")
        expect(status.state).toBe("SUCCESS")
        expect(status.members.map((m) => m.state)).toEqual(Array.from({ length: 10 }, () => "SUCCESS"))
        // the coordinator was lost with w-a and resumed on w-b
        expect(status.record.history.map((h) => [h.worker, h.outcome])).toEqual([
          ["w-a.canvas", "LOST"],
          ["w-b.canvas", "SUCCESS"]
        ])
        // lost members ran again on w-b; each member succeeded once
        const lost = status.members.filter((m) =>
          Option.getOrThrow(m.record).history.some((h) => h.outcome === "LOST" && h.worker === "w-a")
        )
        expect(lost.length).toBeGreaterThanOrEqual(2)
        for (const m of status.members) {
          const history = Option.getOrThrow(m.record).history
          expect(history.filter((h) => h.outcome === "SUCCESS").length).toBe(1)
        }
        // the body: submitted once, after every member of its header, run once
        const body = Option.getOrThrow(status.members.find((m) => m.path === "1.1")!.record)
        expect(body.history.map((h) => [h.worker, h.outcome])).toEqual([["w-b", "SUCCESS"]])
        const header = status.members.filter((m) => m.path.startsWith("1.0."))
        for (const m of header) expect(body.submittedAt).toBeGreaterThanOrEqual(Option.getOrThrow(m.record).updatedAt)
      })
    ), 60_000)

  it.live("a failing member fails the canvas across processes; members still waiting are revoked", () =>
    withPrefix(redis.url, (prefix, workers: Array<ScriptProcess>) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        // two worker processes hold at most 16 tasks: most of the 24 slow members wait in the queue
        const canvas = Canvas.chord(
          [
            Canvas.chain(Canvas.task(Refuse, 1), Canvas.task(Work, { n: 0, millis: 10 })),
            ...Array.from({ length: 24 }, (_, n) => Canvas.task(Work, { n, millis: 1500 }))
          ],
          Total
        )
        const job = yield* client.submitCanvas(canvas, { id: "failing" })
        workers.push(spawn(prefix, "w-a"), spawn(prefix, "w-b"))
        const error = yield* Effect.flip(client.awaitCanvas(job).pipe(Effect.timeout("40 seconds")))
        expect(error._tag).toBe("CanvasFailed")
        if (error._tag !== "CanvasFailed") return
        expect(error.member).toBe("failing/0.0.0")
        expect(error.task).toBe("proc.canvas.refuse")
        expect(error.cause._tag).toBe("Refused")
        const status = yield* client.canvasStatus("failing")
        expect(status.state).toBe("FAILURE")
        const states = status.members.map((m) => m.state)
        expect(states.filter((s) => s === "REVOKED").length).toBeGreaterThanOrEqual(8)
        // the rest of the chain and the body are never submitted
        expect(Option.isNone(status.members.find((m) => m.path === "0.0.1")!.record)).toBe(true)
        expect(Option.isNone(status.members.find((m) => m.path === "1")!.record)).toBe(true)
        // every member submitted ends (the running ones finish on their own)
        yield* waitUntil(
          Effect.map(client.canvasStatus("failing"), (s) =>
            s.members.every((m) => Option.isNone(m.record) || ["SUCCESS", "FAILURE", "REVOKED"].includes(m.state))),
          "every submitted member ended"
        )
      })
    ), 60_000)
})
