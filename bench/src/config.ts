/** What the orchestrator tells a child process to do. */
export interface RoleConfig {
  /** Redis URL (Redis systems). */
  readonly url: string
  /** Unique per run and system: every key the run writes is under it. */
  readonly prefix: string
  readonly queue: string
  /** Tasks to submit (producer) or to wait for (worker, count mode). */
  readonly tasks: number
  /**
   * Throughput runs (count mode, bulk producer): tasks run first, unmeasured,
   * by the same processes, as a long-running worker has run many before
   * (code compiled, heap grown). 0: none. The producer submits them on a
   * `go` whose `phase` is "warm"; the worker reports `warm` once they are
   * acknowledged, then counts `tasks` afresh.
   */
  readonly warmTasks: number
  /**
   * The in-memory run: rounds of `tasks` run after the measured one, in the
   * same process, each timed (how the rate goes on once the process has
   * settled; not the row's figure).
   */
  readonly laterRounds: number
  readonly concurrency: number
  /** errand's `prefetch` (tasks claimed per round trip and held beyond those running). */
  readonly prefetch: number
  /** Store each task's result (workload 2) or not. */
  readonly storeResults: boolean
  /**
   * Worker: `count` runs no-op handlers until `tasks` have completed;
   * `latency` records submit-to-start of `tasks` tasks (the first `warmup`
   * are dropped); `block` holds every handler forever (memory workload).
   */
  readonly mode: "count" | "latency" | "block"
  /** Paced producer: tasks per second, and how many of the first are warm-up. */
  readonly rate: number
  readonly warmup: number
}
