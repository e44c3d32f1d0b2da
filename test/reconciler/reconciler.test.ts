/**
 * Reconcile scenarios on the real store (SQLite and PostgreSQL) and the real emulator: convergence,
 * drift repair, host reboot, a device in use on delete, foreign devices, status and events.
 */
import t, { type Test } from 'tap'
import { forEachDatabase, freshDatabase, type TestDatabase } from '../store/pg-helper.js'
import { openStore, addHost } from '../store/store-fixture.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { Reconciler } from '../../src/reconciler/reconciler.js'
import { Mask } from '../../src/domain/mask.js'
import type { Store } from '../../src/store/store.js'

const U1 = '11111111-1111-4111-8111-111111111111'
const FOREIGN = '99999999-9999-4999-8999-999999999999'
const MATRIX = '/sys/devices/vfio_ap/matrix'

/** Each scenario gets its own empty database of the provider under test. */
async function setup(t: Test, db: TestDatabase) {
  const store = await openStore(t, await freshDatabase(t, db.provider))
  await addHost(store, 'local')
  const local = new LocalEmulatedHost({ name: 'local', profile: 'spec-fixture', realtime: false })
  t.teardown(() => local.close())
  const rec = new Reconciler({
    store,
    hosts: new StaticHostRegistry([local]),
    drainPollMs: 10,
    drainTimeoutMs: 5_000,
    sleep: async (ms) => local.host.advance(ms),
  })
  // The host record's bootId must match the running host, or the first pass reports a reboot.
  const info = await local.info()
  const h = await store.hosts.get('local')
  await store.hosts.upsert({ ...h, bootId: info.bootId })
  return { store, local, rec }
}

async function defineM1(store: Store, spec = { adapters: [5, 6], domains: [4, 0x47], controlDomains: [4], state: 'started' as const }) {
  await store.masks.set('local', {
    apmask: Mask.full()
      .minus(Mask.of([5, 6]))
      .toString(),
    aqmask: Mask.full().toString(),
  })
  await store.mdevs.create({ host: 'local', uuid: U1, spec })
}

async function eventTypes(store: Store): Promise<string[]> {
  return (await store.events.list({ host: 'local', limit: 1000 })).map((e) => e.type)
}

