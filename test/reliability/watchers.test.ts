/**
 * 2,000 concurrent event watchers on a real `apmatrix serve` process over real sockets (issue 11 §5): 1,000 SSE
 * (`GET /v1/events`) and 1,000 gRPC `EventService.Watch`, all from one position, while writes generate events.
 * Per transport: 50 read every event, 850 read the masks' events only (`kind=masks`, filtered by the service before
 * anything is written), and 100 never read: an SSE response paused right after its headers (its socket is no longer
 * read), and gRPC streams opened by a client process (test/reliability/grpc-frozen-watchers.mjs, each stream on its
 * own connection) that is then frozen with SIGSTOP. A grpc-js client's `call.pause()` would not do: grpc-js goes on
 * reading the connection into its own memory, so to the service it is a fast reader (measured: 300,000 messages,
 * 150 MB, went into a paused client without the server's write ever waiting).
 *
 * Asserted (docs/api.md (Events) Slow watchers):
 * - the service's memory stays bounded: its RSS with every watch open ({@link RSS_OPEN_BOUND_MIB}), and its heap after
 *   forced full GCs while the non-readers are open and events flow ({@link HEAP_STUCK_BOUND_MIB}); after every watch
 *   closed, the heap is back near where it was before they opened;
 * - every non-reading watcher is ended once `APMATRIX_WATCH_MAX_LAG` events behind (the subscribers gauge drops
 *   to the readers), with a resumable error: when it reads again it finds its events in order, then SSE
 *   `event: error` `{code: RATE_LIMITED, resumeSeq}` / gRPC RESOURCE_EXHAUSTED with trailer `resume-seq`, where
 *   resumeSeq is the last event it got; a watch resumed from there delivers the rest: no gap, no duplicate;
 * - every reading watcher sees every event it asked for (the log read from the store itself, all of it or its
 *   masks' events), in order, no gap, no duplicate, and none of them is cut.
 *
 * An SSE connection that is not read takes in some 8,000 messages (about 4 MB of kernel buffers on loopback) before
 * the service sees any backpressure, so those non-readers are cut only after some 8,000 events; the 1,700 filtered
 * readers keep the fan-out of those affordable on a 2-core machine. The writes go
 * in batches (one PUT desired relabelling 200 devices, one masks change), each followed by waiting for the readers
 * of every event to catch up: a "fast" watcher is one that keeps up. Needs about 4,100 file descriptors in this
 * process and as many in the service (checked up front: raise `ulimit -n` when it fails).
 * Figures (t.comment): watchers, events, RSS and heap after GC (before, with every watch open, peak, after), the lags
 * at which the non-readers were cut, time.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import readline from 'node:readline'
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import type { Event__Output } from '../../src/generated/grpc/apmatrix/v1/Event.js'
import { createStore } from '../../src/store/store.js'
import { loadApiProto } from '../../src/transport/grpc/proto.js'
import { freshDatabase } from '../store/pg-helper.js'
import { until } from '../scenario/rest-client.js'
import { sseParser } from '../transport/http/sse-client.js'
import { projectRoot } from '../../src/paths.js'
import { readyLine, spawnCli } from './cli-process.js'

const FROZEN_CLIENT = path.join(projectRoot, 'test/reliability/grpc-frozen-watchers.mjs')
const MEMORY_PROBE = path.join(projectRoot, 'test/reliability/memory-probe.mjs')

/** Per transport: readers of every event, readers of the masks' events only, and watchers that never read. */
const ALL = 50
const MASKS = 850
const STUCK = 100
const READERS = 2 * (ALL + MASKS)
const WATCHERS = READERS + 2 * STUCK
/** The service's lag bound for this run (APMATRIX_WATCH_MAX_LAG). */
const MAX_LAG = 100
/** Reading gRPC watchers share this many connections (at most 45 streams each). */
const GRPC_READER_CHANNELS = 20
/** Matrix devices (no APQNs) whose labels each batch changes in one PUT desired: an event each. */
const DEVICES = 200
/**
 * A guard: the non-readers must be cut well before this many events. A socket that is not read takes about 4 MB
 * (some 8,000 SSE messages) into the kernel's buffers on loopback before the service sees backpressure at all; a
 * frozen gRPC client's streams stop at their HTTP/2 window (64 KiB), so those are cut after some 1,200 events.
 */
