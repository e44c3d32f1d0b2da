/**
 * A graceful stop does not wait for a long pass (Reconciler.stop, executor `stopping`), on the real store and
 * emulator: a hand-over draining a never-idle queue under an hour's drain policy ends at its next drain poll
 * (nothing flushed, the masks unchanged: the next pass goes on from the bus as it is), and a pass stopped
 * at a bus write makes that write and no other. Without this a stop waited for the whole drain budget (a
 * device may ask for an hour) and for every slow write left in the plan (the emulator's faults delay a write
 * by up to a minute).
 */
import t, { type Test } from 'tap'
import { Mask } from '../../src/domain/mask.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { Reconciler, type ReconcilerOptions } from '../../src/reconciler/reconciler.js'
import { forEachDatabase, freshDatabase, type TestDatabase } from '../store/pg-helper.js'
import { addHost, openStore } from '../store/store-fixture.js'

const U1 = '11111111-1111-4111-8111-111111111111'
const U2 = '22222222-2222-4222-8222-222222222222'
const Q = '07.00ab'
const FULL = Mask.full().toString()

/**
 * A store, the emulated host `local` and a started-later reconciler whose options `opts` makes; `stopNow` (for
 * the options' callbacks) stops the reconciler from inside its pass, once. `stopped` waits until that happened
 * and the stop has ended (tap's timeout is the hang guard).
 */
async function setup(t: Test, db: TestDatabase, opts: (stopNow: () => void, local: LocalEmulatedHost) => Partial<ReconcilerOptions>) {
  const store = await openStore(t, await freshDatabase(t, db.provider))
  await addHost(store, 'local')
  const local = new LocalEmulatedHost({ name: 'local', profile: 'spec-fixture', realtime: false })
  t.teardown(() => local.close())
  const info = await local.info()
  await store.hosts.upsert({ ...(await store.hosts.get('local')), bootId: info.bootId })
  let stopping: Promise<void> | undefined
  const rec: Reconciler = new Reconciler({
    store,
    hosts: new StaticHostRegistry([local]),
    resyncMs: 3_600_000,
    drainPollMs: 10,
    ...opts(() => void (stopping ??= rec.stop()), local),
  })
  t.teardown(() => rec.stop())
  const stopped = async () => {
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (stopping) {
          clearInterval(poll)
          resolve()
        }
      }, 5)
    })
    await stopping
  }
  return { store, local, rec, stopped }
}

forEachDatabase(t, async (t, db) => {
  t.test('a drain with an hour of budget ends at the stop: nothing flushed, the mask as it was', async (t) => {
    let virtualMs = 0
    const { store, local, rec, stopped } = await setup(t, db, (stopNow, local) => ({
      // Virtual time: each drain poll advances the emulator's clock; the stop comes after 2 s of drain.
      sleep: async (ms) => {
        local.host.advance(ms)
        virtualMs += ms
        if (virtualMs >= 2_000) stopNow()
      },
    }))
    local.host.setWorkload(Q, 300) // never idle at a 10 ms poll
    local.host.advance(100)
    await store.masks.set('local', {
      apmask: Mask.full()
        .minus(Mask.of([7]))
        .toString(),
      aqmask: FULL,
    })
    await store.mdevs.create({
      host: 'local',
      uuid: U1,
      spec: { adapters: [7], domains: [0xab], controlDomains: [], state: 'started', drain: { timeoutSeconds: 3600, onTimeout: 'flush' } },
    })
    rec.start()
    // Without the stop check the pass drains for an hour of virtual time (360,000 polls) before the stop ends.
    await stopped()
    t.ok(virtualMs < 3_600_000, `the drain ended at the stop (${virtualMs} ms of its 3,600,000 ms budget)`)
    t.equal(local.host.requestStats(Q).flushed, 0, 'nothing flushed')
    t.equal((await local.bus.observeTopology()).apmask, FULL, 'the host mask did not change: the hand-over did not happen')
    const lease = await store.leases.get('local')
    t.ok(lease && lease.expiresAt.getTime() <= Date.now(), 'the lease was released')
  })

  t.test('a pass stopped at a bus write makes that write and no other', async (t) => {
    const writes: string[] = []
    const { store, local, rec, stopped } = await setup(t, db, (stopNow) => ({
      hook: (point, _host, step) => {
        if (point !== 'beforeBusWrite' || !step) return
        writes.push(step.kind)
        stopNow()
      },
    }))
    await store.masks.set('local', {
      apmask: Mask.full()
        .minus(Mask.of([5, 6]))
        .toString(),
      aqmask: FULL,
    })
    await store.mdevs.create({ host: 'local', uuid: U1, spec: { adapters: [5], domains: [4], controlDomains: [], state: 'started' } })
    await store.mdevs.create({ host: 'local', uuid: U2, spec: { adapters: [6], domains: [4], controlDomains: [], state: 'started' } })
    rec.start()
    await stopped()
    t.equal(writes.length, 1, `one bus write, then the stop (${writes.join(', ')})`)
    const bus = await local.bus.observeTopology()
    t.ok(bus.mdevs.length < 2, `the plan did not run to its end (${bus.mdevs.length} devices on the bus)`)
  })
})
