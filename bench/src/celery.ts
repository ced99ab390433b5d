/**
 * Celery's side: a small tasks module and producer script written to a temp
 * dir, a `celery worker` subprocess (threads pool, `-c` = the concurrency),
 * and detection of a Python with celery and redis importable.
 *
 * Settings chosen to match errand's guarantees and the workloads: late
 * acknowledgement (`task_acks_late`, errand's default), the default prefetch
 * multiplier (4), the Redis broker, the Redis result backend only when results
 * are stored. Keys live under a per-run `global_keyprefix`; result keys are
 * `celery-task-meta-<prefix>-<n>` (the producer chooses the task ids).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { RoleConfig } from "./config.ts"
import { type Proc, spawnLines } from "./proc.ts"

const tasksPy = String.raw`
import json, os, sys, threading, time
from celery import Celery, signals

URL = os.environ["BENCH_URL"]
PREFIX = os.environ["BENCH_PREFIX"]
QUEUE = os.environ["BENCH_QUEUE"]
STORE = os.environ.get("BENCH_STORE") == "1"
MODE = os.environ.get("BENCH_MODE", "count")
N = int(os.environ.get("BENCH_TASKS", "0"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "0"))

app = Celery("bench", broker=URL, backend=URL if STORE else None)
app.conf.update(
    broker_transport_options={"global_keyprefix": PREFIX + ":"},
    task_default_queue=QUEUE,
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    task_ignore_result=not STORE,
    result_expires=3600,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    broker_connection_retry_on_startup=True,
)

def emit(obj):
    # sys.__stdout__: the worker redirects sys.stdout to its logger
    sys.__stdout__.write("@@" + json.dumps(obj) + "\n")
    sys.__stdout__.flush()

lock = threading.Lock()
state = {"count": 0}
latencies = []

@signals.worker_ready.connect
def ready(**kwargs):
    emit({"type": "ready"})

@app.task(name="bench.noop")
def noop(n, t):
    started = time.time() * 1000
    if MODE == "block":
        with lock:
            state["count"] += 1
            c = state["count"]
        emit({"type": "started", "running": c})
        time.sleep(3600)
        return n
    with lock:
        if MODE == "latency" and n >= WARMUP:
            latencies.append(started - t)
        state["count"] += 1
        c = state["count"]
    if c == N:
        out = {"type": "handled", "at": time.time() * 1000, "count": c}
        if MODE == "latency":
            s = sorted(latencies)
            at = lambda q: s[min(len(s) - 1, int(q * len(s)))]
            out["latency"] = {"n": len(s), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": s[-1], "mean": sum(s) / len(s)}
        emit(out)
    return n
`

const producerPy = String.raw`
import json, os, sys, time
import redis
from tasks import app, noop, PREFIX, QUEUE, URL

def emit(obj):
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()

mode = sys.argv[1]
n_tasks = int(os.environ["BENCH_TASKS"])

if mode == "bulk":
    with app.producer_or_acquire() as producer:
        noop.apply_async((-1, 0), task_id=PREFIX + "-warm", producer=producer, queue=QUEUE + "-warm")
        emit({"type": "ready"})
        sys.stdin.readline()
        t0 = time.time() * 1000
        for n in range(n_tasks):
            noop.apply_async((n, 0), task_id=PREFIX + "-" + str(n), producer=producer)
        t1 = time.time() * 1000
    emit({"type": "submitted", "startedAt": t0, "endedAt": t1, "count": n_tasks})
elif mode == "paced":
    rate = float(os.environ["BENCH_RATE"])
    with app.producer_or_acquire() as producer:
        noop.apply_async((-1, 0), task_id=PREFIX + "-warm", producer=producer, queue=QUEUE + "-warm")
        emit({"type": "ready"})
        sys.stdin.readline()
        t0 = time.time() * 1000
        for n in range(n_tasks):
            wait = (t0 + n * 1000.0 / rate - time.time() * 1000) / 1000
            if wait > 0:
                time.sleep(wait)
            noop.apply_async((n, time.time() * 1000), task_id=PREFIX + "-" + str(n), producer=producer)
        t1 = time.time() * 1000
    emit({"type": "submitted", "startedAt": t0, "endedAt": t1, "count": n_tasks})
elif mode == "fill":
    # A backlog for the memory workload: publish one real message, then push
    # copies of its raw form with fresh ids (publishing 1,000,000 one by one
    # would take minutes; the worker only ever sees the first few hundred).
    noop.apply_async((0, 0), task_id=PREFIX + "-TEMPLATE0000")
    r = redis.Redis.from_url(URL)
    key = PREFIX + ":" + QUEUE
    raw = r.lpop(key).decode()
    msg = json.loads(raw)
    tag = msg["properties"]["delivery_tag"]
    pipe = r.pipeline(transaction=False)
    for n in range(n_tasks):
        pipe.lpush(key, raw.replace(PREFIX + "-TEMPLATE0000", PREFIX + "-" + str(n)).replace(tag, tag[:-12] + "%012d" % n))
        if n % 10000 == 9999:
            pipe.execute()
    pipe.execute()
    emit({"type": "filled", "count": r.llen(key)})
`

export interface CeleryEnv {
  readonly python: string
  readonly version: string
}

/** A Python with celery and redis importable: `BENCH_PYTHON` if set, else `python3` on the PATH, then `/usr/bin/python3`. */
export const detect = (): CeleryEnv | { readonly missing: string } => {
  const chosen = process.env.BENCH_PYTHON
  const candidates = chosen !== undefined && chosen !== "" ? [chosen] : ["python3", "/usr/bin/python3"]
  const tried: Array<string> = []
  for (const python of [...new Set(candidates)]) {
    const r = spawnSync(python, ["-c", "import celery, redis; print(celery.__version__)"], { encoding: "utf8" })
    if (r.status === 0) {
      const version = r.stdout.trim()
      if (!version.startsWith("5.")) {
        tried.push(`${python}: celery ${version} is not Celery 5`)
        continue
      }
      return { python, version }
    }
    tried.push(`${python}: ${r.error ? "not found" : (r.stderr.trim().split("\n").pop() ?? "fails")}`)
  }
  return {
    missing: `Celery rows skipped: no Python with celery 5 and redis importable (${tried.join("; ")}). ` +
      "Install it with `apt-get install python3-celery python3-redis` or `pip install celery redis`."
  }
}

