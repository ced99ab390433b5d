/**
 * The errand CLI end to end: real `errand` processes (worker, status,
 * inspect, revoke, retry, purge) against a real Redis, their output checked;
 * clear errors, not stack traces, for a bad Redis URL, a missing tasks module
 * and an unknown id.
 */
import { describe, expect, it } from "@effect/vitest"
import { Client, TaskRevoked } from "@errand/core"
import { Broker } from "@errand/core/Broker"
import { Effect, Fiber } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { FailOnce, Flakey, Sleep, Unimplemented } from "./fixtures/tasks.ts"
import { runCli, useCliRedis, waitUntil, withDeployment } from "./utils.ts"

const redis = useCliRedis()

const run = <A, E>(body: Parameters<typeof withDeployment<A, E>>[1]) => withDeployment(redis.url, body)

const cli = (args: ReadonlyArray<string>, options?: Parameters<typeof runCli>[1]) =>
  Effect.promise(() => runCli(args, options))

/** No stack frame ("    at f (file:1:2)") in the output. */
const noStack = (text: string) => expect(text).not.toMatch(/^\s+at .+[:(]/m)

const stateOf = (id: string) => Effect.map(Client.Client.use((c) => c.status(id)), (s) => s.state)

describe("errand CLI", () => {
  it.live("--help works on the command and on every subcommand", () =>
    Effect.gen(function*() {
      const subcommands = ["worker", "status", "inspect", "revoke", "retry", "purge"]
      const results = yield* Effect.forEach(
        [[], ...subcommands.map((s) => [s])],
        (args) => cli([...args, "--help"]),
        { concurrency: 4 }
      )
      for (const [i, r] of results.entries()) {
        expect(r.code).toBe(0)
        expect(r.stdout).toContain("USAGE")
        if (i > 0) expect(r.stdout).toContain(`errand ${subcommands[i - 1]}`)
      }
      expect(results[0]!.stdout).toMatch(/worker\s+Run a worker/)
      expect(results[1]!.stdout).toContain("--tasks, -t module")
      expect(results[1]!.stdout).toContain("--concurrency, -c integer")
      expect(results[4]!.stdout).toContain("--terminate")
      expect(results[6]!.stdout).toContain("--yes, -y")
    }), 60_000)

  it.live("status: state, retries, result and the per-attempt history as a table; --json for scripts", () =>
    run((d) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const w = d.worker("w-status", ["--concurrency", "2"])
        const job = yield* client.submit(Flakey, { failures: 2 })
        expect(yield* client.await(job).pipe(Effect.timeout("30 seconds"))).toBe("ok after 2 failures")
        const text = yield* Effect.promise(() => d.cli(["status", job.id]))
        expect(text.code).toBe(0)
        const out = text.stdout
        expect(out).toContain(`task       ${job.id}  cli.flaky`)
        expect(out).toMatch(/^state\s+SUCCESS$/m)
        expect(out).toMatch(/^retries\s+2$/m)
        expect(out).toMatch(/^result\s+"ok after 2 failures"$/m)
        expect(out).toMatch(/^#\s+worker\s+started\s+took\s+outcome\s+error\s+next in$/m)
        expect(out).toMatch(/^0\s+w-status\s+\S+Z\s+\d+ ms\s+RETRY\s+Flaky: attempt 0 failed on purpose\s+100 ms$/m)
        expect(out).toMatch(/^1\s+w-status\s+.*RETRY\s+Flaky: attempt 1 failed on purpose\s+100 ms$/m)
        expect(out).toMatch(/^2\s+w-status\s+\S+Z\s+\d+ ms\s+SUCCESS$/m)
        const json = yield* Effect.promise(() => d.cli(["status", job.id, "--json"]))
        expect(JSON.parse(json.stdout)).toEqual(JSON.parse(JSON.stringify(yield* client.status(job.id))))
        w.child.kill("SIGTERM")
        expect((yield* Effect.promise(() => w.exited)).code).toBe(0)
      })
    ), 60_000)

  it.live("inspect: live, gone and stopped workers, and per-queue ready/delayed/running/dead counts", () =>
    run((d) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const broker = yield* Broker
        const a = d.worker("w-alive", ["--lease", "1s", "--concurrency", "2", "--grace", "200ms"])
        const long = yield* client.submit(Sleep, { millis: 60_000 })
        const dead = yield* client.submit(Unimplemented, { n: 1 })
        yield* client.submitMany(Sleep, [{ millis: 1 }, { millis: 1 }], { countdown: "1 hour" })
        yield* client.submitMany(Sleep, [{ millis: 1 }, { millis: 1 }, { millis: 1 }], { queue: "idle" })
        yield* waitUntil(
          Effect.map(
            Effect.all([stateOf(long.id), stateOf(dead.id)]),
            ([l, x]) => l === "STARTED" && x === "FAILURE"
          ),
          "w-alive runs the long task and dead-letters the unknown one"
        )
        const b = d.worker("w-killed", ["--lease", "1s"])
        yield* waitUntil(
          Effect.map(broker.workers!, (ws) => ws.some((w) => w.id === "w-killed")),
          "w-killed registers"
        )
        b.child.kill("SIGKILL")
        yield* Effect.promise(() => b.exited)
        yield* Effect.sleep(1500)

        const text = yield* Effect.promise(() => d.cli(["inspect"]))
        expect(text.code).toBe(0)
        const out = text.stdout
        expect(out).toContain(`Redis ${redis.url().replace(/^redis:\/\//, "")}/0, prefix ${d.prefix}`)
        expect(out).toContain("workers: 1 alive, 1 gone, 0 stopped")
        expect(out).toMatch(/^id\s+host\s+pid\s+queues\s+concurrency\s+held\s+started\s+last heartbeat\s+status$/m)
        const host = os.hostname()
        expect(out).toMatch(new RegExp(`^w-alive\\s+${host}\\s+${a.child.pid}\\s+default\\s+2\\s+1\\s+.* ago\\s+.* ago\\s+alive$`, "m"))
        expect(out).toMatch(new RegExp(`^w-killed\\s+${host}\\s+${b.child.pid}\\s+default\\s+16\\s+.* ago\\s+.* ago\\s+gone \\(no heartbeat for [\\d.]+ s\\)$`, "m"))
        expect(out).toMatch(/^queue\s+ready\s+delayed\s+running\s+dead$/m)
        expect(out).toMatch(/^default\s+0\s+2\s+1\s+1$/m)
        expect(out).toMatch(/^idle\s+3\s+0\s+0\s+0$/m)

        const json = JSON.parse((yield* Effect.promise(() => d.cli(["inspect", "--json"]))).stdout)
        expect(json.workers.map((w: { id: string; status: string }) => [w.id, w.status])).toEqual([
          ["w-alive", "alive"],
          ["w-killed", "gone"]
        ])
        expect(json.workers[0]).toMatchObject({ host, pid: a.child.pid, queues: ["default"], concurrency: 2 })
        expect(json.queues).toEqual([
          { queue: "default", ready: 0, delayed: 2, running: 1, dead: 1 },
          { queue: "idle", ready: 3, delayed: 0, running: 0, dead: 0 }
        ])

        a.child.kill("SIGTERM")
        expect((yield* Effect.promise(() => a.exited)).code).toBe(0)
        const after = yield* Effect.promise(() => d.cli(["inspect"]))
        expect(after.stdout).toContain("workers: 0 alive, 1 gone, 1 stopped")
        expect(after.stdout).toMatch(/^w-alive\s+.*\s+stopped$/m)
      })
    ), 60_000)

  it.live("revoke: a waiting task at once; a running one only with --terminate; ended and unknown ids said so", () =>
    run((d) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const w = d.worker("w-revoke", ["--lease", "1s"])
        const running = yield* client.submit(Sleep, { millis: 60_000 })
        const waiting = yield* client.submit(Sleep, { millis: 1 }, { countdown: "1 hour" })
        yield* waitUntil(Effect.map(stateOf(running.id), (s) => s === "STARTED"), "the task runs")

        const refused = yield* Effect.promise(() => d.cli(["revoke", running.id]))
        expect(refused.code).toBe(1)
        expect(refused.stderr).toBe(
          `errand: task ${running.id} (cli.sleep) is running (STARTED); not revoked. Pass --terminate to interrupt ` +
            `it (its worker stops it at its next heartbeat and records it REVOKED)\n`
        )
        expect(yield* stateOf(running.id)).toBe("STARTED")

        const terminated = yield* Effect.promise(() => d.cli(["revoke", running.id, "--terminate"]))
        expect(terminated.code).toBe(0)
        expect(terminated.stdout).toContain(`task ${running.id} (cli.sleep) revoked: its worker stopped it`)
        const status = yield* client.status(running.id)
        expect(status.state).toBe("REVOKED")
        expect(status.history.map((h) => [h.outcome, h.worker])).toEqual([["REVOKED", "w-revoke"]])

        const removed = yield* Effect.promise(() => d.cli(["revoke", waiting.id]))
        expect(removed.code).toBe(0)
        expect(removed.stdout).toBe(`task ${waiting.id} (cli.sleep) revoked: it was waiting (PENDING) and will not run\n`)
        expect(yield* stateOf(waiting.id)).toBe("REVOKED")

        const again = yield* Effect.promise(() => d.cli(["revoke", waiting.id]))
        expect(again.stdout).toBe(`task ${waiting.id} (cli.sleep) already ended REVOKED; nothing to revoke\n`)
        const unknown = yield* Effect.promise(() => d.cli(["revoke", "no-such-task"]))
        expect(unknown.code).toBe(3)
        expect(unknown.stderr).toContain("errand: no task no-such-task in Redis")
        w.child.kill("SIGTERM")
        yield* Effect.promise(() => w.exited)
      })
    ), 60_000)

  it.live("retry: runs a failed task and a dead-lettered one again; refuses a task that succeeded", () =>
    run((d) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "errand-cli-")), "marker")
        const w = d.worker("w-retry")
        const failing = yield* client.submit(FailOnce, { marker })
        const unknown = yield* client.submit(Unimplemented, { n: 21 })
        const failed = yield* Effect.flip(client.await(failing))
        expect(failed._tag).toBe("Flaky")
        yield* waitUntil(Effect.map(stateOf(unknown.id), (s) => s === "FAILURE"), "the unknown task is dead-lettered")

        const retried = yield* Effect.promise(() => d.cli(["retry", failing.id]))
        expect(retried.code).toBe(0)
        expect(retried.stdout).toBe(
          `task ${failing.id} (cli.failOnce) queued again on default, ready now; it had ended FAILURE with Flaky ` +
            `after 0 retries\n`
        )
        expect(yield* client.await(failing).pipe(Effect.timeout("20 seconds"))).toBe("ran again and succeeded")
        const history = (yield* client.status(failing.id)).history.map((h) => h.outcome)
        expect(history).toEqual(["FAILURE", "SUCCESS"])

        const refused = yield* Effect.promise(() => d.cli(["retry", failing.id]))
        expect(refused.code).toBe(1)
        expect(refused.stderr).toBe(`errand: task ${failing.id} (cli.failOnce) succeeded; nothing to retry\n`)

        // replace the worker with one that also implements the dead-lettered task, then retry it
        w.child.kill("SIGTERM")
        expect((yield* Effect.promise(() => w.exited)).code).toBe(0)
        const more = d.worker("w-more", ["--tasks", "apps/cli/test/fixtures/more-tasks.ts"])
        yield* Effect.promise(() => more.waitFor("w-more started"))
        const redelivered = yield* Effect.promise(() => d.cli(["retry", unknown.id]))
        expect(redelivered.stdout).toContain("it had ended FAILURE with UnknownTask after 0 retries")
        expect(yield* client.await(unknown).pipe(Effect.timeout("20 seconds"))).toBe(42)
        expect((yield* client.status(unknown.id)).history.map((h) => [h.outcome, h.worker]))
          .toEqual([["DEAD", "w-retry"], ["SUCCESS", "w-more"]])
        more.child.kill("SIGTERM")
        yield* Effect.promise(() => more.exited)
      })
    ), 60_000)

  it.live("purge: asks first; 'no' keeps everything; 'yes' revokes the waiting tasks and wakes their awaiters", () =>
    run((d) =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const broker = yield* Broker
        const ready = yield* client.submitMany(Sleep, [{ millis: 1 }, { millis: 1 }, { millis: 1 }], { queue: "idle" })
        yield* client.submitMany(Sleep, [{ millis: 1 }, { millis: 1 }], { queue: "idle", countdown: "1 hour" })
        yield* client.submit(Sleep, { millis: 1 }, { queue: "other" })
        const awaiting = yield* Effect.forkChild(Effect.flip(client.await(ready[0]!)))

        const declined = yield* Effect.promise(() => d.cli(["purge", "idle"], { input: "n\n" }))
        expect(declined.code).toBe(4)
        expect(declined.stdout).toBe(
          `Delete 5 waiting tasks (3 ready, 2 delayed) from queue idle in Redis ${
            redis.url().replace(/^redis:\/\//, "")
          }/0, prefix ${d.prefix}? Running (0) and dead (0) tasks are kept. [y/N] `
        )
        expect(declined.stderr).toBe("errand: nothing purged from queue idle\n")
        expect((yield* broker.stats(["idle"]))[0]).toMatchObject({ ready: 3, delayed: 2 })
        // no answer at all (stdin closed) is no
        expect((yield* Effect.promise(() => d.cli(["purge", "idle"]))).code).toBe(4)

        const confirmed = yield* Effect.promise(() => d.cli(["purge", "idle"], { input: "y\n" }))
        expect(confirmed.code).toBe(0)
        expect(confirmed.stdout).toContain("purged 5 tasks from queue idle; their records say REVOKED (TaskRevoked)")
        expect(yield* Fiber.join(awaiting)).toBeInstanceOf(TaskRevoked)
        expect((yield* broker.stats(["idle", "other"])).map((s) => s.ready + s.delayed)).toEqual([0, 1])

        const empty = yield* Effect.promise(() => d.cli(["purge", "idle", "--yes"]))
        expect(empty.stdout).toBe("queue idle has no waiting tasks; nothing purged\n")
        const unknown = yield* Effect.promise(() => d.cli(["purge", "nope", "-y"]))
        expect(unknown.stdout).toContain("queue nope is not known to Redis")
        expect(unknown.stdout).toContain("(known: idle, other); nothing purged")
      })
    ), 60_000)

  it.live("clear errors, not stack traces: bad Redis URLs, a missing or empty tasks module, an unknown id", () =>
    run((d) =>
      Effect.gen(function*() {
        const cases = yield* Effect.all([
          cli(["status", "x", "--redis", "redis://127.0.0.1:1"]),
          cli(["inspect", "--redis", "not a url"]),
          cli(["worker", "--tasks", "apps/cli/test/fixtures/tasks.ts", "--redis", "http://127.0.0.1:6379"]),
          cli(["worker", "--tasks", "./apps/cli/test/fixtures/nope.ts", "--redis", redis.url()]),
          cli(["worker", "--tasks", "apps/cli/src/Format.ts", "--redis", redis.url()]),
          cli(["worker", "--tasks", "@errand/no-such-package", "--redis", redis.url()]),
          Effect.promise(() => d.cli(["status", "no-such-task"])),
          cli(["status", "x"])
        ], { concurrency: 4 })
        const [refused, notUrl, http, missing, empty, noPackage, unknown, noRedis] = cases
        expect(refused).toMatchObject({ code: 1, stdout: "" })
        expect(refused!.stderr).toBe("errand: Redis at 127.0.0.1:1 is unreachable: connect ECONNREFUSED 127.0.0.1:1\n")
        expect(notUrl!.stderr).toBe(
          `errand: --redis "not a url" is not a URL; expected redis[s]://[[user][:password]@]host[:port][/db]\n`
        )
        expect(http!.stderr).toBe(`errand: --redis "http://127.0.0.1:6379" is not a redis:// or rediss:// URL\n`)
        expect(missing!.stderr).toBe(
          `errand: cannot load the tasks module "./apps/cli/test/fixtures/nope.ts": no such file or package ` +
            `(looked from ${root()})\n`
        )
        expect(empty!.stderr).toMatch(
          /^errand: the tasks module "apps\/cli\/src\/Format.ts" exports no implemented tasks: export Task.implement\(\.\.\.\) values, as named exports or an array \(exports found: .*table.*\)\n$/
        )
        expect(noPackage!.stderr).toContain(`errand: cannot load the tasks module "@errand/no-such-package"`)
        expect(unknown).toMatchObject({ code: 3, stdout: "" })
        expect(unknown!.stderr).toBe(
          `errand: no task no-such-task in Redis ${redis.url().replace(/^redis:\/\//, "")}/0, prefix ${d.prefix}: ` +
            `never submitted there, or its record expired (check --redis and --prefix)\n`
        )
        expect(noRedis!.stderr).toBe("errand: no Redis to connect to: pass --redis <url> or set ERRAND_REDIS_URL\n")
        for (const r of cases) {
          expect(r!.code).not.toBe(0)
          noStack(r!.stderr)
          noStack(r!.stdout)
        }
        // a usage error shows the help and the error, exit 2
        const usage = yield* cli(["status"])
        expect(usage.code).toBe(2)
        expect(usage.stdout + usage.stderr).toContain("Missing required argument: id")
      })
    ), 60_000)
})

const root = () => new URL("../../..", import.meta.url).pathname.replace(/\/$/, "")
