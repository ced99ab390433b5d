/**
 * The wire form of a canvas and the pure step that decides what happens next.
 *
 * A canvas travels as a `Spec` tree (task names, queues and encoded bound
 * payloads) in the payload of its coordinator task. Every leaf (one task
 * invocation) has a path ("0", "1.0", ...) and a deterministic id
 * `<canvasId>/<path>`, so submitting a leaf twice is a no-op (enqueue is
 * idempotent per task id). `evaluate` looks only at what the result backend
 * says of the leaves, so any coordinator, at any time, after any crash,
 * reaches the same decisions.
 *
 * @internal
 */
import { Schema } from "effect"
import type { ErrorInfo } from "../Errors.ts"

/** One node of a canvas on the wire. */
export type Spec =
  | {
    readonly _tag: "Task"
    readonly task: string
    readonly queue: string
    readonly priority: number
    /** Bound steps run on `payload` (encoded); unbound ones on their input. */
    readonly bound: boolean
    readonly payload?: unknown
  }
  | { readonly _tag: "Chain"; readonly steps: ReadonlyArray<Spec> }
  | { readonly _tag: "Group"; readonly members: ReadonlyArray<Spec> }
  | { readonly _tag: "Chord"; readonly header: Spec; readonly body: Spec }

/** The Schema of `Spec`. */
export const Spec: Schema.Codec<Spec> = Schema.Union([
  Schema.TaggedStruct("Task", {
    task: Schema.String,
    queue: Schema.String,
    priority: Schema.Number,
    bound: Schema.Boolean,
    payload: Schema.optional(Schema.Unknown)
  }),
  Schema.TaggedStruct("Chain", { steps: Schema.Array(Schema.suspend((): Schema.Codec<Spec> => Spec)) }),
  Schema.TaggedStruct("Group", { members: Schema.Array(Schema.suspend((): Schema.Codec<Spec> => Spec)) }),
  Schema.TaggedStruct("Chord", {
    header: Schema.suspend((): Schema.Codec<Spec> => Spec),
    body: Schema.suspend((): Schema.Codec<Spec> => Spec)
  })
])

/** The payload of a coordinator task. */
export const Root = Schema.Struct({
  canvas: Spec,
  /** The canvas's input (encoded), for steps that take one. */
  input: Schema.optional(Schema.Unknown)
})

/** @internal */
export type Root = typeof Root.Type

/** The path of the i-th child of `path`. */
export const child = (path: string, i: number): string => (path === "" ? `${i}` : `${path}.${i}`)

/** The task id of the leaf at `path`. */
export const leafId = (canvasId: string, path: string): string => `${canvasId}/${path === "" ? "0" : path}`

/** A leaf of a canvas: one task invocation. */
export interface Leaf {
  readonly path: string
  readonly spec: Extract<Spec, { readonly _tag: "Task" }>
}

/** Every leaf, in path order. */
export const leaves = (spec: Spec, path = ""): Array<Leaf> => {
  switch (spec._tag) {
    case "Task":
      return [{ path, spec }]
    case "Chain":
      return spec.steps.flatMap((s, i) => leaves(s, child(path, i)))
    case "Group":
      return spec.members.flatMap((s, i) => leaves(s, child(path, i)))
    case "Chord":
      return [...leaves(spec.header, child(path, 0)), ...leaves(spec.body, child(path, 1))]
  }
}

/** What the coordinator knows of one leaf. */
export type LeafState =
  /** Never submitted. */
  | { readonly _tag: "Absent" }
  /** Submitted, not final yet. */
  | { readonly _tag: "Waiting" }
  | { readonly _tag: "Succeeded"; readonly result: unknown }
  /** Ended FAILURE or REVOKED, or its record is gone (expired, purged). */
  | { readonly _tag: "Failed"; readonly state: string; readonly error: ErrorInfo; readonly at: number }

/** Where a canvas stands. */
export type Outcome =
  | { readonly _tag: "Done"; readonly result: unknown }
  | { readonly _tag: "Running" }
  | { readonly _tag: "Failed"; readonly path: string; readonly task: string; readonly state: string; readonly error: ErrorInfo }

/** A leaf to submit now, with its encoded payload. */
export interface Submit {
  readonly leaf: Leaf
  readonly payload: unknown
}

const absent: LeafState = { _tag: "Absent" }

/**
 * Decides where the canvas stands and which leaves to submit now. Any failed
 * leaf fails the whole canvas (the earliest to fail is named); otherwise
 * leaves whose inputs are all known and that were never submitted are
 * submitted. Results flow in their JSON form: a chain step gets the previous
 * step's result, each group member the group's input, a group yields the
 * array of its members' results, a chord's body the array of its header's.
 */
export const evaluate = (
  spec: Spec,
  input: unknown,
  state: (path: string) => LeafState | undefined
): { readonly outcome: Outcome; readonly submit: ReadonlyArray<Submit> } => {
  let failed: Extract<Outcome, { _tag: "Failed" }> | undefined
  let failedAt = Infinity
  for (const leaf of leaves(spec)) {
    const s = state(leaf.path)
    if (s?._tag === "Failed" && (s.at < failedAt || failed === undefined)) {
      failed = { _tag: "Failed", path: leaf.path, task: leaf.spec.task, state: s.state, error: s.error }
      failedAt = s.at
    }
  }
  if (failed !== undefined) return { outcome: failed, submit: [] }
  const submit: Array<Submit> = []
  const go = (node: Spec, path: string, input: unknown): Outcome => {
    switch (node._tag) {
      case "Task": {
        const s = state(path) ?? absent
        if (s._tag === "Succeeded") return { _tag: "Done", result: s.result }
        if (s._tag === "Absent") submit.push({ leaf: { path, spec: node }, payload: node.bound ? node.payload : input })
        return { _tag: "Running" }
      }
      case "Chain": {
        let current = input
        for (let i = 0; i < node.steps.length; i++) {
          const r = go(node.steps[i]!, child(path, i), current)
          if (r._tag !== "Done") return r
          current = r.result
        }
        return { _tag: "Done", result: current }
      }
      case "Group": {
        const results: Array<unknown> = []
        let done = true
        for (let i = 0; i < node.members.length; i++) {
          const r = go(node.members[i]!, child(path, i), input)
          if (r._tag === "Done") results.push(r.result)
          else done = false
        }
        return done ? { _tag: "Done", result: results } : { _tag: "Running" }
      }
      case "Chord": {
        const header = go(node.header, child(path, 0), input)
        return header._tag === "Done" ? go(node.body, child(path, 1), header.result) : header
      }
    }
  }
  return { outcome: go(spec, "", input), submit }
}
