/**
 * HTTP clients for benchmarks that never share the event loop of the server under test (an in-process
 * server that stalls its loop would otherwise also stall the client's clock):
 * - load: a fixed number of keep-alive connections issuing GETs back to back for a fixed time, with
 *   Debian's `wrk` when it is on PATH (its own process, one thread), else a node:http loop in a worker;
 * - a REST client thread ({@link RestClient}) for single timed calls and create+delete loops.
 * Workers run this same file. Also a small table printer and percentiles.
 */
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

/** Which client produced a {@link LoadResult}. */
export type LoadClient = 'wrk' | 'node'

/** One load run. Latencies are per request, as the client saw them. */
export interface LoadResult {
  client: LoadClient
  requests: number
  seconds: number
  /** Responses that were not 2xx, plus socket errors and timeouts. */
  errors: number
  p50Ms: number
  p99Ms: number
  /** CPU time of the client's thread when it ran in this process (the node worker, start-up included), ms; 0 for wrk (a process of its own). */
  clientCpuMs: number
}

/** Linux's USER_HZ: /proc reports thread CPU times in these ticks. */
const CLOCK_TICKS_PER_S = 100

/**
 * CPU time (user + system) the calling thread has used, ms, from /proc/thread-self (10 ms resolution); 0 where
 * there is no such file. A client thread reports it so that its work can be told from a server's in the same process.
 */
export function threadCpuMs(): number {
  try {
    const stat = fs.readFileSync('/proc/thread-self/stat', 'utf8')
    // Fields after the parenthesised command name, from field 3 (state): utime is field 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS_PER_S
  } catch {
    return 0
  }
}

/**
 * What a client presents to a secured server: the CA (PEM) that signed an https server's certificate, and
 * headers sent with every request (e.g. `authorization: Bearer ...`).
 */
export interface ClientAuth {
  ca?: string
  headers?: Record<string, string>
}

export interface LoadOptions extends ClientAuth {
  concurrency: number
  durationS: number
  /** Force a client; default: `wrk` when installed, else `node`. */
  client?: LoadClient
}

/** Requests per second of a run. */
export const rps = (r: LoadResult): number => r.requests / r.seconds

/** The `p`-th percentile (0..100) of `xs`, nearest rank; NaN for an empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

let wrkAvailable: Promise<boolean> | undefined

/** True when `wrk` runs (checked once). */
export function hasWrk(): Promise<boolean> {
  return (wrkAvailable ??= new Promise((resolve) => execFile('wrk', ['--version'], (_err, stdout, stderr) => resolve(`${stdout}${stderr}`.includes('wrk')))))
}

/** The client {@link httpLoad} will use for `opts`. */
export async function chooseClient(opts: Pick<LoadOptions, 'client'> = {}): Promise<LoadClient> {
  if (opts.client) return opts.client
  return (await hasWrk()) ? 'wrk' : 'node'
}

/** GETs `url` with `concurrency` keep-alive connections for `durationS` seconds. */
export async function httpLoad(url: string, opts: LoadOptions): Promise<LoadResult> {
  const client = await chooseClient(opts)
  return client === 'wrk' ? wrkLoad(url, opts) : nodeLoad(url, opts)
}

function wrkDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim())
  if (!m) return NaN
  const v = Number(m[1])
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000
}

