/**
 * Service harness for benchmarks: the real service (`startService`) on a throw-away SQLite file with an
 * in-process emulated host, a JSON client for its REST API, and waits on the reconciler's outcomes.
 */
import fs from 'node:fs'
import type http from 'node:http'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { loadConfig, type SettingName } from '../src/config.js'
import { startService, type RunningService } from '../src/main.js'
import type { MdevRecord } from '../src/store/mdev-repo.js'
import type { ClientAuth } from './http-load-helpers.js'

/** A running service and the folder of its database; `stop` closes both. */
export interface BenchService {
  svc: RunningService
  /** Wall time of `startService` (migrations, host bring-up, first observe, listen). */
  startMs: number
  stop(): Promise<void>
}

/**
 * Starts the service with host `local` on `profile`, REST and gRPC on 127.0.0.1 (any port), logs silenced;
 * `flags`: more settings (src/config.ts), e.g. TLS and authentication files.
 */
export async function startBenchService(profile: string, flags: Partial<Record<SettingName, string>> = {}): Promise<BenchService> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-bench-'))
  const cfg = loadConfig(
    { databaseUrl: `file:${path.join(dir, 'bench.db')}`, http: '127.0.0.1:0', grpc: '127.0.0.1:0', logLevel: 'silent', profile, ...flags },
    {},
  )
  const t0 = performance.now()
  const svc = await startService(cfg)
  const startMs = performance.now() - t0
  return {
    svc,
    startMs,
    stop: async () => {
      await svc.close()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A JSON response: status, parsed body (undefined when empty), body size in bytes, when the headers came. */
export interface JsonReply<T = unknown> {
  status: number
  body: T
  bytes: number
  /** `performance.now()` when the status line and headers had arrived (the body may still be streaming). */
  headersAt: number
}

/**
 * One REST call with a JSON body; never throws on an HTTP error status (the caller checks). `auth`: headers
 * to send, and the CA of an https server (global fetch cannot be given one, so https goes through node:https).
 */
export async function callJson<T = unknown>(
  base: string,
  method: string,
  route: string,
  body?: unknown,
  timeoutMs = 600_000,
  auth: ClientAuth = {},
): Promise<JsonReply<T>> {
  const headers = { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...auth.headers }
  const payload = body === undefined ? undefined : JSON.stringify(body)
  const signal = AbortSignal.timeout(timeoutMs)
  let status: number
  let text: string
  let headersAt: number
  if (base.startsWith('https:')) {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = https.request(base + route, { method, headers, ca: auth.ca, signal }, resolve)
      req.on('error', reject)
      req.end(payload)
    })
    headersAt = performance.now()
    status = res.statusCode ?? 0
    res.setEncoding('utf8')
    text = ''
    for await (const chunk of res) text += chunk
  } else {
    const res = await fetch(base + route, { method, headers, body: payload, signal })
    headersAt = performance.now()
    status = res.status
    text = await res.text()
  }
  return { status, body: (text ? JSON.parse(text) : undefined) as T, bytes: Buffer.byteLength(text), headersAt }
}

