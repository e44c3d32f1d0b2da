/**
 * Write-path benchmark (`npm run bench -- writes`, issue 8 §2/§3): what the store's write path costs and
 * whether the event loop keeps turning while a large host is brought up.
 *  1. durable creates, 16 clients: the store transaction a create runs (admission lock, the host's devices
 *     and masks, the row, audit, event), each client awaiting its own and starting the next one in a new
 *     event-loop turn (never same-tick batches); against raw single-row durable commits through
 *     better-sqlite3 on the same disk, in the same run (one connection, and 16 worker threads with a
 *     connection each; the better of the two is the baseline); and the same through REST (create then
 *     delete), which gives the goal durable-create of the goal table (bench/goals.ts).
 *  2. the `full` bring-up (65,536 queues, 256 devices through one PUT desired) on host `big` while host
 *     `small` (demo) takes POSTs from a REST client thread, one device at a time: transactions the store
 *     ran, the longest event-loop stall, the small host's POST -> Ready as the client sees it (GET every
 *     10 ms; the goal small-host-p99).
 * Figures only: nothing passes or fails (style.md habit 6).
 *
 * Environment knobs: APMATRIX_BENCH_WRITES_PHASES=store,rest,full,mixed (default all).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { loadConfig } from '../src/config.js'
import { startService, type RunningService } from '../src/main.js'
import { applyMigrations } from '../src/store/apply-migrations.js'
import { createStore, type Store } from '../src/store/store.js'
import { recordGoal } from './goals.js'
import { type ConvergeLoopResult, percentile, printTable, RestClient } from './http-load-helpers.js'
import { rawSqliteCommits, rawSqliteCommitsWorkers } from './raw-sqlite.js'
import { benchUuid, benchUuidPrefix, callJson, expectStatus, isReady, waitUntil } from './service-helpers.js'
import type { BenchSuite } from './suite.js'

const CLIENTS = 16
const RUN_MS = 3000
const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
const fmtMs = (ms: number) => (Number.isNaN(ms) ? 'n/a' : ms >= 100 ? `${fmt(ms)} ms` : `${ms.toFixed(2)} ms`)

function phases(): Set<string> {
  const all = ['store', 'rest', 'full', 'mixed']
  const env = process.env.APMATRIX_BENCH_WRITES_PHASES
  const chosen = env ? env.split(',').map((s) => s.trim()) : all
  const bad = chosen.filter((p) => !all.includes(p))
  if (bad.length) throw new Error(`APMATRIX_BENCH_WRITES_PHASES: unknown phase ${bad.join(', ')} (known: ${all.join(', ')})`)
  return new Set(chosen)
}

function tempDir(): { dir: string; drop(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-bench-writes-'))
  return { dir, drop: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

// ---- 1. durable creates, 16 clients --------------------------------------------------------------

/** The store transaction of a create, as the service runs it (admission lock, stored state, row, audit, event). */
async function storeCreate(store: Store, host: string, uuid: string, adapter: number, domain: number): Promise<void> {
  await store.transaction(async (tx) => {
    await tx.masks.lockForAdmission(host)
    await tx.mdevs.listAll(host)
    await tx.masks.get(host)
    const { mdev } = await tx.mdevs.create({ host, uuid, spec: { adapters: [adapter], domains: [domain], controlDomains: [], state: 'started' } })
    await tx.audit.append({ actor: 'bench', action: 'mdev.create', target: `hosts/${host}/mdevs/${uuid}`, outcome: 'ok', requestId: null, detail: {} })
    await tx.events.append({ host, kind: 'mdev', name: mdev.uuid, type: 'MdevDefined', message: 'bench', actor: 'bench' })
  })
}

interface StoreRun {
  label: string
  creates: number
  ms: number
  latencies: number[]
  transactions: number
  jobs: number
}

/** Raw better-sqlite3 durable single-row commits/s, on the disk of the temp folder, measured in this run. */
interface RawFigures {
  /** One connection, back to back. */
  single: number
  /** CLIENTS worker threads, a connection each. */
  workers: number
}

