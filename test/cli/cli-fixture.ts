/**
 * Helpers of the client-verb tests: a real service in-process (startService on a temporary SQLite file,
 * REST on an ephemeral port, the `demo` emulated host) and the `apmatrix` entry driven through
 * `run(argv, io)` with in-memory streams.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import type { Test } from 'tap'
import { loadConfig } from '../../src/config.js'
import { startService, type RunningService } from '../../src/main.js'
import { run } from '../../src/cli/main.js'
import type { CliIo } from '../../src/cli/command.js'

/** What a command run printed and returned. */
export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

/** A writable that keeps what was written. */
export class Sink extends Writable {
  text = ''
  isTTY = false
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString()
    cb()
  }
}

/** Runs `apmatrix <argv>` in-process against `server` (through APMATRIX_SERVER unless --server is given). */
export async function cli(server: string, argv: string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv; tty?: boolean } = {}): Promise<CliResult> {
  const stdout = new Sink()
  const stderr = new Sink()
  stderr.isTTY = opts.tty === true
  const stdin = new PassThrough()
  stdin.end(opts.stdin ?? '')
  const io: CliIo = { stdin, stdout, stderr, env: { APMATRIX_SERVER: server, ...opts.env } }
  const code = await run(argv, io)
  return { code, stdout: stdout.text, stderr: stderr.text }
}

/** A running service plus a JSON fetch helper for setup and checks that do not go through the CLI. */
export interface ServerFixture {
  svc: RunningService
  url: string
  dir: string
  api<T = any>(method: string, p: string, body?: unknown): Promise<{ status: number; body: T }>
}

/**
 * Starts the real service on a fresh SQLite file; closed and removed at `t`'s teardown. `settings` adds
 * service settings (e.g. `{ hosts: 'local=demo,sf=spec-fixture' }`).
 */
export async function startServer(t: Test, settings: Record<string, string> = {}): Promise<ServerFixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-cli-'))
  const cfg = loadConfig({ http: '127.0.0.1:0', grpc: '127.0.0.1:0', databaseUrl: `file:${path.join(dir, 'db.sqlite')}`, logLevel: 'silent', ...settings }, {})
  const svc = await startService(cfg)
  t.teardown(async () => {
    await svc.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const url = svc.httpUrl
  return {
    svc,
    url,
    dir,
    async api(method, p, body) {
      const res = await fetch(url + p, {
        method,
        headers: body === undefined ? {} : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
      const text = await res.text()
      return { status: res.status, body: text ? JSON.parse(text) : undefined }
    },
  }
}

/**
 * The base URL of a server whose `GET /v1/events` streams: the fixture's own when startService serves
 * events, else a second REST app over the same store with an {@link EventHub} (the same route code,
 * src/transport/http/routes/events.ts), for as long as the composition root does not wire the hub.
 */
export async function eventsServer(t: Test, fx: ServerFixture): Promise<string> {
  const ac = new AbortController()
  const res = await fetch(`${fx.url}/v1/events?since=0`, { signal: ac.signal })
  ac.abort()
  if (res.status === 200) return fx.url
  const { EventHub } = await import('../../src/events/hub.js')
  const { buildApp } = await import('../../src/transport/http/app.js')
  const { ApmatrixService } = await import('../../src/service/index.js')
  const { StaticHostRegistry } = await import('../../src/hosts/managed-host.js')
  const hub = new EventHub({ source: fx.svc.store.events, pollIntervalMs: 50 })
  await hub.start()
  const service = new ApmatrixService({ store: fx.svc.store, hosts: new StaticHostRegistry(fx.svc.hosts), reconciler: fx.svc.reconciler, hub })
  const app = buildApp({ service, docs: false })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => {
    await app.close()
    await hub.close()
  })
  const addr = app.server.address() as { port: number }
  return `http://127.0.0.1:${addr.port}`
}

/** Writes a JSON document into the fixture's folder and returns its path. */
export function writeDoc(fx: ServerFixture, name: string, doc: unknown): string {
  const p = path.join(fx.dir, name)
  fs.writeFileSync(p, JSON.stringify(doc))
  return p
}
