/**
 * The emulated sysfs as FUSE operations: what the kernel's sysfs (kernfs) does for each VFS call, answered
 * from a {@link SysfsFace}. Every operation is one synchronous call into the emulator core, so it is atomic
 * with respect to every other face of the process (X-5: one lock per host, Node's one thread).
 *
 * Behaviour, as sysfs has it (and docs/emulator-sysfs.md describes):
 * - modes: directories 0755, links 0777, attributes 0444 (show only), 0200 (store only), 0644 (both);
 *   attributes are 4096 bytes long as far as stat is concerned, directories and links 0;
 * - open: for writing without a store, or for reading without a show, EACCES (sysfs checks this at open
 *   even for root); O_CREAT/O_TRUNC on an existing attribute are fine, truncate is a no-op;
 * - read: the text is rendered at the read at offset 0 (or at the first read) and later offsets are served
 *   from it, like sysfs's per-open buffer;
 * - write: one write(2) is one store call with at most PAGE_SIZE (4096) bytes; the call returns the bytes
 *   taken (a longer write is short, as on sysfs) or fails with the store's errno; a zero-length write never
 *   reaches the store;
 * - nothing can be created, removed or renamed: create EACCES (no ->create in sysfs directories), mkdir,
 *   rmdir, unlink, rename, link, symlink and mknod EPERM; chmod and chown EPERM (a deviation: sysfs lets
 *   root change modes and owners; the emulator does not keep them);
 * - a node that disappears while open (a removed matrix device) answers ENODEV, as kernfs does.
 * Bytes are passed as latin1, one character per byte, so byte counts are what the store sees.
 */
import { constants as fsc } from 'node:fs'
import os from 'node:os'
import { SysfsError } from '../../domain/errors.js'
import type { SysfsFace, SysfsStat } from '../api.js'
import type { WriteFault } from '../faults.js'
import type { FuseCb, FuseOperations, FuseStat } from './fuse-binding.js'
import { OpenFiles } from './open-files.js'

/** PAGE_SIZE: sysfs hands a store at most one page per write(2) (kernfs_fop_write_iter). */
export const SYSFS_PAGE = 4096

/** The access-mode bits of open(2) flags (not in node's fs.constants). */
const O_ACCMODE = 0o3
const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000

/** The file mode sysfs gives a node of this kind (the attribute's own mode: show and store decide it). */
export function sysfsMode(s: SysfsStat): number {
  if (s.type === 'dir') return S_IFDIR | 0o755
  if (s.type === 'link') return S_IFLNK | 0o777
  return S_IFREG | (s.readable && s.writable ? 0o644 : s.readable ? 0o444 : s.writable ? 0o200 : 0)
}

/** `-errno` for FUSE. */
function neg(name: string): number {
  const n = (os.constants.errno as Record<string, number>)[name]
  return n === undefined ? -os.constants.errno.EIO : -n
}

const EACCES = neg('EACCES')
const EPERM = neg('EPERM')
const EBADF = neg('EBADF')
const EIO = neg('EIO')

/** Options of {@link sysfsOperations}. */
export interface SysfsOperationsOptions {
  /** The time every node reports as its atime, mtime and ctime (sysfs shows roughly when it was created). */
  since?: Date
  /** Called with a line for every unexpected failure (a bug: answered EIO). */
  log?: (line: string) => void
}

/**
 * A face with injected write faults (src/emulator/faults.ts): `writeFault` decides what happens to a write
 * when it arrives; after the delay, `write` gets the decision and fails with its errno inside the write
 * log, so the writer (a `sysfs` driver, an agent) meets a real EIO or EBUSY from write(2).
 */
export interface FaultyFace extends SysfsFace {
  writeFault?(path: string): WriteFault | undefined
  write(path: string, value: string, fault?: WriteFault): void
}

/** The operations plus the open-file table (exposed so tests and the mount can see what is open). */
export interface SysfsOperations extends FuseOperations {
  readonly openFiles: OpenFiles
}

/**
 * The FUSE operations of the mount that plays `/sys` for `face`: the mount's `/x/y` is the emulator's
 * `/sys/x/y`. Never throws: every failure is a negative errno to the callback.
 */
