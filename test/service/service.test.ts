/**
 * The application service over a real store and a real emulated host (demo profile: adapters
 * 0,1,2,5,6,7; usage domains 1,2,4,5,0x0a,0x47). Run on SQLite and PostgreSQL.
 */
import t from 'tap'
import { forEachDatabase } from '../store/pg-helper.js'
import { codeOf } from '../store/store-fixture.js'
import { ApmatrixError } from '../../src/domain/errors.js'
import { serviceFixture, U1, U2, U3 } from './service-fixture.js'
import type { PlanAnswer, PlanView } from '../../src/service/index.js'

forEachDatabase(t, async (t, db) => {
  const { service, store, host, enqueued } = await serviceFixture(t, db)

  t.test('hosts and inventory', async (t) => {
    const hosts = await service.listHosts()
    t.equal(hosts.length, 1)
    t.match(hosts[0], { name: 'local', driver: 'emulator', maxAdapterId: 255, maxDomainId: 255, leaseHolder: null })
    await store.leases.tryAcquire('local', 'replica-a', 60_000)
    t.equal((await service.getHost('local')).leaseHolder, 'replica-a')
    t.equal(await codeOf(service.getHost('nope')), 'NOT_FOUND')
    const adapters = await service.listAdapters('local')
    t.same(
      adapters.items.map((a) => a.apid),
      [0, 1, 2, 5, 6, 7],
    )
    const q = await service.listQueues('local', { adapter: '0x05' })
    t.same(
      q.items.map((x) => x.apqn),
      ['05.0001', '05.0002', '05.0004', '05.0005', '05.000a', '05.0047'],
    )
    const p1 = await service.listQueues('local', { limit: 4 })
    t.equal(p1.items.length, 4)
    const p2 = await service.listQueues('local', { limit: 500, pageToken: p1.nextPageToken })
    t.equal(p1.items.length + p2.items.length, 36, 'two pages cover the 6x6 queues exactly once')
    t.notOk(p2.nextPageToken)
    t.same((await service.listDomains('local')).usageDomains, [1, 2, 4, 5, 10, 0x47])
  })

  t.test('B-24 masks: relative syntax on the desired mask; BUSY lists every APQN with owner and fix', async (t) => {
    await service.setMasks('local', { apmask: '-5,-6', aqmask: '-0x47' })
    const m = await service.getMasks('local')
    t.notOk(m.spec.apmaskIds.includes(5))
    t.notOk(m.spec.aqmaskIds.includes(0x47))
    t.ok(m.spec.apmaskIds.includes(0))
    t.equal(m.spec.apmaskIds.length, 254)
    await service.setMasks('local', { aqmask: '+0x47' })
    t.ok((await service.getMasks('local')).spec.aqmaskIds.includes(0x47), 'relative to the desired mask')
    // U1 takes 05.0004 and 06.0004 (adapters 5 and 6 are no longer the host's).
    const c = await service.createMdev('local', { uuid: U1, spec: { adapters: [5, 6], domains: [4] } })
    t.ok(!c.dryRun && c.created)
    const e = await service.setMasks('local', { apmask: '+5-6' }).catch((x: ApmatrixError) => x)
    t.ok(e instanceof ApmatrixError)
    t.equal((e as ApmatrixError).code, 'BUSY')
    const v = (e as ApmatrixError).violations
    t.same(v.map((x) => [x.rule, x.apqn, x.owner]).sort(), [
      ['BUSY', '05.0004', U1],
      ['BUSY', '06.0004', U1],
    ])
    t.ok(v.every((x) => x.fix?.includes('unassign')))
    t.equal(await codeOf(service.setMasks('local', { apmask: 'zz' })), 'INVALID_ARGUMENT')
    t.equal(await codeOf(service.setMasks('local', { aqmask: [1, 'x'] })), 'INVALID_ARGUMENT')
  })

  t.test('admission: APQN_IN_USE and APQN_RESERVED report every conflict', async (t) => {
    const e = (await service.createMdev('local', { uuid: U2, spec: { adapters: [5, 6, 0], domains: [4, 1] } }).catch((x) => x)) as ApmatrixError
    t.equal(e.code, 'APQN_IN_USE', 'in-use outranks reserved')
    const inUse = e.violations
      .filter((v) => v.rule === 'APQN_IN_USE')
      .map((v) => `${v.apqn}@${v.owner}`)
      .sort()
    t.same(inUse, [`05.0004@${U1}`, `06.0004@${U1}`])
    const reserved = e.violations
      .filter((v) => v.rule === 'APQN_RESERVED')
      .map((v) => v.apqn)
      .sort()
    // Adapter 0 is the host's (apmask), domains 1 and 4 too (aqmask); 05/06: apmask bits cleared.
    t.same(reserved, ['00.0001', '00.0004'])
    t.ok(
      e.violations.every((v) => v.fix),
      'every violation has a fix',
    )
    t.equal(await codeOf(service.createMdev('local', { spec: { adapters: [300], domains: [4] } })), 'OUT_OF_RANGE')
    t.equal(await codeOf(service.createMdev('local', { spec: { adapters: ['x'], domains: [4] } })), 'INVALID_ARGUMENT')
    t.equal(await codeOf(service.createMdev('local', { spec: { adapters: [7], domains: [], controlDomains: [4] } })), 'INVALID_ARGUMENT')
    t.equal((await store.mdevs.listAll('local')).length, 1, 'nothing half-stored')
  })

  t.test('idempotent create, ALREADY_EXISTS, Idempotency-Key', async (t) => {
    const again = await service.createMdev('local', { uuid: U1, spec: { adapters: ['0x06', 5], domains: [4] } })
    t.ok(!again.dryRun && again.created === false)
    t.equal(await codeOf(service.createMdev('local', { uuid: U1, spec: { adapters: [5], domains: [4] } })), 'ALREADY_EXISTS')
    const n = enqueued.length
    const a = await service.createMdev('local', { spec: { adapters: [5], domains: [0x47] } }, { idempotencyKey: 'k1' })
    const b = await service.createMdev('local', { spec: { adapters: [5], domains: [0x47] } }, { idempotencyKey: 'k1' })
    t.ok(!a.dryRun && !b.dryRun)
    if (a.dryRun || b.dryRun) return
    t.equal(b.replayed, true)
    t.same(b.result, a.result, 'the stored response, not a second device')
    t.equal(enqueued.length, n + 1, 'a replay does not enqueue again')
    t.equal(await codeOf(service.createMdev('local', { spec: { adapters: [6], domains: [0x47] } }, { idempotencyKey: 'k1' })), 'CONFLICT')
    await service.deleteMdev('local', a.result.metadata.uuid)
  })

  t.test('update, patch, If-Match, dry run stores nothing', async (t) => {
    const cur = await service.getMdev('local', U1)
    t.equal(await codeOf(service.replaceMdev('local', U1, { spec: { adapters: [5], domains: [4] } }, { ifMatch: 'stale' })), 'CONFLICT')
    const dry = await service.replaceMdev('local', U1, { spec: { adapters: [5], domains: [4, 5] } }, { dryRun: true, planView: 'full' })
    t.ok(dry.dryRun)
    if (dry.dryRun) t.ok(fullPlan(dry.plan).claimedApqns.some((c) => c.apqn === '05.0005'))
    t.same((await service.getMdev('local', U1)).metadata.resourceVersion, cur.metadata.resourceVersion, 'dry run changed nothing')
    const r = await service.replaceMdev(
      'local',
      U1,
      { spec: { adapters: [5], domains: [4, 5] }, labels: { team: 'a' } },
      { ifMatch: cur.metadata.resourceVersion },
    )
    t.ok(!r.dryRun)
    const p = await service.patchMdev('local', U1, { spec: { domains: [4] }, metadata: { labels: { team: null, env: 'prod' } } })
    if (p.dryRun) return t.fail('not a dry run')
    t.same(p.result.spec.domains, [4])
    t.same(p.result.spec.adapters, [5])
    t.same(p.result.metadata.labels, { env: 'prod' })
    t.equal(p.result.metadata.generation, 3)
    t.equal(await codeOf(service.patchMdev('local', U1, { status: {} })), 'INVALID_ARGUMENT')
    t.equal(await codeOf(service.patchMdev('local', U1, { metadata: { uuid: U2 } })), 'INVALID_ARGUMENT')
    const events = await store.events.list({ host: 'local' })
    t.ok(events.some((e) => e.type === 'MdevUpdated' && e.name === U1))
    t.ok(events.some((e) => e.type === 'MasksChanged'))
    const audit = await store.audit.list({ target: `hosts/local/mdevs/${U1}` })
    t.ok(audit.some((a) => a.action === 'mdev.replace' && a.outcome === 'ok'))
    t.ok(
      audit.some((a) => a.outcome === 'CONFLICT'),
      'refusals are audited too',
    )
  })

  t.test('foreign devices on the bus count at admission', async (t) => {
    // A root user defines a device directly on the bus: 07.0047 (apmask: clear 7 first).
    await host.write('/sys/bus/ap/apmask', '-7\n')
    await service.setMasks('local', { apmask: '-7' })
    const foreign = '44444444-4444-4444-8444-444444444444'
    await host.write('/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create', foreign)
    await host.write(`/sys/devices/vfio_ap/matrix/${foreign}/assign_adapter`, '7')
    await host.write(`/sys/devices/vfio_ap/matrix/${foreign}/assign_domain`, '0x47')
    const e = (await service.createMdev('local', { uuid: U3, spec: { adapters: [7], domains: [0x47] } }).catch((x) => x)) as ApmatrixError
    t.equal(e.code, 'APQN_IN_USE')
    t.match(e.violations, [{ apqn: '07.0047', owner: foreign }])
    const plan = fullPlan(await service.plan('local', { uuid: U3, spec: { adapters: [7], domains: [0x47] } }, 'full'))
    t.match(plan.violations, [{ rule: 'APQN_IN_USE', owner: foreign }])
    // V-20: adapter 3 is within the maxima but not in this machine's configuration.
    const filtered = fullPlan(
      await service.plan('local', { owner: 'probe', masks: { apmask: '-3' }, mdevs: [{ uuid: U3, spec: { adapters: [3, 6], domains: [0x0a] } }] }, 'full'),
    )
    t.same(filtered.violations, [])
    t.same(filtered.filteredAdapters, [{ uuid: U3, apid: 3, reason: 'NotInHostConfig', apqns: [] }])
    t.same(
      filtered.claimedApqns.map((c) => `${c.apqn}@${c.currentOwner}`),
      ['03.000a@null', '06.000a@host'],
    )
  })

  t.test('applyDesired: atomic, deletes omitted devices of the owner, reports all violations', async (t) => {
    const bad = (await service
      .applyDesired('local', {
        owner: 'fleet',
        mdevs: [
          { uuid: U2, spec: { adapters: [6], domains: [0x0a] } },
          { uuid: U3, spec: { adapters: [6], domains: [0x0a] } },
          { uuid: 'nope', spec: { adapters: [6] } },
        ],
      })
      .catch((x) => x)) as ApmatrixError
    t.equal(bad.code, 'INVALID_ARGUMENT')
    const ok = await service.applyDesired(
      'local',
      { owner: 'fleet', masks: { aqmask: '-10' }, mdevs: [{ uuid: U2, spec: { adapters: [6], domains: [0x0a] } }] },
      { planView: 'full' },
    )
    if (ok.dryRun) return t.fail('not a dry run')
    t.same(
      ok.result.mdevs.map((m) => [m.uuid, m.action]),
      [[U2, 'created']],
    )
    t.ok(fullPlan(ok.result.plan).operations.some((o) => o.kind === 'createMdev'))
    t.equal((await service.getMdev('local', U2)).metadata.owner, 'fleet')
    const next = await service.applyDesired('local', { owner: 'fleet', mdevs: [] })
    if (next.dryRun) return t.fail('not a dry run')
    t.same(
      next.result.mdevs.map((m) => [m.uuid, m.action]),
      [[U2, 'deleted']],
    )
    t.ok((await service.getMdev('local', U2)).metadata.deletionRequestedAt, 'marked; the reconciler removes it')
    t.notOk((await service.getMdev('local', U1)).metadata.deletionRequestedAt, 'devices of other owners stay')
  })

  t.test('emulator controls map errno', async (t) => {
    t.match(await service.readSysfs('local', '/sys/bus/ap/ap_max_domain_id'), /^\d+\n$/)
    const e = (await service.readSysfs('local', '/sys/nope').catch((x) => x)) as ApmatrixError
    t.equal(e.code, 'NOT_FOUND')
    t.equal(e.errno, 'ENOENT')
    const w = (await service.writeSysfs('local', '/sys/bus/ap/apmask', 'zz').catch((x) => x)) as ApmatrixError
    t.equal(w.errno, 'EINVAL')
    t.equal(w.code, 'INVALID_ARGUMENT')
  })

  t.test('admission is serialised per host: concurrent creates of one APQN, exactly one wins', async (t) => {
    // 06.0001: adapter 6 is no longer the host's (apmask -5,-6 above).
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => service.createMdev('local', { spec: { adapters: [6], domains: [1] } })))
    t.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
    t.same(
      results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as ApmatrixError).code),
      Array(5).fill('APQN_IN_USE'),
    )
    const holders = (await store.mdevs.listAll('local')).filter((m) => !m.deletionRequestedAt && m.spec.adapters.includes(6) && m.spec.domains.includes(1))
    t.equal(holders.length, 1)
  })

  t.test('store down: UNAVAILABLE for writes; reads answer from the read cache, marked stale', async (t) => {
    t.ok(enqueued.every((h) => h === 'local') && enqueued.length > 0)
    const before = await service.getMdev('local', U1)
    await store.close()
    t.equal(await codeOf(service.ping()), 'UNAVAILABLE')
    const r = await service.readMdev('local', U1)
    t.same(r.value, before, 'the copy in memory')
    t.ok(r.staleMs !== null && r.staleMs >= 0, 'marked stale: the sync with the store failed')
    t.equal(await codeOf(service.createMdev('local', { spec: { adapters: [7], domains: [1] } })), 'UNAVAILABLE')
  })
})

/** The lists of a plan answered in the full view (fails the test's type check otherwise). */
function fullPlan(p: PlanAnswer): PlanView {
  if (p.view !== 'full') throw new Error(`expected the full view, got ${p.view}`)
  return p
}
