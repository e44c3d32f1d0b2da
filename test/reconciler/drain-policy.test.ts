/**
 * The hand-over's drain policy (docs/api.md (Reconcile) "Drain policy") on the real store (SQLite and PostgreSQL)
 * and the real emulator, in virtual time (the reconciler's sleep advances the emulator clock): the device that
 * takes the queues shows the drain while it waits (Progressing Draining / DrainWaiting, in-flight counts), a
 * `flush` hand-over counts the same losses on the device, the masks, the events and the metrics, and a `wait`
 * hand-over never loses a request until its policy changes or its device goes.
 */
import t, { type Test } from 'tap'
import { forEachDatabase, freshDatabase, type TestDatabase } from '../store/pg-helper.js'
import { openStore, addHost } from '../store/store-fixture.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { Reconciler, type HandOverMetrics } from '../../src/reconciler/reconciler.js'
import { Mask } from '../../src/domain/mask.js'
import type { MdevSpec } from '../../src/domain/mdev.js'
import type { StoredMdevStatus } from '../../src/domain/mdev-status.js'
import type { Store } from '../../src/store/store.js'
import { ApmatrixMetrics } from '../../src/observability/metrics.js'

const U1 = '11111111-1111-4111-8111-111111111111'
const Q = '07.00ab'
/** Host apmask without adapter 7: queue 07.00ab leaves the host's default drivers. */
const WITHOUT_7 = Mask.full()
  .minus(Mask.of([7]))
  .toString()

interface Seen {
  waitedMs: number
  status: StoredMdevStatus
}

async function setup(t: Test, db: TestDatabase, opts: { onTimeout?: 'flush' | 'wait'; timeoutMs?: number } = {}) {
  const store = await openStore(t, await freshDatabase(t, db.provider))
  await addHost(store, 'local')
  const local = new LocalEmulatedHost({ name: 'local', profile: 'spec-fixture', realtime: false })
  t.teardown(() => local.close())
  const handOvers: Array<{ host: string; lostRequests: number; drainMs?: number }> = []
  // The service's Prometheus metrics, and what they were told.
  const prom = new ApmatrixMetrics()
  const metrics: HandOverMetrics = {
    handOver: (host, o) => {
      handOvers.push({ host, ...o })
      prom.handOver(host, o)
    },
  }
  // What the device's stored status was while the drain slept: read every 100 virtual ms.
  const seen: Seen[] = []
  let slept = 0
  const rec = new Reconciler({
    store,
    hosts: new StaticHostRegistry([local]),
    drainPollMs: 10,
    drainTimeoutMs: opts.timeoutMs ?? 1_000,
    drainOnTimeout: opts.onTimeout ?? 'flush',
    drainWaitSliceMs: 300,
    metrics,
    sleep: async (ms) => {
      local.host.advance(ms)
      slept += ms
      if (slept % 100 === 0) {
        const m = await store.mdevs.get('local', U1).catch(() => null)
        if (m) seen.push({ waitedMs: slept, status: m.status })
      }
    },
  })
  const info = await local.info()
  const h = await store.hosts.get('local')
  await store.hosts.upsert({ ...h, bootId: info.bootId })
  const promLost = async () => (await prom.lostRequests.get()).values.find((v) => v.labels.host === 'local')?.value
  return { store, local, rec, seen, handOvers, promLost }
}

async function moveQueue(store: Store, drain?: MdevSpec['drain']) {
  await store.masks.set('local', { apmask: WITHOUT_7, aqmask: Mask.full().toString() })
  await store.mdevs.create({
    host: 'local',
    uuid: U1,
    spec: { adapters: [7], domains: [0xab], controlDomains: [], state: 'started', ...(drain ? { drain } : {}) },
  })
}

const cond = (s: StoredMdevStatus, type: string) => s.conditions?.find((c) => c.type === type)

async function flushedEvents(store: Store): Promise<Array<{ name: string; lost: number }>> {
  return (await store.events.list({ host: 'local', limit: 1000 }))
    .filter((e) => e.type === 'QueueFlushed')
    .map((e) => ({ name: e.name, lost: Number((e.data as { lost?: number } | null)?.lost) }))
}

async function eventTypes(store: Store): Promise<string[]> {
  return (await store.events.list({ host: 'local', limit: 1000 })).map((e) => e.type)
}

