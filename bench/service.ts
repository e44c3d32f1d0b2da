/**
 * Service benchmark (`npm run bench -- service`, issue 3 §7): the whole service (REST, admission, SQLite
 * store, reconciler, in-process emulated host) measured from outside through its REST API.
 *  1. `GET` of one matrix device, req/s, against a bare fastify route answering the same JSON, same
 *     client, same concurrency, in the same run (the ratio is the figure that travels between machines).
 *     1b. the same for a LIST of 100 devices.
 *  2. create+delete of a matrix device per second, with and without waiting for convergence.
 *  3. convergence latency on `demo`: POST, PUT (hot-plug a domain) and DELETE to the converged state.
 *  4. bring-up of the `full` profile (65,536 queues) through one `PUT desired`: plan (median of a few, and
 *     the `view=full` answer once), accept, all Ready; meanwhile the longest event-loop stall of this
 *     process (monitorEventLoopDelay at 1 ms plus a 1 ms interval probe) and `/healthz` polled every 10 ms
 *     from a worker thread (open loop: latencies count from each poll's scheduled time).
 * Records the goals rest-get, rest-list, demo-post-ready-p99, full-plan, full-put-ready, full-loop-stall
 * and full-healthz-p99 of the goal table (bench/goals.ts).
 * Convergence is seen through the reconciler's outcomes (status is stored before they are announced)
 * plus a slow poll. Figures only: nothing passes or fails (style.md habit 6).
 *
 * Environment knobs: APMATRIX_BENCH_CLIENT=wrk|node (HTTP load client; default wrk when installed),
 * APMATRIX_BENCH_PHASES=get,list,crud,latency,full (default all), APMATRIX_BENCH_FULL_CAP_S (default 300).
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RunningService } from '../src/main.js'
import { startBareRoute } from './baselines.js'
import {
  chooseClient,
  epochNow,
  fmtInt,
  fmtMs,
  httpLoad,
  loadRow,
  meanRps,
  percentile,
  printTable,
  Poller,
  RestClient,
  type LoadClient,
  type LoadResult,
  type OffThreadReply,
} from './http-load-helpers.js'
import {
  benchUuid,
  benchUuidPrefix,
  callJson,
  expectStatus,
  findMdev,
  isReady,
  probeLoopStalls,
  sampleRss,
  startBenchService,
  timePasses,
  waitUntil,
  type BenchService,
  type LoopStalls,
  type WaitResult,
} from './service-helpers.js'
import { recordGoal } from './goals.js'
import type { PollResult } from './http-load-helpers.js'
import type { BenchSuite } from './suite.js'

const HOST = 'local'
const CONCURRENCY = 16
const LOAD_S = 3
const WARMUP_S = 1
/** GET rounds per target, alternating bare/service so drift in machine load hits both alike. */
const GET_ROUNDS = 2
const CRUD_S = 3
const LATENCY_DEVICES = 100
/** Devices in the LIST figure (the default page size, asked for explicitly). */
const LIST_DEVICES = 100
/** Plan calls timed on the full host (the figure is their median). */
const PLAN_RUNS = 3
/** The /healthz poller's period during the full bring-up. */
const HEALTHZ_EVERY_MS = 10
/** Longest wait for one device to converge on `demo` before the run reports a timeout. */
const CONVERGE_TIMEOUT_MS = 30_000
const FULL_ADAPTERS = 256
const FULL_DOMAINS = 256
const ALL_ONES = `0x${'f'.repeat(64)}`

// demo: CEX7 adapters 0..2 and CEX8 5..7; usage domains 1, 2, 4, 5, 10, 0x47 (src/emulator/PROFILES.md).
const DEMO_ADAPTERS = [0, 1, 2, 5, 6, 7]
const DEMO_DOMAINS = [1, 2, 4, 5, 10, 0x47]

