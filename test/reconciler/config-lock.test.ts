/**
 * Cooperation with s390-tools on a `sysfs` host (issue 7 §3): every pass of bus writes is made under the
 * AP configuration lock `/run/lock/s390apconfig.lock` (a temporary path here). While another process holds
 * it (as chzdev does around a mask change, ap-check around an mdevctl command) the reconciler writes
 * nothing and reports it once; once released the pass runs, planned again from what the bus shows under
 * the lock; a stale lock (its pid is gone) is removed and does not block.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ApConfigLock } from '../../src/bus/ap-config-lock.js'
import { NodeSysfsAccess } from '../../src/bus/node-sysfs-access.js'
import type { SysfsAccess } from '../../src/bus/port.js'
import { createHost } from '../../src/emulator/host.js'
import { HostIdentity } from '../../src/hosts/host-identity.js'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { SysfsHost, type LocalSysfsAccess } from '../../src/hosts/sysfs-host.js'
import { Reconciler } from '../../src/reconciler/reconciler.js'
import { ApmatrixService } from '../../src/service/index.js'
import type { Store } from '../../src/store/index.js'
import { holdLockInOtherProcess } from '../bus/lock-holder.js'
import { materializeSysfs, tempDir } from '../bus/sysfs-tree.js'
import { freshDatabase } from '../store/pg-helper.js'
import { openStore } from '../store/store-fixture.js'

const FD = `0xfd${'f'.repeat(62)}`

interface Fixture {
  root: string
  lockPath: string
  store: Store
  reconciler: Reconciler
  /** Bus writes that reached the tree, with whether the lock file held our pid at that moment. */
  writes: Array<{ path: string; value: string; lockHeldByUs: boolean }>
}

/** A sysfs host over a tree of the spec fixture whose desired masks say: take adapter 6 from the host drivers. */
async function fixture(t: Test): Promise<Fixture> {
  const root = tempDir(t)
  materializeSysfs(createHost({ profile: 'spec-fixture' }), root)
  const lockPath = path.join(tempDir(t), 's390apconfig.lock')
  const inner = new NodeSysfsAccess({ root, lock: new ApConfigLock({ path: lockPath }), lockWaitMs: 150 })
  const writes: Fixture['writes'] = []
  const held = () => {
    try {
      return fs.readFileSync(lockPath, 'utf8') === `${process.pid}\n`
    } catch {
      return false
    }
  }
  const wrap = (a: SysfsAccess): SysfsAccess => ({
    read: (p) => a.read(p),
    list: (p) => a.list(p),
    readlink: (p) => a.readlink(p),
    write: async (p, v) => {
      writes.push({ path: p, value: v, lockHeldByUs: held() })
      await a.write(p, v)
    },
  })
  const access: LocalSysfsAccess = { ...wrap(inner), exclusive: (fn) => inner.exclusive!((l) => fn(wrap(l))), root, close: () => inner.close() }
  const host = new SysfsHost('lpar1', access, new HostIdentity({ root }))
  t.teardown(() => host.close())
  const store = await openStore(t, await freshDatabase(t, 'sqlite'))
  const hosts = new StaticHostRegistry([host])
  const service = new ApmatrixService({ store, hosts, reconciler: { enqueue: () => undefined } })
  await service.syncHosts()
  await service.setMasks('lpar1', { apmask: '-6' })
  const reconciler = new Reconciler({ store, hosts, holder: 'r1', drainTimeoutMs: 0, drainPollMs: 1 })
  return { root, lockPath, store, reconciler, writes }
}

const apmaskFile = (f: Fixture) => fs.readFileSync(path.join(f.root, 'bus/ap/apmask'), 'utf8')

t.test('while another process holds the lock, no bus write; once it is released the pass runs under our own hold', async (t) => {
  const f = await fixture(t)
  const holder = await holdLockInOtherProcess(t, f.lockPath)
  const first = await f.reconciler.reconcile('lpar1')
  t.match(first, { converged: false, lockBusy: { lockPath: f.lockPath, holderPid: String(holder.pid) } })
  t.ok(first.lockBusy!.waitedMs >= 140, 'it waited the bound first')
  const second = await f.reconciler.reconcile('lpar1')
  t.ok(second.lockBusy, 'still held: still nothing')
  t.same(f.writes, [], 'not a single bus write while the other process holds the lock')
  t.equal(apmaskFile(f), `0x${'f'.repeat(64)}\n`)
  const failed = (await f.store.events.list({ host: 'lpar1' })).filter((e) => e.type === 'ReconcileFailed')
  t.equal(failed.length, 1, 'reported once per wait, not once per retry')
  t.match(failed[0], { kind: 'host', data: { errno: 'EBUSY', lockPath: f.lockPath, holderPid: String(holder.pid) } })

  await holder.release()
  const third = await f.reconciler.reconcile('lpar1')
  t.equal(third.lockBusy, undefined)
  t.equal(apmaskFile(f), `${FD}\n`, 'the mask is written')
  t.ok(
    f.writes.length >= 1 && f.writes.every((w) => w.lockHeldByUs),
    `every write of the pass was made while the lock held our pid (${f.writes.length} writes)`,
  )
  t.notOk(fs.existsSync(f.lockPath), 'released after the pass')
})

t.test('a change made under the lock by its holder is seen: the pass plans again once it holds the lock', async (t) => {
  const f = await fixture(t)
  const holder = await holdLockInOtherProcess(t, f.lockPath)
  t.ok((await f.reconciler.reconcile('lpar1')).lockBusy)
  // chzdev, holding the lock, sets exactly the mask apmatrix wanted.
  fs.writeFileSync(path.join(f.root, 'bus/ap/apmask'), `${FD}\n`)
  await holder.release()
  const o = await f.reconciler.reconcile('lpar1')
  t.same(f.writes, [], 'nothing left to write: the plan made before waiting was dropped')
  t.equal(o.converged, true)
})

t.test('a stale lock (the holder died) is removed and does not block', async (t) => {
  const f = await fixture(t)
  const dead = spawn('true')
  await new Promise((r) => dead.once('exit', r))
  fs.writeFileSync(f.lockPath, `${dead.pid}\n`)
  const o = await f.reconciler.reconcile('lpar1')
  t.equal(o.lockBusy, undefined, 'not busy: the lock was taken, not waited out')
  t.equal(apmaskFile(f), `${FD}\n`)
  t.notOk(fs.existsSync(f.lockPath), 'the stale lock is gone, and ours was released')
})