const MAX_EVENTS = 30_000
/**
 * Opening 2,000 streams costs memory of its own (sockets, HTTP/2 streams, request objects, subscriptions): at most
 * {@link RSS_OPEN_BOUND_MIB} of RSS over the baseline (300 KiB a watcher).
 */
const RSS_OPEN_BOUND_MIB = 600
/**
 * While the events flow, what the 200 non-readers may hold is bounded: at most 1,000 queued events each (the same
 * event objects the ring and the readers hold) and a socket's or an HTTP/2 stream's write buffer (16 messages). So
 * the heap after forced GCs, while they are open, stays within this of the heap with every watch open. Buffering
 * without a bound (the 100 SSE non-readers alone are 8,000 events behind when cut, at some 700 bytes a message:
 * 560 MB) would exceed it. RSS is reported, not bounded here: it keeps the allocator's slack after the fan-out's
 * garbage (125 to 330 MiB over the open figure in runs, while the heap after GC stayed within 20 MiB of it).
 */
const HEAP_STUCK_BOUND_MIB = 64
/** The heap after every watch closed (forced GCs) is at most this over the heap before they opened. */
const HEAP_AFTER_BOUND_MIB = 32
/** The longest owner (128 characters): it is in every event of the devices, so fewer events fill a stuck socket. */
const OWNER = `watchers-test-${'o'.repeat(114)}`
const uuid = (i: number) => `d0000000-0000-4000-8000-${String(i).padStart(12, '0')}`

// A hang guard for this file (tap's default is 300 s): on a loaded 2-core machine the run takes several minutes.
t.setTimeout(1_500_000)

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(m[1]) / 1024
}

function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))
  return !m || m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1])
}

/** A value of the service's /metrics. */
async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text()
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  if (!m) throw new Error(`${name} is not in /metrics`)
  return Number(m[1])
}

/** What one watcher saw. */
interface Seen {
  seqs: number[]
  /** Seqs that did not increase strictly. */
  disorder: number
  /** SSE `event: error` data, or the gRPC status. */
  error?: { code: string; resumeSeq?: number }
  ended: boolean
}

function record(s: Seen, seq: number): void {
  const last = s.seqs.length ? s.seqs[s.seqs.length - 1]! : -1
  if (seq <= last) s.disorder++
  s.seqs.push(seq)
}

interface SseWatcher extends Seen {
  res: http.IncomingMessage
  close(): void
}

/** `GET /v1/events?since=` on its own connection; resolves once the headers are in. Stuck: the body is not read. */
function sse(base: URL, since: number, stuck: boolean, kind?: string): Promise<SseWatcher> {
  return new Promise((resolve, reject) => {
    const path = `/v1/events?since=${since}${kind ? `&kind=${kind}` : ''}`
    const req = http.get({ host: base.hostname, port: base.port, path, agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`GET /v1/events: ${res.statusCode}`))
      if (stuck) res.pause()
      const w: SseWatcher = { seqs: [], disorder: 0, ended: false, res, close: () => req.destroy() }
      res.setEncoding('utf8')
      res.on(
        'data',
        sseParser({
          event: (ev) => {
            if (ev.event === 'error') w.error = JSON.parse(ev.data)
            else if (ev.id !== undefined) record(w, Number(ev.id))
          },
        }),
      )
      res.on('end', () => (w.ended = true))
      res.on('error', () => (w.ended = true))
      resolve(w)
    })
    req.on('error', reject)
  })
}

interface GrpcWatcher extends Seen {
  call: grpc.ClientReadableStream<Event__Output>
}

