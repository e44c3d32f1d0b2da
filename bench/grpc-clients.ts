/**
 * Off-thread clients for the gRPC benchmark (bench/grpc.ts): a unary load generator and a pool of event
 * watchers (gRPC `EventService.Watch` or REST SSE `GET /v1/events`). Each runs in a worker thread, so the
 * figures are taken outside the server's event loop (the server may stall it). Workers run this same file.
 *
 * The unary load sends pre-serialised request bytes and keeps the reply bytes undecoded, so the client
 * does the same work whatever the server is; the difference between two targets is the server's.
 */
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import * as grpc from '@grpc/grpc-js'
import { loadApiProto } from '../src/transport/grpc/proto.js'
import { threadCpuMs } from './http-load-helpers.js'

/** Wall clock in ms with sub-ms precision, comparable across threads (both use the epoch). */
export const epochMs = (): number => performance.timeOrigin + performance.now()

/**
 * How a client reaches a server: TLS trusting `rootCert` (PEM) when set, else plaintext; `serverName`: the
 * name the server's certificate is checked against (default the target's host); `metadata` sent with every call.
 */
export interface GrpcConn {
  rootCert?: Uint8Array
  serverName?: string
  metadata?: Record<string, string>
}

function grpcClient(target: string, c: GrpcConn): grpc.Client {
  const creds = c.rootCert ? grpc.credentials.createSsl(Buffer.from(c.rootCert)) : grpc.credentials.createInsecure()
  return new grpc.Client(target, creds, c.serverName ? { 'grpc.ssl_target_name_override': c.serverName } : {})
}

function callMetadata(c: GrpcConn): grpc.Metadata {
  const md = new grpc.Metadata()
  for (const [k, v] of Object.entries(c.metadata ?? {})) md.set(k, v)
  return md
}

const raw = (b: Buffer): Buffer => b

/** One unary call of `path` with request bytes `req`; resolves to the reply bytes (a fresh channel, closed after). */
export function rawUnary(target: string, path: string, req: Buffer, conn: GrpcConn = {}): Promise<Buffer> {
  const c = grpcClient(target, conn)
  return new Promise<Buffer>((resolve, reject) => {
    c.makeUnaryRequest(path, raw, raw, req, callMetadata(conn), (err, res) => (err ? reject(err) : resolve(res!)))
  }).finally(() => c.close())
}

/** A unary load job: `concurrency` calls in flight, spread over `channels` channels, for `durationS`. */
export interface UnaryLoadJob extends GrpcConn {
  kind: 'grpc-unary-load'
  target: string
  /** Full method path, e.g. `/apmatrix.v1.MdevService/GetMdev`. */
  path: string
  request: Uint8Array
  concurrency: number
  channels: number
  durationS: number
  warmupS: number
}

/** Result of a unary load: successful calls, errors, measured seconds, per-call latencies (ms). */
export interface UnaryLoadResult {
  calls: number
  errors: number
  firstError: string | null
  seconds: number
  replyBytes: number
  latencies: Float64Array
  /** CPU time of the client's thread (its own: start-up and warm-up included), ms. */
  clientCpuMs: number
}

/** Runs `job` in a fresh worker thread. */
export function runUnaryLoad(job: Omit<UnaryLoadJob, 'kind'>): Promise<UnaryLoadResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { ...job, kind: 'grpc-unary-load' } satisfies UnaryLoadJob })
    w.once('message', (m: UnaryLoadResult) => resolve(m))
    w.once('error', reject)
    w.once('exit', (code) => code !== 0 && reject(new Error(`unary load worker exited with ${code}`)))
  })
}

async function unaryLoad(job: UnaryLoadJob): Promise<UnaryLoadResult> {
  const clients = Array.from({ length: job.channels }, () => grpcClient(job.target, job))
  const req = Buffer.from(job.request)
  const lat: number[] = []
  let calls = 0
  let errors = 0
  let firstError: string | null = null
  let replyBytes = 0
  let measuring = false
  let stopAt = Infinity
  const one = (c: grpc.Client): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now()
      // Metadata of its own per call, as a real client sends it (the same for every target).
      c.makeUnaryRequest(job.path, raw, raw, req, callMetadata(job), (err, res) => {
        if (measuring) {
          if (err) {
            errors++
            firstError ??= `${grpc.status[err.code]}: ${err.details}`
          } else {
            calls++
            replyBytes = res?.length ?? 0
            lat.push(performance.now() - t0)
          }
        }
        resolve()
      })
    })
  const loop = async (i: number) => {
    const c = clients[i % clients.length]!
    while (performance.now() < stopAt) await one(c)
  }
  // Warm-up then measurement run on the same loops: connections and JIT are hot when counting starts.
  const start = performance.now()
  stopAt = start + (job.warmupS + job.durationS) * 1000
  let t0 = 0
  const warm = setTimeout(() => {
    measuring = true
    t0 = performance.now()
  }, job.warmupS * 1000)
  await Promise.all(Array.from({ length: job.concurrency }, (_, i) => loop(i)))
  clearTimeout(warm)
  const seconds = (performance.now() - t0) / 1000
  for (const c of clients) c.close()
  return { calls, errors, firstError, seconds, replyBytes, latencies: Float64Array.from(lat), clientCpuMs: threadCpuMs() }
}

/** A pool of watchers of one transport; every event received carries `data.n` (bench event number). */
export interface WatchersJob {
  kind: 'watchers'
  transport: 'grpc' | 'sse'
  /** gRPC target `host:port`, or the REST base URL. */
  target: string
  watchers: number
  /** gRPC channels (watchers are spread evenly); ignored for SSE (one TCP connection per watcher). */
  channels: number
  /** Only events of this kind (the bench writes its own kind). */
  eventKind: string
}