/** The baseline of the durable figures: the better of the two raw rates (the stricter ratio). */
const rawBest = (r: RawFigures) => Math.max(r.single, r.workers)

async function benchRaw(): Promise<RawFigures> {
  const tmp = tempDir()
  try {
    return {
      single: rawSqliteCommits(path.join(tmp.dir, 'raw1.db'), RUN_MS),
      workers: await rawSqliteCommitsWorkers(path.join(tmp.dir, 'raw16.db'), CLIENTS, RUN_MS),
    }
  } finally {
    tmp.drop()
  }
}

interface StoreFigures {
  raw: RawFigures
  runs: StoreRun[]
}

/** `CLIENTS` clients creating devices for RUN_MS, each awaiting its own and starting the next in a new turn. */
async function storeRun(dir: string, label: string, groupCommit: boolean): Promise<StoreRun> {
  const url = `file:${path.join(dir, `store-${groupCommit ? 'group' : 'single'}.db`)}`
  await applyMigrations(url)
  const store = await createStore(url, { groupCommit })
  try {
    const host = 'bench'
    await store.hosts.upsert({ name: host, driver: 'emulator', machineId: 'm', bootId: 'b', features: [], maxAdapterId: 255, maxDomainId: 255 })
    await store.masks.set(host, { apmask: `0x${'0'.repeat(64)}`, aqmask: `0x${'f'.repeat(64)}` })
    await storeCreate(store, host, benchUuid(1, 0), 0, 0) // warm-up (and the connections open)
    const before = store.stats()
    const latencies: number[] = []
    let creates = 0
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, k) => {
        for (let i = 1; performance.now() - t0 < RUN_MS; i++) {
          await nextTurn() // one request per event-loop turn, as requests from sockets arrive
          const s = performance.now()
          const uuid = `${benchUuidPrefix(2, k)}${i.toString(16).padStart(10, '0')}`
          await storeCreate(store, host, uuid, k, i % 256)
          latencies.push(performance.now() - s)
          creates++
          // The device goes again (as a delete would): admission reads every device of the host, so a host
          // that only grows would measure that read, not the commit.
          await store.mdevs.delete(host, uuid)
        }
      }),
    )
    const ms = performance.now() - t0
    const after = store.stats()
    return { label, creates, ms, latencies, transactions: after.transactions - before.transactions, jobs: after.jobs - before.jobs }
  } finally {
    await store.close()
  }
}

async function benchStoreCreates(raw: RawFigures): Promise<StoreFigures> {
  const tmp = tempDir()
  try {
    return {
      raw,
      runs: [await storeRun(tmp.dir, 'store: one commit per transaction', false), await storeRun(tmp.dir, 'store: group commit (default)', true)],
    }
  } finally {
    tmp.drop()
  }
}

function printStore(f: StoreFigures): void {
  console.log(
    `\n1a. durable create transactions through the store (SQLite, synchronous=FULL), ${CLIENTS} clients, ${RUN_MS / 1000} s; each create is followed by its delete (not counted)`,
  )
  const rows = [
    ['what', 'creates/s', 'ratio to raw (best)', 'p50', 'p99', 'store transactions / db transactions'],
    ['raw better-sqlite3: single-row INSERT, one durable commit each, 1 connection', fmt(f.raw.single), (f.raw.single / rawBest(f.raw)).toFixed(3), '', '', ''],
    [
      `raw better-sqlite3: the same from ${CLIENTS} worker threads, a connection each`,
      fmt(f.raw.workers),
      (f.raw.workers / rawBest(f.raw)).toFixed(3),
      '',
      '',
      '',
    ],
  ]
  for (const r of f.runs) {
    const rate = (r.creates / r.ms) * 1000
    rows.push([
      r.label,
      fmt(rate),
      (rate / rawBest(f.raw)).toFixed(3),
      fmtMs(percentile(r.latencies, 50)),
      fmtMs(percentile(r.latencies, 99)),
      `${fmt(r.jobs)} / ${fmt(r.transactions)}`,
    ])
  }
  printTable(rows)
}

// ---- 1b. the same through REST --------------------------------------------------------------------