function wrkLoad(url: string, opts: LoadOptions): Promise<LoadResult> {
  // wrk does not verify server certificates: `ca` is not needed on this path.
  const headers = Object.entries(opts.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`])
  const args = ['-t1', `-c${opts.concurrency}`, `-d${opts.durationS}s`, '--latency', ...headers, url]
  return new Promise((resolve, reject) => {
    // Asynchronous on purpose: the server under test runs on this process's event loop.
    execFile('wrk', args, { timeout: (opts.durationS + 30) * 1000 }, (err, stdout) => {
      if (err) return reject(new Error(`wrk ${args.join(' ')} failed: ${err.message}`))
      const done = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(stdout)
      const p50 = /^\s*50%\s+(\S+)/m.exec(stdout)
      const p99 = /^\s*99%\s+(\S+)/m.exec(stdout)
      if (!done || !p50 || !p99) return reject(new Error(`cannot read wrk output:\n${stdout}`))
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0)
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout)
      const sockErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0
      resolve({
        client: 'wrk',
        requests: Number(done[1]),
        seconds: wrkDuration(`${done[2]}${done[3]}`) / 1000,
        errors: non2xx + sockErrors,
        p50Ms: wrkDuration(p50[1]!),
        p99Ms: wrkDuration(p99[1]!),
        clientCpuMs: 0,
      })
    })
  })
}

interface WorkerJob extends ClientAuth {
  kind: 'apmatrix-http-load'
  url: string
  concurrency: number
  durationS: number
}

function nodeLoad(url: string, opts: LoadOptions): Promise<LoadResult> {
  const job: WorkerJob = { kind: 'apmatrix-http-load', url, concurrency: opts.concurrency, durationS: opts.durationS, ca: opts.ca, headers: opts.headers }
  return new Promise((resolve, reject) => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: job })
    w.once('message', (r: LoadResult) => resolve(r))
    w.once('error', reject)
    w.once('exit', (code) => {
      if (code !== 0) reject(new Error(`http load worker exited with ${code}`))
    })
  })
}

/** The worker side: `concurrency` request loops over one keep-alive agent (http, or https with `ca`) until the deadline. */
async function runNodeLoad(job: WorkerJob): Promise<LoadResult> {
  const target = new URL(job.url)
  const tls = target.protocol === 'https:'
  const agent = tls
    ? new https.Agent({ keepAlive: true, maxSockets: job.concurrency, ca: job.ca })
    : new http.Agent({ keepAlive: true, maxSockets: job.concurrency })
  const get = tls ? https.get : http.get
  const latencies: number[] = []
  let errors = 0
  const once = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now()
      const req = get({ host: target.hostname, port: target.port, path: target.pathname + target.search, agent, headers: job.headers }, (res) => {
        res.on('data', () => {})
        res.on('end', () => {
          latencies.push(performance.now() - t0)
          if (!res.statusCode || res.statusCode < 200 || res.statusCode >= 300) errors++
          resolve()
        })
      })
      req.on('error', () => {
        errors++
        resolve()
      })
    })
  const start = performance.now()
  const deadline = start + job.durationS * 1000
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      while (performance.now() < deadline) await once()
    }),
  )
  const seconds = (performance.now() - start) / 1000
  agent.destroy()
  return {
    client: 'node',
    requests: latencies.length,
    seconds,
    errors,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    // The thread is this run's alone: its whole CPU time, start-up included.
    clientCpuMs: threadCpuMs(),
  }
}

/** One call timed by the client thread; times are epoch milliseconds (`performance.timeOrigin + now()`). */
export interface OffThreadReply {
  status: number
  bytes: number
  sentAt: number
  headersAt: number
  doneAt: number
  /** Lengths of the top-level arrays of a JSON object body (e.g. `operations`, `violations`; a plan summary's counts). */
  arrays: Record<string, number>
  /** The start of the body, for error reports. */
  head: string
  /** The whole body, when asked for (the REST client thread's own polls). */
  text?: string
}

/** One create+delete client loop: POST `{uuid, spec}` to `collection`, then DELETE `collection/uuid`, again and again. */
export interface CreateDeleteLoop {
  spec: unknown
  /** Iteration i uses uuid `uuidPrefix` + i in hex, zero-padded to 36 characters: unique per loop. */
  uuidPrefix: string
}

/** What {@link RestClient.createDeleteLoops} measured, on the client thread. */
export interface CreateDeleteResult {
  pairs: number
  failures: number
  seconds: number
  /** Epoch ms when the last response arrived. */
  endAt: number
  postMs: number[]
  deleteMs: number[]
  firstFailure?: string
}

/** What {@link RestClient.convergeLoop} measured, on the client thread. */
export interface ConvergeLoopResult {
  /** Each device's POST send to the first GET that showed it Ready, ms. */
  readyMs: number[]
  /** Devices not Ready (or not gone after their DELETE) within the timeout. */
  timeouts: number
  failures: number
  firstFailure?: string
}

type ClientOp =
  | { op: 'call'; method: string; url: string; body?: string; timeoutMs: number }
  | { op: 'createDelete'; collection: string; loops: CreateDeleteLoop[]; durationS: number }
  | { op: 'converge'; collection: string; specs: unknown[]; uuidPrefix: string; pollMs: number; timeoutMs: number; stop: Int32Array }
type ClientRequest = ClientOp & { id: number }
type ClientResponse = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string }

/** Now as epoch milliseconds, comparable across threads. */
export const epochNow = (): number => performance.timeOrigin + performance.now()

/**
 * A REST client on its own thread: the server under test may keep this process's event loop busy
 * (a reconcile pass that never yields), and an in-process client would then date every answer to the
 * end of the stall. Times are taken on the client thread.
 */
export class RestClient {
  private next = 1
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: ClientResponse) => {
      const p = this.pending.get(m.id)
      if (!p) return
      this.pending.delete(m.id)
      if (m.ok) p.resolve(m.value)
      else p.reject(new Error(m.error))
    })
    worker.on('error', (e) => this.failAll(e))
    worker.on('exit', (code) => this.failAll(new Error(`REST client worker exited with ${code}`)))
  }

  /** Starts the client thread. */
  static start(): RestClient {
    return new RestClient(new Worker(fileURLToPath(import.meta.url), { workerData: { kind: 'apmatrix-rest-client' } }))
  }

  /** One JSON request (body serialised here); never rejects on an HTTP error status. */
  call(method: string, url: string, body?: unknown, timeoutMs = 600_000): Promise<OffThreadReply> {
    return this.send({ op: 'call', method, url, timeoutMs, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }) as Promise<OffThreadReply>
  }

  /** Runs the loops concurrently for `durationS` seconds, each one POST then DELETE at a time. */
  createDeleteLoops(collection: string, loops: CreateDeleteLoop[], durationS: number): Promise<CreateDeleteResult> {
    return this.send({ op: 'createDelete', collection, loops, durationS }) as Promise<CreateDeleteResult>
  }

  /**
   * One device at a time until `stop[0]` is set (by the caller's thread, `Atomics.store`): POST it (spec
   * `specs[i % specs.length]`), GET it every `pollMs` until it is Ready, DELETE it, GET until 404. Times the
   * POST -> Ready as a client of the REST API sees it, from this thread.
   */
  convergeLoop(collection: string, specs: unknown[], uuidPrefix: string, stop: Int32Array, pollMs = 10, timeoutMs = 60_000): Promise<ConvergeLoopResult> {
    return this.send({ op: 'converge', collection, specs, uuidPrefix, pollMs, timeoutMs, stop }) as Promise<ConvergeLoopResult>
  }

  async close(): Promise<void> {
    await this.worker.terminate()
  }

  private send(req: ClientOp): Promise<unknown> {
    const id = this.next++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.worker.postMessage({ ...req, id })
    })
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e)
    this.pending.clear()
  }
}

async function timedCall(method: string, url: string, body: string | undefined, timeoutMs: number, keepText = false): Promise<OffThreadReply> {
  const sentAt = epochNow()
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  })
  const headersAt = epochNow()
  const text = await res.text()
  const doneAt = epochNow()
  const arrays: Record<string, number> = {}
  try {
    const parsed: unknown = text ? JSON.parse(text) : undefined
    if (parsed && typeof parsed === 'object') for (const [k, v] of Object.entries(parsed)) if (Array.isArray(v)) arrays[k] = v.length
    // A plan in its summary view (the default) counts its lists instead of listing them.
    const summary = (parsed as { summary?: { operationCount?: number; violations?: { count?: number } } } | undefined)?.summary
    if (typeof summary?.operationCount === 'number') arrays.operations ??= summary.operationCount
    if (typeof summary?.violations?.count === 'number') arrays.violations ??= summary.violations.count
  } catch {
    // Not JSON: the head below shows what it was.
  }
  return { status: res.status, bytes: Buffer.byteLength(text), sentAt, headersAt, doneAt, arrays, head: text.slice(0, 300), ...(keepText ? { text } : {}) }
}

async function runCreateDelete(collection: string, loops: CreateDeleteLoop[], durationS: number): Promise<CreateDeleteResult> {
  const out: CreateDeleteResult = { pairs: 0, failures: 0, seconds: 0, endAt: 0, postMs: [], deleteMs: [] }
  const start = epochNow()
  const deadline = start + durationS * 1000
  await Promise.all(
    loops.map(async (loop) => {
      for (let i = 0; epochNow() < deadline; i++) {
        const uuid = loop.uuidPrefix + i.toString(16).padStart(36 - loop.uuidPrefix.length, '0')
        const c = await timedCall('POST', collection, JSON.stringify({ uuid, spec: loop.spec }), 60_000)
        out.postMs.push(c.doneAt - c.sentAt)
        const d = c.status === 201 ? await timedCall('DELETE', `${collection}/${uuid}`, undefined, 60_000) : undefined
        if (d) out.deleteMs.push(d.doneAt - d.sentAt)
        if (c.status === 201 && d?.status === 202) out.pairs++
        else {
          out.failures++
          out.firstFailure ??= `POST ${c.status} ${c.head.slice(0, 120)}${d ? ` DELETE ${d.status} ${d.head.slice(0, 120)}` : ''}`
        }
      }
    }),
  )
  out.endAt = epochNow()
  out.seconds = (out.endAt - start) / 1000
  return out
}

interface MdevAnswer {
  metadata?: { generation?: number; deletionRequestedAt?: string | null }
  status?: { observedGeneration?: number; conditions?: Array<{ type: string; status: string }> }
}

const readyAnswer = (text: string): boolean => {
  const m = JSON.parse(text) as MdevAnswer
  return (
    m.metadata?.deletionRequestedAt === null &&
    m.status?.observedGeneration === m.metadata.generation &&
    !!m.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
  )
}

async function runConverge(req: Extract<ClientOp, { op: 'converge' }>): Promise<ConvergeLoopResult> {
  const out: ConvergeLoopResult = { readyMs: [], timeouts: 0, failures: 0 }
  const fail = (what: string) => {
    out.failures++
    out.firstFailure ??= what
  }
  /** GETs `url` every pollMs until `done(reply)`; the epoch ms of the answer that passed, or undefined. */
  const pollUntil = async (url: string, done: (r: OffThreadReply) => boolean): Promise<number | undefined> => {
    const deadline = epochNow() + req.timeoutMs
    while (epochNow() < deadline) {
      const r = await timedCall('GET', url, undefined, req.timeoutMs, true)
      if (done(r)) return r.doneAt
      await new Promise((resolve) => setTimeout(resolve, req.pollMs))
    }
    return undefined
  }
  for (let i = 0; Atomics.load(req.stop, 0) === 0 && out.failures < 5; i++) {
    const uuid = req.uuidPrefix + i.toString(16).padStart(36 - req.uuidPrefix.length, '0')
    const url = `${req.collection}/${uuid}`
    const c = await timedCall('POST', req.collection, JSON.stringify({ uuid, spec: req.specs[i % req.specs.length] }), req.timeoutMs)
    if (c.status !== 201) {
      fail(`POST ${c.status} ${c.head.slice(0, 160)}`)
      continue
    }
    const readyAt = await pollUntil(url, (r) => r.status === 200 && readyAnswer(r.text ?? '{}'))
    if (readyAt === undefined) out.timeouts++
    else out.readyMs.push(readyAt - c.sentAt)
    const d = await timedCall('DELETE', url, undefined, req.timeoutMs)
    if (d.status !== 202) {
      fail(`DELETE ${d.status} ${d.head.slice(0, 160)}`)
      continue
    }
    if ((await pollUntil(url, (r) => r.status === 404)) === undefined) out.timeouts++
  }
  return out
}

function serveRestClient(): void {
  parentPort!.on('message', (req: ClientRequest) => {
    const work =
      req.op === 'call'
        ? timedCall(req.method, req.url, req.body, req.timeoutMs)
        : req.op === 'converge'
          ? runConverge(req)
          : runCreateDelete(req.collection, req.loops, req.durationS)
    work.then(
      (value) => parentPort!.postMessage({ id: req.id, ok: true, value } satisfies ClientResponse),
      (e: unknown) => parentPort!.postMessage({ id: req.id, ok: false, error: e instanceof Error ? e.message : String(e) } satisfies ClientResponse),
    )
  })
}

// ---- a fixed-rate poller (e.g. /healthz while the server is busy) -------------------------------

interface PollJob {
  kind: 'apmatrix-poller'
  url: string
  everyMs: number
  maxInFlight: number
}

/** What a {@link Poller} saw. Latencies count from each request's scheduled time (see {@link Poller}). */
export interface PollResult {
  /** Requests scheduled (one every `everyMs` from the start). */
  scheduled: number
  /** Latency of every answered request, ms from its scheduled send time to the whole (2xx) answer. */
  latencies: number[]
  /** Non-2xx answers and socket errors. */
  errors: number
  /** Ticks not sent because `maxInFlight` requests were outstanding; counted as answered at the stop, late. */
  skipped: number
  /** Requests still outstanding at the stop; counted in `latencies` as answered at the stop. */
  outstanding: number
}

/**
 * GETs `url` once every `everyMs` from a worker thread, open loop: a request is sent at each tick of a
 * fixed schedule whether or not the earlier ones were answered, and its latency counts from its tick, so a
 * server that answers nothing for 2 s shows 2 s of late answers, not one slow one (no coordinated
 * omission). Requests not answered at the stop count as answered then.
 */
export class Poller {
  private constructor(private readonly worker: Worker) {}

  /** Starts polling; resolves once the worker runs. */
  static async start(url: string, everyMs: number, maxInFlight = 1000): Promise<Poller> {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { kind: 'apmatrix-poller', url, everyMs, maxInFlight } satisfies PollJob })
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve())
      w.once('error', reject)
    })
    return new Poller(w)
  }

  /** Stops polling and returns what was seen. */
  async stop(): Promise<PollResult> {
    const r = new Promise<PollResult>((resolve, reject) => {
      this.worker.once('message', (m: PollResult) => resolve(m))
      this.worker.once('error', reject)
    })
    this.worker.postMessage('stop')
    const out = await r
    await this.worker.terminate()
    return out
  }
}

function runPoller(job: PollJob): void {
  const latencies: number[] = []
  const pending = new Set<number>()
  let errors = 0
  let skipped = 0
  let scheduled = 0
  let stopped = false
  const start = performance.now()
  const agent = new http.Agent({ keepAlive: true })
  const target = new URL(job.url)
  const send = (due: number) => {
    pending.add(due)
    const req = http.get({ host: target.hostname, port: target.port, path: target.pathname + target.search, agent }, (res) => {
      res.on('data', () => {})
      res.on('end', () => {
        if (stopped) return
        pending.delete(due)
        if (res.statusCode && res.statusCode >= 200 && res.statusCode < 300) latencies.push(performance.now() - due)
        else errors++
      })
    })
    req.on('error', () => {
      if (stopped) return
      pending.delete(due)
      errors++
    })
  }
  const skippedAt: number[] = []
  const tick = () => {
    if (stopped) return
    const now = performance.now()
    // Every tick that is due (a late timer sends the missed ones now, dated by their schedule).
    while (start + scheduled * job.everyMs <= now) {
      const due = start + scheduled * job.everyMs
      scheduled++
      if (pending.size >= job.maxInFlight) {
        skipped++
        skippedAt.push(due)
      } else send(due)
    }
    setTimeout(tick, Math.max(0, start + scheduled * job.everyMs - performance.now()))
  }
  parentPort!.on('message', (m: unknown) => {
    if (m !== 'stop') return
    stopped = true
    const at = performance.now()
    const outstanding = pending.size
    for (const due of [...pending, ...skippedAt]) latencies.push(at - due)
    agent.destroy()
    parentPort!.postMessage({ scheduled, latencies, errors, skipped, outstanding } satisfies PollResult)
  })
  parentPort!.postMessage('started')
  tick()
}

const job = isMainThread ? undefined : (workerData as WorkerJob | PollJob | { kind: 'apmatrix-rest-client' } | undefined)
if (job?.kind === 'apmatrix-http-load') parentPort!.postMessage(await runNodeLoad(job))
if (job?.kind === 'apmatrix-rest-client') serveRestClient()
if (job?.kind === 'apmatrix-poller') runPoller(job)

/** An integer with thousands separators. */
export const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US')

/** Milliseconds: two decimals below 100 ms, whole above; `n/a` for NaN. */
export const fmtMs = (ms: number): string => (Number.isNaN(ms) ? 'n/a' : ms >= 100 ? `${fmtInt(ms)} ms` : `${ms.toFixed(2)} ms`)

/** One row of a load table: target, mean req/s, each round's req/s, median p50, worst p99, errors. */
export function loadRow(name: string, rs: LoadResult[], mean: number): string[] {
  return [
    name,
    fmtInt(mean),
    rs.map((r) => fmtInt(rps(r))).join(' / '),
    fmtMs(
      percentile(
        rs.map((r) => r.p50Ms),
        50,
      ),
    ),
    fmtMs(Math.max(...rs.map((r) => r.p99Ms))),
    String(rs.reduce((a, r) => a + r.errors, 0)),
  ]
}

/** Mean requests per second of some rounds. */
export const meanRps = (rs: readonly LoadResult[]): number => rs.reduce((a, r) => a + rps(r), 0) / rs.length

/** Prints rows as an aligned table; the first row is the header, the first column is left-aligned. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)))
  for (const [i, r] of rows.entries()) {
    console.log(
      widths
        .map((w, c) => (c === 0 ? (r[c] ?? '').padEnd(w) : (r[c] ?? '').padStart(w)))
        .join('   ')
        .trimEnd(),
    )
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('   '))
  }
}
