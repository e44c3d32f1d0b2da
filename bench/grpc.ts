/**
 * gRPC and event fan-out benchmark (`npm run bench -- grpc`, issue 4 §7): the whole service started by
 * `startService` (SQLite, in-process `demo` host), measured from worker threads.
 *  1. `MdevService.GetMdev` of one stored device, calls/s and p50/p99, against a bare grpc-js server
 *     answering the same `Mdev` message from a handler with nothing behind it (same proto codec, same
 *     reply bytes), same client, same concurrency, alternating rounds in the same run (the ratio travels).
 *  2. Event fan-out: 1,000 `EventService.Watch` streams (and 1,000 REST SSE clients on `GET /v1/events`)
 *     receive events appended with `store.events.append`; per-delivery latency from the append's commit
 *     to each watcher's receipt, and the time until all of them had it. Two write paths: append then
 *     `hub.notify()` (what the service does after a commit) and append alone (the hub's poll finds it).
 * Figures only: nothing passes or fails (style.md habit 6). Records the goal grpc-get (bench/goals.ts).
 *
 * The same fan-out to 1,000 in-process `hub.subscribe` listeners gives the floor under both transports.
 * Environment knobs: APMATRIX_BENCH_GRPC_PHASES=unary,hub,watch,sse (default all),
 * APMATRIX_BENCH_WATCHERS (default 1000).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { RunningService } from '../src/main.js'
import { GET_MDEV_PATH, getMdevCodec, startBareGetMdev } from './baselines.js'
import { epochMs, rawUnary, runUnaryLoad, WatcherPool, type UnaryLoadResult } from './grpc-clients.js'
import { recordGoal } from './goals.js'
import { fmtInt, fmtMs, printTable } from './http-load-helpers.js'
import { benchUuid, callJson, expectStatus, findMdev, isReady, startBenchService, waitUntil } from './service-helpers.js'
import type { BenchSuite } from './suite.js'

const HOST = 'local'
const CONCURRENCY = 32
const CHANNELS = 4
const LOAD_S = 3
const WARMUP_S = 1
/** Rounds per target, alternating bare/service so drift in machine load hits both alike. */
const ROUNDS = 2
/** Watch channels per pool (watchers spread evenly over them). */
const WATCH_CHANNELS = 8
/** Events timed per write path. */
const EVENTS = 30
/** Gap between events: longer than one fan-out, jittered so the poll-only path is not phase-locked. */
const GAP_MS = 150
const JITTER_MS = 100
/** The hub's poll period in the service (src/events/hub.ts default; src/main.ts passes none). */
const HUB_POLL_MS = 100
const EVENT_KIND = 'bench'

