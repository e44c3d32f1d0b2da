/**
 * `GET /v1/events` (server-sent events) over a real socket, on SQLite and PostgreSQL (issue 4 §2, §6):
 * events arrive as they are written, resume with `since` and with `Last-Event-ID` with no gap and no
 * duplicate, filters (host, kind, type, libvirt names), bad parameters, heartbeats, unsubscribe on
 * disconnect, a lagging client told to resume, shutdown, 100 concurrent clients, and the real curl.
 */
import { spawn } from 'node:child_process'
import t from 'tap'
import { LIBVIRT_TO_EVENT_TYPE, libvirtLifecycleOf, toLibvirtEvent } from '../../../src/events/libvirt-lifecycle.js'
import { buildApp } from '../../../src/transport/http/app.js'
import { StaticHostRegistry } from '../../../src/hosts/managed-host.js'
import { ApmatrixService } from '../../../src/service/index.js'
import { forEachDatabase } from '../../store/pg-helper.js'
import { serviceFixture, U1, U2, U3 } from '../../service/service-fixture.js'
import { connect, type SseClient, seqs, sseFixture, storedSeqs, until } from './sse-client.js'

/** Reads a whole non-SSE answer (errors). */
async function get(base: string, path: string, headers: Record<string, string> = {}) {
  const r = await fetch(base + path, { headers })
  const text = await r.text()
  return { status: r.status, type: r.headers.get('content-type') ?? '', body: text.startsWith('{') ? JSON.parse(text) : text }
}

t.test('libvirt lifecycle map: one-to-one on a subset, only for matrix devices', async (t) => {
  const types = Object.values(LIBVIRT_TO_EVENT_TYPE)
  t.equal(new Set(types).size, types.length, 'no two libvirt names share a type')
  t.same(LIBVIRT_TO_EVENT_TYPE, { CREATED: 'MdevStarted', DELETED: 'MdevStopped', DEFINED: 'MdevDefined', UNDEFINED: 'MdevUndefined', UPDATE: 'MdevUpdated' })
  for (const [name, type] of Object.entries(LIBVIRT_TO_EVENT_TYPE)) t.equal(libvirtLifecycleOf({ kind: 'mdev', type }), name)
  t.equal(libvirtLifecycleOf({ kind: 'mdev', type: 'MdevReconfigured' }), null)
  t.equal(libvirtLifecycleOf({ kind: 'masks', type: 'MasksChanged' }), null)
  t.equal(libvirtLifecycleOf({ kind: 'host', type: 'MdevDefined' }), null, 'only events about matrix devices')
  t.same(toLibvirtEvent({ kind: 'mdev', type: 'MdevStarted', name: U1 }), { lifecycle: 'CREATED', device: `mdev_${U1.replace(/-/g, '_')}` })
})