let dir: string | undefined

const moduleDir = () => {
  if (dir === undefined) {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "errand-bench-celery-"))
    fs.writeFileSync(path.join(dir, "tasks.py"), tasksPy)
    fs.writeFileSync(path.join(dir, "producer.py"), producerPy)
  }
  return dir
}

/** Removes the temp dir of the Python files. */
export const cleanup = () => {
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true })
  dir = undefined
}

const envOf = (config: RoleConfig): NodeJS.ProcessEnv => ({
  ...process.env,
  PYTHONPATH: moduleDir(),
  PYTHONUNBUFFERED: "1",
  BENCH_URL: config.url,
  BENCH_PREFIX: config.prefix,
  BENCH_QUEUE: config.queue,
  BENCH_STORE: config.storeResults ? "1" : "0",
  BENCH_MODE: config.mode,
  BENCH_TASKS: String(config.tasks),
  BENCH_WARMUP: String(config.warmup),
  BENCH_RATE: String(config.rate)
})

/** `celery worker`, threads pool with `-c concurrency`, one process. */
export const worker = (celery: CeleryEnv, config: RoleConfig): Proc =>
  spawnLines("celery.worker", celery.python, [
    "-m",
    "celery",
    "-A",
    "tasks",
    "worker",
    "-P",
    "threads",
    "-c",
    String(config.concurrency),
    "-Q",
    config.queue,
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    "-l",
    "WARNING"
  ], { cwd: moduleDir(), env: envOf(config) })

export const producer = (celery: CeleryEnv, config: RoleConfig, mode: "bulk" | "paced" | "fill"): Proc =>
  spawnLines(`celery.producer.${mode}`, celery.python, [path.join(moduleDir(), "producer.py"), mode], {
    cwd: moduleDir(),
    env: envOf(config)
  })
