/**
 * Per-subject limits over real sockets (issue 9 §3, §5; docs/security.md (Limits)): a burst of changes
 * beyond a subject's bucket is refused with 429 + Retry-After (REST) / RESOURCE_EXHAUSTED + `retry-after`
 * (gRPC), nothing stored for a refused call, while another subject is not refused; the N+1th open event
 * stream of one subject is refused while another subject's opens, and a closed stream frees its slot.
 * The limiter's clock is the test's: no token comes back unless the test moves it (no timing involved).
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { parseRateLimit, SubjectLimits } from '../../src/auth/limits.js'
import { ConfigError, loadConfig } from '../../src/config.js'
import { STATUS_DETAILS_KEY } from '../../src/transport/grpc/rich-status.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { callUnary, securedFixture, type Subject } from './auth-fixture.js'

const DEADLINE_MS = 20_000
const uuid = (n: number) => `aaaaaaaa-0000-4000-8000-${String(n).padStart(12, '0')}`

/** Waits for `cond` (polled), failing after the deadline. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + DEADLINE_MS
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

t.test('APMATRIX_RATE_LIMIT and APMATRIX_STREAMS_PER_SUBJECT', async (t) => {
  t.same(parseRateLimit('0'), { mutationsPerSecond: 0, burst: 0 })
  t.same(parseRateLimit('off'), { mutationsPerSecond: 0, burst: 0 })
  t.same(parseRateLimit('20/s'), { mutationsPerSecond: 20, burst: 40 })
  t.same(parseRateLimit('20/s burst 5'), { mutationsPerSecond: 20, burst: 5 })
  for (const bad of ['20', '-1/s', '0/s', '20/m', '20/s burst 0', '20/s burst', 'x']) t.equal(parseRateLimit(bad), null, `'${bad}' refused`)
  const env = { DATABASE_URL: 'file:./x.db' }
  t.same(loadConfig({}, env).limits, { mutationsPerSecond: 0, burst: 0, streamsPerSubject: 32 }, 'defaults: changes unlimited, 32 streams')
  t.same(loadConfig({ rateLimit: '5/s burst 9', streamsPerSubject: '3' }, env).limits, { mutationsPerSecond: 5, burst: 9, streamsPerSubject: 3 })
  t.throws(() => loadConfig({}, { ...env, APMATRIX_RATE_LIMIT: 'fast' }), ConfigError, 'a bad rate limit stops the start')
  t.throws(() => loadConfig({}, { ...env, APMATRIX_STREAMS_PER_SUBJECT: '-1' }), ConfigError)
})

forEachDatabase(t, async (t, db) => {
  let clock = 0
  const limits = new SubjectLimits({ mutationsPerSecond: 1, burst: 3, streamsPerSubject: 2 }, () => clock)
  const fx = await securedFixture(t, db, { limits })
  const H = `${fx.base}/v1/hosts/local`
  const post = (s: Subject, path: string, body: unknown) =>
    fetch(`${H}${path}`, { method: 'POST', headers: { ...fx.headersOf(s), 'content-type': 'application/json' }, body: JSON.stringify(body) })

  await t.test('a burst of changes beyond the bucket: 429 with Retry-After, nothing stored; others go on', async (t) => {
    // Free APQNs of the fixture: 05.0006, 06.0004, 06.0005 (three creates: the bucket).
    const specs = [
      { adapters: [5], domains: [6] },
      { adapters: [6], domains: [4] },
      { adapters: [6], domains: [5] },
      { adapters: [6], domains: [4] },
      { adapters: [6], domains: [5] },
    ]
    const statuses: number[] = []
    for (const [i, spec] of specs.entries()) {
      const res = await post('operator', '/mdevs', { uuid: uuid(i + 1), spec })
      statuses.push(res.status)
      if (res.status === 429) {
        t.equal(res.headers.get('retry-after'), '1', 'Retry-After: the seconds until a token is back')
        const p = (await res.json()) as { code: string; status: number }
        t.same([p.code, p.status], ['RATE_LIMITED', 429], 'problem body')
      } else await res.body?.cancel()
    }
    t.same(statuses, [201, 201, 201, 429, 429], 'the bucket (3) passes, the rest is refused')
    const stored = new Set((await fx.service.listMdevs('local')).items.map((m) => m.metadata.uuid))
    t.same(
      [1, 2, 3, 4, 5].map((n) => stored.has(uuid(n))),
      [true, true, true, false, false],
      'refused calls stored nothing',
    )

    // Another subject has its own bucket, on both transports, while operator is limited.
    const del = (s: Subject, n: number) => fetch(`${H}/mdevs/${uuid(n)}?dryRun=true`, { method: 'DELETE', headers: fx.headersOf(s) })
    const other = await del('admin', 1)
    await other.body?.cancel()
    t.equal(other.status, 200, 'admin (REST) is not refused')
    const g = await callUnary(fx.clients.MdevService!, 'DeleteMdev', { host: 'local', uuid: uuid(1), dry_run: true }, fx.metadataOf('host-admin'))
    t.equal(g.code, grpc.status.OK, 'host-admin (gRPC) is not refused')

    // The limited subject over gRPC: the same bucket, RESOURCE_EXHAUSTED with retry-after and the rich status.
    const trailers = await new Promise<{ code: number; md: grpc.Metadata }>((resolve) => {
      const c = fx.clients.MdevService as unknown as Record<string, (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void>
      c.CreateMdev!.call(fx.clients.MdevService, { host: 'local', uuid: uuid(9), spec: { adapters: [5], domains: [6] } }, fx.metadataOf('operator'), (e) =>
        resolve({ code: e ? e.code : 0, md: e ? e.metadata : new grpc.Metadata() }),
      )
    })
    t.equal(trailers.code, grpc.status.RESOURCE_EXHAUSTED, 'operator (gRPC) is refused')
    t.same(trailers.md.get('retry-after'), ['1'], 'retry-after trailer')
    t.same(trailers.md.get('code'), ['RATE_LIMITED'], 'code trailer')
    t.equal(trailers.md.get(STATUS_DETAILS_KEY).length, 1, 'rich status kept')
    t.notOk(stored.has(uuid(9)) || (await fx.service.listMdevs('local')).items.some((m) => m.metadata.uuid === uuid(9)), 'nothing stored')

    // Emulator controls take from the bucket too (after the permission check: operator would get 403 here).
    const close = () => fetch(`${H}/emulator/guests/no-such-guest`, { method: 'DELETE', headers: fx.headersOf('emulator-admin') })
    const controls: number[] = []
    for (let i = 0; i < 4; i++) {
      const res = await close()
      await res.body?.cancel()
      controls.push(res.status)
    }
    t.same(controls, [404, 404, 404, 429], 'emulator controls: the bucket, then 429')

    // One second later (the limiter's clock) one token is back.
    clock += 1000
    const again = await del('operator', 1)
    await again.body?.cancel()
    t.equal(again.status, 200, 'a refilled token passes')
    const after = await del('operator', 1)
    await after.body?.cancel()
    t.equal(after.status, 429, 'and only one')
  })

  await t.test('open streams per subject: the N+1th is refused, another subject opens, a close frees a slot', async (t) => {
    const viewer = fx.principals.get('viewer')!.subject
    const opened: AbortController[] = []
    const openSse = async (s: Subject) => {
      const ac = new AbortController()
      const res = await fetch(`${fx.base}/v1/events`, { headers: { accept: 'text/event-stream', ...fx.headersOf(s) }, signal: ac.signal })
      if (res.status === 200) opened.push(ac)
      else await res.body?.cancel()
      return res
    }
    t.teardown(() => {
      for (const ac of opened) ac.abort()
    })
    t.equal((await openSse('viewer')).status, 200, 'first stream')
    t.equal((await openSse('viewer')).status, 200, 'second stream')
    const third = await openSse('viewer')
    t.equal(third.status, 429, 'the third SSE stream of viewer is refused')
    t.ok(third.headers.get('retry-after'), 'with Retry-After')
    // gRPC Watch shares the count.
    const refused = await new Promise<{ code: number; retry: grpc.MetadataValue[] }>((resolve) => {
      const call = (fx.clients.EventService as unknown as { Watch(r: object, m: grpc.Metadata): grpc.ClientReadableStream<unknown> }).Watch(
        {},
        fx.metadataOf('viewer'),
      )
      call.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, retry: e.metadata.get('retry-after') }))
      call.on('data', () => call.cancel())
    })
    t.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED, 'a gRPC Watch of viewer is refused as well')
    t.same(refused.retry, ['1'], 'with retry-after')
    // Another subject is not refused meanwhile, on either transport.
    t.equal((await openSse('admin')).status, 200, 'admin opens an SSE stream')
    const adminWatch = (fx.clients.EventService as unknown as { Watch(r: object, m: grpc.Metadata): grpc.ClientReadableStream<unknown> }).Watch(
      { since_seq: '0' },
      fx.metadataOf('admin'),
    )
    const firstEvent = await new Promise<string>((resolve) => {
      adminWatch.on('data', () => resolve('data'))
      adminWatch.on('error', (e: grpc.ServiceError) => resolve(`error ${e.code}`))
    })
    adminWatch.cancel()
    t.equal(firstEvent, 'data', 'admin watches over gRPC')
    // Closing one of viewer's streams frees its slot.
    opened.shift()!.abort()
    await until(() => limits.openStreams(viewer) < 2, "the server sees viewer's stream closed")
    t.equal((await openSse('viewer')).status, 200, 'viewer opens a stream again')
  })
})
