/**
 * First contact changes nothing (docs/api.md (Resources) "Host masks", issue 7 §3), on every driver: a host that an
 * admin prepared by hand (chzdev took adapter 5 from the host drivers; a foreign matrix device holds
 * 05.0004) is registered and reconciled again and again, and not one bus write reaches it until a desired
 * state is given. Proven by what each host records: the in-process emulator's write log, the remote
 * emulator's WriteLog RPC, and a recording wrapper around the sysfs driver's node:fs access.
 */
import path from 'node:path'
import t, { type Test } from 'tap'
import { ApConfigLock } from '../../src/bus/ap-config-lock.js'
import { NodeSysfsAccess } from '../../src/bus/node-sysfs-access.js'
import type { SysfsAccess } from '../../src/bus/port.js'
import { createHost } from '../../src/emulator/host.js'
import { connectEmulator } from '../../src/emulator-remote/client.js'
import { startEmulatorServer } from '../../src/emulator-remote/server.js'
import { HostIdentity } from '../../src/hosts/host-identity.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { StaticHostRegistry, type ManagedHost } from '../../src/hosts/managed-host.js'
import { RemoteEmulatedHost } from '../../src/hosts/remote-emulated-host.js'
import { SysfsHost, type LocalSysfsAccess } from '../../src/hosts/sysfs-host.js'
import { Reconciler } from '../../src/reconciler/reconciler.js'
import { ApmatrixService } from '../../src/service/index.js'
import { materializeSysfs, tempDir } from '../bus/sysfs-tree.js'
import { freshDatabase } from '../store/pg-helper.js'
import { openStore } from '../store/store-fixture.js'

const FOREIGN = 'f0000000-0000-4000-8000-00000000000f'
const TYPE_DIR = '/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough'
const FULL = `0x${'f'.repeat(64)}`
const FB = `0xfb${'f'.repeat(62)}`
const F9 = `0xf9${'f'.repeat(62)}`

/** What an admin did by hand, through any raw write function: chzdev -d apmask 5, and a device of its own. */
async function prepareByHand(write: (p: string, v: string) => unknown): Promise<void> {
  await write('/sys/bus/ap/apmask', '-5\n')
  await write(`${TYPE_DIR}/create`, `${FOREIGN}\n`)
  await write(`/sys/devices/vfio_ap/matrix/${FOREIGN}/assign_adapter`, '5\n')
  await write(`/sys/devices/vfio_ap/matrix/${FOREIGN}/assign_domain`, '4\n')
}

/** A driver under test: the host, and the bus writes it received since it was handed over. */
interface Driver {
  host: ManagedHost
  writes(): Promise<Array<{ path: string; value: string }>>
}

/** A SysfsAccess that records every write, also those made inside an exclusive section. */
function recording(inner: NodeSysfsAccess, into: Array<{ path: string; value: string }>): LocalSysfsAccess {
  const wrap = (a: SysfsAccess): SysfsAccess => ({
    read: (p) => a.read(p),
    list: (p) => a.list(p),
    readlink: (p) => a.readlink(p),
    write: async (p, v) => {
      into.push({ path: p, value: v })
      await a.write(p, v)
    },
  })
  return { ...wrap(inner), exclusive: (fn) => inner.exclusive!((locked) => fn(wrap(locked))), watch: inner.watch, root: inner.root, close: () => inner.close() }
}

const drivers: Record<string, (t: Test) => Promise<Driver>> = {
  async emulator(t) {
    const host = new LocalEmulatedHost({ name: 'h', profile: 'spec-fixture', realtime: false })
    t.teardown(() => host.close())
    await prepareByHand((p, v) => host.host.write(p, v))
    return { host, writes: async () => host.writeLog() }
  },
  async 'remote-emulator'(t) {
    const server = await startEmulatorServer({ addr: '127.0.0.1:0', profile: 'spec-fixture', clock: 'manual' })
    t.teardown(() => server.close())
    const root = connectEmulator(server.address, { timeoutMs: 3000 })
    t.teardown(() => root.close())
    await prepareByHand((p, v) => root.write(p, v))
    const since = (await root.writeLog()).lastSeq
    const host = await RemoteEmulatedHost.connect('h', server.address, 5000)
    t.teardown(() => host.close())
    return { host, writes: async () => (await root.writeLog(since)).entries }
  },
  async sysfs(t) {
    const emu = createHost({ profile: 'spec-fixture' })
    await prepareByHand((p, v) => emu.write(p, v))
    const dir = tempDir(t)
    materializeSysfs(emu, dir)
    const access = new NodeSysfsAccess({ root: dir, lock: new ApConfigLock({ path: path.join(tempDir(t), 's390apconfig.lock') }) })
    const seen: Array<{ path: string; value: string }> = []
    const host = new SysfsHost('h', recording(access, seen), new HostIdentity({ root: dir }))
    t.teardown(() => host.close())
    return { host, writes: async () => seen }
  },
}

