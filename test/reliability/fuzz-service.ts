/**
 * The one real service the fuzz runs hit (test/reliability/fuzz-*.test.ts): `apmatrix serve` as a child process,
 * from the build in dist/ as `npm start` runs it, on a fresh SQLite file, REST and gRPC on ephemeral
 * loopback ports, two emulated hosts: `local` (profile `demo`) and `sf` (`spec-fixture`). Its own
 * process, so that its memory is its own (measured after forced GCs through test/reliability/memory-probe.mjs)
 * and a crash shows: the process exits, or its stray-error guard logs an error. Also: the health checks
 * of the end of a run.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { protoPath as healthProtoPath } from 'grpc-health-check'
import type { Test } from 'tap'
import { projectRoot } from '../../src/paths.js'

/** The hosts of the fuzzed service: name -> emulator profile. */
export const FUZZ_HOSTS = { local: 'demo', sf: 'spec-fixture' } as const

const BIN = path.join(projectRoot, 'bin/apmatrix.mjs')
const PROBE = path.join(projectRoot, 'test/reliability/memory-probe.mjs')
const READY_REST = /^apmatrix serving REST on (http:\/\/\S+)$/
const READY_GRPC = /^apmatrix serving gRPC on (\S+)$/

/** Process memory after forced full GCs, in bytes. */
export interface MemoryFigures {
  heapUsed: number
  rss: number
  external: number
}

/** The running service. */
export interface FuzzService {
  httpUrl: string
  grpcAddr: string
  pid: number
  /** True while the process runs. */
  alive(): boolean
  /** Lines the service logged at level error or above (it logs nothing below). */
  errorLines(): string[]
  /** Its memory after forced GCs. */
  memory(): Promise<MemoryFigures>
  /** SIGTERM, then the exit (a graceful stop exits 0). */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Starts `apmatrix serve`; killed (if still running) and its folder removed at `t`'s teardown. */
export async function startFuzzService(t: Test): Promise<FuzzService> {
  if (!fs.existsSync(path.join(projectRoot, 'dist/src/cli/main.js'))) throw new Error('dist/ is missing: build first (npm run build)')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-fuzz-'))
  const proc: ChildProcess = spawn(process.execPath, ['--expose-gc', '--import', PROBE, BIN, 'serve'], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: {
      ...process.env,
      DATABASE_URL: `file:${path.join(dir, 'db.sqlite')}`,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_HOSTS: Object.entries(FUZZ_HOSTS)
        .map(([n, p]) => `${n}=${p}`)
        .join(','),
      APMATRIX_LOG_LEVEL: 'error',
    },
  })
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      exit = { code, signal }
      resolve(exit)
    }),
  )
  const stdout: string[] = []
  const stderr: string[] = []
  for (const [stream, into] of [
    [proc.stdout!, stdout],
    [proc.stderr!, stderr],
  ] as const) {
    let buf = ''
    stream.setEncoding('utf8')
    stream.on('data', (d: string) => {
      buf += d
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        into.push(buf.slice(0, i))
        buf = buf.slice(i + 1)
      }
    })
  }
  t.teardown(async () => {
    if (!exit) {
      proc.kill('SIGKILL')
      await exited
    }
    fs.rmSync(dir, { recursive: true, force: true })
  })

  // A hang guard, not a speed limit: a start on a loaded 2-core machine has taken more than 30 s.
  const end = Date.now() + 90_000
  let rest: RegExpExecArray | undefined
  let rpc: RegExpExecArray | undefined
  while (!rest || !rpc) {
    if (exit || Date.now() > end)
      throw new Error(`apmatrix serve did not come up (${exit ? `exit ${JSON.stringify(exit)}` : 'timed out'}): ${stderr.join('\n')}`)
    await new Promise((r) => setTimeout(r, 20))
    rest = stdout.map((l) => READY_REST.exec(l)).find((m) => m) ?? undefined
    rpc = stdout.map((l) => READY_GRPC.exec(l)).find((m) => m) ?? undefined
  }

  return {
    httpUrl: rest[1]!,
    grpcAddr: rpc[1]!,
    pid: proc.pid!,
    alive: () => exit === undefined,
    errorLines: () => stderr.filter((l) => l.trim() !== ''),
    memory: () =>
      new Promise<MemoryFigures>((resolve, reject) => {
        const onMessage = (m: { type?: string } & Partial<NodeJS.MemoryUsage>) => {
          if (m?.type !== 'memory') return
          proc.off('message', onMessage)
          resolve({ heapUsed: m.heapUsed!, rss: m.rss!, external: m.external! })
        }
        proc.on('message', onMessage)
        if (!proc.send({ type: 'memory' })) reject(new Error('the service process has no IPC channel'))
      }),
    stop: async () => {
      proc.kill('SIGTERM')
      return exited
    },
  }
}

/** Waits until /readyz answers 200 (the reconciler took its leases), for at most `ms`. */
export async function waitReady(httpUrl: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    const r = await fetch(`${httpUrl}/readyz`).catch(() => undefined)
    if (r?.status === 200) return
    if (Date.now() > end) throw new Error(`not ready after ${ms} ms (last /readyz: ${r?.status ?? 'no answer'})`)
    await new Promise((res) => setTimeout(res, 100))
  }
}

