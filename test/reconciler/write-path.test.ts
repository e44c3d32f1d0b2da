/**
 * What a reconcile pass costs the store, and the fence it keeps without writing (docs/api.md (Reconcile)):
 * the lease once per pass at most (none while it is held with time to spare), the plan journaled in one
 * transaction, each phase's outcomes in one, the status and events in one, nothing at all for a pass with
 * nothing to do. The fence check before a phase is a read, and it still stops a pass whose lease was taken:
 * on a host that checks tokens (remote emulator) at the next phase, on a host that cannot (in-process, sysfs)
 * before the next write.
 */
import t, { type Test } from 'tap'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { RemoteEmulatedHost } from '../../src/hosts/remote-emulated-host.js'
import { StaticHostRegistry, type ManagedHost } from '../../src/hosts/managed-host.js'
import { Reconciler, type ReconcilerOptions } from '../../src/reconciler/reconciler.js'
import { phasesOf } from '../../src/reconciler/executor.js'
import { startEmulatorServer } from '../../src/emulator-remote/server.js'
import { connectEmulator } from '../../src/emulator-remote/client.js'
import { Mask } from '../../src/domain/mask.js'
import type { Store } from '../../src/store/store.js'
import { forEachDatabase, type TestDatabase } from '../store/pg-helper.js'
import { addHost, manualClock, openStore } from '../store/store-fixture.js'

const MATRIX = '/sys/devices/vfio_ap/matrix'
const U1 = '11111111-1111-4111-8111-111111111111'
const U2 = '22222222-2222-4222-8222-222222222222'
const U3 = '33333333-3333-4333-8333-333333333333'
const TTL = 1000

/** Adapters 5 and 6 to vfio_ap, one device on each (spec-fixture). */
async function desire(store: Store, host: string): Promise<void> {
  await store.masks.set(host, {
    apmask: Mask.full()
      .minus(Mask.of([5, 6]))
      .toString(),
    aqmask: Mask.full().toString(),
  })
  await store.mdevs.create({ host, uuid: U1, spec: { adapters: [5], domains: [4, 0x47], controlDomains: [], state: 'started' } })
  await store.mdevs.create({ host, uuid: U2, spec: { adapters: [6], domains: [4, 0x47], controlDomains: [], state: 'started' } })
}

async function registered(store: Store, h: ManagedHost): Promise<void> {
  await addHost(store, h.name)
  await store.hosts.upsert({ ...(await store.hosts.get(h.name)), bootId: (await h.info()).bootId })
}

async function localSetup(t: Test, db: TestDatabase, opts: Partial<ReconcilerOptions> = {}) {
  const clock = manualClock()
  const store = await openStore(t, db, { clock: clock.now })
  const local = new LocalEmulatedHost({ name: 'local', profile: 'spec-fixture', realtime: false })
  t.teardown(() => local.close())
  await registered(store, local)
  const rec = (holder: string, o: Partial<ReconcilerOptions> = {}) =>
    new Reconciler({
      store,
      hosts: new StaticHostRegistry([local]),
      holder,
      leaseTtlMs: TTL,
      drainPollMs: 10,
      drainTimeoutMs: 1000,
      sleep: async (ms) => local.host.advance(ms),
      ...opts,
      ...o,
    })
  return { clock, store, local, rec }
}

