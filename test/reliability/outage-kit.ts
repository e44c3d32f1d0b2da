/**
 * Probes of the outage tests (store-outage, store-outage-matrix, replicas-outage): the service they fault, gRPC
 * health through the standard health service, and one REST call timed and classified, so a test can say how
 * every request of a fault ended and how long the slowest one took.
 */
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { protoPath as healthProtoPath } from 'grpc-health-check'
import { restClient, type RestCall } from '../scenario/rest-client.js'
import { type CliProcess, readyLine, spawnCli } from './cli-process.js'

export interface HealthClient extends grpc.Client {
  Check(req: { service: string }, opts: { deadline: number }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void
}

/** A client of `grpc.health.v1.Health` at `target` (plaintext). */
export function healthClient(target: string): HealthClient {
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true })
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } }
  return new pkg.grpc.health.v1.Health(target, grpc.credentials.createInsecure()) as unknown as HealthClient
}

/** The overall health status (`SERVING`, `NOT_SERVING`), or the error's text when the call failed. */
export function health(c: HealthClient, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) =>
    c.Check({ service: '' }, { deadline: Date.now() + timeoutMs }, (err, res) => resolve(err ? `error: ${err.code} ${err.details}` : res!.status)),
  )
}

/**
 * `apmatrix serve` on `databaseUrl` for an outage test: the demo host in process, errors only in its log, the
 * given store timeout, a resync every second, and `env` on top. Resolves once both listen lines are out, with a
 * REST client and a gRPC health client (closed at t's teardown).
 */
export async function startOutageService(
  t: { teardown(fn: () => unknown): void },
  databaseUrl: string,
  storeTimeoutMs: number,
  env: Record<string, string> = {},
): Promise<{ cli: CliProcess; call: RestCall; hc: HealthClient }> {
  const cli = spawnCli(t, ['serve'], {
    DATABASE_URL: databaseUrl,
    APMATRIX_HTTP_ADDR: '127.0.0.1:0',
    APMATRIX_GRPC_ADDR: '127.0.0.1:0',
    APMATRIX_PROFILE: 'demo',
    APMATRIX_EMULATOR_ADDR: '',
    APMATRIX_LOG_LEVEL: 'error',
    APMATRIX_STORE_TIMEOUT_MS: String(storeTimeoutMs),
    APMATRIX_RESYNC_MS: '1000',
    ...env,
  })
  const rest = await readyLine(cli, /^apmatrix serving REST on (http:\/\/\S+)$/, 'the REST line')
  const grpcLine = await readyLine(cli, /^apmatrix serving gRPC on (\S+)$/, 'the gRPC line')
  if (!rest || !grpcLine) throw new Error(`the service did not start: ${cli.stderr.join('\n')}`)
  const hc = healthClient(grpcLine[1]!)
  t.teardown(() => hc.close())
  return { cli, call: restClient(rest[1]!), hc }
}

/** One timed request: what it was, when it started and ended (ms, performance.now()), and how it ended. */
export interface Probe {
  what: string
  startedAt: number
  endedAt: number
  /** HTTP status; 0 when no answer came (connection failed or the client's own 15 s limit). */
  status: number
  /** `code` of a problem+json body. */
  code?: string
  retryAfter?: string | null
  /** The Apmatrix-Stale header of a read. */
  stale?: string | null
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body?: any
}

/** Runs one REST call and records it; never rejects (a failed connection is status 0). */
export async function probe(call: RestCall, what: string, method: string, path: string, body?: unknown): Promise<Probe> {
  const startedAt = performance.now()
  try {
    const r = await call(method, path, body === undefined ? {} : { body })
    return {
      what,
      startedAt,
      endedAt: performance.now(),
      status: r.status,
      code: typeof r.body === 'object' && r.body ? r.body.code : undefined,
      retryAfter: r.headers.get('retry-after'),
      stale: r.headers.get('apmatrix-stale'),
      body: r.body,
    }
  } catch (e) {
    return { what, startedAt, endedAt: performance.now(), status: 0, code: (e as Error).name }
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A fixed-width text table for t.comment. */
export function table(head: string[], rows: Array<Array<string | number>>): string {
  const cells = [head, ...rows.map((r) => r.map(String))]
  const w = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)))
  return cells.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ')).join('\n')
}

/** True when a label map read back from the database equals the one written (key order aside). */
export function sameLabels(stored: Record<string, string> | undefined, sent: Record<string, string>): boolean {
  if (!stored) return false
  const a = Object.keys(stored).sort()
  const b = Object.keys(sent).sort()
  return a.length === b.length && a.every((k, i) => k === b[i] && stored[k] === sent[k])
}