/** p-th percentile of an ascending array (nearest rank). */
function pct(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

function phases(): Set<string> {
  const all = ['unary', 'hub', 'watch', 'sse']
  const env = process.env.APMATRIX_BENCH_GRPC_PHASES
  const chosen = env ? env.split(',').map((s) => s.trim()) : all
  const bad = chosen.filter((p) => !all.includes(p))
  if (bad.length) throw new Error(`APMATRIX_BENCH_GRPC_PHASES: unknown phase ${bad.join(', ')} (known: ${all.join(', ')})`)
  return new Set(chosen)
}

function watcherCount(): number {
  const n = Number(process.env.APMATRIX_BENCH_WATCHERS ?? 1000)
  if (!Number.isInteger(n) || n < 1) throw new Error('APMATRIX_BENCH_WATCHERS must be a positive integer')
  return n
}

// ---- 1. GetMdev against a bare grpc-js handler ---------------------------------------------------

/** Frees the demo adapters from the host drivers (B-21: `0x` clears the mask) so a device can hold one. */
async function freeAdapters(svc: RunningService): Promise<void> {
  expectStatus('PUT masks', await callJson(svc.httpUrl, 'PUT', `/v1/hosts/${HOST}/masks`, { apmask: '0x' }), 200)
  const w = await waitUntil(
    svc,
    async () => {
      const m = await svc.store.masks.get(HOST)
      return !!m && m.status.observedGeneration === m.generation && (await svc.hosts[0]!.bus.observeTopology()).apmask === m.apmask
    },
    { timeoutMs: 30_000 },
  )
  if (!w.ok) throw new Error('masks did not converge')
}

interface UnaryFigures {
  bare: UnaryLoadResult[]
  service: UnaryLoadResult[]
  replyBytes: number
  /** `store.mdevs.get` alone on the server's thread, CONCURRENCY loops issuing in the same tick. */
  storeGetPerSec: number
  /** The same, each query issued from its own event-loop turn, as calls arriving from sockets are. */
  storeGetSpreadPerSec: number
}

/**
 * Rate of `store.mdevs.get` alone. `spread`: every query starts after a `setImmediate`, so no two are
 * issued in the same tick (Prisma coalesces `findUnique` calls of one tick into one query).
 */
async function storeGetRate(svc: RunningService, uuid: string, ms: number, spread: boolean): Promise<number> {
  let n = 0
  const t0 = performance.now()
  const deadline = t0 + ms
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        if (spread) await new Promise((resolve) => setImmediate(resolve))
        await svc.store.mdevs.get(HOST, uuid)
        n++
      }
    }),
  )
  return (n / (performance.now() - t0)) * 1000
}

async function benchUnary(svc: RunningService): Promise<UnaryFigures> {
  const uuid = benchUuid(4, 0)
  await freeAdapters(svc)
  // demo: adapter 0 and usage domain 1 exist (src/emulator/PROFILES.md).
  expectStatus('POST mdev', await callJson(svc.httpUrl, 'POST', `/v1/hosts/${HOST}/mdevs`, { uuid, spec: { adapters: [0], domains: [1] } }), 201)
  const ready = await waitUntil(
    svc,
    async () => {
      const r = await findMdev(svc, HOST, uuid)
      return !!r && isReady(r)
    },
    { timeoutMs: 30_000 },
  )
  if (!ready.ok) throw new Error(`${uuid} did not become Ready`)

  const request = getMdevCodec().requestSerialize({ host: HOST, uuid })
  const reply = await rawUnary(svc.grpcAddr, GET_MDEV_PATH, request)

  // The baseline: the same proto, a handler answering the decoded reply with nothing behind it.
  const bare = await startBareGetMdev(reply)
  const bareTarget = bare.base
  try {
    const check = await rawUnary(bareTarget, GET_MDEV_PATH, request)
    if (!check.equals(reply)) throw new Error('bare server does not answer the same bytes')
    const job = { path: GET_MDEV_PATH, request, concurrency: CONCURRENCY, channels: CHANNELS, durationS: LOAD_S, warmupS: WARMUP_S }
    const out: UnaryFigures = { bare: [], service: [], replyBytes: reply.length, storeGetPerSec: 0, storeGetSpreadPerSec: 0 }
    for (let r = 0; r < ROUNDS; r++) {
      out.bare.push(await runUnaryLoad({ ...job, target: bareTarget }))
      out.service.push(await runUnaryLoad({ ...job, target: svc.grpcAddr }))
    }
    out.storeGetPerSec = await storeGetRate(svc, uuid, 2000, false)
    out.storeGetSpreadPerSec = await storeGetRate(svc, uuid, 2000, true)
    return out
  } finally {
    await bare.close()
    await callJson(svc.httpUrl, 'DELETE', `/v1/hosts/${HOST}/mdevs/${uuid}`)
    await waitUntil(svc, async () => (await findMdev(svc, HOST, uuid)) === undefined, { timeoutMs: 30_000 })
  }
}

