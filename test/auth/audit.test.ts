/**
 * The audit listing (docs/security.md (Audit)) on both transports and both databases: REST `GET /v1/audit`
 * and gRPC `AuthService.ListAuditRecords` filter by target, actor and outcome (exact, all must hold) and
 * page with afterId, and answer the same records. Who may list is the authorization matrix's business
 * (matrix.test.ts); here an admin lists what tenants did and were refused.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { until } from '../scenario/rest-client.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { callUnary, securedFixture } from './auth-fixture.js'

const MINE = 'a0000000-0000-4000-8000-0000000000a1'
const THEIRS = 'b0000000-0000-4000-8000-0000000000b1'

interface Rec {
  id: number
  actor: string
  action: string
  target: string
  outcome: string
  requestId: string | null
  detail: Record<string, unknown>
}

forEachDatabase(t, async (t, db) => {
  const fx = await securedFixture(t, db)
  const rest = async (who: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(fx.base + path, {
      method,
      headers: { ...fx.headersOf(who), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return { status: res.status, body: JSON.parse(await res.text()) }
  }
  const grpcCall = (who: string, service: string, method: string, req: object) => callUnary(fx.clients[service]!, method, req, fx.metadataOf(who))

  // What the tenants did: one create each (one per transport), one refused mask change each, and a refused audit read.
  t.equal((await rest('tenant-a', 'POST', '/v1/hosts/local/mdevs', { uuid: MINE, spec: { adapters: [6], domains: [5] } })).status, 201)
  t.equal(
    (await grpcCall('tenant-b', 'MdevService', 'CreateMdev', { host: 'local', uuid: THEIRS, spec: { adapters: [6], domains: [4] } })).code,
    grpc.status.OK,
  )
  t.equal((await rest('tenant-a', 'PUT', '/v1/hosts/local/masks', { apmask: '-7' })).status, 403)
  t.equal((await grpcCall('tenant-b', 'HostService', 'SetMasks', { host: 'local', apmask: '-7' })).code, grpc.status.PERMISSION_DENIED)
  t.equal((await rest('viewer', 'GET', '/v1/audit')).status, 403)
  // Refusals are recorded beside the answer (never delaying it): wait until the three are stored.
  await until('the refusals stored', async () => (await fx.store.audit.list({ outcome: 'PERMISSION_DENIED' })).length === 3)

  const restPage = async (query: string) => {
    const r = await rest('admin', 'GET', `/v1/audit?${query}`)
    if (r.status !== 200) throw new Error(`GET /v1/audit?${query}: ${r.status} ${JSON.stringify(r.body)}`)
    return r.body as { items: Rec[]; nextAfterId: number | null }
  }
  const grpcPage = async (req: object) => {
    const r = await grpcCall('admin', 'AuthService', 'ListAuditRecords', req)
    if (r.code !== 0) throw new Error(`ListAuditRecords ${JSON.stringify(req)}: ${grpc.status[r.code]} ${r.details}`)
    const res = r.res as {
      items: Array<{ id: string; actor: string; action: string; target: string; outcome: string; request_id: string; detail_json: string; time: string }>
      next_after_id: string
    }
    return {
      items: res.items.map((i) => ({
        id: Number(i.id),
        actor: i.actor,
        action: i.action,
        target: i.target,
        outcome: i.outcome,
        requestId: i.request_id || null,
        detail: JSON.parse(i.detail_json) as Record<string, unknown>,
      })),
      next: Number(res.next_after_id),
    }
  }
  const summary = (items: Rec[]) => items.map((i) => `${i.actor} ${i.action} ${i.outcome}`)
  const strip = (items: Rec[]) =>
    items.map(({ id, actor, action, target, outcome, requestId, detail }) => ({ id, actor, action, target, outcome, requestId, detail }))

  await t.test('filters: actor, outcome, target, together; the same records on both transports', async (t) => {
    const cases: Array<{ query: string; req: object; want: string[] }> = [
      {
        query: 'actor=rest:token:tenant-a',
        req: { actor: 'rest:token:tenant-a' },
        want: ['rest:token:tenant-a mdev.create ok', 'rest:token:tenant-a http.put PERMISSION_DENIED'],
      },
      {
        query: 'actor=grpc:token:tenant-b',
        req: { actor: 'grpc:token:tenant-b' },
        want: ['grpc:token:tenant-b mdev.create ok', 'grpc:token:tenant-b grpc./apmatrix.v1.HostService/SetMasks PERMISSION_DENIED'],
      },
      {
        query: 'outcome=PERMISSION_DENIED',
        req: { outcome: 'PERMISSION_DENIED' },
        want: [
          'rest:token:tenant-a http.put PERMISSION_DENIED',
          'grpc:token:tenant-b grpc./apmatrix.v1.HostService/SetMasks PERMISSION_DENIED',
          'rest:token:viewer http.get PERMISSION_DENIED',
        ],
      },
      { query: 'actor=rest:token:tenant-a&outcome=ok', req: { actor: 'rest:token:tenant-a', outcome: 'ok' }, want: ['rest:token:tenant-a mdev.create ok'] },
      { query: 'actor=rest:token:viewer&outcome=ok', req: { actor: 'rest:token:viewer', outcome: 'ok' }, want: [] },
      {
        query: `target=hosts/local/mdevs/${THEIRS}`,
        req: { target: `hosts/local/mdevs/${THEIRS}` },
        want: ['grpc:token:tenant-b mdev.create ok'],
      },
      { query: 'actor=rest:token:TENANT-A', req: { actor: 'rest:token:TENANT-A' }, want: [] },
    ]
    for (const c of cases) {
      const r = await restPage(c.query)
      const g = await grpcPage(c.req)
      t.same(summary(r.items), c.want, `REST ?${c.query}`)
      t.same(strip(g.items), strip(r.items), `gRPC ${JSON.stringify(c.req)}: the same records`)
      t.equal(r.nextAfterId, null, 'one page')
      t.equal(g.next, 0, 'gRPC: no next page (0)')
    }
    const created = (await restPage('actor=rest:token:tenant-a&outcome=ok')).items[0]!
    t.match(created, { target: `hosts/local/mdevs/${MINE}`, detail: { subject: 'tenant-a', roles: ['tenant'], auth: 'token' } }, 'a record says who acted')
  })

  await t.test('pages: afterId walks the filtered trail one record at a time', async (t) => {
    const all = (await restPage('outcome=PERMISSION_DENIED')).items
    const viaRest: Rec[] = []
    let after = 0
    for (let i = 0; i < 10; i++) {
      const p = await restPage(`outcome=PERMISSION_DENIED&limit=1&afterId=${after}`)
      viaRest.push(...p.items)
      if (p.nextAfterId === null) break
      after = p.nextAfterId
    }
    t.same(strip(viaRest), strip(all), 'REST pages of one give the whole filtered trail, in order')
    const viaGrpc: Rec[] = []
    let next = 0
    for (let i = 0; i < 10; i++) {
      const p = await grpcPage({ outcome: 'PERMISSION_DENIED', limit: 1, after_id: String(next) })
      viaGrpc.push(...p.items)
      if (p.next === 0) break
      next = p.next
    }
    t.same(strip(viaGrpc), strip(all), 'gRPC pages of one give the same')
  })

  await t.test('bad filters and pages are INVALID_ARGUMENT on both transports', async (t) => {
    for (const q of ['limit=501', 'limit=0', 'afterId=-1', `actor=${'x'.repeat(513)}`, 'outcome=', 'who=me']) {
      const r = await rest('admin', 'GET', `/v1/audit?${q}`)
      t.same([r.status, r.body.code], [400, 'INVALID_ARGUMENT'], `REST ${q.slice(0, 20)}`)
    }
    for (const req of [{ limit: 501 }, { after_id: '-1' }, { actor: 'x'.repeat(513) }, { outcome: 'x'.repeat(65) }, { target: 'x'.repeat(513) }]) {
      const r = await grpcCall('admin', 'AuthService', 'ListAuditRecords', req)
      t.equal(grpc.status[r.code], 'INVALID_ARGUMENT', `gRPC ${JSON.stringify(req).slice(0, 30)}: ${r.details}`)
    }
  })
})
