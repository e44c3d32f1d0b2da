/**
 * A held lease while the store does not answer (issue 11 §2): the renewal fails, the lease counts as held only
 * until the expiry last confirmed; past it the reconciler forgets it (no write may rely on it, gauge 0) and takes
 * it again with a write once the store answers.
 */
import t from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { Reconciler } from '../../src/reconciler/reconciler.js'
import type { Store } from '../../src/store/store.js'
import { until } from '../scenario/rest-client.js'
import { freshDatabase } from '../store/pg-helper.js'
import { addHost, manualClock, openStore } from '../store/store-fixture.js'

t.test('a lease the store cannot renew is forgotten once its known expiry passed', async (t) => {
  const clock = manualClock()
  const store = await openStore(t, await freshDatabase(t, 'sqlite'), { clock: clock.now })
  await addHost(store, 'local')
  const local = new LocalEmulatedHost({ name: 'local', profile: 'spec-fixture', realtime: false })
  t.teardown(() => local.close())
  await store.hosts.upsert({ ...(await store.hosts.get('local')), bootId: (await local.info()).bootId })

  let down = false
  const renew = store.leases.renew.bind(store.leases)
  const leases = Object.create(store.leases) as Store['leases']
  leases.renew = (...a) => (down ? Promise.reject(new ApmatrixError('UNAVAILABLE', 'store unavailable: test')) : renew(...a))
  // The periodic renewal renews every held lease in one write.
  const renewMany = store.leases.renewMany.bind(store.leases)
  leases.renewMany = (...a) => (down ? Promise.reject(new ApmatrixError('UNAVAILABLE', 'store unavailable: test')) : renewMany(...a))
  const flaky = Object.create(store) as Store
  Object.defineProperty(flaky, 'leases', { value: leases })

  const gauge: boolean[] = []
  const rec = new Reconciler({
    store: flaky,
    hosts: new StaticHostRegistry([local]),
    holder: 'r1',
    leaseTtlMs: 300,
    resyncMs: 60_000,
    sleep: async (ms) => local.host.advance(ms),
    metrics: { lease: (_h, held) => void gauge.push(held) },
  })
  const first = await rec.reconcile('local')
  t.notOk(first.skipped, 'the first pass takes the lease')
  rec.start()
  t.teardown(() => rec.stop())
  const token = (await store.leases.get('local'))!.fencingToken

  down = true
  const renewals = gauge.length
  await new Promise((r) => setTimeout(r, 250)) // a few failed renewals (every 100 ms) before the expiry: still held
  t.equal(gauge.slice(renewals).includes(false), false, 'failed renewals alone do not drop a lease that has not expired')
  clock.advance(301)
  await until('the lease to be forgotten', async () => gauge.at(-1) === false, { timeoutMs: 5000 })
  t.pass('past its known expiry, a lease the store cannot renew is no longer counted as held (gauge 0)')

  down = false
  const again = await rec.reconcile('local')
  t.notOk(again.skipped, 'once the store answers, the next pass takes the host again')
  const lease = await store.leases.get('local')
  t.equal(lease?.holder, 'r1')
  t.ok(lease && lease.fencingToken > token, `with a write: a new fencing token (${token} -> ${lease?.fencingToken})`)
})