function printUnary(f: UnaryFigures): void {
  const merge = (rs: UnaryLoadResult[]) => {
    const lat = Float64Array.from(rs.flatMap((r) => [...r.latencies])).sort()
    const calls = rs.reduce((s, r) => s + r.calls, 0)
    const secs = rs.reduce((s, r) => s + r.seconds, 0)
    return { rate: calls / secs, calls, errors: rs.reduce((s, r) => s + r.errors, 0), lat, firstError: rs.find((r) => r.firstError)?.firstError ?? null }
  }
  const b = merge(f.bare)
  const s = merge(f.service)
  console.log(
    `\nGetMdev, one stored device, ${CONCURRENCY} calls in flight over ${CHANNELS} channels, ${ROUNDS} x ${LOAD_S} s per target (after ${WARMUP_S} s warm-up),`,
  )
  console.log(`client in a worker thread sending pre-encoded requests; reply ${f.replyBytes} bytes from both servers (same bytes).`)
  printTable([
    ['target', 'calls/s', 'p50', 'p99', 'max', 'calls', 'errors', 'per round calls/s'],
    ...(
      [
        ['bare grpc-js handler', b, f.bare],
        ['apmatrix GetMdev', s, f.service],
      ] as const
    ).map(([name, m, rs]) => [
      name,
      fmtInt(m.rate),
      fmtMs(pct(m.lat, 50)),
      fmtMs(pct(m.lat, 99)),
      fmtMs(m.lat[m.lat.length - 1] ?? NaN),
      fmtInt(m.calls),
      fmtInt(m.errors),
      rs.map((r) => fmtInt(r.calls / r.seconds)).join(' / '),
    ]),
  ])
  console.log(
    `ratio apmatrix/bare: ${((s.rate / b.rate) * 100).toFixed(1)}% of the calls/s; p50 x${(pct(s.lat, 50) / pct(b.lat, 50)).toFixed(2)}, p99 x${(pct(s.lat, 99) / pct(b.lat, 99)).toFixed(2)}`,
  )
  const us = (rate: number) => `${((1000 / rate) * 1000).toFixed(0)} µs`
  console.log(
    `wall time per call at these rates (1/rate): bare ${us(b.rate)}, apmatrix ${us(s.rate)}. store.mdevs.get alone on the server thread, ${CONCURRENCY} loops:`,
  )
  console.log(
    `  issued in the same tick ${fmtInt(f.storeGetPerSec)}/s (${us(f.storeGetPerSec)}; Prisma coalesces them), one per event-loop turn ${fmtInt(f.storeGetSpreadPerSec)}/s (${us(f.storeGetSpreadPerSec)}; what a gRPC call gets)`,
  )
  if (b.firstError || s.firstError) console.log(`first errors: bare ${b.firstError ?? '-'}; apmatrix ${s.firstError ?? '-'}`)
  recordGoal('grpc-get', {
    measured: s.errors ? Number.NaN : s.rate,
    baseline: b.rate,
    unit: 'calls/s',
    note: `${CONCURRENCY} calls in flight over ${CHANNELS} channels from a worker, ${ROUNDS} x ${LOAD_S} s alternating per target${s.errors ? `; ${s.errors} ERRORS` : ''}`,
  })
}

// ---- 2. event fan-out --------------------------------------------------------------------------

interface FanoutRow {
  transport: string
  path: string
  watchers: number
  events: number
  /** Every delivery: receive − commit (ms). */
  deliveries: Float64Array
  /** Per event: last receive − commit (ms), over events every watcher got. */
  allBy: Float64Array
  /** Per event: append call duration (ms). */
  appendMs: Float64Array
  missing: number
  ended: number
  firstError: string | null
}

let nextN = 0

/** What {@link benchFanout} drives: the off-thread watcher pools, or in-process hub subscribers. */
interface FanoutPool {
  primed(): Promise<number>
  report(count: number): Promise<{ recv: Float64Array[]; ended: number; firstError: string | null }>
  close(): Promise<void>
}

/**
 * `watchers` subscribers of the hub itself, in the server's thread, doing nothing but noting the time:
 * the floor under both transports (poll read, dispatch, one pump step per subscriber).
 */