const mdevPath = (uuid: string) => `/v1/hosts/${HOST}/mdevs/${uuid}`
const mdevsPath = `/v1/hosts/${HOST}/mdevs`
const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(0)} MiB`

function phases(): Set<string> {
  const all = ['get', 'list', 'crud', 'latency', 'full']
  const env = process.env.APMATRIX_BENCH_PHASES
  const chosen = env ? env.split(',').map((s) => s.trim()) : all
  const bad = chosen.filter((p) => !all.includes(p))
  if (bad.length) throw new Error(`APMATRIX_BENCH_PHASES: unknown phase ${bad.join(', ')} (known: ${all.join(', ')})`)
  return new Set(chosen)
}

function clientOverride(): LoadClient | undefined {
  const c = process.env.APMATRIX_BENCH_CLIENT
  if (c === undefined || c === '') return undefined
  if (c !== 'wrk' && c !== 'node') throw new Error(`APMATRIX_BENCH_CLIENT: '${c}' is not wrk or node`)
  return c
}

async function waitReady(svc: RunningService, uuid: string, timeoutMs = CONVERGE_TIMEOUT_MS) {
  return waitUntil(
    svc,
    async () => {
      const r = await findMdev(svc, HOST, uuid)
      return !!r && isReady(r)
    },
    { timeoutMs },
  )
}

async function waitGone(svc: RunningService, uuid: string, timeoutMs = CONVERGE_TIMEOUT_MS) {
  return waitUntil(svc, async () => (await findMdev(svc, HOST, uuid)) === undefined, { timeoutMs })
}

async function waitNoDevices(svc: RunningService, timeoutMs: number) {
  return waitUntil(svc, async () => (await svc.store.mdevs.listAll(HOST)).length === 0, { timeoutMs, pollMs: 50 })
}

/** Frees every demo adapter from the host drivers (B-21: `0x` clears the mask) and waits for the bus. */
async function freeAdapters(b: BenchService): Promise<void> {
  const { svc } = b
  const r = await callJson(svc.httpUrl, 'PUT', `/v1/hosts/${HOST}/masks`, { apmask: '0x' })
  expectStatus('PUT masks', r, 200)
  const w = await waitUntil(
    svc,
    async () => {
      const m = await svc.store.masks.get(HOST)
      return !!m && m.status.observedGeneration === m.generation && (await svc.hosts[0]!.bus.observeTopology()).apmask === m.apmask
    },
    { timeoutMs: CONVERGE_TIMEOUT_MS },
  )
  if (!w.ok) throw new Error('masks did not converge')
}

async function createDevice(svc: RunningService, uuid: string, adapters: number[], domains: number[]): Promise<void> {
  const r = await callJson(svc.httpUrl, 'POST', mdevsPath, { uuid, spec: { adapters, domains } })
  expectStatus(`POST ${uuid}`, r, 201)
}

// ---- 1. GET one device against a bare fastify route --------------------------------------------

interface GetFigures {
  client: LoadClient
  bare: LoadResult[]
  service: LoadResult[]
  bodyBytes: number
  storeGetPerSec: number
}

/**
 * Reads of the store alone (no HTTP), `CONCURRENCY` in flight, for `ms`: how much of a GET is the store.
 * Each read starts in its own event-loop turn (after a `setImmediate`), as reads of requests arriving on
 * sockets do: Prisma merges `findUnique` calls issued in one tick into one query, which would measure the merge.
 */
async function storeGetRate(svc: RunningService, uuid: string, ms: number): Promise<number> {
  let n = 0
  const deadline = performance.now() + ms
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        await new Promise((resolve) => setImmediate(resolve))
        await svc.store.mdevs.get(HOST, uuid)
        n++
      }
    }),
  )
  return (n / (performance.now() - t0)) * 1000
}

async function benchGet(b: BenchService, client: LoadClient): Promise<GetFigures> {
  const { svc } = b
  const uuid = benchUuid(1, 0)
  await createDevice(svc, uuid, [DEMO_ADAPTERS[0]!], [DEMO_DOMAINS[0]!])
  if (!(await waitReady(svc, uuid)).ok) throw new Error(`${uuid} did not become Ready`)
  const one = await callJson<object>(svc.httpUrl, 'GET', mdevPath(uuid))
  expectStatus('GET', one, 200)

  // The baseline: the same JSON from a route with nothing behind it, in this process, like the service.
  const bare = await startBareRoute('/v1/hosts/:host/mdevs/:uuid', one.body)
  const bareUrl = bare.base + mdevPath(uuid)
  const svcUrl = svc.httpUrl + mdevPath(uuid)
  try {
    const check = await callJson(bare.base, 'GET', mdevPath(uuid))
    if (JSON.stringify(check.body) !== JSON.stringify(one.body)) throw new Error('bare route does not answer the same JSON')
    await httpLoad(bareUrl, { concurrency: CONCURRENCY, durationS: WARMUP_S, client })
    await httpLoad(svcUrl, { concurrency: CONCURRENCY, durationS: WARMUP_S, client })
    const out: GetFigures = { client, bare: [], service: [], bodyBytes: one.bytes, storeGetPerSec: 0 }
    for (let r = 0; r < GET_ROUNDS; r++) {
      out.bare.push(await httpLoad(bareUrl, { concurrency: CONCURRENCY, durationS: LOAD_S, client }))
      out.service.push(await httpLoad(svcUrl, { concurrency: CONCURRENCY, durationS: LOAD_S, client }))
    }
    out.storeGetPerSec = await storeGetRate(svc, uuid, 2000)
    return out
  } finally {
    await bare.close()
    await callJson(svc.httpUrl, 'DELETE', mdevPath(uuid))
    await waitGone(svc, uuid)
  }
}

// ---- 1b. LIST of 100 devices against a bare fastify route ---------------------------------------

interface ListFigures {
  client: LoadClient
  bare: LoadResult[]
  service: LoadResult[]
  bodyBytes: number
  devices: number
}

/**
 * LIST_DEVICES devices on `demo` (the first 36 hold one APQN each, the others none: demo has 36 usage
 * APQNs), converged; then `GET .../mdevs?limit=100` against a bare route answering the same JSON, as in 1.
 */
async function benchList(b: BenchService, client: LoadClient): Promise<ListFigures> {
  const { svc } = b
  const uuids: string[] = []
  for (let i = 0; i < LIST_DEVICES; i++) {
    const uuid = benchUuid(6, i)
    const spec = i < 36 ? { adapters: [DEMO_ADAPTERS[i % 6]!], domains: [DEMO_DOMAINS[Math.floor(i / 6)]!] } : {}
    expectStatus(`POST ${uuid}`, await callJson(svc.httpUrl, 'POST', mdevsPath, { uuid, spec }), 201)
    uuids.push(uuid)
  }
  const route = `${mdevsPath}?limit=${LIST_DEVICES}`
  try {
    const converged = await waitUntil(svc, async () => (await svc.store.mdevs.listAll(HOST)).every((r) => r.status.observedGeneration === r.generation), {
      timeoutMs: CONVERGE_TIMEOUT_MS,
      pollMs: 100,
    })
    if (!converged.ok) throw new Error('the LIST devices did not converge')
    const page = await callJson<{ items: unknown[] }>(svc.httpUrl, 'GET', route)
    expectStatus('LIST', page, 200)
    if (page.body.items.length !== LIST_DEVICES) throw new Error(`LIST answered ${page.body.items.length} devices, not ${LIST_DEVICES}`)
    const bare = await startBareRoute('/v1/hosts/:host/mdevs', page.body)
    const bareBase = bare.base
    try {
      const check = await callJson(bareBase, 'GET', route)
      if (JSON.stringify(check.body) !== JSON.stringify(page.body) || check.bytes !== page.bytes) throw new Error('bare route does not answer the same JSON')
      await httpLoad(bareBase + route, { concurrency: CONCURRENCY, durationS: WARMUP_S, client })
      await httpLoad(svc.httpUrl + route, { concurrency: CONCURRENCY, durationS: WARMUP_S, client })
      const out: ListFigures = { client, bare: [], service: [], bodyBytes: page.bytes, devices: LIST_DEVICES }
      for (let r = 0; r < GET_ROUNDS; r++) {
        out.bare.push(await httpLoad(bareBase + route, { concurrency: CONCURRENCY, durationS: LOAD_S, client }))
        out.service.push(await httpLoad(svc.httpUrl + route, { concurrency: CONCURRENCY, durationS: LOAD_S, client }))
      }
      return out
    } finally {
      await bare.close()
    }
  } finally {
    for (const uuid of uuids) await callJson(svc.httpUrl, 'DELETE', mdevPath(uuid))
    await waitNoDevices(svc, 120_000)
  }
}

function printList(g: ListFigures): void {
  const bare = meanRps(g.bare)
  const svc = meanRps(g.service)
  console.log(
    `\n1b. LIST of ${g.devices} matrix devices (${fmtInt(g.bodyBytes)} bytes of JSON): ${g.client === 'wrk' ? 'wrk -t1' : 'node:http worker'}, ${CONCURRENCY} keep-alive connections, ${LOAD_S} s per round, ${GET_ROUNDS} rounds alternating, ${WARMUP_S} s warm-up each`,
  )
  const rows = [['target', 'req/s (mean)', 'rounds', 'p50', 'p99', 'errors']]
  const row = (name: string, rs: LoadResult[], m: number) => loadRow(name, rs, m)
  rows.push(row('bare fastify route, same JSON', g.bare, bare))
  rows.push(row(`apmatrix GET /v1/hosts/local/mdevs?limit=${g.devices}`, g.service, svc))
  printTable(rows)
  console.log(`ratio apmatrix/bare: ${(svc / bare).toFixed(3)}`)
  recordGoal('rest-list', {
    measured: svc,
    baseline: bare,
    unit: 'req/s',
    note: `${g.devices} devices, ${fmtInt(g.bodyBytes)} bytes; same client and rounds as rest-get`,
  })
}

// ---- 2. create+delete per second -----------------------------------------------------------------

interface CrudFigures {
  label: string
  pairs: number
  ms: number
  failures: number
  firstFailure?: string
  /** Wall times of the reconcile passes that ended during the timed loop. */
  passes: number[]
  /** Request times (send to whole response) on the client thread. */
  postMs: number[]
  deleteMs: number[]
  /** Time after the last response until the store and bus hold no device (convergence not awaited only). */
  settleMs?: number
  settled?: boolean
}

/**
 * `loops` clients (on the client thread) each POST then DELETE a fresh device for CRUD_S seconds, not
 * waiting for the bus. One APQN per client, so clients never collide (a device being deleted holds
 * nothing for admission); the reconciler works behind them.
 */
async function crudNoWait(b: BenchService, client: RestClient, loops: number, run: number): Promise<CrudFigures> {
  const { svc } = b
  const passes = timePasses(svc)
  const r = await client.createDeleteLoops(
    svc.httpUrl + mdevsPath,
    Array.from({ length: loops }, (_, k) => ({
      spec: { adapters: [DEMO_ADAPTERS[k % DEMO_ADAPTERS.length]!], domains: [DEMO_DOMAINS[Math.floor(k / DEMO_ADAPTERS.length) % DEMO_DOMAINS.length]!] },
      uuidPrefix: benchUuidPrefix(run, k),
    })),
    CRUD_S,
  )
  passes.stop()
  const s = await waitNoDevices(svc, 120_000)
  return {
    label: `not awaited, ${loops} client${loops > 1 ? 's' : ''}`,
    pairs: r.pairs,
    ms: r.seconds * 1000,
    failures: r.failures,
    passes: passes.durations,
    firstFailure: r.firstFailure,
    postMs: r.postMs,
    deleteMs: r.deleteMs,
    settleMs: Math.max(0, performance.timeOrigin + s.at - r.endAt),
    settled: s.ok,
  }
}

/** One client: POST, wait Ready, DELETE, wait until the device is gone from store and bus; CRUD_S seconds. */
async function crudAwaited(b: BenchService, client: RestClient, run: number): Promise<CrudFigures> {
  const { svc } = b
  const f: CrudFigures = { label: 'awaited (Ready, then gone), 1 client', pairs: 0, ms: 0, failures: 0, passes: [], postMs: [], deleteMs: [] }
  const passes = timePasses(svc)
  const fail = (what: string) => {
    f.failures++
    f.firstFailure ??= what
    return f.failures > 5
  }
  const t0 = performance.now()
  for (let i = 0; performance.now() < t0 + CRUD_S * 1000 || f.pairs < 5; i++) {
    const uuid = benchUuid(run, i)
    const spec = { adapters: [DEMO_ADAPTERS[i % DEMO_ADAPTERS.length]!], domains: [DEMO_DOMAINS[i % DEMO_DOMAINS.length]!] }
    const ready = waitReady(svc, uuid)
    const c = await client.call('POST', svc.httpUrl + mdevsPath, { uuid, spec })
    f.postMs.push(c.doneAt - c.sentAt)
    if (c.status !== 201 || !(await ready).ok) {
      if (fail(`POST ${c.status} ${c.head.slice(0, 120)}`)) break
      continue
    }
    const gone = waitGone(svc, uuid)
    const d = await client.call('DELETE', svc.httpUrl + mdevPath(uuid))
    f.deleteMs.push(d.doneAt - d.sentAt)
    if (d.status !== 202 || !(await gone).ok) {
      if (fail(`DELETE ${d.status} ${d.head.slice(0, 120)}`)) break
      continue
    }
    f.pairs++
  }
  f.ms = performance.now() - t0
  passes.stop()
  f.passes = passes.durations
  return f
}

// ---- 3. convergence latency ----------------------------------------------------------------------

interface LatencyFigures {
  devices: number
  postAccept: number[]
  postReady: number[]
  putAccept: number[]
  putReady: number[]
  deleteAccept: number[]
  deleteGone: number[]
  timeouts: number
  /** Wall times of every reconcile pass during the run. */
  passes: number[]
}

/**
 * LATENCY_DEVICES devices one after the other: POST → Ready, PUT adding a domain → Ready, DELETE → gone.
 * Times from the client thread's send: accepted = the whole response received there; converged = the
 * store held the converged status (seen on this thread at the reconcile outcome).
 */
async function benchLatency(b: BenchService, client: RestClient, run: number): Promise<LatencyFigures> {
  const { svc } = b
  const f: LatencyFigures = {
    devices: 0,
    postAccept: [],
    postReady: [],
    putAccept: [],
    putReady: [],
    deleteAccept: [],
    deleteGone: [],
    timeouts: 0,
    passes: [],
  }
  const passes = timePasses(svc)
  const step = async (waiter: Promise<WaitResult>, method: string, route: string, body: unknown, accept: number[], done: number[]): Promise<boolean> => {
    const r = await client.call(method, svc.httpUrl + route, body)
    accept.push(r.doneAt - r.sentAt)
    if (r.status >= 300) throw new Error(`latency run: ${method} ${route}: HTTP ${r.status} ${r.head}`)
    const w = await waiter
    if (!w.ok) {
      f.timeouts++
      return false
    }
    done.push(performance.timeOrigin + w.at - r.sentAt)
    return true
  }
  for (let i = 0; i < LATENCY_DEVICES; i++) {
    const uuid = benchUuid(run, i)
    const a = DEMO_ADAPTERS[i % DEMO_ADAPTERS.length]!
    const d1 = DEMO_DOMAINS[i % DEMO_DOMAINS.length]!
    const d2 = DEMO_DOMAINS[(i + 1) % DEMO_DOMAINS.length]!
    const spec = { adapters: [a], domains: [d1] }
    // Each waiter starts before its request so a fast convergence cannot slip by unseen.
    if (!(await step(waitReady(svc, uuid), 'POST', mdevsPath, { uuid, spec }, f.postAccept, f.postReady))) break
    const ready2 = waitUntil(
      svc,
      async () => {
        const r = await findMdev(svc, HOST, uuid)
        return !!r && r.generation === 2 && isReady(r)
      },
      { timeoutMs: CONVERGE_TIMEOUT_MS },
    )
    if (!(await step(ready2, 'PUT', mdevPath(uuid), { spec: { ...spec, domains: [d1, d2] } }, f.putAccept, f.putReady))) break
    if (!(await step(waitGone(svc, uuid), 'DELETE', mdevPath(uuid), undefined, f.deleteAccept, f.deleteGone))) break
    f.devices++
  }
  passes.stop()
  f.passes = passes.durations
  return f
}

// ---- 4. full bring-up through PUT desired --------------------------------------------------------

/** One reconcile pass seen during the bring-up: when it ended (ms after the PUT was sent), what it did. */
interface PassFigures {
  endMs: number
  /** Wall time of the pass. */
  durationMs: number
  operations: number
  converged: boolean
}

/** A mutating call on the full host: client-side times (off-thread) and the server's commit, ms from sending. */
interface CallFigures {
  status: number
  bytes: number
  /** The service enqueued the reconcile right after its transaction committed. */
  committedMs?: number
  headersMs: number
  doneMs: number
  /** The converged state (Ready, or gone) was stored. */
  convergedMs?: number
  /** Lengths of the top-level arrays of the answer (e.g. `operations`, `violations` of a plan). */
  arrays: Record<string, number>
  head: string
}

interface FullFigures {
  startMs: number
  /** One `bus.observe()` of the full host: the whole inventory (inventory routes). */
  observeMs: number
  /** One `bus.observeTopology()`: masks, devices, bindings (admission of every mutation, every reconcile pass). */
  topologyMs: number
  docBytes: number
  plan?: CallFigures
  /** Every timed plan call (summary view), whole answer received, ms. */
  planMs: number[]
  /** The same document planned with `?view=full` (every operation listed), once. */
  planFull?: CallFigures
  dryRun?: CallFigures
  /** The event loop of this process from the PUT's send until every device was Ready. */
  bringUpLoop?: LoopStalls
  /** `/healthz` polled from a worker thread every HEALTHZ_EVERY_MS over the same span. */
  healthz?: PollResult
  put?: CallFigures
  readyCount: number
  capped: boolean
  capS: number
  passes: PassFigures[]
  /** Longest event-loop stall from the plan call until every device was Ready (REST cannot answer meanwhile). */
  loopMaxMs: number
  /** After the bring-up: a reconcile pass with nothing to do (what the periodic resync costs), enqueue to outcome. */
  idlePassMs?: number
  /** After the bring-up: one device's DELETE -> gone, then POST -> Ready, on the full host. */
  oneDelete?: CallFigures
  oneCreate?: CallFigures
  steadyLoopMaxMs?: number
  rssBefore: number
  rssPeak: number
  closeMs?: number
  closeNote?: string
}

function fullDocument() {
  const domains = Array.from({ length: FULL_DOMAINS }, (_, d) => d)
  return {
    owner: 'bench',
    masks: { apmask: '0x', aqmask: ALL_ONES },
    mdevs: Array.from({ length: FULL_ADAPTERS }, (_, a) => ({ uuid: benchUuid(9, a), spec: { adapters: [a], domains } })),
  }
}

/**
 * Times calls from a worker thread (a reconcile pass on the full host keeps this process's event loop
 * busy for seconds, so an in-process client could not see the answer before the pass ends), and dates
 * each commit by the service's next `reconciler.enqueue`, which it calls right after committing.
 */
class FullCaller {
  private marks: Array<(at: number) => void> = []
  private readonly original: (host: string) => void

  constructor(
    private readonly svc: RunningService,
    private readonly client: RestClient,
  ) {
    this.original = svc.reconciler.enqueue.bind(svc.reconciler)
    svc.reconciler.enqueue = (host: string) => {
      const at = epochNow()
      for (const m of this.marks.splice(0)) m(at)
      this.original(host)
    }
  }

  restore(): void {
    this.svc.reconciler.enqueue = this.original
  }

  /** Runs the call; when `converged` is given, also waits (at most `timeoutMs`) for it to hold. */
  async call(method: string, route: string, body: unknown, timeoutMs: number, converged?: () => Promise<WaitResult>): Promise<CallFigures> {
    let committedAt: number | undefined
    this.marks.push((at) => (committedAt ??= at))
    const waiter = converged?.()
    const sentAt = epochNow()
    let r: OffThreadReply
    try {
      r = await this.client.call(method, this.svc.httpUrl + route, body, timeoutMs)
    } catch (e) {
      // A timeout at the cap, or a refused connection: reported in the table, the run goes on.
      r = { status: 0, bytes: 0, sentAt, headersAt: NaN, doneAt: NaN, arrays: {}, head: e instanceof Error ? e.message : String(e) }
    }
    const w = await waiter
    const rel = (at: number) => at - r.sentAt
    return {
      status: r.status,
      bytes: r.bytes,
      headersMs: rel(r.headersAt),
      doneMs: rel(r.doneAt),
      head: r.head,
      ...(committedAt !== undefined && committedAt >= r.sentAt ? { committedMs: rel(committedAt) } : {}),
      ...(w?.ok ? { convergedMs: rel(performance.timeOrigin + w.at) } : {}),
      arrays: r.arrays,
    }
  }
}

async function benchFull(client: RestClient, capS: number): Promise<FullFigures> {
  const rssBefore = process.memoryUsage.rss()
  const rss = sampleRss()
  const b = await startBenchService('full')
  const { svc } = b
  const doc = fullDocument()
  const f: FullFigures = {
    startMs: b.startMs,
    observeMs: 0,
    topologyMs: 0,
    docBytes: Buffer.byteLength(JSON.stringify(doc)),
    readyCount: 0,
    capped: false,
    capS,
    rssBefore,
    rssPeak: 0,
    passes: [],
    loopMaxMs: 0,
    planMs: [],
  }
  const capMs = capS * 1000
  const loop = monitorEventLoopDelay({ resolution: 20 })
  let putStart = 0
  let bringUp = true
  let lastOutcome = 0
  const passTimes = timePasses(svc)
  // The worker announces an outcome right after `reconcile` returned, so the last duration is this pass's.
  const unsubscribe = svc.reconciler.onOutcome((o) => {
    lastOutcome = performance.now()
    if (putStart && bringUp)
      f.passes.push({
        endMs: epochNow() - putStart,
        durationMs: passTimes.durations.at(-1) ?? NaN,
        operations: o.plan?.operations.length ?? 0,
        converged: o.converged,
      })
  })
  const caller = new FullCaller(svc, client)
  try {
    let t0 = performance.now()
    await svc.hosts[0]!.bus.observe()
    f.observeMs = performance.now() - t0
    t0 = performance.now()
    await svc.hosts[0]!.bus.observeTopology()
    f.topologyMs = performance.now() - t0
    loop.enable()

    for (let i = 0; i < PLAN_RUNS; i++) {
      f.plan = await caller.call('POST', `/v1/hosts/${HOST}/plan`, doc, capMs)
      if (f.plan.status !== 200) break
      f.planMs.push(f.plan.doneMs)
    }
    f.planFull = await caller.call('POST', `/v1/hosts/${HOST}/plan?view=full`, doc, capMs)
    f.dryRun = await caller.call('PUT', `/v1/hosts/${HOST}/desired?dryRun=true`, doc, capMs)

    const countReady = async () => (await svc.store.mdevs.listAll(HOST)).filter(isReady).length
    const healthz = await Poller.start(`${svc.httpUrl}/healthz`, HEALTHZ_EVERY_MS)
    const stalls = probeLoopStalls()
    putStart = epochNow()
    try {
      f.put = await caller.call('PUT', `/v1/hosts/${HOST}/desired`, doc, capMs, () =>
        waitUntil(svc, async () => (await countReady()) === FULL_ADAPTERS, { timeoutMs: capMs, pollMs: 1000 }),
      )
    } finally {
      f.bringUpLoop = stalls.stop()
      f.healthz = await healthz.stop()
    }
    bringUp = false
    // A pass holds the event loop, so the cap's timer may fire only after a late convergence: judge by time.
    f.capped = f.put.convergedMs === undefined || f.put.convergedMs > capMs
    f.readyCount = await countReady()
    f.loopMaxMs = loop.max / 1e6
    if (!f.capped) {
      loop.reset()
      await steadyState(svc, caller, f, capMs, () => lastOutcome)
      f.steadyLoopMaxMs = loop.max / 1e6
    }
  } finally {
    caller.restore()
    passTimes.stop()
    unsubscribe()
    loop.disable()
    // Closing waits for the reconcile pass in flight, which may be long when the cap was hit.
    const t = performance.now()
    const closed = await Promise.race([b.stop().then(() => true), new Promise<false>((res) => setTimeout(() => res(false), 120_000).unref())])
    f.closeMs = performance.now() - t
    if (!closed) f.closeNote = 'close() had not finished after 120 s (reconcile pass still running)'
    f.rssPeak = rss.stop()
  }
  return f
}

/** Resolves with `performance.now()` at the next reconcile outcome (undefined after `timeoutMs`). */
function nextOutcome(svc: RunningService, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      off()
      resolve(undefined)
    }, timeoutMs)
    const off = svc.reconciler.onOutcome(() => {
      clearTimeout(timer)
      off()
      resolve(performance.now())
    })
  })
}

/** Figures of a converged full host: an idle pass, then one device deleted and created again. */
async function steadyState(svc: RunningService, caller: FullCaller, f: FullFigures, capMs: number, lastOutcome: () => number): Promise<void> {
  // Let the passes that the bring-up's own uevents queued finish first.
  const quietSince = performance.now()
  while (performance.now() - Math.max(lastOutcome(), quietSince) < 1500 && performance.now() - quietSince < capMs) await sleep(100)
  const t0 = performance.now()
  const idle = nextOutcome(svc, capMs)
  svc.reconciler.enqueue(HOST)
  const end = await idle
  if (end !== undefined) f.idlePassMs = end - t0

  const uuid = benchUuid(9, FULL_ADAPTERS - 1)
  f.oneDelete = await caller.call('DELETE', mdevPath(uuid), undefined, capMs, () => waitGone(svc, uuid, capMs))
  if (f.oneDelete.convergedMs === undefined) return
  const spec = { adapters: [FULL_ADAPTERS - 1], domains: Array.from({ length: FULL_DOMAINS }, (_, d) => d) }
  f.oneCreate = await caller.call('POST', mdevsPath, { uuid, spec, owner: 'bench' }, capMs, () => waitReady(svc, uuid, capMs))
}

// ---- report --------------------------------------------------------------------------------------

function printGet(g: GetFigures): void {
  const bare = meanRps(g.bare)
  const svc = meanRps(g.service)
  console.log(
    `\n1. GET one matrix device (${g.bodyBytes} bytes of JSON): ${g.client === 'wrk' ? 'wrk -t1' : 'node:http worker'}, ${CONCURRENCY} keep-alive connections, ${LOAD_S} s per round, ${GET_ROUNDS} rounds alternating, ${WARMUP_S} s warm-up each`,
  )
  const rows = [['target', 'req/s (mean)', 'rounds', 'p50', 'p99', 'errors']]
  const row = (name: string, rs: LoadResult[], m: number) => loadRow(name, rs, m)
  rows.push(row('bare fastify route, same JSON', g.bare, bare))
  rows.push(row('apmatrix GET /v1/hosts/local/mdevs/{uuid}', g.service, svc))
  rows.push(['store.mdevs.get alone (in process, no HTTP, one per event-loop turn)', fmtInt(g.storeGetPerSec), '', '', '', ''])
  printTable(rows)
  console.log(`ratio apmatrix/bare: ${(svc / bare).toFixed(3)} (${(bare / svc).toFixed(1)}x slower than the bare route)`)
  recordGoal('rest-get', {
    measured: svc,
    baseline: bare,
    unit: 'req/s',
    note: `${g.client === 'wrk' ? 'wrk' : 'node:http worker'}, ${CONCURRENCY} connections, ${GET_ROUNDS} x ${LOAD_S} s alternating per target`,
  })
}

function printCrud(rs: CrudFigures[]): void {
  console.log(`\n2. create+delete of a matrix device through REST (demo, 1 adapter x 1 domain each, ~${CRUD_S} s per row; client on its own thread)`)
  const rows = [['mode', 'pairs', 'pairs/s', 'ms per pair', 'POST p50/p99', 'DELETE p50/p99', 'failures', 'passes: n, p50/p99', 'settle after loop']]
  const pp = (xs: number[]) => (xs.length ? `${fmtMs(percentile(xs, 50))} / ${fmtMs(percentile(xs, 99))}` : 'n/a')
  for (const r of rs) {
    rows.push([
      r.label,
      String(r.pairs),
      (r.pairs / (r.ms / 1000)).toFixed(1),
      r.pairs ? (r.ms / r.pairs).toFixed(1) : 'n/a',
      pp(r.postMs),
      pp(r.deleteMs),
      String(r.failures),
      `${r.passes.length}, ${pp(r.passes)}`,
      r.settleMs === undefined ? '' : `${fmtMs(r.settleMs)}${r.settled ? '' : ' (NOT settled)'}`,
    ])
  }
  printTable(rows)
  for (const r of rs) if (r.firstFailure) console.log(`${r.label}: first failure: ${r.firstFailure}`)
  console.log('settle: time after the last response until the reconciler had removed every device (store and bus empty)')
}

function printLatency(f: LatencyFigures): void {
  console.log(
    `\n3. convergence latency on demo, ${f.devices} devices one at a time${f.timeouts ? ` (${f.timeouts} TIMED OUT after ${CONVERGE_TIMEOUT_MS / 1000} s)` : ''}`,
  )
  const rows = [['step', 'n', 'p50', 'p99', 'max']]
  const row = (name: string, xs: number[]) => [name, String(xs.length), fmtMs(percentile(xs, 50)), fmtMs(percentile(xs, 99)), fmtMs(Math.max(...xs))]
  rows.push(row('POST accepted (201 received)', f.postAccept))
  rows.push(row('POST -> Ready (observedGeneration 1)', f.postReady))
  rows.push(row('PUT accepted (200 received)', f.putAccept))
  rows.push(row('PUT +1 domain -> Ready (generation 2)', f.putReady))
  rows.push(row('DELETE accepted (202 received)', f.deleteAccept))
  rows.push(row('DELETE -> gone (store row removed)', f.deleteGone))
  printTable(rows)
  console.log('times from the send on the client thread; the converged state is seen at the reconcile outcome that stored it (+ a 25 ms poll)')
  console.log(`reconcile passes meanwhile: ${f.passes.length}, wall time p50 ${fmtMs(percentile(f.passes, 50))}, p99 ${fmtMs(percentile(f.passes, 99))}`)
  recordGoal('demo-post-ready-p99', {
    measured: f.timeouts ? Number.NaN : percentile(f.postReady, 99),
    note: `${f.postReady.length} devices one at a time, from the send on a client thread to the stored Ready${f.timeouts ? `; ${f.timeouts} TIMED OUT` : ''}`,
  })
}

function printLoop(h: IntervalHistogram): void {
  console.log(
    `event-loop delay of the service process meanwhile: p50 ${fmtMs(h.percentile(50) / 1e6)}, p99 ${fmtMs(h.percentile(99) / 1e6)}, max ${fmtMs(h.max / 1e6)}`,
  )
}

function printFull(f: FullFigures): void {
  console.log(
    `\n4. bring-up of the full profile (${FULL_ADAPTERS} adapters x ${FULL_DOMAINS} domains) through one PUT desired: apmask 0x, ${FULL_ADAPTERS} devices of 1 adapter x ${FULL_DOMAINS} domains (document ${fmtInt(f.docBytes / 1024)} KiB), cap ${f.capS} s`,
  )
  const opt = (ms: number | undefined) => (ms === undefined ? 'n/a' : fmtMs(ms))
  const rows = [['step (client in a worker thread; times from sending)', 'committed', 'headers', 'body done', 'converged', 'outcome']]
  const call = (name: string, c: CallFigures | undefined, convergedText: string, extra = '') => {
    if (!c) return rows.push([name, 'not reached', '', '', '', ''])
    const outcome =
      c.status === 0 ? `no answer: ${c.head}${extra}` : `HTTP ${c.status}, ${fmtInt(c.bytes / 1024)} KiB${extra}${c.status >= 300 ? ` ${c.head}` : ''}`
    rows.push([name, opt(c.committedMs), fmtMs(c.headersMs), fmtMs(c.doneMs), c.convergedMs === undefined ? convergedText : fmtMs(c.convergedMs), outcome])
  }
  call(
    'POST /plan (dry-run of the document)',
    f.plan,
    '',
    f.plan ? `, ${f.plan.arrays.operations ?? '?'} operations, ${f.plan.arrays.violations ?? '?'} violations` : '',
  )
  call('POST /plan?view=full (every operation listed)', f.planFull, '', f.planFull ? `, ${f.planFull.arrays.operations ?? '?'} operations` : '')
  call('PUT desired?dryRun=true', f.dryRun, '')
  call(
    'PUT desired -> every device Ready',
    f.put,
    `> ${f.capS} s (CAPPED)`,
    `, ${f.readyCount}/${FULL_ADAPTERS} Ready at the end${f.capped ? `, OVER THE ${f.capS} s CAP` : ''}`,
  )
  call('then: DELETE one device -> gone', f.oneDelete, f.oneDelete ? 'NOT within the cap' : '')
  call('then: POST it again (1 x 256) -> Ready', f.oneCreate, f.oneCreate ? 'NOT within the cap' : '')
  printTable(rows)
  printTable([
    ['other figures', 'time', ''],
    ['service start (migrate, host bring-up, first observe, listen)', fmtMs(f.startMs), ''],
    ['one bus.observe() of the full host (65,536 queues, every attribute)', fmtMs(f.observeMs), 'inventory routes'],
    ['one bus.observeTopology() of the full host (masks, devices, bindings)', fmtMs(f.topologyMs), 'every mutation pays one; every reconcile pass one or two'],
    ['one reconcile pass with nothing to do (enqueue -> outcome)', opt(f.idlePassMs), 'what each periodic resync (default every 30 s) costs'],
    ['service close', opt(f.closeMs), f.closeNote ?? ''],
  ])
  const passes = f.passes.map((p) => `ended ${fmtMs(p.endMs)}, took ${fmtMs(p.durationMs)}, ${p.operations} ops${p.converged ? ', converged' : ''}`)
  console.log(`reconcile passes during the bring-up (times from the PUT's send): ${passes.length ? passes.join('; ') : 'none finished'}`)
  console.log(
    `longest event-loop stall of the service process: ${fmtMs(f.loopMaxMs)} from the plan call until all Ready${f.steadyLoopMaxMs === undefined ? '' : `, ${fmtMs(f.steadyLoopMaxMs)} in the steps after`} (REST, /healthz included, answers nothing meanwhile)`,
  )
  const hz = f.healthz
  const stall = f.bringUpLoop ? Math.max(f.bringUpLoop.delayMaxMs, f.bringUpLoop.intervalMaxGapMs) : Number.NaN
  if (f.bringUpLoop)
    console.log(
      `from the PUT's send until all Ready: event-loop delay max ${fmtMs(f.bringUpLoop.delayMaxMs)} (p99 ${fmtMs(f.bringUpLoop.delayP99Ms)}), longest gap of a 1 ms interval ${fmtMs(f.bringUpLoop.intervalMaxGapMs)}`,
    )
  if (hz)
    console.log(
      `/healthz every ${HEALTHZ_EVERY_MS} ms from a worker meanwhile: ${hz.scheduled} scheduled, p50 ${fmtMs(percentile(hz.latencies, 50))}, p99 ${fmtMs(percentile(hz.latencies, 99))}, max ${fmtMs(Math.max(...hz.latencies))}, ${hz.errors} errors, ${hz.outstanding} unanswered at the end`,
    )
  console.log(`POST /plan (summary view) ${f.planMs.length} times: ${f.planMs.map(fmtMs).join(', ')}`)
  recordGoal('full-plan', {
    measured: f.planMs.length === PLAN_RUNS ? percentile(f.planMs, 50) : Number.NaN,
    note: `median of ${f.planMs.length} POST /plan (summary view) of the ${fmtInt(f.docBytes / 1024)} KiB bring-up document, send to whole answer on a client thread`,
  })
  recordGoal('full-put-ready', {
    measured: f.put?.convergedMs ?? Number.NaN,
    note: f.capped
      ? `not all Ready within the ${f.capS} s cap (${f.readyCount}/${FULL_ADAPTERS})`
      : `${FULL_ADAPTERS} devices of 1 x ${FULL_DOMAINS}, one PUT desired`,
  })
  recordGoal('full-loop-stall', {
    measured: stall,
    note: 'max of monitorEventLoopDelay (1 ms resolution) and the longest gap of a 1 ms interval, PUT send -> all Ready',
  })
  recordGoal('full-healthz-p99', {
    measured: hz?.latencies.length ? percentile(hz.latencies, 99) : Number.NaN,
    note: hz
      ? `${hz.latencies.length} polls every ${HEALTHZ_EVERY_MS} ms, open loop (from each poll's scheduled time), max ${fmtMs(Math.max(...hz.latencies))}`
      : 'not reached',
  })
  console.log(
    `rss before the full service: ${mib(f.rssBefore)}; peak rss during phase 4 (sampled every 50 ms): ${mib(f.rssPeak)} (+${mib(f.rssPeak - f.rssBefore)}); process peak rss: ${mib(process.resourceUsage().maxRSS * 1024)}`,
  )
}

