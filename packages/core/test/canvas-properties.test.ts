/**
 * Property tests of canvases on the memory broker under TestClock: random
 * nested canvases (chains, groups, chords, bound and unbound steps) whose
 * members succeed, fail for good, or fail a few times first, while member
 * workers and coordinators are killed (kill -9) at random times. Whatever
 * happens, the canvas ends in the state a model predicts, every member gets
 * exactly the input the model says, nothing runs after a failure upstream,
 * and a chord's body runs once, after all its header.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { Broker, Canvas, Client, Retry, Task, TaskContext, type Worker } from "@errand/core"
import { advance, base, settle, startWorker } from "./utils.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

class Planned extends Schema.TaggedError<Planned>()("Planned", { path: Schema.String }) {}
class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { path: Schema.String }) {}

const Leaf = Task.make("prop.canvas.leaf", {
  payload: Schema.Unknown,
  success: Schema.String,
  failure: Schema.Union([Planned, Flaky]),
  retry: Retry.fixed({ delay: "1 second", maxRetries: 20, retryOn: (e) => e._tag !== "Planned" })
})

/** How a leaf behaves, by its path in the canvas. */
interface Behaviour {
  readonly mode: "ok" | "fail" | "flaky"
  /** Failed attempts before success, for flaky leaves. */
  readonly flakes: number
  readonly seconds: number
  readonly bound: boolean
}

type Model =
  | { readonly _tag: "Leaf"; readonly path: string; readonly b: Behaviour }
  | { readonly _tag: "Chain"; readonly steps: ReadonlyArray<Model> }
  | { readonly _tag: "Group"; readonly members: ReadonlyArray<Model> }
  | { readonly _tag: "Chord"; readonly header: ReadonlyArray<Model>; readonly body: Model }

const child = (path: string, i: number) => (path === "" ? `${i}` : `${path}.${i}`)

/** Builds a tree from genes (each gene picks a shape or a behaviour). */
const build = (genes: ReadonlyArray<number>): Model => {
  let i = 0
  const next = () => genes[i++ % genes.length]! + i
  const leaf = (path: string): Model => {
    const g = next()
    const m = g % 10
    return {
      _tag: "Leaf",
      path,
      b: {
        mode: g % 14 === 0 ? "fail" : m <= 2 ? "flaky" : "ok",
        flakes: 1 + (g % 2),
        seconds: (g >> 2) % 4,
        bound: ((g >> 4) & 1) === 1
      }
    }
  }
  const node = (path: string, depth: number, budget: { n: number }): Model => {
    const g = next()
    if (depth >= 3 || budget.n <= 0 || (depth > 0 && g % 5 < 2)) {
      budget.n--
      return leaf(path)
    }
    const size = 1 + ((g >> 3) % 3)
    const kids = (p: string) => Array.from({ length: size }, (_, k) => node(child(p, k), depth + 1, budget))
    switch (g % 3) {
      case 0:
        return { _tag: "Chain", steps: kids(path) }
      case 1:
        return { _tag: "Group", members: kids(path) }
      default:
        return { _tag: "Chord", header: kids(child(path, 0)), body: node(child(path, 1), depth + 1, budget) }
    }
  }
  return node("", 0, { n: 12 })
}

const toCanvas = (m: Model): Canvas.Any => {
  switch (m._tag) {
    case "Leaf":
      return m.b.bound ? Canvas.task(Leaf, { bound: m.path }) : Canvas.task(Leaf)
    case "Chain":
      return Canvas.chain(...(m.steps.map(toCanvas) as [Canvas.Any, ...Array<Canvas.Any>]))
    case "Group":
      return Canvas.group(m.members.map(toCanvas))
    case "Chord":
      return Canvas.chord(m.header.map(toCanvas), toCanvas(m.body))
  }
}

const hash = (u: unknown): string => {
  let h = 0x811c9dc5
  for (const c of JSON.stringify(u) ?? "undefined") h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0
  return h.toString(36)
}

const resultOf = (path: string, payload: unknown) => `${path}#${hash(payload)}`

type Expect =
  | { readonly ok: true; readonly result: unknown }
  | { readonly ok: false; readonly failing: ReadonlySet<string> }

/**
 * The model: what each reached leaf gets as input, and how the canvas ends.
 * A group fails if any member fails (any of their failing leaves may be the
 * one named); a chain stops at its first failing step.
 */