function hubPool(svc: RunningService, watchers: number): FanoutPool {
  const recv = new Map<number, Float64Array>()
  const primed = new Uint8Array(watchers)
  let primedCount = 0
  let ended = 0
  let firstError: string | null = null
  let waiting: (() => void) | null = null
  const check = () => {
    if (waiting && primedCount + ended >= watchers) {
      const w = waiting
      waiting = null
      w()
    }
  }
  const unsubs = Array.from({ length: watchers }, (_, w) =>
    svc.hub.subscribe(
      { kinds: [EVENT_KIND] },
      (e) => {
        const at = epochMs()
        const n = e.data.n
        if (typeof n !== 'number') return
        if (n < 0) {
          if (!primed[w]) {
            primed[w] = 1
            primedCount++
            check()
          }
          return
        }
        let a = recv.get(n)
        if (!a) recv.set(n, (a = new Float64Array(watchers).fill(NaN)))
        if (Number.isNaN(a[w]!)) a[w] = at
      },
      (err) => {
        ended++
        firstError ??= String(err)
        check()
      },
    ),
  )
  return {
    primed: () =>
      new Promise((resolve) => {
        waiting = () => resolve(primedCount)
        check()
      }),
    report: async (count) => ({ recv: Array.from({ length: count }, (_, n) => recv.get(n) ?? new Float64Array(watchers).fill(NaN)), ended, firstError }),
    close: async () => {
      for (const u of unsubs) u()
    },
  }
}

async function appendBench(svc: RunningService, n: number): Promise<{ start: number; commit: number }> {
  const start = epochMs()
  await svc.store.events.append({
    host: HOST,
    kind: EVENT_KIND,
    name: 'fanout',
    type: 'BenchFanout',
    message: 'bench fan-out probe',
    data: { n, stampedAt: start },
  })
  return { start, commit: epochMs() }
}

/** Writes primer events until every watcher has one (its subscription is live), at most `timeoutMs`. */
async function primeAll(svc: RunningService, pool: FanoutPool, timeoutMs: number): Promise<number> {
  let done: number | undefined
  const p = pool.primed().then((k) => (done = k))
  const deadline = performance.now() + timeoutMs
  for (let k = 1; done === undefined && performance.now() < deadline; k++) {
    await appendBench(svc, -k)
    svc.hub.notify()
    await Promise.race([p, sleep(200)])
  }
  if (done === undefined) throw new Error(`watchers not all live after ${timeoutMs} ms`)
  return done
}

async function benchFanout(svc: RunningService, transport: 'hub' | 'grpc' | 'sse', watchers: number): Promise<FanoutRow[]> {
  const t0 = performance.now()
  const pool: FanoutPool =
    transport === 'hub'
      ? hubPool(svc, watchers)
      : await WatcherPool.open({
          transport,
          target: transport === 'grpc' ? svc.grpcAddr : svc.httpUrl,
          watchers,
          channels: WATCH_CHANNELS,
          eventKind: EVENT_KIND,
        })
  const rows: FanoutRow[] = []
  try {
    const primed = await primeAll(svc, pool, 60_000)
    const how =
      transport === 'hub'
        ? 'in-process hub.subscribe, no transport'
        : `opened from one worker thread${transport === 'grpc' ? ` over ${WATCH_CHANNELS} channels` : ', one TCP connection each'}`
    console.log(`${transport}: ${primed}/${watchers} watchers live after ${fmtMs(performance.now() - t0)} (${how})`)
    // Figures of a fan-out to fewer watchers than asked for would be figures of another benchmark.
    if (primed < watchers) throw new Error(`${transport}: only ${primed} of ${watchers} watchers became live`)
    for (const path of ['append + hub.notify()', `append only (hub poll ${HUB_POLL_MS} ms)`]) {
      const first = nextN
      const commits: number[] = []
      const appendMs: number[] = []
      for (let i = 0; i < EVENTS; i++) {
        await sleep(GAP_MS + Math.random() * JITTER_MS)
        const a = await appendBench(svc, nextN++)
        if (path.startsWith('append + ')) svc.hub.notify()
        commits.push(a.commit)
        appendMs.push(a.commit - a.start)
      }
      await sleep(GAP_MS + HUB_POLL_MS + 500)
      const rep = await pool.report(nextN)
      const deliveries: number[] = []
      const allBy: number[] = []
      let missing = 0
      for (let i = 0; i < EVENTS; i++) {
        const recv = rep.recv[first + i]!
        let last = -Infinity
        let got = 0
        for (const at of recv) {
          if (Number.isNaN(at)) continue
          got++
          deliveries.push(at - commits[i]!)
          last = Math.max(last, at)
        }
        missing += watchers - got
        if (got === watchers) allBy.push(last - commits[i]!)
      }
      rows.push({
        transport,
        path,
        watchers,
        events: EVENTS,
        deliveries: Float64Array.from(deliveries).sort(),
        allBy: Float64Array.from(allBy).sort(),
        appendMs: Float64Array.from(appendMs).sort(),
        missing,
        ended: rep.ended,
        firstError: rep.firstError,
      })
    }
  } finally {
    await pool.close()
  }
  return rows
}