/** The `service` suite. */
export const serviceSuite: BenchSuite = {
  name: 'service',
  description: 'REST GET and LIST vs bare fastify, create+delete/s, convergence p50/p99 on demo, full bring-up via PUT desired (plan, stall, /healthz)',
  async run() {
    const want = phases()
    const loadClient = await chooseClient({ client: clientOverride() })
    const capS = Number(process.env.APMATRIX_BENCH_FULL_CAP_S ?? 300)
    if (!(capS > 0)) throw new Error('APMATRIX_BENCH_FULL_CAP_S must be a positive number of seconds')
    const rest = RestClient.start()
    try {
      if (want.has('get') || want.has('list') || want.has('crud') || want.has('latency')) {
        const demo = await startBenchService('demo')
        try {
          console.log(`demo service started in ${fmtMs(demo.startMs)} at ${demo.svc.httpUrl}`)
          await freeAdapters(demo)
          if (want.has('get')) printGet(await benchGet(demo, loadClient))
          if (want.has('list')) printList(await benchList(demo, loadClient))
          const loop = monitorEventLoopDelay({ resolution: 1 })
          if (want.has('crud')) {
            loop.enable()
            printCrud([await crudNoWait(demo, rest, 1, 2), await crudNoWait(demo, rest, 4, 3), await crudAwaited(demo, rest, 4)])
            loop.disable()
            printLoop(loop)
          }
          if (want.has('latency')) {
            loop.reset()
            loop.enable()
            printLatency(await benchLatency(demo, rest, 5))
            loop.disable()
            printLoop(loop)
          }
        } finally {
          await demo.stop()
        }
        const m = process.memoryUsage()
        console.log(`\nafter the demo phases: rss ${mib(m.rss)}, heap used ${mib(m.heapUsed)}`)
      }
      if (want.has('full')) {
        const f = await benchFull(rest, capS)
        printFull(f)
        // A service that would not close keeps the process alive: end it once the report is out.
        if (f.closeNote) setTimeout(() => process.exit(), 1000).unref()
      }
    } finally {
      await rest.close()
    }
    console.log(
      `\nnode ${process.version}, ${process.platform}/${process.arch}; SQLite in a temp folder; emulated host in process; machine shared (2 cores), so absolute figures are noisy: compare ratios`,
    )
  },
}