forEachDatabase(t, async (t, db) => {
  t.test('transactions per pass: lease once, plan once, one per phase, status and events once; an idle pass none', async (t) => {
    const { store, rec } = await localSetup(t, db)
    await desire(store, 'local')
    const a = rec('A')
    const before = store.stats().transactions
    const out = await a.reconcile('local')
    t.equal(out.converged, true)
    const steps = out.execution!.steps.length
    const phases = phasesOf(out.plan!).length
    t.ok(steps >= 6 && phases === 3, `the plan: ${steps} steps in ${phases} phases (${out.plan!.operations.map((o) => o.kind).join(', ')})`)
    // The replica's first heartbeat (lease sharing counts the live replicas once before its first acquisition).
    t.equal(store.stats().transactions - before, 1 + 1 + 1 + phases + 1, 'first heartbeat + lease acquisition + journal + one per phase + status and events')
    t.same(await store.journal.listOpen('local'), [], 'every step journaled done')

    const idle = store.stats().transactions
    const again = await a.reconcile('local')
    t.same([again.converged, again.plan?.operations.length], [true, 0])
    t.equal(store.stats().transactions - idle, 0, 'a pass with nothing to do writes nothing: the held lease is checked with a read')

    await store.mdevs.create({ host: 'local', uuid: U3, spec: { adapters: [5], domains: [0xab], controlDomains: [], state: 'started' } })
    const third = store.stats().transactions
    const out3 = await a.reconcile('local')
    t.equal(out3.converged, true)
    t.equal(store.stats().transactions - third, 1 + phasesOf(out3.plan!).length + 1, 'a held lease costs no write: journal + phases + status')
    t.equal(store.stats().retries, 0, 'no transaction had to run again')
  })

  t.test('a lease taken mid-pass on a host that cannot check tokens: the next write renews first, fails, and nothing more is written', async (t) => {
    const { clock, store, local, rec } = await localSetup(t, db)
    await desire(store, 'local')
    let took = false
    const a = rec('A', {
      hook: async (point, _host, op) => {
        // Right before the first create: A's lease runs out and B takes the host.
        if (point !== 'beforeBusWrite' || op?.kind !== 'createMdev' || took) return
        took = true
        clock.advance(TTL + 1)
        t.equal((await store.leases.tryAcquire('local', 'B', TTL)).acquired, true, 'B takes the expired lease')
      },
    })
    const seqBefore = local.writeLog().at(-1)?.seq ?? 0
    const err = await a.reconcile('local').then(
      () => null,
      (e: unknown) => e as Error,
    )
    t.match(err?.message, /lease on local lost \(token 1\): expired or taken over/, 'the pass ends: lease lost')
    const written = local.writeLog(seqBefore).map((w) => w.path)
    t.ok(written.length > 0, `A wrote before the takeover: ${written.join(', ')}`)
    t.notOk(
      written.some((p) => p.endsWith('/create')),
      'no create reached the host after the takeover',
    )
    t.equal(local.host.list(MATRIX).filter((n) => n === U1 || n === U2).length, 0, 'no device on the bus')
    const lease = await store.leases.get('local')
    t.same([lease?.holder, lease?.fencingToken], ['B', 2], "the lease is B's: A's failed renewal changed nothing")
  })
})

/**
 * On a host that checks fencing tokens (remote emulator), a pass checks its lease with a read before each
 * phase: a lease taken after one phase stops the pass before the next one writes anything.
 */
t.test('a lease taken between phases on a host that checks tokens: the read before the next phase stops the pass', async (t) => {
  forEachDatabase(t, async (t, db) => {
    const clock = manualClock()
    const store = await openStore(t, db, { clock: clock.now })
    const server = await startEmulatorServer({ addr: '127.0.0.1:0', profile: 'spec-fixture', clock: 'manual' })
    t.teardown(() => server.close())
    const host = await RemoteEmulatedHost.connect('a', server.address)
    t.teardown(() => host.close())
    const emu = connectEmulator(server.address)
    t.teardown(() => emu.close())
    await registered(store, host)
    await desire(store, 'a')
    let took = false
    const a = new Reconciler({
      store,
      hosts: new StaticHostRegistry([host]),
      holder: 'A',
      leaseTtlMs: TTL,
      drainTimeoutMs: 0,
      drainPollMs: 1,
      hook: async (point, _host, op) => {
        // After the mask write (the `take` phase), before the `build` phase's fence check.
        if (point !== 'afterBusWrite' || op?.kind !== 'takeFromHost' || took) return
        took = true
        clock.advance(TTL + 1)
        t.equal((await store.leases.tryAcquire('a', 'B', TTL)).acquired, true, 'B takes the expired lease')
      },
    })
    const leaseWrites = () => store.stats().transactions
    const before = leaseWrites()
    const err = await a.reconcile('a').then(
      () => null,
      (e: unknown) => e as Error,
    )
    t.match(err?.message, /lease on a lost \(token 1\)/, 'the pass ends before the build phase')
    const log = await emu.writeLog()
    const byA = log.entries.filter((e) => e.fence?.holder === 'A').map((e) => e.path)
    t.same(byA.slice(-2), ['/sys/bus/ap/apmask', '/sys/bus/ap/aqmask'], `A's last writes were the masks (take phase), after its drain: ${byA.length} writes`)
    t.notOk(
      byA.some((p) => p.startsWith(MATRIX)),
      'nothing of the build phase reached the host',
    )
    t.same(
      log.entries.filter((e) => e.fenceRefused),
      [],
      'the host had nothing to refuse: the read check stopped A first',
    )
    // A's store writes: its first heartbeat, its lease acquisition, the journal, the drain and take phases; B's acquisition. No lease write by A's checks.
    t.equal(store.stats().transactions - before, 1 + 1 + 1 + 2 + 1, 'A never wrote its lease after acquiring it')
    const lease = await store.leases.get('a')
    t.same([lease?.holder, lease?.fencingToken], ['B', 2])
  })
})
