/**
 * Watching a compacted event log over both transports (docs/api.md (Events) Retention, Bookmarks), on SQLite
 * and PostgreSQL, over real sockets: a position below what retention kept is refused before the stream opens
 * (REST 410 problem+json with `oldestSeq` and a hint to re-list, for `since` and for `Last-Event-ID`; gRPC
 * OUT_OF_RANGE with `code` GONE, `oldest-seq` and the rich status), `since=0` starts at the oldest event
 * kept, a stream that retention overtakes ends with GONE on both (never a silent hole), and an idle watch
 * receives bookmarks (SSE `Bookmark` with the position as its id; gRPC `Event.bookmark`) it resumes from
 * without losing anything.
 */
import http from 'node:http'
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import type { Event__Output } from '../../src/generated/grpc/apmatrix/v1/Event.js'
import type { WatchRequest } from '../../src/generated/grpc/apmatrix/v1/WatchRequest.js'
import type { Store } from '../../src/store/index.js'
import { decodeRichStatus } from '../../src/transport/grpc/rich-status.js'
import { buildApp } from '../../src/transport/http/app.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { compactEvents } from '../store/store-fixture.js'
import { type Clients, grpcFixture } from './grpc/grpc-fixture.js'

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

async function append(store: Store, n: number, host = 'local'): Promise<number[]> {
  const seqs: number[] = []
  for (let i = 0; i < n; i++) seqs.push((await store.events.append({ host, kind: 'queue', name: `q${i}`, type: 'QueueBound' })).seq)
  return seqs
}

interface SseMessage {
  id?: string
  event?: string
  data: string
}

/** An SSE stream over node:http, recording every message. */
function sse(base: string, path: string, headers: Record<string, string> = {}) {
  const messages: SseMessage[] = []
  const state = { status: 0, ended: false, body: '' }
  const req = http.get(base + path, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
    state.status = res.statusCode ?? 0
    res.setEncoding('utf8')
    let buf = ''
    res.on('data', (chunk: string) => {
      state.body += chunk
      buf += chunk
      let i: number
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const m: SseMessage = { data: '' }
        for (const line of buf.slice(0, i).split('\n')) {
          if (line.startsWith('id: ')) m.id = line.slice(4)
          else if (line.startsWith('event: ')) m.event = line.slice(7)
          else if (line.startsWith('data: ')) m.data += line.slice(6)
        }
        buf = buf.slice(i + 2)
        if (m.event) messages.push(m)
      }
    })
    res.on('end', () => (state.ended = true))
    res.on('close', () => (state.ended = true))
  })
  req.on('error', () => (state.ended = true))
  return { messages, state, close: () => req.destroy() }
}

/** Opens a Watch and records messages and the final status. */
function watch(c: Clients, req: WatchRequest) {
  const got: Event__Output[] = []
  const out: { status?: grpc.StatusObject } = {}
  const call = c.events.Watch(req)
  call.on('data', (e: Event__Output) => got.push(e))
  call.on('error', () => undefined)
  call.on('status', (s) => (out.status = s))
  return { call, got, out }
}