function printFanout(rows: FanoutRow[]): void {
  console.log(
    `\nEvent fan-out: ${EVENTS} events per row, one every ${GAP_MS}-${GAP_MS + JITTER_MS} ms, appended with store.events.append (SQLite) on the server's thread;`,
  )
  console.log(`latency = receipt in the watcher thread − return of the append (commit), both epoch clocks. Hub poll period ${HUB_POLL_MS} ms (src/main.ts:`)
  console.log(`default EventHub pollIntervalMs); writers in the service call hub.notify() after a commit, the reconciler via onEvents.`)
  printTable([
    ['transport', 'write path', 'watchers', 'deliv p50', 'deliv p99', 'deliv max', 'all-by p50', 'all-by p99', 'all-by max', 'append p50', 'missing', 'ended'],
    ...rows.map((r) => [
      r.transport,
      r.path,
      fmtInt(r.watchers),
      fmtMs(pct(r.deliveries, 50)),
      fmtMs(pct(r.deliveries, 99)),
      fmtMs(r.deliveries[r.deliveries.length - 1] ?? NaN),
      fmtMs(pct(r.allBy, 50)),
      fmtMs(pct(r.allBy, 99)),
      fmtMs(r.allBy[r.allBy.length - 1] ?? NaN),
      fmtMs(pct(r.appendMs, 50)),
      fmtInt(r.missing),
      fmtInt(r.ended),
    ]),
  ])
  console.log("hub rows: listeners in the server thread (no serialisation, no socket): the hub's own floor.")
  console.log('deliv = every (event, watcher) delivery; all-by = per event, until the last of the watchers had it; missing = deliveries never seen.')
  for (const r of rows) if (r.firstError) console.log(`${r.transport}: first stream end: ${r.firstError}`)
}

export const grpcSuite: BenchSuite = {
  name: 'grpc',
  description: 'gRPC GetMdev vs bare grpc-js handler (ratio), event fan-out p50/p99 to 1,000 Watch and SSE watchers',
  async run() {
    const want = phases()
    const watchers = watcherCount()
    // Every watcher comes from the same (anonymous, local) subject: the per-subject stream limit (default 32) off.
    const b = await startBenchService('demo', { streamsPerSubject: '0' })
    try {
      if (want.has('unary')) printUnary(await benchUnary(b.svc))
      const rows: FanoutRow[] = []
      if (want.has('hub')) rows.push(...(await benchFanout(b.svc, 'hub', watchers)))
      if (want.has('watch')) rows.push(...(await benchFanout(b.svc, 'grpc', watchers)))
      if (want.has('sse')) rows.push(...(await benchFanout(b.svc, 'sse', watchers)))
      if (rows.length) printFanout(rows)
    } finally {
      await b.stop()
    }
  },
}
