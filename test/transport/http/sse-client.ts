/**
 * The SSE side of the event tests (events.test.ts, and at scale test/reliability/fanout.test.ts): a minimal SSE
 * client over node:http that records everything it reads, and the service with its REST app on a free port.
 */
import http from 'node:http'
import type { Test } from 'tap'
import type { EventHubOptions } from '../../../src/events/hub.js'
import { buildApp } from '../../../src/transport/http/app.js'
import type { EventQuery, Store } from '../../../src/store/index.js'
import type { TestDatabase } from '../../store/pg-helper.js'
import { serviceFixture } from '../../service/service-fixture.js'

export interface SseEvent {
  id?: string
  event?: string
  data: string
}

/** A minimal SSE client over node:http that records everything it reads. */
export interface SseClient {
  status: number
  headers: http.IncomingHttpHeaders
  events: SseEvent[]
  comments: string[]
  retry?: number
  ended: boolean
  res: http.IncomingMessage
  close(): void
  until(cond: () => boolean, what: string, ms?: number): Promise<void>
}

export async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/**
 * A `data` listener (of a response with `setEncoding('utf8')`) that splits the SSE stream as the service writes it
 * (`\n` line ends, a blank line after each block) into events, comment lines and `retry:` fields, as they complete.
 */
export function sseParser(on: { event(ev: SseEvent): void; comment?(text: string): void; retry?(ms: number): void }): (chunk: string) => void {
  let buf = ''
  return (chunk) => {
    buf += chunk
    let i: number
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i)
      buf = buf.slice(i + 2)
      const ev: SseEvent = { data: '' }
      let hasField = false
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) on.comment?.(line.slice(1).trim())
        else if (line.startsWith('retry: ')) on.retry?.(Number(line.slice(7)))
        else if (line.startsWith('id: ')) (ev.id = line.slice(4)), (hasField = true)
        else if (line.startsWith('event: ')) (ev.event = line.slice(7)), (hasField = true)
        else if (line.startsWith('data: ')) (ev.data += line.slice(6)), (hasField = true)
      }
      if (hasField) on.event(ev)
    }
  }
}

const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity })

export function connect(base: string, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = http.get(base + path, { agent, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const c: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: [],
        comments: [],
        ended: false,
        res,
        close: () => req.destroy(),
        until: (cond, what, ms) => until(cond, what, ms),
      }
      res.setEncoding('utf8')
      res.on(
        'data',
        sseParser({
          event: (ev) => c.events.push(ev),
          comment: (text) => c.comments.push(text),
          retry: (ms) => (c.retry = ms),
        }),
      )
      res.on('end', () => (c.ended = true))
      res.on('close', () => (c.ended = true))
      res.on('error', () => (c.ended = true))
      resolve(c)
    })
    req.on('error', reject)
  })
}

export const seqs = (c: SseClient) => c.events.filter((e) => e.id !== undefined).map((e) => Number(e.id))

export async function storedSeqs(store: Store, since: number, q: Omit<EventQuery, 'since' | 'limit'> = {}): Promise<number[]> {
  const out: number[] = []
  for (;;) {
    const page = await store.events.list({ since: out.length ? out[out.length - 1]! : since, limit: 1000, ...q })
    out.push(...page.map((e) => e.seq))
    if (page.length < 1000) return out
  }
}

export async function sseFixture(t: Test, db: TestDatabase, hubOpts: Omit<EventHubOptions, 'source'> = {}) {
  const fx = await serviceFixture(t, db, 'demo', { hub: { pollIntervalMs: 10, ...hubOpts } })
  const hub = fx.hub
  const app = buildApp({ service: fx.service, sseHeartbeatMs: 200 })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const addr = app.server.address()
  if (!addr || typeof addr === 'string') throw new Error('no address')
  const base = `http://127.0.0.1:${addr.port}`
  const post = async (path: string, body: unknown, method = 'POST') => {
    const r = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: r.status, body: await r.json() }
  }
  return { ...fx, hub, app, base, post }
}