const model = (root: Model, input: unknown) => {
  const inputs = new Map<string, unknown>()
  const reachable = new Set<string>()
  const go = (m: Model, input: unknown): Expect => {
    switch (m._tag) {
      case "Leaf": {
        const payload = m.b.bound ? { bound: m.path } : input
        inputs.set(m.path, payload)
        reachable.add(m.path)
        return m.b.mode === "fail" ? { ok: false, failing: new Set([m.path]) } : { ok: true, result: resultOf(m.path, payload) }
      }
      case "Chain": {
        let current = input
        for (const step of m.steps) {
          const r = go(step, current)
          if (!r.ok) return r
          current = r.result
        }
        return { ok: true, result: current }
      }
      case "Group":
      case "Chord": {
        const members = m._tag === "Group" ? m.members : m.header
        const rs = members.map((member) => go(member, input))
        const failing = new Set(rs.flatMap((r) => (r.ok ? [] : [...r.failing])))
        if (failing.size > 0) return { ok: false, failing }
        const results = rs.map((r) => (r.ok ? r.result : undefined))
        return m._tag === "Group" ? { ok: true, result: results } : go(m.body, results)
      }
    }
  }
  return { expect: go(root, "root"), inputs, reachable }
}

/** The header leaves of every chord body leaf (the body runs once, after all of them). */
const chordBodies = (m: Model, out: Array<{ body: ReadonlyArray<string>; header: ReadonlyArray<string> }> = []) => {
  const leaves = (n: Model): Array<string> =>
    n._tag === "Leaf"
      ? [n.path]
      : n._tag === "Chain"
      ? n.steps.flatMap(leaves)
      : n._tag === "Group"
      ? n.members.flatMap(leaves)
      : [...n.header.flatMap(leaves), ...leaves(n.body)]
  const firsts = (n: Model): Array<string> =>
    n._tag === "Leaf"
      ? [n.path]
      : n._tag === "Chain"
      ? firsts(n.steps[0]!)
      : n._tag === "Group"
      ? n.members.flatMap(firsts)
      : n.header.flatMap(firsts)
  switch (m._tag) {
    case "Leaf":
      break
    case "Chain":
      m.steps.forEach((s) => chordBodies(s, out))
      break
    case "Group":
      m.members.forEach((s) => chordBodies(s, out))
      break
    case "Chord":
      out.push({ body: firsts(m.body), header: m.header.flatMap(leaves) })
      m.header.forEach((s) => chordBodies(s, out))
      chordBodies(m.body, out)
  }
  return out
}

const allLeaves = (m: Model): Array<Extract<Model, { _tag: "Leaf" }>> =>
  m._tag === "Leaf"
    ? [m]
    : m._tag === "Chain"
    ? m.steps.flatMap(allLeaves)
    : m._tag === "Group"
    ? m.members.flatMap(allLeaves)
    : [...m.header.flatMap(allLeaves), ...allLeaves(m.body)]