/** What the end-of-run health checks saw. */
export interface HealthAnswers {
  healthz: number
  readyz: number
  /** grpc.health.v1 Check of the whole server ('') and of every API service. */
  grpc: Record<string, string>
}

/** Asks /healthz, /readyz and the gRPC health service (overall and per API service). */
export async function healthAnswers(svc: FuzzService, services: readonly string[]): Promise<HealthAnswers> {
  const healthz = (await fetch(`${svc.httpUrl}/healthz`)).status
  const readyz = (await fetch(`${svc.httpUrl}/readyz`)).status
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true })
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: new (addr: string, creds: grpc.ChannelCredentials) => grpc.Client } } }
  }
  const client = new pkg.grpc.health.v1.Health(svc.grpcAddr, grpc.credentials.createInsecure()) as grpc.Client & {
    Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void
  }
  const out: Record<string, string> = {}
  try {
    for (const s of ['', ...services]) {
      out[s || '(server)'] = await new Promise<string>((resolve) =>
        client.Check({ service: s }, (err, res) => resolve(err ? `error ${grpc.status[err.code]}` : (res?.status ?? 'none'))),
      )
    }
  } finally {
    client.close()
  }
  return { healthz, readyz, grpc: out }
}

/** `12.3 MiB` */
export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

/** Counts of named outcomes, printed sorted. */
export class Tally {
  readonly counts = new Map<string, number>()
  add(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0
  }
  toString(): string {
    return [...this.counts]
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([k, n]) => `${k}: ${n}`)
      .join(', ')
  }
}

/**
 * Heap growth allowed between the warm-up and the end of a run, after forced GCs: the state a run
 * leaves (devices, masks and audit pages in the read cache, the event hub's window) is a few MiB; a
 * leak of 1 KiB per request would add 10 MiB on its own.
 */
export const HEAP_SLACK = 24 * 1024 * 1024

/**
 * The checks of the end of a run: the process still runs and logged no error (its stray-error guard
 * logs what would have crashed it); /healthz, /readyz and gRPC health say healthy; the heap after forced
 * GCs is within {@link HEAP_SLACK} of `baseline`; SIGTERM stops it with exit 0. Prints the figures.
 */
export async function endOfRunChecks(t: Test, svc: FuzzService, services: readonly string[], baseline: MemoryFigures): Promise<void> {
  t.ok(svc.alive(), 'the service process still runs')
  t.same(svc.errorLines(), [], 'the service logged no error (no stray error caught, no 500)')
  const health = await healthAnswers(svc, services)
  t.comment(`after the run: /healthz ${health.healthz}, /readyz ${health.readyz}, gRPC health ${JSON.stringify(health.grpc)}`)
  t.equal(health.healthz, 200, '/healthz')
  t.equal(health.readyz, 200, '/readyz')
  for (const [service, status] of Object.entries(health.grpc)) t.equal(status, 'SERVING', `gRPC health of ${service}`)
  const after = await svc.memory()
  t.comment(
    `service memory after forced GCs: heap ${mib(baseline.heapUsed)} after the warm-up -> ${mib(after.heapUsed)} after the run (${after.heapUsed >= baseline.heapUsed ? '+' : ''}${mib(after.heapUsed - baseline.heapUsed)}); ` +
      `rss ${mib(baseline.rss)} -> ${mib(after.rss)}; external ${mib(baseline.external)} -> ${mib(after.external)}`,
  )
  t.ok(after.heapUsed - baseline.heapUsed < HEAP_SLACK, `heap back near its baseline (${mib(after.heapUsed - baseline.heapUsed)}, allowed ${mib(HEAP_SLACK)})`)
  t.same(await svc.stop(), { code: 0, signal: null }, 'SIGTERM: a graceful stop, exit 0')
}

/** JSON of a value with every long string, array or byte array cut (a shrunk case can hold a 2 MiB body). */
export function brief(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === 'string' && x.length > 200) return `${x.slice(0, 200)}... (${x.length} characters)`
    if (x instanceof Uint8Array || (x && typeof x === 'object' && (x as { type?: unknown }).type === 'Buffer')) {
      const b = Buffer.from(x instanceof Uint8Array ? x : ((x as { data: number[] }).data ?? []))
      return `${b.length} bytes: ${b.subarray(0, 100).toString('hex')}${b.length > 100 ? '...' : ''}`
    }
    if (Array.isArray(x) && x.length > 50) return [...x.slice(0, 50), `... (${x.length} items)`]
    return x
  })
}

/** What a failed fast-check run reports: seed and path (to replay it), the shrunk counterexample (cut), the error. */
export function failureReport(result: {
  seed: number
  counterexamplePath: string | null
  counterexample: unknown
  errorInstance: unknown
  numShrinks: number
}): string {
  const err = result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance)
  return `property failed (seed ${result.seed}, path ${JSON.stringify(result.counterexamplePath)}, shrunk ${result.numShrinks} times): ${err.slice(0, 2000)}\n  minimal case: ${brief(result.counterexample)}`
}