forEachDatabase(t, async (t, db) => {
  const fx = await sseFixture(t, db)
  const { base, store, hub, post } = fx
  t.equal((await post('/v1/hosts/local/masks', { apmask: '-5,-6,-7' }, 'PUT')).status, 200)

  t.test('events arrive as they are written (create → MdevDefined)', async (t) => {
    await hub.flush()
    const c = await connect(base, '/v1/events')
    t.equal(c.status, 200)
    t.match(c.headers['content-type'], /^text\/event-stream/)
    t.match(c.headers['cache-control'], /no-cache/)
    t.ok(c.headers['x-request-id'], 'request id header')
    await c.until(() => c.comments.length > 0, 'the opening comment')
    t.equal(c.retry, 2000)
    const created = await post('/v1/hosts/local/mdevs', { uuid: U1, spec: { adapters: [5], domains: [4] } })
    t.equal(created.status, 201)
    await c.until(() => c.events.length >= 1, 'MdevDefined')
    const [e] = c.events
    t.equal(e!.event, 'MdevDefined')
    const stored = (await store.events.list({ since: Number(e!.id) - 1, limit: 1 }))[0]!
    t.equal(Number(e!.id), stored.seq)
    t.same(JSON.parse(e!.data), {
      seq: stored.seq,
      time: stored.time.toISOString(),
      host: 'local',
      kind: 'mdev',
      name: U1,
      type: 'MdevDefined',
      message: stored.message,
      requestId: stored.requestId,
      actor: stored.actor,
      data: stored.data,
    })
    c.close()
  })

  t.test('resume with since, then with Last-Event-ID: no gap, no duplicate', async (t) => {
    const start = await store.events.lastSeq()
    await post('/v1/hosts/local/mdevs', { uuid: U2, spec: { adapters: [6], domains: [4] } })
    await post('/v1/hosts/local/mdevs', { uuid: U3, spec: { adapters: [7], domains: [4] } })
    const a = await connect(base, `/v1/events?since=${start}`)
    await a.until(() => a.events.length >= 2, 'the replayed events')
    a.close()
    const lastId = a.events[a.events.length - 1]!.id!
    // Written while no one is connected.
    await post(`/v1/hosts/local/mdevs/${U2}`, { spec: { adapters: [6], domains: [4, 5] } }, 'PUT')
    await fetch(`${base}/v1/hosts/local/mdevs/${U3}`, { method: 'DELETE' })
    // Last-Event-ID wins over since (an EventSource reconnects with its first URL and the header).
    const b = await connect(base, `/v1/events?since=0`, { 'last-event-id': lastId })
    const want = await storedSeqs(store, start)
    await b.until(() => seqs(a).length + seqs(b).length >= want.length, 'the rest')
    await hub.flush()
    t.same([...seqs(a), ...seqs(b)], want, 'every stored event exactly once, in order')
    t.same(
      b.events.map((e) => e.event),
      ['MdevUpdated', 'MdevUndefined'],
    )
    // Live events keep coming on the resumed stream.
    await post('/v1/hosts/local/masks', { aqmask: '-2' }, 'PUT')
    await b.until(() => b.events.some((e) => e.event === 'MasksChanged'), 'a live event')
    t.same(seqs(b), (await storedSeqs(store, start)).slice(seqs(a).length))
    b.close()
    // since=0 replays the whole log.
    const all = await connect(base, '/v1/events?since=0')
    const everything = await storedSeqs(store, 0)
    await all.until(() => all.events.length >= everything.length, 'the whole log')
    t.same(seqs(all), everything)
    all.close()
  })

  t.test('filters: host, kind (comma and repeated), type, format=libvirt', async (t) => {
    const start = await store.events.lastSeq()
    await store.events.append({ host: 'other', kind: 'mdev', name: U1, type: 'MdevDefined', message: 'another host' })
    await store.events.append({ host: 'local', kind: 'host', name: 'local', type: 'HostBooted' })
    await store.events.append({ host: 'local', kind: 'mdev', name: U1, type: 'MdevStarted' })
    await store.events.append({ host: 'local', kind: 'mdev', name: U1, type: 'MdevReconfigured' })
    await store.events.append({ host: 'local', kind: 'masks', name: 'masks', type: 'MasksChanged' })
    await store.events.append({ host: 'local', kind: 'mdev', name: U1, type: 'MdevStopped' })
    const cases: Array<[string, (e: { host: string; kind: string; type: string }) => boolean]> = [
      ['host=local', (e) => e.host === 'local'],
      ['host=other', (e) => e.host === 'other'],
      ['kind=host,masks', (e) => ['host', 'masks'].includes(e.kind)],
      ['kind=host&kind=masks', (e) => ['host', 'masks'].includes(e.kind)],
      ['type=MdevStarted,MdevStopped&host=local', (e) => e.host === 'local' && ['MdevStarted', 'MdevStopped'].includes(e.type)],
      ['kind=mdev&type=MdevDefined', (e) => e.kind === 'mdev' && e.type === 'MdevDefined'],
    ]
    const stored = await store.events.list({ since: start, limit: 1000 })
    for (const [q, keep] of cases) {
      const want = stored.filter(keep).map((e) => e.seq)
      const c = await connect(base, `/v1/events?since=${start}&${q}`)
      await c.until(() => c.events.length >= want.length, q)
      await hub.flush()
      await new Promise((r) => setTimeout(r, 30))
      t.same(seqs(c), want, q)
      c.close()
    }
    const lv = await connect(base, `/v1/events?since=${start}&format=libvirt&host=local`)
    await lv.until(() => lv.events.length >= 2, 'libvirt events')
    await hub.flush()
    await new Promise((r) => setTimeout(r, 30))
    t.same(
      lv.events.map((e) => e.event),
      ['CREATED', 'DELETED'],
      'only events with a libvirt name, named by it',
    )
    t.match(JSON.parse(lv.events[0]!.data), { type: 'MdevStarted', lifecycle: 'CREATED', device: `mdev_${U1.replace(/-/g, '_')}`, host: 'local' })
    lv.close()
  })

  t.test('bad parameters: 400 problem+json', async (t) => {
    for (const q of [
      'since=abc',
      'since=-1',
      'since=1.5',
      'since=99999999999999999',
      'kind=a%20b',
      `type=${'x'.repeat(65)}`,
      'format=xml',
      'bogus=1',
      'host=%2Fx',
    ]) {
      const r = await get(base, `/v1/events?${q}`)
      t.equal(r.status, 400, q)
      t.match(r.type, /^application\/problem\+json/, q)
      t.match(r.body, { status: 400, code: 'INVALID_ARGUMENT' }, q)
    }
    const bad = await get(base, '/v1/events', { 'last-event-id': 'seven' })
    t.match(bad, { status: 400, body: { code: 'INVALID_ARGUMENT', violations: [{ field: 'Last-Event-ID' }] } })
    t.match((await get(base, '/v1/events?since=abc')).body, { violations: [{ field: 'since' }] })
    t.match(
      await get(base, '/v1/events?since=abc', { 'last-event-id': '3' }),
      { status: 400, body: { violations: [{ field: 'since' }] } },
      'both are checked, even when Last-Event-ID wins',
    )
    const empty = await connect(base, '/v1/events?since=0', { 'last-event-id': '' })
    t.equal(empty.status, 200, 'an empty Last-Event-ID is no position: since applies')
    await empty.until(() => empty.events.length > 0, 'the replay from since=0')
    t.equal(Number(empty.events[0]!.id), (await store.events.list({ since: 0, limit: 1 }))[0]!.seq)
    empty.close()
    const head = await fetch(`${base}/v1/events`, { method: 'HEAD' })
    t.equal(head.status, 200)
    t.match(head.headers.get('content-type'), /^text\/event-stream/)
    t.equal(await head.text(), '', 'HEAD: headers only, no stream left open')
  })

  t.test('heartbeat comments keep an idle stream alive', async (t) => {
    const c = await connect(base, '/v1/events')
    await c.until(() => c.comments.includes('ping'), 'a ping (every 200 ms here)', 5000)
    t.ok(c.comments.includes('ping'))
    c.close()
  })

  t.test('a client that goes away is unsubscribed', async (t) => {
    await until(() => hub.size === 0, 'earlier streams gone')
    const c = await connect(base, '/v1/events?since=0')
    await until(() => hub.size === 1, 'subscribed')
    c.close()
    await until(() => hub.size === 0, 'unsubscribed')
    t.equal(hub.size, 0)
  })

  t.test('curl -N reads the stream; killing it unsubscribes', async (t) => {
    await until(() => hub.size === 0, 'earlier streams gone')
    const since = await store.events.lastSeq()
    const curl = spawn('curl', ['-sN', `${base}/v1/events?since=${since}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    curl.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    const exited = new Promise((r) => curl.on('exit', r))
    t.teardown(() => void curl.kill('SIGKILL'))
    await until(() => hub.size === 1, 'curl subscribed')
    await store.events.append({ host: 'local', kind: 'queue', name: '05.0004', type: 'QueueFlushed', message: 'by curl test' })
    await store.events.append({ host: 'local', kind: 'queue', name: '05.0004', type: 'QueueBound' })
    hub.notify()
    await until(() => (out.match(/^event: /gm) ?? []).length >= 2, 'two events through curl')
    t.match(out, /^id: \d+\nevent: QueueFlushed\ndata: \{.*"message":"by curl test".*\}\n\n/m)
    t.match(out, /^event: QueueBound$/m)
    curl.kill('SIGTERM')
    await exited
    await until(() => hub.size === 0, 'unsubscribed after curl died')
    t.pass('curl killed, stream ended')
  })

  t.test('100 concurrent clients each get every event of a burst', async (t) => {
    await until(() => hub.size === 0, 'earlier streams gone')
    const since = await store.events.lastSeq()
    const clients: SseClient[] = []
    // At scale (1,000 clients): test/reliability/fanout.test.ts.
    clients.push(...(await Promise.all(Array.from({ length: 100 }, () => connect(base, `/v1/events?since=${since}&host=local`)))))
    t.ok(clients.every((c) => c.status === 200))
    await until(() => hub.size === 100, '100 subscriptions', 60_000)
    for (let i = 0; i < 5; i++) await store.events.append({ host: 'local', kind: 'queue', name: `05.000${i}`, type: 'QueueFlushed' })
    const want = await storedSeqs(store, since, { host: 'local' })
    t.equal(want.length, 5)
    await until(() => clients.every((c) => c.events.length >= 5), 'every client has the burst', 60_000)
    t.ok(
      clients.every((c) => JSON.stringify(seqs(c)) === JSON.stringify(want)),
      'each client: exactly the 5 events, in order',
    )
    for (const c of clients) c.close()
    await until(() => hub.size === 0, 'all unsubscribed', 30_000)
  })

  t.test('server shutdown ends open streams with a resumable error event', async (t) => {
    const fx2 = await sseFixture(t, db)
    const since = await fx2.store.events.lastSeq()
    await fx2.store.events.append({ host: 'local', kind: 'host', name: 'local', type: 'HostBooted' })
    const c = await connect(fx2.base, `/v1/events?since=${since}`)
    await c.until(() => c.events.length === 1, 'one event')
    await fx2.app.close()
    await c.until(() => c.ended, 'the stream ended')
    const last = c.events[c.events.length - 1]!
    t.equal(last.event, 'error')
    t.match(JSON.parse(last.data), { code: 'UNAVAILABLE', resumeSeq: since + 1 })
  })
})

forEachDatabase(t, async (t, db) => {
  // Tiny limits: one queued event per subscriber, ended once more than ten events behind.
  const fx = await sseFixture(t, db, { bufferLimit: 1, maxLagEvents: 10, ringSize: 4 })
  const { base, store, hub } = fx

  t.test('a client that stops reading does not stall others; it is told to resume, and resumes without a gap', async (t) => {
    const since = await store.events.lastSeq()
    const slow = await connect(base, `/v1/events?since=${since}`)
    const fast = await connect(base, `/v1/events?since=${since}`)
    slow.res.pause()
    // Big events fill the socket buffers of the client that does not read. The writer goes at the pace
    // of the reading client (each event reaches it before the next is written), so only the paused one lags.
    const big = 'x'.repeat(256 * 1024)
    for (let i = 0; i < 100; i++) {
      await store.events.append({ host: 'local', kind: 'queue', name: `q${i}`, type: 'QueueFlushed', data: { big } })
      await fast.until(() => fast.events.length > i, `event ${i} at the reading client`, 30_000)
    }
    const want = await storedSeqs(store, since)
    t.same(seqs(fast), want, 'the reading client is not held back')
    t.ok(slow.events.length < want.length, 'the paused client is behind')
    slow.res.resume()
    await slow.until(() => slow.ended, 'the lagging stream ends', 60_000)
    const last = slow.events[slow.events.length - 1]!
    t.equal(last.event, 'error')
    const err = JSON.parse(last.data) as { code: string; resumeSeq: number }
    t.equal(err.code, 'RATE_LIMITED')
    const got = seqs(slow)
    t.equal(err.resumeSeq, got[got.length - 1] ?? since, 'resume from the last event it was sent')
    const again = await connect(base, `/v1/events?since=${err.resumeSeq}`)
    await again.until(() => got.length + again.events.length >= want.length, 'the rest after resuming', 60_000)
    t.same([...got, ...seqs(again)], want, 'no gap, no duplicate across the resume')
    again.close()
    fast.close()
    await until(() => hub.size === 0, 'all unsubscribed')
  })
})

t.test('without a hub the route answers 503', async (t) => {
  const { freshDatabase } = await import('../../store/pg-helper.js')
  const fx = await serviceFixture(t, await freshDatabase(t, 'sqlite'))
  const service = new ApmatrixService({ store: fx.store, hosts: new StaticHostRegistry([fx.host]), reconciler: { enqueue: () => undefined } })
  const app = buildApp({ service })
  t.teardown(() => app.close())
  const r = await app.inject({ method: 'GET', url: '/v1/events' })
  t.equal(r.statusCode, 503)
  t.match(r.json(), { code: 'UNAVAILABLE' })
})
