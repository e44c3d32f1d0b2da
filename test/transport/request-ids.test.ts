/**
 * Request ids over real sockets, REST and gRPC (docs/api.md (Conventions) Request id): the id in the
 * answer, the problem body, the audit record and the events is the server's (generated, one per
 * request), whatever the caller sends; the caller's sane `x-request-id` is kept as the correlation id
 * (answered as `x-correlation-id`, stored in the audit record's `detail.correlationId`), so a spoofed id
 * can no longer pose as another request's in the audit trail.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { freshDatabase } from '../store/pg-helper.js'
import { U1, U2 } from '../service/service-fixture.js'
import { grpcFixture, unary } from './grpc/grpc-fixture.js'
import { apiFixture } from './http/http-fixture.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

t.test('REST', async (t) => {
  const { call, store } = await apiFixture(t, await freshDatabase(t, 'sqlite'))
  const put = await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-5' }, headers: { 'x-request-id': 'client-7' } })
  t.equal(put.status, 200)
  const rid = put.headers.get('x-request-id')!
  t.match(rid, UUID)
  t.equal(put.headers.get('x-correlation-id'), 'client-7')
  // The same caller id again: a request of its own.
  const again = await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-6' }, headers: { 'x-request-id': 'client-7' } })
  t.not(again.headers.get('x-request-id'), rid)
  // A refusal: the problem's requestId is the server's, and it is audited under it.
  const refused = await call('POST', '/v1/hosts/local/mdevs', { body: { uuid: U1, spec: { adapters: [7], domains: [7] } }, headers: { 'x-request-id': rid } })
  t.equal(refused.status, 409)
  t.match(refused.body.requestId, UUID)
  t.not(refused.body.requestId, rid, 'a caller cannot take another request id')
  t.equal(refused.headers.get('x-correlation-id'), rid)

  const audit = await store.audit.list({ limit: 100 })
  const mine = audit.filter((a) => a.detail.correlationId === 'client-7')
  t.equal(mine.length, 2)
  t.same(mine.map((a) => a.requestId).sort(), [rid, again.headers.get('x-request-id')].sort())
  const refusal = audit.find((a) => a.requestId === refused.body.requestId)
  t.match(refusal, { outcome: 'APQN_RESERVED', detail: { correlationId: rid } })
  t.equal(audit.filter((a) => a.requestId === rid).length, 1, 'the spoofed id names one record only')
  const events = await store.events.list({ host: 'local', limit: 1000 })
  t.ok(events.some((e) => e.type === 'MasksChanged' && e.requestId === rid))
  t.notOk(events.some((e) => e.requestId === 'client-7'))
  // Without a caller id: no correlation id anywhere.
  const plain = await call('POST', '/v1/hosts/local/emulator/reboot')
  t.equal(plain.headers.get('x-correlation-id'), null)
  const reboot = (await store.audit.list({ limit: 100 })).find((a) => a.requestId === plain.headers.get('x-request-id'))
  t.match(reboot, { action: String, outcome: 'ok' })
  t.equal(reboot?.detail.correlationId, undefined)
})

t.test('gRPC', async (t) => {
  const fx = await grpcFixture(t, await freshDatabase(t, 'sqlite'))
  const md = new grpc.Metadata()
  md.set('x-request-id', 'grpc-client-9')
  const set = await unary(fx.clients.hosts.SetMasks.bind(fx.clients.hosts), { host: 'local', apmask: '-5,-6', aqmask: '-4' }, { metadata: md })
  t.notOk(set.err)
  const rid = String(set.headers?.get('x-request-id')[0])
  t.match(rid, UUID)
  t.equal(set.headers?.get('x-correlation-id')[0], 'grpc-client-9')
  const create = await unary(fx.clients.mdevs.CreateMdev.bind(fx.clients.mdevs), { host: 'local', uuid: U2, spec: { adapters: [5], domains: [4] } } as never, {
    metadata: md,
  })
  t.notOk(create.err, create.err?.details ?? '')
  const createId = String(create.headers?.get('x-request-id')[0])
  const audit = await fx.store.audit.list({ limit: 100 })
  t.match(
    audit
      .filter((a) => a.detail.correlationId === 'grpc-client-9')
      .map((a) => a.requestId)
      .sort(),
    [rid, createId].sort(),
  )
  t.notOk(audit.some((a) => a.requestId === 'grpc-client-9'))
  const events = await fx.store.events.list({ host: 'local', limit: 1000 })
  t.ok(events.some((e) => e.type === 'MdevDefined' && e.name === U2 && e.requestId === createId))
})
