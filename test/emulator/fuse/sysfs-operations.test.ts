/**
 * The FUSE operations of the emulated sysfs, called directly (no mount, so these run on every machine):
 * what each VFS call answers, as sysfs would (modes, EACCES at open, per-open rendering, one store per
 * write(2) of at most a page, ENODEV for a node removed while open). The same behaviour through a real
 * mount, with real tools, is in shell.test.ts.
 */
import os from 'node:os'
import t from 'tap'
import type { EmulatedHostApi } from '../../../src/emulator/api.js'
import type { FuseStat } from '../../../src/emulator/fuse/fuse-binding.js'
import { OpenFiles } from '../../../src/emulator/fuse/open-files.js'
import { SYSFS_PAGE, type SysfsOperations, sysfsOperations } from '../../../src/emulator/fuse/sysfs-operations.js'
import { M1, TYPE_DIR, createMdev, mdevPath, newHost, vfioMasks } from '../helpers.js'

const E = os.constants.errno
const O_RDONLY = 0
const O_WRONLY = 1
const O_RDWR = 2
const O_CREAT_TRUNC = 0o100 | 0o1000

/** Calls one operation and returns what it answered: [code, value]. The operations answer synchronously. */
function call<T = unknown>(fn: (cb: (code: number, value?: T) => void) => void): [number, T | undefined] {
  let out: [number, T | undefined] | undefined
  fn((code, value) => {
    if (out) throw new Error('answered twice')
    out = [code, value]
  })
  if (!out) throw new Error('no answer')
  return out
}

/** A host that records every sysfs write it gets. */
function recorded(host: EmulatedHostApi): { host: EmulatedHostApi; writes: Array<[string, string]> } {
  const writes: Array<[string, string]> = []
  return {
    writes,
    host: new Proxy(host, {
      get(target, prop, recv) {
        if (prop === 'write') return (p: string, v: string) => (writes.push([p, v]), target.write(p, v))
        const v = Reflect.get(target, prop, recv) as unknown
        return typeof v === 'function' ? v.bind(target) : v
      },
    }),
  }
}

function open(ops: SysfsOperations, path: string, flags: number): number {
  const [code, fd] = call<number>((cb) => ops.open(path, flags, cb))
  if (code !== 0 || fd === undefined) throw new Error(`open ${path}: ${code}`)
  return fd
}

function readAt(ops: SysfsOperations, path: string, fd: number, pos: number, len = 4096): [number, string] {
  const buf = Buffer.alloc(len)
  const [n] = call((cb) => ops.read(path, fd, buf, len, pos, cb))
  return [n, n > 0 ? buf.toString('latin1', 0, n) : '']
}

function write(ops: SysfsOperations, path: string, fd: number, value: string | Buffer): number {
  const buf = typeof value === 'string' ? Buffer.from(value, 'latin1') : value
  return call((cb) => ops.write(path, fd, buf, buf.length, 0, cb))[0]
}

t.test('getattr: sysfs modes and sizes; readdir has . and ..; readlink is the relative target', async (t) => {
  const host = newHost()
  const ops = sysfsOperations(host, { since: new Date(1000) })
  const mode = (p: string) => {
    const [code, st] = call<FuseStat>((cb) => ops.getattr(p, cb))
    t.equal(code, 0, `getattr ${p}`)
    return st!
  }
  t.match(mode('/'), { mode: 0o040755, size: 0, nlink: 2, uid: 0, gid: 0 }, '/ is the /sys directory')
  t.match(mode('/bus/ap/apmask'), { mode: 0o100644, size: SYSFS_PAGE, nlink: 1 }, 'show and store: 0644')
  t.match(mode('/bus/ap/bindings'), { mode: 0o100444, size: SYSFS_PAGE }, 'show only: 0444')
  t.match(mode('/bus/ap/drivers/vfio_ap/bind'), { mode: 0o100200, size: SYSFS_PAGE }, 'store only: 0200')
  t.match(mode('/bus/ap/devices/05.0004'), { mode: 0o120777, size: 0 }, 'a link: 0777, not followed')
  t.equal(mode('/bus/ap/apmask').mtime.getTime(), 1000)
  t.same(
    call((cb) => ops.getattr('/bus/ap/nothing', cb)),
    [-E.ENOENT, undefined],
  )
  t.same(
    call((cb) => ops.getattr('/bus/ap/apmask/x', cb)),
    [-E.ENOTDIR, undefined],
  )
  t.same(
    call((cb) => ops.readdir('/bus', cb)),
    [0, ['.', '..', 'ap', 'matrix', 'mdev']],
  )
  t.same(
    call((cb) => ops.readdir('/bus/ap/apmask', cb)),
    [-E.ENOTDIR, undefined],
  )
  t.same(
    call((cb) => ops.readlink('/bus/ap/devices/05.0004', cb)),
    [0, '../../../devices/ap/card05/05.0004'],
  )
  t.same(
    call((cb) => ops.readlink('/bus/ap/apmask', cb)),
    [-E.EINVAL, undefined],
    'readlink of an attribute: EINVAL',
  )
})