forEachDatabase(t, async (t, db) => {
  // No periodic poll: the test decides when the hub reads the log (hub.flush), so compaction can land between.
  const fx = await grpcFixture(t, db, { hub: { pollIntervalMs: 3_600_000, ringSize: 10 } })
  const app = buildApp({ service: fx.service, docs: false })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const addr = app.server.address()
  if (!addr || typeof addr === 'string') throw new Error('no address')
  const base = `http://127.0.0.1:${addr.port}`
  const { store, hub, clients } = fx

  const seqs = await append(store, 60)
  const floor = await compactEvents(store, 20)
  await hub.flush()
  t.equal(floor, seqs[39])

  await t.test('REST: since or Last-Event-ID below the oldest kept: 410 problem+json with oldestSeq and a hint to re-list', async (t) => {
    for (const [what, path, headers] of [
      ['since', `/v1/events?since=${seqs[10]}`, {}],
      ['Last-Event-ID', '/v1/events?since=0', { 'last-event-id': String(floor - 1) }],
    ] as const) {
      const r = await fetch(base + path, { headers })
      t.equal(r.status, 410, what)
      t.match(r.headers.get('content-type'), /^application\/problem\+json/)
      const body = (await r.json()) as { detail: string }
      t.match(body, { type: 'urn:apmatrix:problem:gone', status: 410, title: 'Gone', code: 'GONE', oldestSeq: floor, requestId: /./ }, what)
      t.match(body.detail, /re-list/)
    }
  })

  await t.test('REST: since at the floor, and since=0, start with the oldest event kept', async (t) => {
    for (const path of [`/v1/events?since=${floor}`, '/v1/events?since=0']) {
      const s = sse(base, path)
      await until(() => s.messages.length >= 20, `20 events from ${path}`)
      t.same(
        s.messages.map((m) => Number(m.id)),
        seqs.slice(40),
        path,
      )
      s.close()
    }
  })

  await t.test('gRPC: since_seq below the oldest kept is OUT_OF_RANGE, code GONE, oldest-seq, rich status', async (t) => {
    const w = watch(clients, { since_seq: String(seqs[10]) })
    await until(() => w.out.status !== undefined, 'the status')
    const st = w.out.status!
    t.equal(st.code, grpc.status.OUT_OF_RANGE)
    t.equal(st.metadata.get('code')[0], 'GONE')
    t.equal(st.metadata.get('oldest-seq')[0], String(floor))
    t.match(st.details, /re-list/)
    const rich = decodeRichStatus(st.metadata.get('grpc-status-details-bin')[0] as Buffer)
    t.match(rich.details.find((d) => d.type === 'google.rpc.ErrorInfo')?.value, { reason: 'GONE', metadata: { oldestSeq: String(floor) } })
    t.same(w.got, [])
    const all = watch(clients, { since_seq: '0' })
    await until(() => all.got.length >= 20, '20 events')
    t.same(
      all.got.map((e) => Number(e.seq)),
      seqs.slice(40),
      'since_seq 0: the oldest kept onwards',
    )
    all.call.cancel()
  })

  await t.test('a stream that retention overtakes ends with GONE on both transports, never with a hole', async (t) => {
    await until(() => hub.size === 0, 'earlier streams closed')
    const s = sse(base, '/v1/events')
    const w = watch(clients, { from_now: true })
    await until(() => hub.size === 2 && s.state.status === 200, 'both subscribed')
    await hub.flush()
    const more = await append(store, 50)
    const next = await compactEvents(store, 10)
    t.equal(next, more[39])
    await hub.flush()
    await until(() => s.state.ended && w.out.status !== undefined, 'both ended')
    const last = s.messages.at(-1)!
    t.equal(last.event, 'error')
    const err = JSON.parse(last.data)
    t.match(err, { code: 'GONE', oldestSeq: next })
    t.notOk('resumeSeq' in err, 'no position to resume from: the client re-lists')
    t.same(
      s.messages.filter((m) => m.event !== 'error'),
      [],
      'no event with a hole before it',
    )
    t.equal(w.out.status!.code, grpc.status.OUT_OF_RANGE)
    t.equal(w.out.status!.metadata.get('oldest-seq')[0], String(next))
    t.same(w.got, [])
  })

  await t.test('bookmarks on an idle watch (SSE ?bookmarks=1, gRPC bookmark_seconds 1), and resuming from one', async (t) => {
    await until(() => hub.size === 0, 'earlier streams closed')
    const s = sse(base, '/v1/events?host=other&bookmarks=1')
    const w = watch(clients, { from_now: true, host: 'other', bookmark_seconds: 1 })
    await until(() => hub.size === 2 && s.state.status === 200, 'both subscribed')
    const busy = await append(store, 5)
    await hub.flush()
    const newest = busy.at(-1)!
    await until(
      () => s.messages.some((m) => m.event === 'Bookmark' && Number(m.id) === newest) && w.got.some((e) => e.bookmark && Number(e.seq) === newest),
      'a bookmark at the newest event on both',
    )
    for (const m of s.messages) {
      t.equal(m.event, 'Bookmark', 'SSE: only bookmarks on an idle watch')
      t.same(JSON.parse(m.data), { seq: Number(m.id), type: 'Bookmark' })
    }
    for (const e of w.got) t.match(e, { bookmark: true, type: 'Bookmark', host: '', kind: '', data_json: '' }, 'gRPC: only bookmarks')
    s.close()
    w.call.cancel()
    await until(() => hub.size === 0, 'both closed')
    // An EventSource would reconnect with the bookmark's id as Last-Event-ID: it gets what follows, nothing else.
    const resumed = sse(base, '/v1/events?host=other', { 'last-event-id': String(newest) })
    const again = watch(clients, { since_seq: String(newest), host: 'other' })
    await until(() => hub.size === 2 && resumed.state.status === 200, 'both resumed')
    await append(store, 3)
    const [mine] = await append(store, 1, 'other')
    await hub.flush()
    await until(() => resumed.messages.length === 1 && again.got.length === 1, 'the one event of host other')
    t.same([Number(resumed.messages[0]!.id), Number(again.got[0]!.seq)], [mine, mine])
    resumed.close()
    again.call.cancel()
  })

  await t.test('bad bookmark periods are INVALID_ARGUMENT on both', async (t) => {
    for (const v of ['abc', '3601', '-1']) {
      const r = await fetch(`${base}/v1/events?bookmarks=${v}`)
      t.equal(r.status, 400, `bookmarks=${v}`)
      t.match(await r.json(), { code: 'INVALID_ARGUMENT', violations: [{ field: 'bookmarks' }] })
    }
    const w = watch(clients, { bookmark_seconds: 3601 })
    await until(() => w.out.status !== undefined, 'the status')
    t.equal(w.out.status!.code, grpc.status.INVALID_ARGUMENT)
  })
})
