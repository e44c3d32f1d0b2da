/**
 * The `sysfs` driver's file access (src/bus/node-sysfs-access.ts) against real directories, files and
 * symlinks: reads, listings, links, the root guard, errno mapping, the shape of a write (one open(2)
 * O_WRONLY without O_CREAT or O_TRUNC, one write(2), checked with strace when it can run), the lock
 * around writes, and the poll watcher.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ApConfigLock } from '../../src/bus/ap-config-lock.js'
import { NodeSysfsAccess } from '../../src/bus/node-sysfs-access.js'
import { errnoFromNode } from '../../src/bus/node-errno.js'
import { ConfigLockBusyError, type BusChange } from '../../src/bus/port.js'
import { SysfsBus } from '../../src/bus/sysfs-bus.js'
import { SysfsError } from '../../src/domain/errors.js'
import { createHost } from '../../src/emulator/host.js'
import { projectRoot } from '../../src/paths.js'
import { holdLockInOtherProcess } from './lock-holder.js'
import { materializeSysfs, tempDir } from './sysfs-tree.js'
import { requireOrSkip } from '../helpers/required-tools.js'
import { TS_IMPORT } from '../helpers/ts-loader.js'

const FULL = `0x${'f'.repeat(64)}`

function fixtureTree(t: Parameters<typeof tempDir>[0]): string {
  const root = tempDir(t)
  materializeSysfs(createHost({ profile: 'spec-fixture' }), root)
  return root
}

t.test('reads, lists and links as the kernel shows them, through the symlinked bus/ap/devices', async (t) => {
  const root = fixtureTree(t)
  const fsx = new NodeSysfsAccess({ root, lock: null })
  t.equal(await fsx.read('/sys/bus/ap/apmask'), `${FULL}\n`)
  t.equal(await fsx.read('/sys/bus/ap/bindings'), '12/12 (complete)\n')
  t.equal(await fsx.read('/sys/bus/ap/devices/05.0004/online'), '1\n', 'through the devices/05.0004 link')
  t.same((await fsx.list('/sys/bus/ap/devices')).slice(0, 4), ['05.0004', '05.0047', '05.00ab', '05.00ff'], 'sorted')
  t.equal(await fsx.readlink('/sys/bus/ap/devices/05.0004'), '../../../devices/ap/card05/05.0004', 'relative target, unchanged')
  t.equal(await fsx.readlink('/sys/devices/ap/card05/05.0004/driver'), '../../../../bus/ap/drivers/cex4queue')
  t.equal(await fsx.exists('/sys/bus/ap/devices/05.0004'), true)
  t.equal(await fsx.exists('/sys/bus/ap/devices/09.0004'), false)
  t.equal(await fsx.read('/sys//bus/ap//apmask'), `${FULL}\n`, 'empty segments are ignored')

  // The whole bus port reads the tree as it reads the emulator.
  const topo = await new SysfsBus(fsx).observeTopology()
  t.match(topo, { apmask: FULL, maxAdapterId: 255, bindings: { bound: 12, total: 12, complete: true }, vfioApLoaded: true })
  t.equal(topo.queues.length, 12)
})

t.test('the root guard: nothing outside the root, no dot segments, no NUL', async (t) => {
  const root = fixtureTree(t)
  fs.writeFileSync(path.join(path.dirname(root), 'outside-secret'), 'secret')
  t.teardown(() => fs.rmSync(path.join(path.dirname(root), 'outside-secret'), { force: true }))
  const fsx = new NodeSysfsAccess({ root, lock: null })
  for (const bad of [
    '/etc/passwd',
    '/sysx/bus',
    'sys/bus/ap/apmask',
    '/sys/../outside-secret',
    '/sys/bus/../../outside-secret',
    '/sys/bus/./ap/apmask',
    '/sys/bus/ap/apmask\0x',
    '',
  ]) {
    const err = await fsx.read(bad).catch((e: unknown) => e)
    t.ok(err instanceof SysfsError && err.errno === 'EACCES', `refused: ${JSON.stringify(bad)}`)
    t.match(await fsx.write(bad, '1\n').catch((e: unknown) => e), { errno: 'EACCES' })
  }
  t.equal(fsx.resolve('/sys'), root)
  t.equal(fsx.resolve('/sys/bus/ap/apmask'), path.join(root, 'bus/ap/apmask'))
})

t.test('errno of failed calls: the node error code becomes the SysfsError errno', async (t) => {
  const root = fixtureTree(t)
  const fsx = new NodeSysfsAccess({ root, lock: null })
  t.match(await fsx.write('/sys/bus/ap', '1\n').catch((e: unknown) => e), { name: 'SysfsError', errno: 'EISDIR', message: /^write \/sys\/bus\/ap: EISDIR/ })
  t.match(await fsx.write('/sys/bus/ap/no_such_attr', '1\n').catch((e: unknown) => e), { errno: 'ENOENT' })
  t.notOk(fs.existsSync(path.join(root, 'bus/ap/no_such_attr')), 'a write never creates a file (no O_CREAT)')
  t.match(await fsx.read('/sys/bus/ap/nope').catch((e: unknown) => e), { errno: 'ENOENT' })
  t.match(await fsx.read('/sys/bus/ap').catch((e: unknown) => e), { errno: 'EISDIR' })
  t.match(await fsx.list('/sys/bus/ap/apmask').catch((e: unknown) => e), { errno: 'ENOTDIR' })
  t.match(await fsx.readlink('/sys/bus/ap/apmask').catch((e: unknown) => e), { errno: 'EINVAL' }, 'not a link')
  t.match(await fsx.read('/sys/bus/ap/apmask/x').catch((e: unknown) => e), { errno: 'ENOTDIR' })

  // A device whose write(2) fails in the kernel: /dev/full answers ENOSPC.
  fs.symlinkSync('/dev/full', path.join(root, 'bus/ap/full'))
  t.match(await fsx.write('/sys/bus/ap/full', '1\n').catch((e: unknown) => e), { errno: 'ENOSPC' }, "the kernel's errno of the write itself")
  // Through the bus port the errno is kept on the BusError (what the reconciler reads).
  fs.rmSync(path.join(root, 'bus/ap/scans'))
  fs.symlinkSync('/dev/full', path.join(root, 'bus/ap/scans'))
  t.match(await new SysfsBus(fsx).rescan().catch((e: unknown) => e), { name: 'BusError', errno: 'ENOSPC', path: '/sys/bus/ap/scans' })

  // The errnos of docs/kernel-model.md §4 map to themselves; unknown ones become EIO with the original kept.
  for (const code of ['EADDRINUSE', 'EADDRNOTAVAIL', 'EBUSY', 'ENODEV', 'EINVAL', 'ERANGE', 'EUSERS', 'EEXIST', 'EAGAIN']) {
    t.same(errnoFromNode(Object.assign(new Error(code), { code })), { errno: code, original: code })
  }
  t.same(errnoFromNode(Object.assign(new Error('x'), { code: 'ENOTSUP' })), { errno: 'EOPNOTSUPP', original: 'ENOTSUP' })
  t.same(errnoFromNode(Object.assign(new Error('x'), { code: 'EHWPOISON' })), { errno: 'EIO', original: 'EHWPOISON' })
  t.same(errnoFromNode(new Error('no code')), { errno: 'EIO', original: 'EIO' })
})

t.test('a write puts exactly the given bytes at offset 0, without truncating (sysfs has no truncation)', async (t) => {
  const root = fixtureTree(t)
  const fsx = new NodeSysfsAccess({ root, lock: null })
  await fsx.write('/sys/bus/ap/apmask', `0x${'0'.repeat(64)}\n`)
  t.equal(await fsx.read('/sys/bus/ap/apmask'), `0x${'0'.repeat(64)}\n`)
  await fsx.write('/sys/bus/ap/apmask', '-5')
  t.equal(await fsx.read('/sys/bus/ap/apmask'), `-5${'0'.repeat(64)}\n`, 'no O_TRUNC: the bytes after the value stay (a plain file is no kernel)')
  await fsx.write('/sys/bus/ap/ap_domain', 'é\n')
  t.same([...fs.readFileSync(path.join(root, 'bus/ap/ap_domain'))].slice(0, 3), [0xc3, 0xa9, 0x0a], 'UTF-8 bytes as given')
})

const straceProbe = spawnSync('strace', ['-f', '-qq', '-e', 'trace=none', 'true'], { encoding: 'utf8' })
const straceMissing =
  straceProbe.error || straceProbe.status !== 0
    ? `strace cannot trace here, install Debian package 'strace' (${straceProbe.error?.message ?? straceProbe.stderr.trim()})`
    : undefined

requireOrSkip(t, 'one open(2) O_WRONLY without O_CREAT/O_TRUNC and exactly one write(2) per write (strace)', straceMissing, async (t) => {
  const root = fixtureTree(t)
  const traceDir = tempDir(t)
  const entry = path.join(projectRoot, 'test/bus/one-write-entry.ts')
  // -ff: one trace file per thread, so no call is split into "unfinished" and "resumed" halves.
  const r = spawnSync(
    'strace',
    [
      '-f',
      '-ff',
      '-qq',
      '-o',
      path.join(traceDir, 't'),
      '-e',
      'trace=openat,open,write,pwrite64,writev,pwritev,close',
      process.execPath,
      `--import=${TS_IMPORT}`,
      entry,
      root,
      '/sys/bus/ap/apmask',
      '-5,-6\n',
    ],
    { encoding: 'utf8', timeout: 60_000 },
  )
  t.equal(r.status, 0, r.stderr)
  const lines = fs.readdirSync(traceDir).flatMap((f) => fs.readFileSync(path.join(traceDir, f), 'utf8').split('\n'))
  const target = path.join(root, 'bus/ap/apmask')
  const opens = lines.filter((l) => l.includes(`"${target}"`))
  t.equal(opens.length, 1, `one open: ${opens.join(' | ')}`)
  t.match(opens[0], /O_WRONLY/)
  t.notMatch(opens[0], /O_CREAT|O_TRUNC|O_APPEND/)
  const fd = /= (\d+)$/.exec(opens[0]!.trim())?.[1]
  t.ok(fd, `the descriptor of the open: ${fd}`)
  const writes = lines.filter((l) => new RegExp(`^(write|pwrite64|writev|pwritev)\\(${fd},`).test(l) && l.includes('-5,-6'))
  t.equal(writes.length, 1, `one write(2) of the value: ${writes.join(' | ')}`, { trace: lines.filter((l) => l.includes(`(${fd},`)) })
  t.match(writes[0], /^write\(\d+, "-5,-6\\n", 6\)\s+= 6$/, 'write(2), not pwrite, of the 6 exact bytes, all taken')
  t.equal(fs.readFileSync(target, 'utf8').slice(0, 6), '-5,-6\n')
})

t.test('writes and exclusive sections take the s390-tools lock; a held lock stops them', async (t) => {
  const root = fixtureTree(t)
  const lockPath = path.join(tempDir(t), 's390apconfig.lock')
  const fsx = new NodeSysfsAccess({ root, lock: new ApConfigLock({ path: lockPath }), lockWaitMs: 200 })
  let seenInside = ''
  await fsx.exclusive!(async (locked) => {
    seenInside = fs.readFileSync(lockPath, 'utf8')
    await locked.write('/sys/bus/ap/apmask', `0x${'7'.repeat(64)}\n`)
    await locked.write('/sys/bus/ap/aqmask', `0x${'7'.repeat(64)}\n`)
  })
  t.equal(seenInside, `${process.pid}\n`, 'held by us for the whole section')
  t.notOk(fs.existsSync(lockPath), 'released after it')
  t.equal(await fsx.read('/sys/bus/ap/aqmask'), `0x${'7'.repeat(64)}\n`)

  const holder = await holdLockInOtherProcess(t, lockPath)
  let called = false
  const err = await fsx.exclusive!(async () => void (called = true)).catch((e: unknown) => e)
  t.ok(err instanceof ConfigLockBusyError, 'busy')
  t.match(err, { holderPid: String(holder.pid) })
  t.equal(called, false, 'the section never ran')
  await t.rejects(fsx.write('/sys/bus/ap/apmask', `${FULL}\n`), ConfigLockBusyError, 'a single write outside a section waits for the lock too')
  t.equal(await fsx.read('/sys/bus/ap/apmask'), `0x${'7'.repeat(64)}\n`, 'nothing was written')
  await holder.release()
  await fsx.write('/sys/bus/ap/apmask', `${FULL}\n`)
  t.equal(await fsx.read('/sys/bus/ap/apmask'), `${FULL}\n`, 'proceeds once released')

  const bus = new SysfsBus(fsx)
  t.type(bus.exclusive, 'function', 'the bus port offers the section when the access has a lock')
  t.equal(new SysfsBus(new NodeSysfsAccess({ root, lock: null })).exclusive, undefined, 'and not without one')
})

t.test('poll watcher: a change of a polled attribute is reported, a quiet bus reports nothing', async (t) => {
  const root = fixtureTree(t)
  const fsx = new NodeSysfsAccess({ root, lock: null, watch: { mode: 'poll', pollMs: 20 } })
  t.teardown(() => fsx.close())
  const seen: BusChange[] = []
  const stop = fsx.watch!((c) => void seen.push(c))
  t.equal(fsx.watchMode, 'poll')
  await new Promise((r) => setTimeout(r, 150))
  t.same(seen, [], 'no change, no report')
  fs.writeFileSync(path.join(root, 'bus/ap/bindings'), '11/12\n')
  fs.mkdirSync(path.join(root, 'devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/devices/x'))
  // One poll may fall between the two changes: wait until both were reported (one report or two).
  const until = Date.now() + 3000
  while (!/mdevs/.test(seen.map((c) => c.summary).join(' ')) && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
  t.match(seen[0], { source: 'poll', summary: /bindings/ })
  t.match(seen.map((c) => c.summary).join(' '), /mdevs/)
  stop()
  t.equal(fsx.watchMode, undefined, 'the last listener gone stops the poll')
})

t.test("auto mode polls a root that is not this machine's /sys", async (t) => {
  const root = fixtureTree(t)
  const fsx = new NodeSysfsAccess({ root, lock: null, watch: { mode: 'auto', pollMs: 50 } })
  t.teardown(() => fsx.close())
  const stop = fsx.watch!(() => undefined)
  t.equal(fsx.watchMode, 'poll', 'uevents of this kernel say nothing about another tree')
  stop()
})