interface RestFigures {
  pairs: number
  seconds: number
  failures: number
  postMs: number[]
  firstFailure?: string
  transactions: number
}

async function benchRestCreates(rest: RestClient): Promise<RestFigures> {
  const tmp = tempDir()
  const cfg = loadConfig(
    { databaseUrl: `file:${path.join(tmp.dir, 'bench.db')}`, http: '127.0.0.1:0', grpc: '127.0.0.1:0', logLevel: 'silent', hosts: 'local=demo' },
    {},
  )
  const svc = await startService(cfg)
  try {
    const r = await callJson(svc.httpUrl, 'PUT', '/v1/hosts/local/masks', { apmask: '0x' })
    expectStatus('PUT masks', r, 200)
    const before = svc.store.stats().transactions
    // demo: adapters 0..2, 5..7 and usage domains 1, 2, 4, 5, 10, 0x47; one APQN per client, so clients never
    // compete for one (a device being deleted holds nothing for admission).
    const adapters = [0, 1, 2, 5, 6, 7]
    const domains = [1, 2, 4, 5, 10, 0x47]
    const out = await rest.createDeleteLoops(
      `${svc.httpUrl}/v1/hosts/local/mdevs`,
      Array.from({ length: CLIENTS }, (_, k) => ({
        spec: { adapters: [adapters[k % 6]!], domains: [domains[Math.floor(k / 6) % 6]!] },
        uuidPrefix: benchUuidPrefix(3, k),
      })),
      RUN_MS / 1000,
    )
    return { ...out, transactions: svc.store.stats().transactions - before }
  } finally {
    await svc.close()
    tmp.drop()
  }
}

function printRest(f: RestFigures, raw: RawFigures): void {
  console.log(
    `\n1b. create then delete through REST on \`demo\` (apmask 0x), ${CLIENTS} clients on their own thread, ${RUN_MS / 1000} s; raw baseline ${fmt(rawBest(raw))} commits/s (1a)`,
  )
  const creates = f.pairs / f.seconds
  const writes = (2 * f.pairs) / f.seconds
  printTable([
    ['what', 'per second', 'ratio to raw', 'POST p50', 'POST p99', 'failures', 'transactions (incl. reconciler)'],
    [
      'durable creates (POST 201), each followed by its DELETE',
      fmt(creates),
      (creates / rawBest(raw)).toFixed(3),
      fmtMs(percentile(f.postMs, 50)),
      fmtMs(percentile(f.postMs, 99)),
      String(f.failures),
      fmt(f.transactions),
    ],
    ['durable writes (POST 201 + DELETE 202)', fmt(writes), (writes / rawBest(raw)).toFixed(3), '', '', '', ''],
  ])
  if (f.firstFailure) console.log(`first failure: ${f.firstFailure}`)
  recordGoal('durable-create', {
    measured: creates,
    baseline: rawBest(raw),
    unit: '/s',
    note: `REST POST 201/s from ${CLIENTS} clients, each also DELETEs its device (202, not counted: with it ${fmt(writes)} durable writes/s, ratio ${(writes / rawBest(raw)).toFixed(3)}); baseline the better of raw 1 connection ${fmt(raw.single)}/s and ${CLIENTS} worker connections ${fmt(raw.workers)}/s${f.failures ? `; ${f.failures} FAILURES` : ''}`,
  })
}

// ---- 2. full bring-up beside a small host ---------------------------------------------------------

interface FullFigures {
  readyMs: number
  transactions: number
  retries: number
  passes: number
  loopMaxMs: number
  loopP99Ms: number
  /**
   * The longest stall that was neither inside the PUT's handler (the service's admission and plan view) nor
   * inside one bus write of a mask (the in-process emulator rebinds every queue in that one synchronous call):
   * what the reconciler, the store and the bus port hold the loop for.
   */
  loopOtherMaxMs: number
  /** Wall time of the emulator's mask writes during the bring-up (each one synchronous call). */
  maskWriteMs: number[]
  putHandlerMs: number
  smallReady: number[]
  smallTimeouts: number
  smallFailures: number
  smallFirstFailure?: string
}

