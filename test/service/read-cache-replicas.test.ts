/**
 * Reads across replicas (docs/api.md "Reads"): two services on one database (PostgreSQL, and SQLite in one
 * file), each with its own read cache. Replica B runs WITHOUT an event hub and without any background sync,
 * so the only way it learns of A's writes is the bound every read enforces: a read syncs first when its last
 * sync started more than `readMaxStalenessMs` ago. The test waits (on the clock, a condition, not an
 * assertion about speed) until the bound has passed since A's write committed, then reads on B over REST and
 * gRPC: the write must be there, and so must the status A's reconciler stored. Then B's store goes away:
 * reads still answer from memory, with `Apmatrix-Stale` (REST) and the `apmatrix-stale` trailer (gRPC).
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { Reconciler } from '../../src/reconciler/reconciler.js'
import { ApmatrixService } from '../../src/service/index.js'
import { applyMigrations } from '../../src/store/apply-migrations.js'
import { createStore } from '../../src/store/store.js'
import { buildApp } from '../../src/transport/http/app.js'
import { loadApiProto } from '../../src/transport/grpc/proto.js'
import { startGrpcServer } from '../../src/transport/grpc/server.js'
import { unary } from '../transport/grpc/grpc-fixture.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { U1, U2 } from './service-fixture.js'

const STALE_MS = 300

/** Resolves once the monotonic clock is past `at` (bounded: at most STALE_MS from the caller's point of view). */
async function clockPast(at: number): Promise<void> {
  while (performance.now() <= at) await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(at - performance.now()) + 1)))
}