t.test('open: EACCES where the mode forbids, as sysfs checks at open even for root; O_CREAT|O_TRUNC of an attribute is fine', async (t) => {
  const ops = sysfsOperations(newHost())
  const code = (p: string, flags: number) => call((cb) => ops.open(p, flags, cb))[0]
  t.equal(code('/bus/ap/bindings', O_WRONLY), -E.EACCES, 'write a show-only attribute')
  t.equal(code('/bus/ap/bindings', O_RDWR), -E.EACCES)
  t.equal(code('/bus/ap/drivers/vfio_ap/bind', O_RDONLY), -E.EACCES, 'read a store-only attribute')
  t.equal(code('/bus/ap/drivers/vfio_ap/bind', O_WRONLY | O_CREAT_TRUNC), 0, 'shell redirection / fs::write')
  t.equal(code('/bus/ap/apmask', O_RDWR), 0)
  t.equal(code('/bus', O_RDONLY), -E.EISDIR)
  t.equal(code('/bus/ap/none', O_RDONLY), -E.ENOENT)
  t.equal(call((cb) => ops.create('/bus/ap/newfile', 0o644, cb))[0], -E.EACCES, 'creating a file: EACCES (no ->create in sysfs)')
  t.equal(call((cb) => ops.truncate('/bus/ap/apmask', 0, cb))[0], 0, 'truncate: a no-op that succeeds')
  t.equal(call((cb) => ops.truncate('/bus', 0, cb))[0], -E.EISDIR)
  t.equal(call((cb) => ops.truncate('/bus/none', 0, cb))[0], -E.ENOENT)
  t.equal(call((cb) => ops.utimens('/bus/ap/apmask', 0, 0, cb))[0], 0, 'touch of an existing attribute')
  for (const [name, fn] of [
    ['mkdir', (cb: (c: number) => void) => ops.mkdir('/bus/x', 0o755, cb)],
    ['rmdir', (cb: (c: number) => void) => ops.rmdir('/bus/ap', cb)],
    ['unlink', (cb: (c: number) => void) => ops.unlink('/bus/ap/apmask', cb)],
    ['rename', (cb: (c: number) => void) => ops.rename('/bus/ap/apmask', '/bus/ap/x', cb)],
    ['symlink', (cb: (c: number) => void) => ops.symlink('x', '/bus/ap/x', cb)],
    ['link', (cb: (c: number) => void) => ops.link('/bus/ap/apmask', '/bus/ap/x', cb)],
    ['mknod', (cb: (c: number) => void) => ops.mknod('/bus/ap/x', 0o100644, 0, cb)],
    ['chmod', (cb: (c: number) => void) => ops.chmod('/bus/ap/apmask', 0o600, cb)],
    ['chown', (cb: (c: number) => void) => ops.chown('/bus/ap/apmask', 1, 1, cb)],
  ] as const) {
    t.equal(call(fn)[0], -E.EPERM, `${name}: EPERM`)
  }
  t.equal(ops.openFiles.size, 2, 'only the successful opens hold a handle')
})

t.test('read: rendered at offset 0 and served from that rendering at later offsets; EOF past the end', async (t) => {
  const host = newHost()
  const ops = sysfsOperations(host)
  const fd = open(ops, '/bus/ap/apmask', O_RDONLY)
  const full = host.read('/sys/bus/ap/apmask')
  t.same(readAt(ops, '/bus/ap/apmask', fd, 0, 4), [4, full.slice(0, 4)], 'a short read is not padded')
  host.write('/sys/bus/ap/apmask', '0x\n')
  t.same(readAt(ops, '/bus/ap/apmask', fd, 4), [full.length - 4, full.slice(4)], 'the rest of the same rendering, not the new mask')
  t.same(readAt(ops, '/bus/ap/apmask', fd, full.length), [0, ''], 'EOF')
  t.same(readAt(ops, '/bus/ap/apmask', fd, 0), [full.length, host.read('/sys/bus/ap/apmask')], 'offset 0 renders again')
  const fd2 = open(ops, '/bus/ap/apmask', O_RDONLY)
  t.same(readAt(ops, '/bus/ap/apmask', fd2, 10, 3), [3, host.read('/sys/bus/ap/apmask').slice(10, 13)], 'a first read at an offset renders too')
  t.equal(call((cb) => ops.read('/bus/ap/apmask', 9999, Buffer.alloc(1), 1, 0, cb))[0], -E.EBADF, 'unknown handle')
  call((cb) => ops.release('/bus/ap/apmask', fd, cb))
  t.equal(call((cb) => ops.read('/bus/ap/apmask', fd, Buffer.alloc(1), 1, 0, cb))[0], -E.EBADF, 'released handle')
})

