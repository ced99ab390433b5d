/**
 * Summarises a V8 `.cpuprofile` (`node --cpu-prof`, or the inspector's
 * `Profiler` as the bench's children record one): the functions with
 * the most self time, and self time grouped by where the code lives (errand
 * core, errand redis, effect, the Redis client, node internals, GC).
 *
 *   tsx src/profile.ts <file.cpuprofile> [top]
 */
import * as fs from "node:fs"

interface Node {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
  }
  readonly hitCount?: number
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<Node>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export interface Row {
  readonly name: string
  readonly where: string
  readonly ms: number
  readonly share: number
}

export interface Summary {
  readonly totalMs: number
  readonly top: ReadonlyArray<Row>
  readonly areas: ReadonlyArray<{ readonly area: string; readonly ms: number; readonly share: number }>
  /** Inclusive time of selected errand functions (by name), to say where the time goes. */
  readonly inclusive: ReadonlyArray<Row>
}

const shortUrl = (url: string): string => {
  const clean = url.replace(/^file:\/\//, "")
  const pnpm = /node_modules\/\.pnpm\/[^/]+\/node_modules\/(.*)$/.exec(clean)
  if (pnpm) return pnpm[1]!
  const nm = /node_modules\/(.*)$/.exec(clean)
  if (nm) return nm[1]!
  const repo = /\/work\/main\/(.*)$/.exec(clean)
  if (repo) return repo[1]!
  return clean === "" ? "(native)" : clean
}

export const areaOf = (url: string, name: string): string => {
  const u = url.replace(/^file:\/\//, "")
  if (name === "(garbage collector)") return "GC"
  if (name === "(idle)" || name === "(program)") return name
  if (u.includes("packages/core/")) return "errand core"
  if (u.includes("packages/redis/")) return "errand redis"
  if (u.includes("/effect/") || u.includes("effect@")) return "effect"
  if (u.includes("@effect/platform")) return "effect platform"
  if (u.includes("@redis/") || u.includes("/redis@")) return "node-redis"
  if (u.includes("ioredis")) return "ioredis"
  if (u.includes("bullmq")) return "bullmq"
  if (u.includes("msgpackr")) return "msgpackr"
  if (u.startsWith("node:") || u === "") return "node/V8 (native, JSON, sockets)"
  return "other"
}

export const summarize = (file: string, topN = 25, inclusiveNames: ReadonlyArray<string> = []): Summary => {
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as Profile
  const byId = new Map<number, Node>()
  for (const n of profile.nodes) byId.set(n.id, n)
  const self = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000)
  }
  let total = 0
  for (const ms of self.values()) total += ms
  // idle, and the profiler's own stop (`node:inspector`'s `post`, which
  // serializes the profile inside the last samples): neither is the run's
  const notRun = (id: number) => {
    const { functionName, url } = byId.get(id)!.callFrame
    return functionName === "(idle)" || url === "node:inspector"
  }
  const idle = [...self.entries()].filter(([id]) => notRun(id)).reduce((s, [, ms]) => s + ms, 0)
  const busy = total - idle
  const fns = new Map<string, { name: string; where: string; ms: number }>()
  const areas = new Map<string, number>()
  for (const [id, ms] of self) {
    const { functionName, lineNumber, url } = byId.get(id)!.callFrame
    if (notRun(id)) continue
    const name = functionName === "" ? "(anonymous)" : functionName
    const where = url === "" ? "" : `${shortUrl(url)}:${lineNumber + 1}`
    const key = `${name}@${where}`
    const row = fns.get(key) ?? { name, where, ms: 0 }
    row.ms += ms
    fns.set(key, row)
    const area = areaOf(url, functionName)
    areas.set(area, (areas.get(area) ?? 0) + ms)
  }
  // inclusive time: a sample counts once for each distinct named function on its stack
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const inclusive = new Map<string, { name: string; where: string; ms: number }>()
  if (inclusiveNames.length > 0) {
    const wanted = new Set(inclusiveNames)
    for (const [id, ms] of self) {
      const seen = new Set<string>()
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const { functionName, lineNumber, url } = byId.get(cur)!.callFrame
        if (!wanted.has(functionName)) continue
        const where = `${shortUrl(url)}:${lineNumber + 1}`
        const key = `${functionName}@${where}`
        if (seen.has(key)) continue
        seen.add(key)
        const row = inclusive.get(key) ?? { name: functionName, where, ms: 0 }
        row.ms += ms
        inclusive.set(key, row)
      }
    }
  }
  const rows = (m: Map<string, { name: string; where: string; ms: number }>) =>
    [...m.values()].sort((a, b) => b.ms - a.ms).map((r) => ({ ...r, share: r.ms / busy }))
  return {
    totalMs: busy,
    top: rows(fns).slice(0, topN),
    areas: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(([area, ms]) => ({ area, ms, share: ms / busy })),
    inclusive: rows(inclusive)
  }
}

/** Markdown tables of a summary; with `tasks`, also self time per task. */
export const format = (s: Summary, title: string, tasks?: number): Array<string> => {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`
  const per = (ms: number) => (tasks === undefined ? "" : ` ${((ms * 1000) / tasks).toFixed(2)} µs |`)
  const perHead = tasks === undefined ? "" : " per task |"
  const perRule = tasks === undefined ? "" : "---:|"
  const lines = [
    `${title}: ${s.totalMs.toFixed(0)} ms sampled (idle excluded)`,
    "",
    `| self time | share |${perHead} function | where |`,
    `|---:|---:|${perRule}---|---|`
  ]
  for (const r of s.top) lines.push(`| ${r.ms.toFixed(0)} ms | ${pct(r.share)} |${per(r.ms)} \`${r.name}\` | ${r.where} |`)
  lines.push("", `| area | self time | share |${perHead}`, `|---|---:|---:|${perRule}`)
  for (const a of s.areas) lines.push(`| ${a.area} | ${a.ms.toFixed(0)} ms | ${pct(a.share)} |${per(a.ms)}`)
  if (s.inclusive.length > 0) {
    lines.push("", "| inclusive (incl. callees) | share | function | where |", "|---:|---:|---|---|")
    for (const r of s.inclusive.slice(0, 20)) lines.push(`| ${r.ms.toFixed(0)} ms | ${pct(r.share)} | \`${r.name}\` | ${r.where} |`)
  }
  return lines
}

if (process.argv[1]?.endsWith("profile.ts") && process.argv[2] !== undefined) {
  const names = (process.argv[4] ?? "").split(",").filter((s) => s !== "")
  console.log(format(summarize(process.argv[2], Number(process.argv[3] ?? 30), names), process.argv[2]).join("\n"))
}