async function benchFull(withSmall: boolean): Promise<FullFigures> {
  const tmp = tempDir()
  const cfg = loadConfig(
    {
      databaseUrl: `file:${path.join(tmp.dir, 'bench.db')}`,
      http: '127.0.0.1:0',
      grpc: '127.0.0.1:0',
      logLevel: 'silent',
      hosts: withSmall ? 'big=full,small=demo' : 'big=full',
    },
    {},
  )
  const svc: RunningService = await startService(cfg)
  const smallClient = withSmall ? RestClient.start() : undefined
  try {
    if (withSmall) {
      expectStatus('PUT small masks', await callJson(svc.httpUrl, 'PUT', '/v1/hosts/small/masks', { apmask: '0x' }), 200)
      await waitUntil(svc, async () => ((await svc.store.masks.get('small'))?.status.observedGeneration ?? 0) >= 1, { timeoutMs: 30_000 })
    }
    const domains = Array.from({ length: 256 }, (_, d) => d)
    const doc = {
      owner: 'bench',
      masks: { apmask: '0x', aqmask: `0x${'f'.repeat(64)}` },
      mdevs: Array.from({ length: 256 }, (_, a) => ({ uuid: benchUuid(9, a), spec: { adapters: [a], domains } })),
    }
    let passes = 0
    const off = svc.reconciler.onOutcome((o) => {
      if (o.host === 'big') passes++
    })
    const loop = monitorEventLoopDelay({ resolution: 10 })
    const before = svc.store.stats()
    // Attribution of stalls: a 5 ms timer notes each gap, and what was running while it happened.
    let inPut = false
    let inMaskWrite = false
    let sawPut = false
    let sawMaskWrite = false
    const maskWriteMs: number[] = []
    const bus = svc.hosts.find((h) => h.name === 'big')!.bus as { setMasks(m: { apmask?: string; aqmask?: string }): Promise<void> }
    const setMasks = bus.setMasks.bind(bus)
    bus.setMasks = async (m) => {
      const s0 = performance.now()
      inMaskWrite = sawMaskWrite = true
      try {
        return await setMasks(m)
      } finally {
        inMaskWrite = false
        maskWriteMs.push(performance.now() - s0)
      }
    }
    let otherMax = 0
    let last = performance.now()
    const watch = setInterval(() => {
      const now = performance.now()
      if (!sawPut && !sawMaskWrite) otherMax = Math.max(otherMax, now - last)
      sawPut = inPut
      sawMaskWrite = inMaskWrite
      last = now
    }, 5)
    loop.enable()
    const t0 = performance.now()
    const allReady = waitUntil(svc, async () => (await svc.store.mdevs.listAll('big')).filter(isReady).length === 256, { timeoutMs: 300_000, pollMs: 1000 })
    // Meanwhile on the small host, from a client thread: one device at a time, POST -> Ready (seen by GETs
    // every 10 ms), then DELETE -> 404, from just before the PUT until all of big is Ready.
    const smallStop = new Int32Array(new SharedArrayBuffer(4))
    const demoAdapters = [0, 1, 2, 5, 6, 7]
    const small: Promise<ConvergeLoopResult | undefined> = withSmall
      ? smallClient!.convergeLoop(
          `${svc.httpUrl}/v1/hosts/small/mdevs`,
          demoAdapters.map((a) => ({ adapters: [a], domains: [1] })),
          benchUuidPrefix(10, 0),
          smallStop,
        )
      : Promise.resolve(undefined)
    inPut = sawPut = true
    const put = await callJson(svc.httpUrl, 'PUT', '/v1/hosts/big/desired', doc)
    inPut = false
    const putHandlerMs = put.headersAt - t0
    expectStatus('PUT desired', put, 200)
    // Meanwhile on the small host: one device at a time, POST -> Ready, then DELETE.
    const w = await allReady
    const readyMs = w.at - t0
    Atomics.store(smallStop, 0, 1)
    const smallRun = await small
    loop.disable()
    clearInterval(watch)
    bus.setMasks = setMasks
    off()
    const after = svc.store.stats()
    return {
      readyMs: w.ok ? readyMs : Number.NaN,
      transactions: after.transactions - before.transactions,
      retries: after.retries - before.retries,
      passes,
      loopMaxMs: loop.max / 1e6,
      loopP99Ms: loop.percentile(99) / 1e6,
      loopOtherMaxMs: otherMax,
      maskWriteMs,
      putHandlerMs,
      smallReady: smallRun?.readyMs ?? [],
      smallTimeouts: smallRun?.timeouts ?? 0,
      smallFailures: smallRun?.failures ?? 0,
      ...(smallRun?.firstFailure ? { smallFirstFailure: smallRun.firstFailure } : {}),
    }
  } finally {
    await smallClient?.close()
    await svc.close()
    tmp.drop()
  }
}