t.test('write: one store call per write(2) with at most one page; the errno of the store; nothing for an empty write', async (t) => {
  const { host, writes } = recorded(newHost())
  const ops = sysfsOperations(host)
  const p = '/bus/ap/apmask'
  const fd = open(ops, p, O_WRONLY | O_CREAT_TRUNC)
  t.equal(write(ops, p, fd, '0x\n'), 3, 'the bytes taken (B-21: all zeros)')
  t.equal(write(ops, p, fd, '0X41\n'), -E.EINVAL, 'B-21: the store refuses, the write fails with its errno')
  t.equal(write(ops, p, fd, ''), 0, 'an empty write')
  const long = `+1${','.repeat(SYSFS_PAGE - 2)}+2\n`
  t.equal(write(ops, p, fd, long), SYSFS_PAGE, 'more than a page: the store gets one page, the write is short')
  t.same(
    writes.map(([path, v]) => [path, v.length]),
    [
      ['/sys/bus/ap/apmask', 3],
      ['/sys/bus/ap/apmask', 5],
      ['/sys/bus/ap/apmask', SYSFS_PAGE],
    ],
    'three stores: none for the empty write, the long one cut at a page',
  )
  t.equal(host.read('/sys/bus/ap/apmask'), `0x40${'0'.repeat(62)}\n`, 'only the first page was stored: +1, not the +2 after it')
  const raw = Buffer.from([0x35, 0xe9, 0x0a])
  t.equal(write(ops, p, fd, raw), -E.EINVAL, 'a byte above 0x7f reaches the store as one character')
  t.equal(writes[writes.length - 1]![1], '5\u00e9\n')
})

t.test('a matrix device removed while a file of it is open: ENODEV, as kernfs answers for a removed node', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  const ops = sysfsOperations(host)
  const dev = `/devices/vfio_ap/matrix/${M1}`
  const assign = open(ops, `${dev}/assign_adapter`, O_WRONLY)
  const matrix = open(ops, `${dev}/matrix`, O_RDONLY)
  t.equal(write(ops, `${dev}/assign_adapter`, assign, '5\n'), 2)
  host.write(`${mdevPath(M1)}/remove`, '1\n')
  t.equal(write(ops, `${dev}/assign_adapter`, assign, '6\n'), -E.ENODEV)
  t.equal(readAt(ops, `${dev}/matrix`, matrix, 0)[0], -E.ENODEV)
  t.equal(call((cb) => ops.getattr(dev, cb))[0], -E.ENOENT, 'a new lookup: ENOENT')
  t.equal(host.list(`${TYPE_DIR}/devices`).length, 0)
})

t.test('an unexpected exception is EIO and a log line, never a crash', async (t) => {
  const lines: string[] = []
  const broken = {
    ...newHost(),
    stat: () => {
      throw new TypeError('boom')
    },
  } as unknown as EmulatedHostApi
  const ops = sysfsOperations(broken, { log: (l) => lines.push(l) })
  t.equal(call((cb) => ops.getattr('/bus', cb))[0], -E.EIO)
  t.match(lines, [/fuse getattr \/bus: unexpected TypeError: boom/])
})

t.test('file handles are never 0 and never reused while open, also when the counter wraps', async (t) => {
  const files = new OpenFiles()
  const a = files.open('/a')
  t.equal(a, 1)
  ;(files as unknown as { next: number }).next = 0xffff_ffff
  t.equal(files.open('/b'), 0xffff_ffff)
  t.equal(files.open('/c'), 2, 'wrapped past 0 and past the open handle 1')
  files.release(a)
  t.equal(files.get(a), undefined)
  t.equal(files.size, 2)
})
