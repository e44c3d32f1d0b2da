/**
 * The reconciler reacts to a `sysfs` host's change reports as it reacts to the emulator's events: a
 * polled attribute that moves (here `bus/ap/bindings`, as after a root user's unbind) brings a pass at
 * once, long before the periodic resync; a quiet bus brings none.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { NodeSysfsAccess } from '../../src/bus/node-sysfs-access.js'
import { createHost } from '../../src/emulator/host.js'
import { HostIdentity } from '../../src/hosts/host-identity.js'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { SysfsHost } from '../../src/hosts/sysfs-host.js'
import { Reconciler, type ReconcileOutcome } from '../../src/reconciler/reconciler.js'
import { ApmatrixService } from '../../src/service/index.js'
import { materializeSysfs, tempDir } from '../bus/sysfs-tree.js'
import { until } from '../scenario/rest-client.js'
import { freshDatabase } from '../store/pg-helper.js'
import { openStore } from '../store/store-fixture.js'

t.test('a polled change of a sysfs host is reconciled at once', async (t) => {
  const root = tempDir(t)
  materializeSysfs(createHost({ profile: 'spec-fixture' }), root)
  const host = new SysfsHost('lpar1', new NodeSysfsAccess({ root, lock: null, watch: { mode: 'poll', pollMs: 50 } }), new HostIdentity({ root }))
  t.teardown(() => host.close())
  const store = await openStore(t, await freshDatabase(t, 'sqlite'))
  const hosts = new StaticHostRegistry([host])
  await new ApmatrixService({ store, hosts, reconciler: { enqueue: () => undefined } }).syncHosts()
  const reconciler = new Reconciler({ store, hosts, holder: 'r1', resyncMs: 3_600_000 })
  const passes: ReconcileOutcome[] = []
  reconciler.onOutcome((o) => void passes.push(o))
  reconciler.start()
  t.teardown(() => reconciler.stop())
  await until('the first pass', async () => passes.length >= 1 || undefined)
  await new Promise((r) => setTimeout(r, 400))
  t.equal(passes.length, 1, 'a quiet bus: no pass besides the first (the resync is an hour away)')
  fs.writeFileSync(path.join(root, 'bus/ap/bindings'), '11/12\n')
  // The resync is an hour away: a second pass can only come from the watcher.
  const started = Date.now()
  await until('a pass after the change', async () => passes.length >= 2 || undefined, { timeoutMs: 5000 })
  t.pass(`reconciled ${Date.now() - started} ms after the change`)
})
