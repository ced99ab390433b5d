/**
 * Plain-text output: tables, times and durations, the way the commands print
 * them. No colours, so output reads the same in a terminal, a pipe and a log.
 *
 * @since 0.1.0
 */

/**
 * A table with a header row; columns padded to their widest cell, separated
 * by two spaces. Trailing spaces are trimmed.
 *
 * @since 0.1.0
 */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

/**
 * A duration in milliseconds, short: `850 ms`, `1.2 s`, `3 m 5 s`, `2 h 10 m`.
 *
 * @since 0.1.0
 */
export const duration = (millis: number): string => {
  const ms = Math.max(0, Math.round(millis))
  if (ms < 1000) return `${ms} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`
  const s = Math.floor(ms / 1000)
  if (s < 3600) return `${Math.floor(s / 60)} m ${s % 60} s`
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`
}

/**
 * How long ago `at` was, seen from `now`: `3.1 s ago`, `in 5 s` for the future.
 *
 * @since 0.1.0
 */
export const ago = (at: number, now: number): string =>
  at <= now ? `${duration(now - at)} ago` : `in ${duration(at - now)}`

/**
 * A time as ISO 8601 (UTC, milliseconds).
 *
 * @since 0.1.0
 */
export const time = (at: number): string => new Date(at).toISOString()

/**
 * One line of text, at most `max` characters (with `…` when cut).
 *
 * @since 0.1.0
 */
export const clip = (text: string, max: number): string => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`
}

/**
 * A value as compact JSON (`undefined` when there is none).
 *
 * @since 0.1.0
 */
export const json = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/**
 * Parses a duration given on the command line: `500ms`, `10s`, `2m`, `1h`,
 * a bare number of seconds, or Effect's `"10 seconds"`. Returns milliseconds.
 *
 * @since 0.1.0
 */
export const parseDuration = (input: string): number => {
  const text = input.trim().toLowerCase()
  const short = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text)
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
  if (short !== null) return Math.round(Number(short[1]) * units[short[2] ?? "s"]!)
  const long = /^(\d+(?:\.\d+)?)\s*(millis|milliseconds?|seconds?|minutes?|hours?)$/.exec(text)
  if (long !== null) {
    const unit = long[2]!.startsWith("milli")
      ? 1
      : long[2]!.startsWith("second")
      ? 1000
      : long[2]!.startsWith("minute")
      ? 60_000
      : 3_600_000
    return Math.round(Number(long[1]) * unit)
  }
  throw new Error(`"${input}" is not a duration (examples: 500ms, 10s, 2m, 1h, "10 seconds")`)
}