function printFull(f: FullFigures, withSmall: boolean): void {
  console.log(
    `\n2${withSmall ? 'b' : 'a'}. \`full\` bring-up on host big (256 devices of 1 x 256 through one PUT desired)${withSmall ? ' while host small (demo) takes POSTs, one device at a time' : ', alone'}`,
  )
  printTable([
    ['figure', 'value'],
    ['PUT desired -> all 256 Ready', fmtMs(f.readyMs)],
    ['store transactions meanwhile (both hosts, service and reconciler)', `${fmt(f.transactions)} (${fmt(f.retries)} re-runs)`],
    ['reconcile passes of big', String(f.passes)],
    ['longest event-loop stall; p99 of the loop delay', `${fmtMs(f.loopMaxMs)}; ${fmtMs(f.loopP99Ms)}`],
    ['the PUT (service: admission, plan view, store)', fmtMs(f.putHandlerMs)],
    ['the emulator in process: each mask write (one synchronous call, every queue rebound)', f.maskWriteMs.map(fmtMs).join(', ')],
    ['longest stall outside those two (reconciler, store, bus port, a 5 ms timer)', fmtMs(f.loopOtherMaxMs)],
    ...(withSmall
      ? [
          [
            `small: POST -> Ready, ${f.smallReady.length} devices (p50 / p99 / max), REST client thread polling GET every 10 ms`,
            `${fmtMs(percentile(f.smallReady, 50))} / ${fmtMs(percentile(f.smallReady, 99))} / ${fmtMs(Math.max(...f.smallReady))}${f.smallTimeouts ? `, ${f.smallTimeouts} timed out` : ''}${f.smallFailures ? `, ${f.smallFailures} failed` : ''}`,
          ],
        ]
      : []),
  ])
  if (withSmall && f.smallFirstFailure) console.log(`small host: first failure: ${f.smallFirstFailure}`)
  if (withSmall)
    recordGoal('small-host-p99', {
      measured: f.smallTimeouts || f.smallFailures || f.smallReady.length === 0 ? Number.NaN : percentile(f.smallReady, 99),
      note: `${f.smallReady.length} small-host devices one at a time (POST -> Ready seen by a GET every 10 ms, then DELETE -> 404) from a client thread, from the PUT until big was all Ready (${fmtMs(f.readyMs)})${f.smallTimeouts ? `; ${f.smallTimeouts} TIMED OUT` : ''}${f.smallFailures ? `; ${f.smallFailures} FAILED: ${f.smallFirstFailure}` : ''}`,
    })
}

/** The `writes` suite. */
export const writesSuite: BenchSuite = {
  name: 'writes',
  description: 'durable creates with 16 clients (store, raw SQLite, REST); full bring-up: transactions, event-loop stall, a small host meanwhile',
  async run() {
    const want = phases()
    const raw = want.has('store') || want.has('rest') ? await benchRaw() : undefined
    if (want.has('store') && raw) printStore(await benchStoreCreates(raw))
    if (want.has('rest')) {
      const rest = RestClient.start()
      try {
        printRest(await benchRestCreates(rest), raw!)
      } finally {
        await rest.close()
      }
    }
    if (want.has('full')) printFull(await benchFull(false), false)
    if (want.has('mixed')) printFull(await benchFull(true), true)
    console.log(`\nnode ${process.version}; SQLite in a temp folder; emulated hosts in process; machine shared (2 cores): compare ratios`)
  },
}
