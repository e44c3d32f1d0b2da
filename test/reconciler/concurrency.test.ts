/**
 * Several hosts reconcile at once (docs/api.md (Reconcile)): a host whose pass is slow (its bus writes wait on
 * a gate the test holds) does not keep another host from converging, one host never has two passes in
 * flight however often it is enqueued, and no more hosts than the configured bound run at once.
 */
import t from 'tap'
import type { BusPort } from '../../src/bus/port.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { StaticHostRegistry, type ManagedHost } from '../../src/hosts/managed-host.js'
import { guardWrites } from '../../src/reconciler/lease-guard.js'
import { Reconciler } from '../../src/reconciler/reconciler.js'
import { Mask } from '../../src/domain/mask.js'
import type { Store } from '../../src/store/store.js'
import { until } from '../scenario/rest-client.js'
import { freshDatabase } from '../store/pg-helper.js'
import { addHost, openStore } from '../store/store-fixture.js'

/** A host whose every bus write first waits for `gate` (the host is slow to answer). */
function slowHost(inner: LocalEmulatedHost, gate: () => Promise<void>): ManagedHost {
  const bus: BusPort = guardWrites(inner.bus, gate)
  return { name: inner.name, bus, emulator: inner.emulator, info: () => inner.info(), guests: () => inner.guests(), close: () => inner.close() }
}

async function defineDevice(store: Store, host: string, uuid: string): Promise<void> {
  await store.masks.set(host, {
    apmask: Mask.full()
      .minus(Mask.of([5]))
      .toString(),
    aqmask: Mask.full().toString(),
  })
  await store.mdevs.create({ host, uuid, spec: { adapters: [5], domains: [4], controlDomains: [], state: 'started' } })
}

async function ready(store: Store, host: string, uuid: string): Promise<boolean> {
  const m = await store.mdevs.get(host, uuid)
  return m.status.observedGeneration === m.generation && !!m.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
}

/** Wraps `reconcile` to record how many passes are in flight, per host and in all. */
function instrument(rec: Reconciler) {
  const perHost = new Map<string, number>()
  const seen = { maxPerHost: 0, maxTotal: 0, passes: new Map<string, number>() }
  let total = 0
  const original = rec.reconcile.bind(rec)
  rec.reconcile = async (host: string) => {
    const n = (perHost.get(host) ?? 0) + 1
    perHost.set(host, n)
    total++
    seen.maxPerHost = Math.max(seen.maxPerHost, n)
    seen.maxTotal = Math.max(seen.maxTotal, total)
    seen.passes.set(host, (seen.passes.get(host) ?? 0) + 1)
    try {
      return await original(host)
    } finally {
      perHost.set(host, perHost.get(host)! - 1)
      total--
    }
  }
  return seen
}

t.test('a slow host does not hold back another; one pass per host; the bound on hosts at once holds', async (t) => {
  const store = await openStore(t, await freshDatabase(t, 'sqlite'))
  const hosts: LocalEmulatedHost[] = ['slow', 'fast', 'third'].map((name) => new LocalEmulatedHost({ name, profile: 'spec-fixture', realtime: false }))
  t.teardown(() => Promise.all(hosts.map((h) => h.close())))
  for (const h of hosts) {
    await addHost(store, h.name)
    await store.hosts.upsert({ ...(await store.hosts.get(h.name)), bootId: (await h.info()).bootId })
  }
  const U = 'a0000000-0000-4000-8000-00000000000'
  for (const [i, h] of hosts.entries()) await defineDevice(store, h.name, `${U}${i}`)

  let open!: () => void
  const gate = new Promise<void>((r) => (open = r))
  let slowWaiting = false
  const slow = slowHost(hosts[0]!, async () => {
    slowWaiting = true
    await gate
  })
  const rec = new Reconciler({
    store,
    hosts: new StaticHostRegistry([slow, hosts[1]!, hosts[2]!]),
    concurrency: 2,
    drainPollMs: 5,
    drainTimeoutMs: 1000,
    resyncMs: 60_000,
  })
  const seen = instrument(rec)
  rec.start()
  t.teardown(() => rec.stop())

  await until('the slow host to wait on its first write', async () => slowWaiting)
  // Nudges for the slow host while its pass is in flight: they must not start a second pass of it.
  for (let i = 0; i < 20; i++) rec.enqueue('slow')
  await until('fast and third to converge while slow waits', async () => (await ready(store, 'fast', `${U}1`)) && (await ready(store, 'third', `${U}2`)), {
    timeoutMs: 20_000,
  })
  t.equal(await ready(store, 'slow', `${U}0`), false, 'slow is still in its first pass')
  t.equal(seen.passes.get('slow'), 1, 'one pass of slow so far, whatever the nudges')
  open()
  await until('slow to converge once its host answers', () => ready(store, 'slow', `${U}0`), { timeoutMs: 20_000 })
  t.equal(seen.maxPerHost, 1, 'never two passes of one host at once')
  t.equal(seen.maxTotal, 2, 'two hosts at once (the bound), never more')
})

t.test('concurrency is validated', async (t) => {
  const store = await openStore(t, await freshDatabase(t, 'sqlite'))
  for (const concurrency of [0, -1, 1.5]) {
    t.throws(() => new Reconciler({ store, hosts: new StaticHostRegistry([]), concurrency }), RangeError, `concurrency ${concurrency}`)
  }
})