function grpcWatch(client: grpc.Client, since: number, kind?: string): GrpcWatcher {
  const call = (client as unknown as { Watch(req: object): grpc.ClientReadableStream<Event__Output> }).Watch({
    since_seq: String(since),
    ...(kind ? { kinds: [kind] } : {}),
  })
  const w: GrpcWatcher = { seqs: [], disorder: 0, ended: false, call }
  call.on('data', (e: Event__Output) => record(w, Number(e.seq)))
  call.on('error', () => undefined)
  call.on('status', (s: grpc.StatusObject) => {
    w.ended = true
    const resume = s.metadata.get('resume-seq')[0]
    w.error = { code: grpc.status[s.code], ...(resume !== undefined ? { resumeSeq: Number(resume) } : {}) }
  })
  return w
}

/** The index of the first difference of two seq lists, or -1. */
function firstDifference(a: number[], b: number[]): number {
  const n = Math.max(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return -1
}

t.test('2,000 SSE and gRPC watchers, 200 of them never reading: bounded memory, the stuck ones cut resumably, the readers see every event', async (t) => {
  const needed = 2 * WATCHERS + 512
  const limit = openFilesLimit()
  if (limit < needed) throw new Error(`this test needs ${needed} open files in this process and in the service: raise ulimit -n (now ${limit})`)

  const db = await freshDatabase(t, 'sqlite')
  const p = spawnCli(t, ['serve'], {
    DATABASE_URL: db.url,
    APMATRIX_HTTP_ADDR: '127.0.0.1:0',
    APMATRIX_GRPC_ADDR: '127.0.0.1:0',
    APMATRIX_PROFILE: 'spec-fixture',
    APMATRIX_LOG_LEVEL: 'warn',
    APMATRIX_STREAMS_PER_SUBJECT: '0',
    APMATRIX_WATCH_MAX_LAG: String(MAX_LAG),
    NODE_OPTIONS: `--expose-gc --import=${MEMORY_PROBE}`,
  })
  const rest = await readyLine(p, /^apmatrix serving REST on (http:\/\/\S+)$/, 'the REST ready line')
  const rpc = await readyLine(p, /^apmatrix serving gRPC on (\S+)$/, 'the gRPC ready line')
  if (!rest || !rpc) throw new Error(`the service did not start: ${p.stderr.join('\n')}`)
  const base = rest[1]!
  // Each batch of writes: one PUT desired changing a label of every device (DEVICES events, more from the reconciler),
  // and one change of the masks (adapter 5 or 6 leaves the default drivers) for the watchers of the masks' events.
  let round = 0
  const writeBatch = async () => {
    round++
    const mdevs = Array.from({ length: DEVICES }, (_, i) => ({
      uuid: uuid(i),
      spec: { adapters: [], domains: [] },
      labels: { round: String(round) },
      owner: OWNER,
    }))
    // Writes get a minute each (rest-client's 15 s is short for a 200-device PUT on a loaded machine): a hang guard.
    const put = async (path: string, body: unknown) => {
      const r = await fetch(base + path, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(60_000),
      })
      const text = await r.text()
      if (r.status !== 200) throw new Error(`PUT ${path}: ${r.status} ${text}`)
    }
    await put('/v1/hosts/local/desired', { mdevs })
    // Absolute masks, so every batch changes them: adapter 5 and adapter 6 leave the default drivers in turn.
    await put('/v1/hosts/local/masks', { apmask: `0x${round % 2 ? 'fb' : 'fd'}${'f'.repeat(62)}` })
  }
  await writeBatch()
  await new Promise((r) => setTimeout(r, 2000))
  const baseline = rssMiB(p.pid)
  let peak = baseline
  const sampler = setInterval(() => {
    if (!p.dead) peak = Math.max(peak, rssMiB(p.pid))
  }, 100)
  // The service's heap in use after forced full GCs (test/reliability/memory-probe.mjs, on SIGUSR2): what it
  // holds, without the garbage of the fan-out and the allocator's slack that RSS keeps after a burst.
  const heapAfterGc = async (): Promise<number> => {
    const from = p.stderr.length
    p.proc.kill('SIGUSR2')
    let line: string | undefined
    await until(
      'the memory probe answers',
      async () => {
        line = p.stderr.slice(from).find((l) => l.startsWith('apmatrix-memory-probe '))
        return line !== undefined
      },
      {
        timeoutMs: 30_000,
        everyMs: 20,
      },
    )
    return (JSON.parse(line!.slice('apmatrix-memory-probe '.length)) as NodeJS.MemoryUsage).heapUsed / 2 ** 20
  }
  const heapBefore = await heapAfterGc()
  t.teardown(() => clearInterval(sampler))
  const started = Date.now()

  const since = await metric(base, 'apmatrix_event_log_position')
  // The service's own subscriptions (its read cache follows the log).
  const own = await metric(base, 'apmatrix_event_subscribers')
  const url = new URL(base)
  const { v1 } = loadApiProto()
  const creds = grpc.credentials.createInsecure()
  const clients: grpc.Client[] = []
  const client = (): grpc.Client => {
    const c = new v1.EventService(rpc[1]!, creds, { 'grpc.use_local_subchannel_pool': 1 }) as unknown as grpc.Client
    clients.push(c)
    return c
  }
  t.teardown(() => {
    for (const c of clients) c.close()
  })

  // Open in steps of 100: a thousand connections at once overflow the listen backlog.
  const sseOpen = async (n: number, stuck: boolean, kind?: string) => {
    const out: SseWatcher[] = []
    for (let i = 0; i < n; i += 100) out.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => sse(url, since, stuck, kind)))))
    return out
  }
  const sseAll = await sseOpen(ALL, false)
  const sseMasks = await sseOpen(MASKS, false, 'masks')
  const sseStuck = await sseOpen(STUCK, true)
  const readerChannels = Array.from({ length: GRPC_READER_CHANNELS }, client)
  const channel = (i: number) => readerChannels[i % GRPC_READER_CHANNELS]!
  const grpcAll = Array.from({ length: ALL }, (_, i) => grpcWatch(channel(i), since))
  const grpcMasks = Array.from({ length: MASKS }, (_, i) => grpcWatch(channel(i), since, 'masks'))
  // The non-reading gRPC watchers: a client process, frozen once the service counts its streams.
  const frozen = spawn(process.execPath, [FROZEN_CLIENT, rpc[1]!, String(since), String(STUCK)], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => {
    frozen.kill('SIGCONT')
    frozen.kill('SIGKILL')
  })
  const frozenLines = readline.createInterface({ input: frozen.stdout! })[Symbol.asyncIterator]()
  const opened = await frozenLines.next()
  if (opened.done || opened.value !== `opened ${STUCK}`) throw new Error(`the frozen client did not open its watches: ${opened.value}`)
  const sseReaders = [...sseAll, ...sseMasks]
  const grpcReaders = [...grpcAll, ...grpcMasks]
  t.teardown(() => {
    for (const w of [...sseReaders, ...sseStuck]) w.close()
    for (const w of grpcReaders) w.call.cancel()
  })
  await until('every watcher subscribed', async () => (await metric(base, 'apmatrix_event_subscribers')) === own + WATCHERS, {
    timeoutMs: 120_000,
    everyMs: 200,
  })
  frozen.kill('SIGSTOP')
  const atOpen = rssMiB(p.pid)
  const heapAtOpen = await heapAfterGc()
  // The most the heap holds while non-readers are still open (sampled every 5 write batches, and after the last).
  let heapWithStuck = heapAtOpen
  const readers: Seen[] = [...sseReaders, ...grpcReaders]
  const allReaders: Seen[] = [...sseAll, ...grpcAll]
  const lastOf = (w: Seen) => (w.seqs.length ? w.seqs[w.seqs.length - 1]! : -1)

  // Writes, in batches; after each, the readers catch up. Until every non-reader has been cut.
  let position = since
  let subscribers = own + WATCHERS
  while (subscribers > own + READERS) {
    if (position - since > MAX_EVENTS) break
    await writeBatch()
    position = await metric(base, 'apmatrix_event_log_position')
    const target = position
    await until(`the readers of every event reach seq ${target}`, async () => allReaders.every((r) => lastOf(r) >= target), {
      timeoutMs: 120_000,
      everyMs: 50,
      describe: () => ({ behind: allReaders.filter((r) => lastOf(r) < target).length }),
    })
    subscribers = await metric(base, 'apmatrix_event_subscribers')
    if (round % 5 === 0 && subscribers > own + READERS) heapWithStuck = Math.max(heapWithStuck, await heapAfterGc())
    if (round % 10 === 0)
      t.comment(
        `progress: ${position - since} events, ${subscribers - own} watchers, RSS ${rssMiB(p.pid).toFixed(0)} MiB, heap after GC at most ${heapWithStuck.toFixed(0)} MiB, ${((Date.now() - started) / 1000).toFixed(0)} s`,
      )
  }
  const peakDuringWrites = peak
  t.equal(subscribers - own, READERS, `every non-reading watcher was cut (watchers left ${subscribers - own}) after ${position - since} events`)
  t.ok(
    readers.every((r) => !r.ended),
    'no reader was cut',
  )

  // The log as the store has it: every reader saw exactly that (all of it, or its masks' events).
  const store = await createStore(db.url)
  t.teardown(() => store.close())
  const read = async (kinds?: string[]) => {
    const out: number[] = []
    for (;;) {
      const page = await store.events.list({ since: out.length ? out[out.length - 1]! : since, limit: 1000, ...(kinds ? { kinds } : {}) })
      out.push(...page.map((e) => e.seq))
      if (page.length < 1000) return out
    }
  }
  const log = await read()
  const masksLog = await read(['masks'])
  const last = log[log.length - 1]!
  const lastMasks = masksLog[masksLog.length - 1]!
  await until(`the readers reach the last seq ${last}`, async () => allReaders.every((r) => lastOf(r) >= last), { timeoutMs: 60_000 })
  const masksReaders: Seen[] = [...sseMasks, ...grpcMasks]
  await until(`the readers of the masks' events reach ${lastMasks}`, async () => masksReaders.every((r) => lastOf(r) >= lastMasks), { timeoutMs: 60_000 })
  const wrong = allReaders.map((r) => firstDifference(r.seqs, log)).filter((i) => i >= 0)
  t.equal(wrong.length, 0, `all ${allReaders.length} readers of every event saw the ${log.length} events of the log, in order, no gap, no duplicate`)
  const wrongMasks = masksReaders.map((r) => firstDifference(r.seqs, masksLog)).filter((i) => i >= 0)
  t.equal(wrongMasks.length, 0, `all ${masksReaders.length} readers of the masks' events saw the ${masksLog.length} of the log, in order, no gap, no duplicate`)
  t.equal(
    readers.reduce((n, r) => n + r.disorder, 0),
    0,
    'no reader saw a seq out of order',
  )

  // The stuck ones read again: their events, then the resumable error; resumed from resumeSeq, the rest.
  for (const w of sseStuck) w.res.resume()
  frozen.kill('SIGCONT')
  // The frozen client prints what each of its streams got once every one has ended.
  const report = await frozenLines.next()
  if (report.done) throw new Error('the frozen client ended without its report')
  const grpcStuck = JSON.parse(report.value) as Seen[]
  t.equal(grpcStuck.length, STUCK, `the frozen client reported its ${STUCK} streams`)
  const stuck: Array<Seen & { transport: string }> = [
    ...sseStuck.map((w) => Object.assign(w, { transport: 'sse' })),
    ...grpcStuck.map((w) => Object.assign(w, { transport: 'grpc' })),
  ]
  await until('every stuck watcher has read up to its error', async () => stuck.every((w) => w.ended && w.error), {
    timeoutMs: 120_000,
    describe: () => ({ notEnded: stuck.filter((w) => !w.ended).length }),
  })
  const badErrors = stuck.filter((w) => {
    const want = w.transport === 'sse' ? 'RATE_LIMITED' : 'RESOURCE_EXHAUSTED'
    return w.error?.code !== want || w.error.resumeSeq === undefined || w.error.resumeSeq !== w.seqs[w.seqs.length - 1]
  })
  t.equal(badErrors.length, 0, 'every stuck watcher ended with RATE_LIMITED / RESOURCE_EXHAUSTED and resumeSeq = the last event it got')
  if (badErrors.length) t.comment(`e.g. ${JSON.stringify({ ...badErrors[0]!.error, last: badErrors[0]!.seqs.at(-1), transport: badErrors[0]!.transport })}`)
  const lags = stuck.map((w) => last - (w.error?.resumeSeq ?? 0))
  const resumed = await Promise.all(
    stuck.map(async (w) => {
      const from = w.error?.resumeSeq ?? 0
      const again: Seen = w.transport === 'sse' ? await sse(url, from, false) : grpcWatch(client(), from)
      await until('a resumed watch reaches the last seq', async () => lastOf(again) >= last, { timeoutMs: 120_000 })
      ;(again as Partial<SseWatcher>).close?.()
      ;(again as Partial<GrpcWatcher>).call?.cancel()
      return firstDifference([...w.seqs, ...again.seqs], log)
    }),
  )
  t.equal(resumed.filter((i) => i >= 0).length, 0, `all ${stuck.length} stuck watchers, resumed from resumeSeq: every event of the log, no gap, no duplicate`)

  for (const w of [...sseReaders, ...sseStuck]) w.close()
  for (const w of grpcReaders) w.call.cancel()
  await until('every watch closed', async () => (await metric(base, 'apmatrix_event_subscribers')) === own, { timeoutMs: 60_000 })
  await new Promise((r) => setTimeout(r, 2000))
  const after = rssMiB(p.pid)
  const heapAfter = await heapAfterGc()
  clearInterval(sampler)
  const seconds = (Date.now() - started) / 1000

  t.ok(
    atOpen - baseline < RSS_OPEN_BOUND_MIB,
    `service RSS with ${WATCHERS} watches open: ${atOpen.toFixed(0)} MiB < baseline ${baseline.toFixed(0)} + ${RSS_OPEN_BOUND_MIB} MiB`,
  )
  t.ok(
    heapWithStuck - heapAtOpen < HEAP_STUCK_BOUND_MIB,
    `service heap after GC while the non-readers are open and events flow: at most ${heapWithStuck.toFixed(0)} MiB < ${heapAtOpen.toFixed(0)} (every watch open) + ${HEAP_STUCK_BOUND_MIB} MiB`,
  )
  t.ok(
    heapAfter - heapBefore < HEAP_AFTER_BOUND_MIB,
    `service heap after GC once every watch closed: ${heapAfter.toFixed(0)} MiB < ${heapBefore.toFixed(0)} (before they opened) + ${HEAP_AFTER_BOUND_MIB} MiB`,
  )
  t.comment(
    `${WATCHERS} watchers, per transport (SSE, gRPC): ${ALL} reading every event, ${MASKS} reading the masks events only, ${STUCK} not reading; APMATRIX_WATCH_MAX_LAG ${MAX_LAG}`,
  )
  t.comment(
    'events | masks events | write batches | RSS MiB baseline | with 2,000 open | peak (writes) | peak (with resumes) | after close | heap after GC MiB: before | with 2,000 open | most with non-readers | after close | non-readers cut at lag (min..max) | seconds',
  )
  t.comment(
    `${log.length} | ${masksLog.length} | ${round} | ${baseline.toFixed(0)} | ${atOpen.toFixed(0)} | ${peakDuringWrites.toFixed(0)} | ${peak.toFixed(0)} | ${after.toFixed(0)} | ${heapBefore.toFixed(0)} | ${heapAtOpen.toFixed(0)} | ${heapWithStuck.toFixed(0)} | ${heapAfter.toFixed(0)} | ${Math.min(...lags)}..${Math.max(...lags)} | ${seconds.toFixed(0)}`,
  )

  p.proc.kill('SIGTERM')
  await p.exited
})