describe("canvas properties", () => {
  it.effect.prop(
    "random nested canvases with random failures and crashes end as the model says; chord bodies run once",
    {
      genes: Schema.Array(int(0, 997)).check(Schema.isMinLength(1), Schema.isMaxLength(16)),
      crashes: Schema.Array(Schema.Struct({
        atSecond: int(0, 12),
        coordinator: Schema.Boolean,
        index: int(0, 1)
      })).check(Schema.isMaxLength(5))
    },
    ({ crashes, genes }) =>
      Effect.gen(function*() {
        const tree = build(genes)
        const behaviour = new Map(allLeaves(tree).map((l) => [l.path, l.b]))
        const runs: Array<{ path: string; payload: unknown; at: number }> = []
        const LeafLive = Task.implement(Leaf, (payload) =>
          Effect.gen(function*() {
            const ctx = yield* TaskContext
            const path = ctx.id.slice(ctx.id.indexOf("/") + 1)
            const b = behaviour.get(path)!
            runs.push({ path, payload, at: ctx.retries })
            yield* Effect.sleep(`${b.seconds} seconds`)
            if (b.mode === "fail") return yield* new Planned({ path })
            if (b.mode === "flaky" && ctx.retries < b.flakes) return yield* new Flaky({ path })
            return resultOf(path, payload)
          }))
        const client = yield* Client.Client
        const memberOptions = { tasks: [LeafLive], concurrency: 3, prefetch: 2, lease: "3 seconds" } as const
        const members: Array<Worker.Service> = [
          (yield* startWorker(memberOptions)).worker,
          (yield* startWorker(memberOptions)).worker
        ]
        const coordinators: Array<Worker.Service> = [
          yield* Canvas.make({ lease: "3 seconds" }),
          yield* Canvas.make({ lease: "3 seconds" })
        ]
        const job = yield* client.submitCanvas(toCanvas(tree), { id: "cv", input: "root" })
        let second = 0
        for (const crash of [...crashes].sort((a, b) => a.atSecond - b.atSecond)) {
          yield* advance(crash.atSecond - second)
          second = crash.atSecond
          if (crash.coordinator) {
            yield* coordinators[crash.index]!.kill
            coordinators[crash.index] = yield* Canvas.make({ lease: "3 seconds" })
          } else {
            yield* members[crash.index]!.kill
            members[crash.index] = (yield* startWorker(memberOptions)).worker
          }
        }
        yield* advance(150)
        yield* settle

        const { expect, inputs, reachable } = model(tree, "root")
        const root = yield* client.status("cv")
        const outcome = yield* Effect.result(client.awaitCanvas(job))
        const records = new Map<string, Option.Option<Client.Status>>()
        for (const path of behaviour.keys()) records.set(path, yield* Effect.option(client.status(`cv/${path}`)))

        if (expect.ok) {
          assert.strictEqual(root.state, "SUCCESS", `canvas ended ${root.state}: ${JSON.stringify(root.error)}`)
          assert.deepStrictEqual(outcome._tag === "Success" ? outcome.success : outcome.failure, expect.result)
        } else {
          assert.strictEqual(root.state, "FAILURE")
          assert.strictEqual(outcome._tag, "Failure")
          if (outcome._tag === "Failure") {
            const e = outcome.failure
            assert.strictEqual(e._tag, "CanvasFailed")
            if (e._tag === "CanvasFailed") {
              assert.isTrue(expect.failing.has(e.path), `${e.path} is not one of ${[...expect.failing]}`)
              assert.strictEqual(e.cause._tag, "Planned")
            }
          }
        }

        for (const [path, record] of records) {
          const ran = runs.filter((r) => r.path === path)
          // every run got exactly the input the model says, and nothing unreachable ran
          for (const r of ran) assert.deepStrictEqual(r.payload, inputs.get(path), `input of ${path}`)
          if (!reachable.has(path)) assert.isTrue(Option.isNone(record), `${path} is unreachable but was submitted`)
          if (Option.isNone(record)) {
            assert.strictEqual(ran.length, 0)
            continue
          }
          const r = record.value
          // everything submitted ended: finished, or revoked when the canvas failed
          assert.include(["SUCCESS", "FAILURE", "REVOKED"], r.state, `member ${path} ended ${r.state}`)
          if (r.state === "REVOKED") assert.isFalse(expect.ok)
          // each run is one attempt in the history (a lost one included); at most one success
          assert.isAtMost(ran.length, r.history.length, `member ${path} ran ${ran.length} times`)
          assert.isAtMost(r.history.filter((h) => h.outcome === "SUCCESS").length, 1)
        }

        // a chord's body is submitted after every header member succeeded, and runs once
        for (const { body, header } of chordBodies(tree)) {
          for (const b of body) {
            const record = records.get(b)!
            if (Option.isNone(record)) continue
            for (const h of header) {
              const hr = records.get(h)!
              assert.isTrue(Option.isSome(hr) && hr.value.state === "SUCCESS", `body ${b} submitted before ${h} succeeded`)
              if (Option.isSome(hr)) assert.isAtLeast(record.value.submittedAt, hr.value.updatedAt)
            }
            if (expect.ok) {
              assert.strictEqual(record.value.history.filter((h) => h.outcome === "SUCCESS").length, 1)
              const lost = record.value.history.filter((h) => h.outcome === "LOST").length
              assert.isAtMost(runs.filter((r) => r.path === b).length, 1 + lost + behaviour.get(b)!.flakes)
            }
          }
        }

        // nothing is left in any queue
        const broker = yield* Broker.Broker
        for (const stats of yield* broker.stats(["default", Canvas.defaultQueue])) {
          assert.deepStrictEqual([stats.ready, stats.delayed, stats.running], [0, 0, 0], `queue ${stats.queue}`)
        }
      }).pipe(Effect.provide(base)),
    { timeout: 120_000, arbitrary: { runs: 100 } }
  )
})