forEachDatabase(t, async (t, db) => {
  t.test('a defined device converges: masks cleared, device created with its matrix, Ready, events', async (t) => {
    const { store, local, rec } = await setup(t, db)
    await defineM1(store)
    const out = await rec.reconcile('local')
    t.equal(out.converged, true)
    t.equal(out.execution?.lostRequests, 0)
    t.equal(local.host.read(`${MATRIX}/${U1}/matrix`), '05.0004\n05.0047\n06.0004\n06.0047\n')
    t.equal(local.host.read(`${MATRIX}/${U1}/control_domains`), '0004\n')
    const m = await store.mdevs.get('local', U1)
    t.equal(m.status.observedGeneration, m.generation)
    t.same(m.status.guestMatrix, ['05.0004', '05.0047', '06.0004', '06.0047'])
    t.equal(m.status.conditions?.find((c) => c.type === 'Ready')?.status, 'True')
    t.equal(
      (await store.masks.get('local'))?.status.apmask,
      Mask.full()
        .minus(Mask.of([5, 6]))
        .toString(),
    )
    const types = await eventTypes(store)
    t.ok(types.includes('MdevStarted') && types.includes('MasksApplied'), types.join(','))
    const again = await rec.reconcile('local')
    t.equal(again.plan?.operations.length, 0, 'a second pass has nothing to do')
    t.equal(again.drift, false)
  })

  t.test('drift: a root user unbinds a queue; the filter shows in status, then it is repaired', async (t) => {
    const { store, local, rec } = await setup(t, db)
    await defineM1(store)
    await rec.reconcile('local')
    local.host.write('/sys/bus/ap/drivers/vfio_ap/unbind', '06.0047\n') // V-33: adapter 6 leaves the guest view
    t.equal(local.host.read(`${MATRIX}/${U1}/guest_matrix`), '05.0004\n05.0047\n')
    const out = await rec.reconcile('local')
    t.equal(out.drift, true)
    t.same(out.plan?.operations, [{ kind: 'bindQueue', apqn: '06.0047', driver: 'vfio_ap' }])
    t.equal(out.converged, true)
    t.equal(local.host.read(`${MATRIX}/${U1}/guest_matrix`), '05.0004\n05.0047\n06.0004\n06.0047\n', 'V-30: the adapter is hot-plugged back')
    const types = await eventTypes(store)
    t.ok(types.includes('DriftDetected') && types.includes('QueueBound'), types.join(','))
  })

  t.test('AdapterFiltered: a checkstopped adapter shows in status and events while the bus cannot be repaired', async (t) => {
    const { store, local, rec } = await setup(t, db)
    await defineM1(store)
    await rec.reconcile('local')
    // B-4: adapter 6 checkstops. A root user then unassigns and re-assigns domain 0x47: V-15 resets the queues
    // that were in the guest, the reset of 06.0047 fails (response 04, V-39), so V-20 filters adapter 6.
    local.host.hardware({ action: 'checkstop', apid: 6 })
    local.host.write(`${MATRIX}/${U1}/unassign_domain`, '0x47\n')
    local.host.write(`${MATRIX}/${U1}/assign_domain`, '0x47\n')
    const guestView = local.host.read(`${MATRIX}/${U1}/guest_matrix`)
    t.equal(guestView, '05.0004\n05.0047\n', 'the kernel filtered adapter 6')
    const out = await rec.reconcile('local')
    t.same(out.plan?.operations, [], 'nothing on the bus can repair a checkstop')
    const m = await store.mdevs.get('local', U1)
    const filtered = m.status.conditions?.find((c) => c.type === 'AdapterFiltered')
    t.equal(filtered?.status, 'True')
    t.match(filtered?.message, /adapters 06/)
    t.equal(m.status.conditions?.find((c) => c.type === 'Degraded')?.reason, 'AdapterFiltered')
    t.same(m.status.guestMatrix, ['05.0004', '05.0047'])
    t.ok((await eventTypes(store)).includes('AdapterFiltered'))
    // The checkstop clears; filtering runs again only on a probe (V-21). Both queues of adapter 6 in the guest
    // view failed a reset (the filter resets the whole dropped adapter, V-20), so a root user re-probes both.
    local.host.hardware({ action: 'checkstop-clear', apid: 6 })
    for (const q of ['06.0004', '06.0047']) {
      local.host.write('/sys/bus/ap/drivers/vfio_ap/unbind', `${q}\n`)
      local.host.write('/sys/bus/ap/drivers/vfio_ap/bind', `${q}\n`)
    }
    await rec.reconcile('local')
    const healed = await store.mdevs.get('local', U1)
    t.equal(healed.status.conditions?.find((c) => c.type === 'AdapterFiltered')?.status, 'False', 'the adapter is passed again and the status says so')
  })

  t.test('host reboot: kernel state is gone, the started device comes back', async (t) => {
    const { store, local, rec } = await setup(t, db)
    await defineM1(store)
    await rec.reconcile('local')
    await local.reboot()
    t.notOk(local.host.exists(`${MATRIX}/${U1}`), 'the reboot lost the device')
    const out = await rec.reconcile('local')
    t.equal(out.converged, true)
    t.equal(local.host.read(`${MATRIX}/${U1}/matrix`), '05.0004\n05.0047\n06.0004\n06.0047\n')
    const types = await eventTypes(store)
    t.ok(types.includes('HostBooted'), types.join(','))
    t.equal((await store.hosts.get('local')).bootId, (await local.info()).bootId)
  })

  t.test('delete of a device a guest holds open waits (InUseByGuest) until the guest closes it; force does not wait', async (t) => {
    const { store, local, rec } = await setup(t, db)
    await defineM1(store)
    await rec.reconcile('local')
    local.host.guestOpen(U1, 'vm1')
    await rec.reconcile('local')
    t.equal((await store.mdevs.get('local', U1)).status.guest, 'vm1')
    await store.mdevs.markDeleted('local', U1)
    const waiting = await rec.reconcile('local')
    t.equal(waiting.converged, false)
    t.ok(local.host.exists(`${MATRIX}/${U1}`), 'still on the bus')
    const m = await store.mdevs.get('local', U1)
    t.equal(m.status.conditions?.find((c) => c.type === 'Ready')?.reason, 'WaitingForGuest')
    t.equal(m.status.conditions?.find((c) => c.type === 'InUseByGuest')?.status, 'True')
    local.host.guestClose(U1)
    const done = await rec.reconcile('local')
    t.equal(done.converged, true)
    t.notOk(local.host.exists(`${MATRIX}/${U1}`))
    t.rejects(store.mdevs.get('local', U1), { code: 'NOT_FOUND' }, 'the row goes once the device is gone')
    const all = (await store.masks.get('local'))!
    t.equal(all.status.apmask, all.apmask)
  })

  t.test('force delete detaches the guest', async (t) => {
    const { store, local, rec } = await setup(t, db)
    await defineM1(store)
    await rec.reconcile('local')
    local.host.guestOpen(U1, 'vm1')
    await store.mdevs.markDeleted('local', U1, { force: true })
    const out = await rec.reconcile('local')
    t.equal(out.converged, true)
    t.notOk(local.host.exists(`${MATRIX}/${U1}`))
    t.same(local.host.guests(), [])
  })

  t.test('a device apmatrix did not create is never removed, and its APQNs are respected', async (t) => {
    const { store, local, rec } = await setup(t, db)
    local.host.write('/sys/bus/ap/apmask', '-7\n')
    local.host.write(`${MATRIX}/mdev_supported_types/vfio_ap-passthrough/create`, `${FOREIGN}\n`)
    local.host.write(`${MATRIX}/${FOREIGN}/assign_adapter`, '7\n')
    local.host.write(`${MATRIX}/${FOREIGN}/assign_domain`, '0xab\n')
    await store.masks.set('local', { apmask: Mask.full().toString(), aqmask: Mask.full().toString() })
    const out = await rec.reconcile('local')
    t.ok(local.host.exists(`${MATRIX}/${FOREIGN}`), 'still there')
    t.equal(out.converged, false, 'the desired apmask cannot be reached while the foreign device holds 07.00ab')
    t.equal(out.plan?.deferred[0]?.reason, 'HeldByOtherDevice')
    t.equal(
      local.host.read('/sys/bus/ap/apmask'),
      `${Mask.full()
        .minus(Mask.of([7]))
        .toString()}\n`,
      'no vetoed write was attempted',
    )
  })

  t.test('the lease: a second replica does not reconcile a host the first holds', async (t) => {
    const { store, local, rec } = await setup(t, db)
    await defineM1(store)
    const other = new Reconciler({ store, hosts: new StaticHostRegistry([local]), holder: 'other-replica', sleep: async (ms) => local.host.advance(ms) })
    await rec.reconcile('local')
    const out = await other.reconcile('local')
    t.equal(out.skipped, 'lease-held-elsewhere')
  })

  t.test('the worker loop converges a host after enqueue and reports outcomes', async (t) => {
    const { store, local, rec } = await setup(t, db)
    await defineM1(store)
    const converged = new Promise<void>((resolve) => rec.onOutcome((o) => o.converged && resolve()))
    rec.start()
    t.teardown(() => rec.stop())
    await converged
    t.equal(local.host.read(`${MATRIX}/${U1}/matrix`), '05.0004\n05.0047\n06.0004\n06.0047\n')
  })
})
