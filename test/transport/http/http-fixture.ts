/**
 * The REST app over a real socket: a real service (test/service/service-fixture.ts) behind
 * buildApp, listening on 127.0.0.1 with an ephemeral port; requests go through fetch.
 */
import type { Test } from 'tap'
import { buildApp, type AppOptions } from '../../../src/transport/http/app.js'
import type { TestDatabase } from '../../store/pg-helper.js'
import { serviceFixture, type ServiceFixture } from '../../service/service-fixture.js'

export interface ApiFixture extends ServiceFixture {
  base: string
  /** fetch against the app: JSON bodies are serialised; returns status, headers, parsed body (JSON or text). */
  call(method: string, path: string, opts?: { body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<ApiResponse>
}

export interface ApiResponse {
  status: number
  headers: Headers
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any
  text: string
}

/** Starts the app (with `app` options besides the service); closed at t's teardown. */
export async function apiFixture(t: Test, db: TestDatabase, opts: { bodyLimit?: number; app?: Omit<AppOptions, 'service'> } = {}): Promise<ApiFixture> {
  const fx = await serviceFixture(t, db)
  const app = buildApp({ ...opts.app, service: fx.service, bodyLimit: opts.bodyLimit })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const addr = app.server.address()
  if (!addr || typeof addr === 'string') throw new Error('no address')
  const base = `http://127.0.0.1:${addr.port}`
  const call: ApiFixture['call'] = async (method, path, o = {}) => {
    const headers: Record<string, string> = { ...(o.headers ?? {}) }
    let body: string | undefined = o.raw
    if (o.body !== undefined) {
      body = JSON.stringify(o.body)
      headers['content-type'] ??= 'application/json'
    }
    const res = await fetch(base + path, { method, headers, body })
    const text = await res.text()
    const type = res.headers.get('content-type') ?? ''
    return { status: res.status, headers: res.headers, text, body: type.includes('json') && text ? JSON.parse(text) : text }
  }
  return { ...fx, base, call }
}