/** Throws unless `r.status` is one of `ok` (with the start of the body, to see the problem). */
export function expectStatus(what: string, r: JsonReply, ...ok: number[]): void {
  if (!ok.includes(r.status)) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`)
}

/** Ready: the reconciler saw this generation and the `Ready` condition is True; not being deleted. */
export function isReady(r: MdevRecord): boolean {
  return (
    r.deletionRequestedAt === null &&
    r.status.observedGeneration === r.generation &&
    !!r.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
  )
}

/** The stored device, or undefined once its row is gone (the reconciler removed it from the bus). */
export async function findMdev(svc: RunningService, host: string, uuid: string): Promise<MdevRecord | undefined> {
  try {
    return await svc.store.mdevs.get(host, uuid)
  } catch (e) {
    if ((e as { code?: string }).code === 'NOT_FOUND') return undefined
    throw e
  }
}

/** When a wait ended: `ok` false on timeout; `at` is `performance.now()` right after the check that passed. */
export interface WaitResult {
  ok: boolean
  at: number
}

/**
 * Resolves once `check` returns true. `check` runs after every reconcile outcome (status is written
 * before outcomes are announced, so this sees a convergence as soon as it is stored), and every `pollMs`
 * as a safety net for passes that threw (those announce no outcome).
 */
export function waitUntil(svc: RunningService, check: () => Promise<boolean>, opts: { timeoutMs: number; pollMs?: number }): Promise<WaitResult> {
  return new Promise((resolve, reject) => {
    let done = false
    let busy = false
    let again = false
    const finish = (ok: boolean, at: number) => {
      if (done) return
      done = true
      unsubscribe()
      clearInterval(poll)
      clearTimeout(timeout)
      resolve({ ok, at })
    }
    const probe = async (): Promise<void> => {
      if (done) return
      if (busy) {
        again = true
        return
      }
      busy = true
      try {
        do {
          again = false
          if (await check()) return finish(true, performance.now())
        } while (again && !done)
      } catch (e) {
        done = true
        unsubscribe()
        clearInterval(poll)
        clearTimeout(timeout)
        reject(e)
      } finally {
        busy = false
      }
    }
    const unsubscribe = svc.reconciler.onOutcome(() => void probe())
    const poll = setInterval(() => void probe(), opts.pollMs ?? 25)
    const timeout = setTimeout(() => finish(false, performance.now()), opts.timeoutMs)
    void probe()
  })
}

/** A uuid for benchmark device number `n` of run `run` (version 4 layout, deterministic). */
export function benchUuid(run: number, n: number): string {
  return `b0000000-0000-4000-8${run.toString(16).padStart(3, '0')}-${n.toString(16).padStart(12, '0')}`
}

/** The first 26 characters of uuids of client `k` of run `run`; the rest is a per-client counter. */
export function benchUuidPrefix(run: number, k: number): string {
  return `b0000000-0000-4000-8${run.toString(16).padStart(3, '0')}-${k.toString(16).padStart(2, '0')}`
}

/** Samples this process's RSS every `everyMs`; `stop` returns the highest sample in bytes. */
export function sampleRss(everyMs = 50): { stop(): number } {
  let peak = process.memoryUsage.rss()
  const t = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss())
  }, everyMs)
  return {
    stop: () => {
      clearInterval(t)
      return Math.max(peak, process.memoryUsage.rss())
    },
  }
}

/**
 * Times every reconcile pass (wall time of `reconciler.reconcile`, which the worker calls for each
 * key) until `stop`. Wraps the instance method; `stop` puts the original back.
 */
export function timePasses(svc: RunningService): { durations: number[]; stop(): void } {
  const rec = svc.reconciler
  const original = rec.reconcile
  const durations: number[] = []
  rec.reconcile = async (host: string) => {
    const t0 = performance.now()
    try {
      return await original.call(rec, host)
    } finally {
      durations.push(performance.now() - t0)
    }
  }
  return {
    durations,
    stop: () => {
      rec.reconcile = original
    },
  }
}

/**
 * CPU time (user + system) of this whole process so far, ms: every thread, the servers' and the libuv pool's
 * (where WebCrypto signature checks run) and those of in-process clients, which report their own share
 * ({@link threadCpuMs}) so that the servers' work is the difference.
 */
export function processCpuMs(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** What {@link probeLoopStalls} saw of this process's event loop. */
export interface LoopStalls {
  /** `monitorEventLoopDelay` (1 ms resolution): the longest delay of its timer, ms. */
  delayMaxMs: number
  /** Its p99, ms. */
  delayP99Ms: number
  /** A 1 ms `setInterval`: the longest gap between two of its callbacks, ms (minus nothing: a stall plus ~1 ms). */
  intervalMaxGapMs: number
}

/**
 * Watches this process's event loop until `stop`, two ways: `perf_hooks.monitorEventLoopDelay` at 1 ms
 * resolution (max and p99) and a 1 ms interval timer noting the longest gap between its callbacks.
 */
export function probeLoopStalls(): { stop(): LoopStalls } {
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  let last = performance.now()
  let maxGap = 0
  const t = setInterval(() => {
    const now = performance.now()
    maxGap = Math.max(maxGap, now - last)
    last = now
  }, 1)
  return {
    stop: () => {
      clearInterval(t)
      maxGap = Math.max(maxGap, performance.now() - last)
      h.disable()
      return { delayMaxMs: h.max / 1e6, delayP99Ms: h.percentile(99) / 1e6, intervalMaxGapMs: maxGap }
    },
  }
}