for (const [name, make] of Object.entries(drivers)) {
  t.test(`${name}: first contact adopts the observed masks, leaves the foreign device, and writes nothing until a desired state is given`, async (t) => {
    const { host, writes } = await make(t)
    const store = await openStore(t, await freshDatabase(t, 'sqlite'))
    const hosts = new StaticHostRegistry([host])
    const enqueued: string[] = []
    const service = new ApmatrixService({ store, hosts, reconciler: { enqueue: (h) => void enqueued.push(h) } })
    const reconciler = new Reconciler({ store, hosts, holder: 'r1', drainTimeoutMs: 0, drainPollMs: 1 })

    await service.syncHosts()
    const masks = await service.getMasks('h')
    t.match(
      masks,
      { metadata: { generation: 0 }, spec: { apmask: FB, aqmask: FULL }, status: { apmask: FB, aqmask: FULL } },
      'the observed masks are the desired ones (generation 0: adopted)',
    )
    const events = await store.events.list({ host: 'h' })
    t.same(
      events.map((e) => e.type),
      ['MasksAdopted'],
    )
    t.match(events[0], { kind: 'masks', data: { apmask: FB, aqmask: FULL, generation: 0, foreignMdevs: [FOREIGN] } })

    for (let i = 0; i < 3; i++) {
      const o = await reconciler.reconcile('h')
      t.match(o, { skipped: 'observe-only', converged: true, drift: false }, `pass ${i + 1} only observed`)
    }
    await service.syncHosts()
    t.same(await writes(), [], 'not a single bus write')
    t.match(await service.listBusMdevs('h'), { items: [{ uuid: FOREIGN, managed: false, matrix: ['05.0004'] }] }, 'the foreign device is visible, unmanaged')
    t.same(
      (await store.events.list({ host: 'h' })).map((e) => e.type),
      // MasksStatusChanged: the first pass stored the masks it observed (the status write's event, read caches).
      ['MasksAdopted', 'MasksStatusChanged'],
      'one adoption event; re-registering adopts nothing again',
    )

    // A desired state is given: from now on the host is driven.
    const set = await service.setMasks('h', { apmask: '-6' })
    t.match(set, { dryRun: false, result: { metadata: { generation: 1 }, spec: { apmask: F9 } } })
    const o = await reconciler.reconcile('h')
    t.equal(o.skipped, undefined, 'no longer only observed')
    const w = await writes()
    t.ok(
      w.some((x) => x.path === '/sys/bus/ap/apmask' && x.value === `${F9}\n`),
      `the mask is written now (${w.length} writes)`,
    )
    t.notOk(
      w.some((x) => x.path.includes(FOREIGN)),
      'the foreign device is still never written',
    )
  })
}

t.test('masks adopted at first contact follow the host until a caller sets them (chzdev after first contact)', async (t) => {
  const host = new LocalEmulatedHost({ name: 'h', profile: 'spec-fixture', realtime: false })
  t.teardown(() => host.close())
  const store = await openStore(t, await freshDatabase(t, 'sqlite'))
  const hosts = new StaticHostRegistry([host])
  const service = new ApmatrixService({ store, hosts, reconciler: { enqueue: () => undefined } })
  const reconciler = new Reconciler({ store, hosts, holder: 'r1', drainTimeoutMs: 0, drainPollMs: 1 })
  await service.syncHosts()
  t.match(await service.getMasks('h'), { metadata: { generation: 0 }, spec: { apmask: FULL } })
  host.host.write('/sys/bus/ap/apmask', '-5\n') // the admin runs chzdev after apmatrix first saw the host
  await reconciler.reconcile('h')
  t.same(host.writeLog(), [], 'apmatrix did not undo it')
  t.match(await service.getMasks('h'), { metadata: { generation: 0 }, spec: { apmask: FB } }, 'adopted again')
  t.match(
    (await store.events.list({ host: 'h' })).map((e) => e.type),
    ['MasksAdopted', 'MasksStatusChanged', 'MasksAdopted'],
  )
  // PUT of the same masks is a desired state too: generation 1, and from then on drift is repaired.
  const same = await service.setMasks('h', { apmask: FB })
  t.match(same, { result: { metadata: { generation: 1 } } })
  host.host.write('/sys/bus/ap/apmask', '+5\n')
  const o = await reconciler.reconcile('h')
  t.equal(o.skipped, undefined)
  t.ok(
    host.writeLog().some((w) => w.path === '/sys/bus/ap/apmask'),
    'the given masks are enforced',
  )
  t.equal(host.host.read('/sys/bus/ap/apmask').trim(), FB)
})