forEachDatabase(t, async (t, db) => {
  await applyMigrations(db.url)
  const replica = async (name: string) => {
    const store = await createStore(db.url)
    t.teardown(() => store.close())
    const host = new LocalEmulatedHost({ name: 'local', profile: 'demo', realtime: false })
    t.teardown(() => host.close())
    const hosts = new StaticHostRegistry([host])
    const service = new ApmatrixService({ store, hosts, reconciler: { enqueue: () => undefined }, readMaxStalenessMs: STALE_MS })
    await service.syncHosts()
    await service.startReadCache()
    return { name, store, host, hosts, service }
  }
  const a = await replica('a')
  const b = await replica('b')

  const app = buildApp({ service: b.service })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const rest = (path: string, headers: Record<string, string> = {}) => fetch(`http://127.0.0.1:${port}/v1${path}`, { headers })
  const g = await startGrpcServer({ service: b.service, addr: '127.0.0.1:0' })
  t.teardown(() => g.close())
  const { v1 } = loadApiProto()
  const mdevs = new v1.MdevService(`127.0.0.1:${g.port}`, grpc.credentials.createInsecure())
  t.teardown(() => mdevs.close())

  t.equal((await rest(`/hosts/local/mdevs/${U1}`)).status, 404, 'B: not there yet')

  // A writes; A reads its own write at once (read-your-writes).
  await a.service.setMasks('local', { apmask: '-5,-6', aqmask: '-4,-5' })
  const created = await a.service.createMdev('local', { uuid: U1, spec: { adapters: [5, 6], domains: [4] }, labels: { team: 'x' } })
  const committed = performance.now()
  if (created.dryRun) throw new Error('not a dry run')
  const rv = created.result.metadata.resourceVersion
  t.equal((await a.service.getMdev('local', U1)).metadata.resourceVersion, rv, 'A reads its write at once')

  await clockPast(committed + STALE_MS)
  const got = await rest(`/hosts/local/mdevs/${U1}`)
  t.equal(got.status, 200, "B over REST, once the bound passed: A's write")
  t.equal(got.headers.get('etag'), `"${rv}"`)
  t.equal(got.headers.get('apmatrix-stale'), null, 'not stale')
  t.match(await got.json(), { metadata: { uuid: U1, resourceVersion: rv, labels: { team: 'x' } } })
  const viaGrpc = await unary(mdevs.GetMdev.bind(mdevs), { host: 'local', uuid: U1 })
  t.equal(viaGrpc.res?.metadata?.resource_version, rv, 'B over gRPC too')
  const list = (await (await rest('/hosts/local/mdevs?label=team=x')).json()) as { items: Array<{ metadata: { uuid: string } }> }
  t.same(
    list.items.map((m) => m.metadata.uuid),
    [U1],
    'B lists it',
  )

  // If-None-Match (RFC 9110): strong, weak, a list and * match; another tag does not.
  for (const inm of [`"${rv}"`, `W/"${rv}"`, `"nope", "${rv}"`, '*']) {
    const r = await rest(`/hosts/local/mdevs/${U1}`, { 'if-none-match': inm })
    t.same([r.status, r.headers.get('etag'), await r.text()], [304, `"${rv}"`, ''], `If-None-Match: ${inm}`)
  }
  t.equal((await rest(`/hosts/local/mdevs/${U1}`, { 'if-none-match': '"nope"' })).status, 200, 'another version: the object')

  // A's reconciler stores the device's status (MdevStatusChanged in the same transaction).
  const rec = new Reconciler({
    store: a.store,
    hosts: a.hosts,
    holder: 'replica-a',
    drainTimeoutMs: 0,
    drainPollMs: 1,
    afterStatusWrite: () => a.service.refreshReadCache(),
  })
  t.equal((await rec.reconcile('local')).converged, true)
  const stored = await a.store.mdevs.get('local', U1)
  const statusWritten = performance.now()
  t.not(stored.resourceVersion, rv, 'the status write made a new version')
  t.equal(stored.status.conditions?.find((c) => c.type === 'Ready')?.status, 'True')
  t.equal((await a.service.getMdev('local', U1)).metadata.resourceVersion, stored.resourceVersion, "A reads its reconciler's status at once")
  const types = (await a.store.events.list({ host: 'local', kinds: ['mdev'] })).map((e) => e.type)
  t.ok(types.includes('MdevStatusChanged'), types.join(','))

  await clockPast(statusWritten + STALE_MS)
  const after = await rest(`/hosts/local/mdevs/${U1}`)
  t.equal(after.headers.get('etag'), `"${stored.resourceVersion}"`, 'B over REST: the status version')
  t.match(await after.json(), { status: { conditions: [{ type: 'Ready', status: 'True' }] } })
  const g2 = await unary(mdevs.GetMdev.bind(mdevs), { host: 'local', uuid: U1 })
  t.equal(g2.res?.metadata?.resource_version, stored.resourceVersion, 'B over gRPC: the status version')
  t.equal(g2.trailers?.get('apmatrix-stale').length, 0, 'no stale trailer')

  // A second device, then B loses its store: B answers what it had, marked stale; writes fail.
  await a.service.createMdev('local', { uuid: U2, spec: { adapters: [5], domains: [5] } })
  await b.store.close()
  const down = performance.now()
  await clockPast(down + STALE_MS)
  const stale = await rest(`/hosts/local/mdevs/${U1}`)
  t.equal(stale.status, 200, 'B, store gone: still answers')
  const age = Number(stale.headers.get('apmatrix-stale'))
  t.ok(Number.isInteger(age) && age >= STALE_MS, `Apmatrix-Stale: ${stale.headers.get('apmatrix-stale')}`)
  t.equal(stale.headers.get('etag'), `"${stored.resourceVersion}"`)
  const staleList = await rest('/hosts/local/mdevs')
  t.ok(staleList.headers.get('apmatrix-stale') !== null, 'LIST marked stale too')
  const g3 = await unary(mdevs.GetMdev.bind(mdevs), { host: 'local', uuid: U1 })
  t.equal(g3.res?.metadata?.resource_version, stored.resourceVersion, 'gRPC answers from memory')
  t.ok(Number(g3.trailers?.get('apmatrix-stale')[0]) >= STALE_MS, 'with the apmatrix-stale trailer')
  const masks = await rest('/hosts/local/masks')
  t.ok(masks.headers.get('apmatrix-stale') !== null, 'masks too')
  t.equal((await rest(`/hosts/local/mdevs/${U2}`)).status, 404, "A's write after B's last sync stays unknown to B while its store is gone")
})