export function sysfsOperations(face: FaultyFace, opts: SysfsOperationsOptions = {}): SysfsOperations {
  const since = opts.since ?? new Date()
  const log = opts.log ?? (() => undefined)
  const files = new OpenFiles()
  const sys = (p: string): string => (p === '/' ? '/sys' : `/sys${p}`)

  /** Runs one core call; a SysfsError becomes its errno, anything else EIO and a log line. */
  const attempt = <T>(what: string, path: string, fn: () => T, gone = false): { ok: true; value: T } | { ok: false; code: number } => {
    try {
      return { ok: true, value: fn() }
    } catch (e) {
      if (e instanceof SysfsError) {
        // kernfs: an open file whose node was removed answers ENODEV, not ENOENT.
        return { ok: false, code: neg(gone && (e.errno === 'ENOENT' || e.errno === 'ENOTDIR') ? 'ENODEV' : e.errno) }
      }
      log(`fuse ${what} ${path}: unexpected ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
      return { ok: false, code: EIO }
    }
  }

  const statOf = (s: SysfsStat): FuseStat => ({
    mode: sysfsMode(s),
    size: s.type === 'attr' ? SYSFS_PAGE : 0,
    nlink: s.type === 'dir' ? 2 : 1,
    uid: 0,
    gid: 0,
    atime: since,
    mtime: since,
    ctime: since,
  })

  /** 0 when `path` is an attribute, else its errno (EISDIR for a directory). */
  const attrCheck = (what: string, path: string): number => {
    const r = attempt(what, path, () => face.stat(sys(path)))
    if (!r.ok) return r.code
    if (r.value.type === 'dir') return neg('EISDIR')
    return 0
  }

  const refuse =
    (code: number) =>
    (...args: unknown[]): void => {
      const cb = args[args.length - 1] as FuseCb
      cb(code)
    }

  return {
    openFiles: files,

    getattr(path, cb) {
      const r = attempt('getattr', path, () => face.stat(sys(path)))
      if (r.ok) cb(0, statOf(r.value))
      else cb(r.code)
    },

    readdir(path, cb) {
      const r = attempt('readdir', path, () => face.list(sys(path)))
      if (r.ok) cb(0, ['.', '..', ...r.value])
      else cb(r.code)
    },

    readlink(path, cb) {
      const r = attempt('readlink', path, () => face.readlink(sys(path)))
      if (r.ok) cb(0, r.value)
      else cb(r.code)
    },

    open(path, flags, cb) {
      const r = attempt('open', path, () => face.stat(sys(path)))
      if (!r.ok) return cb(r.code)
      const s = r.value
      if (s.type === 'dir') return cb(neg('EISDIR'))
      if (s.type !== 'attr') return cb(neg('ELOOP')) // the kernel follows links itself; a link here means O_NOFOLLOW
      const acc = flags & O_ACCMODE
      const wantsWrite = acc === fsc.O_WRONLY || acc === fsc.O_RDWR
      const wantsRead = acc === fsc.O_RDONLY || acc === fsc.O_RDWR
      // kernfs_fop_open with KERNFS_ROOT_EXTRA_OPEN_PERM_CHECK: the mode decides, also for root.
      if ((wantsWrite && !s.writable) || (wantsRead && !s.readable)) return cb(EACCES)
      cb(0, files.open(path))
    },

    // Only reached for a name that does not exist: sysfs directories have no ->create.
    create: refuse(EACCES) as FuseOperations['create'],

    read(path, fd, buf, len, pos, cb) {
      const f = files.get(fd)
      if (!f) return cb(EBADF)
      if (pos === 0 || f.text === undefined) {
        const r = attempt('read', path, () => face.read(sys(f.path)), true)
        if (!r.ok) return cb(r.code)
        f.text = Buffer.from(r.value, 'latin1')
      }
      if (pos >= f.text.length) return cb(0)
      cb(f.text.copy(buf, 0, pos, Math.min(f.text.length, pos + len)))
    },

    write(path, fd, buf, len, _pos, cb) {
      const f = files.get(fd)
      if (!f) return cb(EBADF)
      const n = Math.min(len, SYSFS_PAGE)
      if (n === 0) return cb(0) // sysfs_kf_write: an empty write never reaches the store
      const value = buf.toString('latin1', 0, n)
      const fault = face.writeFault?.(sys(f.path))
      const run = (): void => {
        const r = attempt('write', path, () => face.write(sys(f.path), value, fault), true)
        cb(r.ok ? n : r.code)
      }
      // A slow store: the writer's write(2) blocks for the delay (other FUSE requests go on).
      if (fault && fault.delayMs > 0) setTimeout(run, fault.delayMs)
      else run()
    },

    release(_path, fd, cb) {
      files.release(fd)
      cb(0)
    },

    // kernfs accepts a size change and ignores it: `> attr` (O_TRUNC) and truncate(2) succeed.
    truncate(path, _size, cb) {
      cb(attrCheck('truncate', path))
    },
    ftruncate(_path, fd, _size, cb) {
      cb(files.get(fd) ? 0 : EBADF)
    },

    // touch: kernfs keeps times; this emulation does not (a no-op that succeeds, as the kernel's would).
    utimens(path, _atime, _mtime, cb) {
      const r = attempt('utimens', path, () => face.stat(sys(path)))
      cb(r.ok ? 0 : r.code)
    },

    chmod: refuse(EPERM) as FuseOperations['chmod'],
    chown: refuse(EPERM) as FuseOperations['chown'],
    mknod: refuse(EPERM) as FuseOperations['mknod'],
    unlink: refuse(EPERM) as FuseOperations['unlink'],
    rename: refuse(EPERM) as FuseOperations['rename'],
    link: refuse(EPERM) as FuseOperations['link'],
    symlink: refuse(EPERM) as FuseOperations['symlink'],
    mkdir: refuse(EPERM) as FuseOperations['mkdir'],
    rmdir: refuse(EPERM) as FuseOperations['rmdir'],
  }
}