/** Receive times: `recv[n][w]` is when watcher w got event n (epoch ms; NaN = never). */
export interface WatchersReport {
  recv: Float64Array[]
  ended: number
  firstError: string | null
}

/** Controls a watcher pool running in a worker: `primed(n)` resolves once every watcher got event n. */
export class WatcherPool {
  private constructor(private readonly worker: Worker) {}

  static async open(job: Omit<WatchersJob, 'kind'>): Promise<WatcherPool> {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { ...job, kind: 'watchers' } satisfies WatchersJob })
    const pool = new WatcherPool(w)
    await pool.ask({ cmd: 'opened' })
    return pool
  }

  private ask<T>(msg: { cmd: string; n?: number }): Promise<T> {
    return new Promise((resolve, reject) => {
      const onMsg = (m: { reply: string; value: T }) => {
        if (m.reply !== msg.cmd) return
        this.worker.off('message', onMsg)
        this.worker.off('error', reject)
        resolve(m.value)
      }
      this.worker.on('message', onMsg)
      this.worker.once('error', reject)
      this.worker.postMessage(msg)
    })
  }

  /**
   * Resolves when every watcher has received at least one primer event (`data.n < 0`) or has ended,
   * with how many were primed. A primer proves the watcher's subscription is live at the hub.
   */
  primed(): Promise<number> {
    return this.ask({ cmd: 'primed' })
  }

  /** The receive times of events 0..count-1; the pool keeps running. */
  report(count: number): Promise<WatchersReport> {
    return this.ask({ cmd: 'report', n: count })
  }

  async close(): Promise<void> {
    await this.ask({ cmd: 'close' })
    await this.worker.terminate()
  }
}

function watchersWorker(job: WatchersJob): void {
  const port = parentPort!
  const recv = new Map<number, Float64Array>()
  let ended = 0
  let firstError: string | null = null
  const closers: Array<() => void> = []
  const primed = new Uint8Array(job.watchers)
  let primedCount = 0
  let waiting: (() => void) | null = null
  const check = () => {
    if (waiting && primedCount + ended >= job.watchers) {
      const w = waiting
      waiting = null
      w()
    }
  }
  const onEvent = (w: number, data: { n?: unknown }) => {
    const at = epochMs()
    if (typeof data.n !== 'number') return
    if (data.n < 0) {
      if (!primed[w]) {
        primed[w] = 1
        primedCount++
        check()
      }
      return
    }
    let a = recv.get(data.n)
    if (!a) {
      a = new Float64Array(job.watchers).fill(NaN)
      recv.set(data.n, a)
    }
    if (Number.isNaN(a[w]!)) a[w] = at
  }
  const onEnd = (err: string) => {
    ended++
    firstError ??= err
    check()
  }

  if (job.transport === 'grpc') {
    const { v1 } = loadApiProto()
    const clients = Array.from({ length: job.channels }, () => new v1.EventService(job.target, grpc.credentials.createInsecure()))
    closers.push(() => {
      for (const c of clients) c.close()
    })
    for (let w = 0; w < job.watchers; w++) {
      const call = clients[w % clients.length]!.Watch({ from_now: true, kinds: [job.eventKind] })
      call.on('data', (e: { data_json: string }) => onEvent(w, JSON.parse(e.data_json) as { n?: unknown }))
      call.on('error', (e: grpc.ServiceError) => {
        if (e.code !== grpc.status.CANCELLED) onEnd(`${grpc.status[e.code]}: ${e.details}`)
      })
      closers.push(() => call.cancel())
    }
  } else {
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity })
    const url = new URL(`${job.target}/v1/events?kind=${encodeURIComponent(job.eventKind)}`)
    for (let w = 0; w < job.watchers; w++) {
      const req = http.get(url, { agent, headers: { accept: 'text/event-stream' } }, (res) => {
        if (res.statusCode !== 200) return onEnd(`HTTP ${res.statusCode}`)
        res.setEncoding('utf8')
        let buf = ''
        res.on('data', (chunk: string) => {
          buf += chunk
          let i: number
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, i)
            buf = buf.slice(i + 2)
            const data = frame
              .split('\n')
              .filter((l) => l.startsWith('data:'))
              .map((l) => l.slice(5).trimStart())
              .join('\n')
            if (data) onEvent(w, (JSON.parse(data) as { data?: { n?: unknown } }).data ?? {})
          }
        })
        res.on('error', () => undefined)
      })
      req.on('error', (e) => onEnd(String(e)))
      closers.push(() => req.destroy())
    }
  }

  port.on('message', (m: { cmd: string; n?: number }) => {
    const reply = (value: unknown) => port.postMessage({ reply: m.cmd, value })
    if (m.cmd === 'opened') reply(null)
    else if (m.cmd === 'primed') {
      waiting = () => reply(primedCount)
      check()
    } else if (m.cmd === 'report') {
      const out: Float64Array[] = []
      for (let n = 0; n < m.n!; n++) out.push(recv.get(n) ?? new Float64Array(job.watchers).fill(NaN))
      reply({ recv: out, ended, firstError } satisfies WatchersReport)
    } else if (m.cmd === 'close') {
      for (const c of closers) c()
      reply(null)
    }
  })
}

const job = isMainThread ? undefined : (workerData as UnaryLoadJob | WatchersJob | undefined)
if (job?.kind === 'grpc-unary-load') {
  void unaryLoad(job).then((r) => parentPort!.postMessage(r, [r.latencies.buffer as ArrayBuffer]))
} else if (job?.kind === 'watchers') {
  watchersWorker(job)
}