forEachDatabase(t, async (t, db) => {
  t.test('never idle x flush: the device shows Draining with counts while it waits, then the same loss everywhere', async (t) => {
    const { store, local, rec, seen, handOvers, promLost } = await setup(t, db, { onTimeout: 'flush' })
    local.host.setWorkload(Q, 300) // one request every 3.3 ms: never idle at a 10 ms poll
    local.host.advance(100)
    await moveQueue(store)
    const out = await rec.reconcile('local')
    t.equal(out.execution?.failed, undefined)
    const draining = seen.filter((s) => cond(s.status, 'Progressing')?.reason === 'Draining')
    t.ok(draining.length > 0, 'the device showed Draining while the drain waited')
    const first = draining[0]!.status
    t.equal(cond(first, 'Progressing')?.status, 'True')
    t.ok((first.draining?.[Q] ?? 0) > 0, `in-flight count of ${Q} shown: ${JSON.stringify(first.draining)}`)
    t.match(cond(first, 'Progressing')?.message, /then flush/)
    t.ok(
      draining.every((s) => Object.keys(s.status.draining ?? {}).join() === Q),
      'only the queue the device takes is listed',
    )

    const stats = local.host.requestStats(Q)
    t.ok(stats.flushed > 0, `the forced hand-over flushed ${stats.flushed}`)
    const m = await store.mdevs.get('local', U1)
    t.equal(m.status.lostRequests, stats.flushed, 'device: the requests the kernel flushed')
    t.equal(m.status.draining, undefined, 'no drain shown once the queue moved')
    t.equal(cond(m.status, 'Ready')?.status, 'True')
    t.equal((await store.masks.get('local'))?.status.lostRequests, stats.flushed, 'masks: the same number')
    t.same(await flushedEvents(store), [{ name: Q, lost: stats.flushed }], 'events: the same number')
    t.same(handOvers, [{ host: 'local', lostRequests: stats.flushed, drainMs: 1_000 }], 'metrics: the same number, the drain time')
    t.equal(await promLost(), stats.flushed, 'apmatrix_handover_lost_requests_total{host="local"}')
    t.ok((await eventTypes(store)).includes('DrainTimedOut'))
  })

  t.test('never idle x wait: no request is lost, the condition says it waits; switching the policy to flush ends the wait', async (t) => {
    const { store, local, rec, seen, handOvers } = await setup(t, db, { onTimeout: 'flush' })
    local.host.setWorkload(Q, 300)
    local.host.advance(100)
    await moveQueue(store, { timeoutSeconds: 1, onTimeout: 'wait' }) // the device's policy beats the default
    const first = await rec.reconcile('local')
    t.equal(first.converged, false, 'the pass yields, to be retried')
    t.equal(first.execution?.waiting?.op.kind, 'drainQueues')
    t.equal(local.host.requestStats(Q).flushed, 0, 'nothing flushed')
    t.equal((await local.bus.observeTopology()).apmask, Mask.full().toString(), 'the mask did not change')
    let m = await store.mdevs.get('local', U1)
    t.equal(cond(m.status, 'Progressing')?.reason, 'DrainWaiting')
    t.match(cond(m.status, 'Progressing')?.message, /policy wait/)
    t.ok((m.status.draining?.[Q] ?? 0) > 0, `still in flight: ${JSON.stringify(m.status.draining)}`)
    t.equal(m.status.lostRequests, 0)
    t.ok(
      seen.some((s) => cond(s.status, 'Progressing')?.reason === 'Draining'),
      'Draining before the timeout',
    )
    t.same(handOvers, [], 'no hand-over yet')
    t.equal((await store.journal.listOpen('local')).length, 0, 'no step left planned: nothing for crash recovery to undo')

    const second = await rec.reconcile('local')
    t.equal(second.execution?.waiting?.op.kind, 'drainQueues', 'a later pass keeps waiting')
    t.equal(local.host.requestStats(Q).flushed, 0, 'still nothing flushed')
    t.equal((await eventTypes(store)).filter((e) => e === 'DrainTimedOut').length, 1, 'one DrainTimedOut per hand-over')
    t.notOk((await eventTypes(store)).includes('ReconcileResumed'), 'a waiting hand-over is not an abandoned one')

    m = await store.mdevs.get('local', U1)
    await store.mdevs.update('local', U1, { spec: { ...m.spec, drain: { timeoutSeconds: 1, onTimeout: 'flush' } } })
    const third = await rec.reconcile('local')
    t.equal(third.converged, true, 'the flush policy ends the wait at once (its timeout is spent)')
    const stats = local.host.requestStats(Q)
    t.ok(stats.flushed > 0)
    m = await store.mdevs.get('local', U1)
    t.equal(m.status.lostRequests, stats.flushed)
    t.equal((await store.masks.get('local'))?.status.lostRequests, stats.flushed)
    t.same(await flushedEvents(store), [{ name: Q, lost: stats.flushed }])
    t.equal(handOvers.length, 1)
    t.equal(handOvers[0]!.lostRequests, stats.flushed)
    t.ok((handOvers[0]!.drainMs ?? 0) >= 1_000, `drain time over all passes: ${handOvers[0]!.drainMs}`)
  })

  t.test('never idle x wait: deleting the device ends the wait (the default policy applies to what the masks take)', async (t) => {
    const { store, local, rec } = await setup(t, db, { onTimeout: 'flush' })
    local.host.setWorkload(Q, 300)
    local.host.advance(100)
    await moveQueue(store, { onTimeout: 'wait' })
    t.equal((await rec.reconcile('local')).execution?.waiting?.op.kind, 'drainQueues')
    await store.mdevs.markDeleted('local', U1)
    const out = await rec.reconcile('local')
    t.equal(out.converged, true)
    await t.rejects(store.mdevs.get('local', U1), { code: 'NOT_FOUND' }, 'the device is gone')
    const stats = local.host.requestStats(Q)
    t.equal((await store.masks.get('local'))?.status.lostRequests, stats.flushed, 'the masks count what the flush lost')
  })

  t.test('never idle x wait: giving the queue back to the host ends the wait and puts the drained queues online', async (t) => {
    const { store, local, rec } = await setup(t, db, { onTimeout: 'wait' })
    local.host.setWorkload(Q, 300)
    local.host.advance(100)
    await moveQueue(store)
    const first = await rec.reconcile('local')
    t.equal(first.execution?.waiting?.op.kind, 'drainQueues', 'the default policy wait applies')
    t.ok(first.execution?.waiting?.drain?.offline.includes('07.0004'), 'idle queues of adapter 7 went offline for new work')
    await store.mdevs.markDeleted('local', U1)
    await store.masks.set('local', { apmask: Mask.full().toString(), aqmask: Mask.full().toString() })
    const out = await rec.reconcile('local')
    t.equal(out.converged, true)
    t.equal(local.host.read('/sys/bus/ap/devices/card07/07.0004/online'), '1\n', 'back online')
    t.equal(local.host.requestStats(Q).flushed, 0, 'nothing was ever lost')
  })

  for (const onTimeout of ['flush', 'wait'] as const) {
    t.test(`a workload that idles x ${onTimeout}: the drain completes, Draining shown meanwhile, nothing lost`, async (t) => {
      const { store, local, rec, seen, handOvers } = await setup(t, db, { onTimeout, timeoutMs: 60_000 })
      local.host.submitRequests(Q, 200) // a finite batch: the queue idles once it is done
      await moveQueue(store)
      const out = await rec.reconcile('local')
      t.equal(out.converged, true)
      t.ok(
        seen.some((s) => cond(s.status, 'Progressing')?.reason === 'Draining' && (s.status.draining?.[Q] ?? 0) > 0),
        'Draining with the in-flight count while the batch completed',
      )
      const stats = local.host.requestStats(Q)
      t.equal(stats.flushed, 0)
      t.equal(stats.completed, 200)
      const m = await store.mdevs.get('local', U1)
      t.equal(m.status.lostRequests, 0)
      t.equal(cond(m.status, 'Progressing')?.reason, 'Converged')
      t.equal((await store.masks.get('local'))?.status.lostRequests ?? 0, 0)
      t.same(await flushedEvents(store), [])
      t.equal(handOvers.length, 1)
      t.equal(handOvers[0]!.lostRequests, 0)
    })
  }

  t.test('a device defined while the hand-over drains gets the loss of the queue it takes (was 0 while the event said 1)', async (t) => {
    const { store, local } = await setup(t, db)
    local.host.setWorkload(Q, 300)
    local.host.advance(100)
    await store.masks.set('local', { apmask: WITHOUT_7, aqmask: Mask.full().toString() })
    let created = false
    const rec = new Reconciler({
      store,
      hosts: new StaticHostRegistry([local]),
      drainPollMs: 10,
      drainTimeoutMs: 500,
      sleep: async (ms) => {
        local.host.advance(ms)
        if (created) return
        created = true
        await store.mdevs.create({ host: 'local', uuid: U1, spec: { adapters: [7], domains: [0xab], controlDomains: [], state: 'started' } })
      },
    })
    await rec.reconcile('local')
    await rec.reconcile('local')
    const flushed = local.host.requestStats(Q).flushed
    t.ok(flushed > 0)
    t.same(await flushedEvents(store), [{ name: Q, lost: flushed }])
    t.equal((await store.mdevs.get('local', U1)).status.lostRequests, flushed, 'the device that took the queue counts it')
  })
})
