/**
 * {@link SysfsAccess} over node:fs at a root directory that plays `/sys`: the machine's own `/sys` on an
 * s390 LPAR, or a mount of one (the emulator's FUSE view). The bus port's paths (`/sys/bus/ap/apmask`) are
 * mapped onto the root; no path can leave it.
 *
 * A write is exactly what `echo -n VALUE > ATTR` does to sysfs: open(2) O_WRONLY (no O_CREAT, no O_TRUNC:
 * an attribute exists or the write fails), ONE write(2) of the exact bytes, close(2). The kernel's store
 * function sees the value once and answers with its errno (docs/kernel-model.md §4: EADDRINUSE, EBUSY, ENODEV, ...),
 * which becomes the SysfsError errno the bus port and the reconciler already understand. No retry, no
 * loop over a short write: a short count is the kernel's answer too.
 *
 * Writes made outside {@link NodeSysfsAccess.exclusive} take the s390-tools AP configuration lock for just
 * that write; inside it, the section's one hold covers them all.
 */
import fsp from 'node:fs/promises'
import { constants as fsConstants } from 'node:fs'
import path from 'node:path'
import { SysfsError } from '../domain/errors.js'
import type { ApConfigLock } from './ap-config-lock.js'
import { ChangeWatcher, type WatchMode } from './change-watcher.js'
import { errnoFromNode } from './node-errno.js'
import type { BusChange, SysfsAccess } from './port.js'

/** Options of {@link NodeSysfsAccess}. */
export interface NodeSysfsAccessOptions {
  /** The directory that plays `/sys` (default `/sys`). */
  root?: string
  /** The AP configuration lock, or null for none (then there is no exclusive section). */
  lock: ApConfigLock | null
  /** How long a write or an exclusive section waits for another holder of the lock (default 5000 ms). */
  lockWaitMs?: number
  /** Change detection (default: none, `watch` is then absent). */
  watch?: { mode: WatchMode; pollMs: number; udevadm?: string; log?: (line: string) => void }
}

/** The prefix of every bus port path. */
const SYS = '/sys'
/** Longest attribute text read (sysfs attributes are at most a page; the emulator's FUSE view may be longer). */
const MAX_READ_BYTES = 16 * 1024 * 1024
const READ_CHUNK = 64 * 1024

/** A sysfs error for a failed node:fs call on `p` (bus port path), with the kernel's errno. */
function fsError(e: unknown, op: string, p: string): SysfsError {
  const { errno, original } = errnoFromNode(e)
  const why = (e as Error).message?.replace(/, \w+ '.*'$/, '') ?? original
  return new SysfsError(errno, `${op} ${p}: ${why}${original !== errno ? ` (${original})` : ''}`)
}

/** The access; also what `apmatrix agent` serves. */
export class NodeSysfsAccess implements SysfsAccess {
  /** The root directory (absolute). */
  readonly root: string
  /**
   * Present when the access has a lock (see SysfsAccess.exclusive). `opts` overrides the wait for this
   * section and lets a caller give up early (an agent whose client went away).
   */
  readonly exclusive?: <T>(fn: (locked: SysfsAccess) => Promise<T>, opts?: { waitMs?: number; signal?: AbortSignal }) => Promise<T>
  /** Present when change detection is configured (see SysfsAccess.watch). */
  readonly watch?: (listener: (change: BusChange) => void) => () => void
  private readonly lock: ApConfigLock | null
  private readonly lockWaitMs: number
  private readonly watcher: ChangeWatcher | undefined

  constructor(opts: NodeSysfsAccessOptions) {
    this.root = path.resolve(opts.root ?? SYS)
    this.lock = opts.lock
    this.lockWaitMs = opts.lockWaitMs ?? 5000
    if (!(Number.isFinite(this.lockWaitMs) && this.lockWaitMs >= 0)) throw new RangeError(`lock wait must be >= 0 ms, got ${this.lockWaitMs}`)
    if (this.lock) {
      const lock = this.lock
      this.exclusive = async (fn, opts = {}) => {
        const hold = await lock.acquire(opts.waitMs ?? this.lockWaitMs, opts.signal)
        try {
          return await fn(this.locked)
        } finally {
          await hold.release()
        }
      }
    }
    if (opts.watch) {
      const w = opts.watch
      const watcher = new ChangeWatcher({ mode: w.mode, root: this.root, access: this, pollMs: w.pollMs, udevadm: w.udevadm, log: w.log })
      this.watcher = watcher
      this.watch = (listener) => watcher.subscribe(listener)
    }
  }

  /** Which change detector runs now (undefined when nobody watches or none is configured). */
  get watchMode(): 'udev' | 'poll' | undefined {
    return this.watcher?.activeMode
  }

  /**
   * The file of bus port path `p` under the root. Throws SysfsError EACCES for a path that is not `/sys` or
   * below it, or that has `.`/`..` segments or a NUL byte: nothing outside the root is ever touched.
   */
  resolve(p: string): string {
    if (typeof p !== 'string' || p.includes('\0') || (p !== SYS && !p.startsWith(`${SYS}/`))) {
      throw new SysfsError('EACCES', `${String(p).slice(0, 200)}: not a path under ${SYS}`)
    }
    const segments = p
      .slice(SYS.length)
      .split('/')
      .filter((s) => s !== '')
    if (segments.some((s) => s === '.' || s === '..')) throw new SysfsError('EACCES', `${p.slice(0, 200)}: '.' and '..' are not allowed in sysfs paths`)
    return segments.length ? path.join(this.root, ...segments) : this.root
  }

  async read(p: string): Promise<string> {
    const file = this.resolve(p)
    let fh: fsp.FileHandle
    try {
      fh = await fsp.open(file, fsConstants.O_RDONLY)
    } catch (e) {
      throw fsError(e, 'read', p)
    }
    try {
      // Until EOF, whatever size stat reports (sysfs says 4096 for every attribute).
      const chunks: Buffer[] = []
      let total = 0
      for (;;) {
        const buf = Buffer.allocUnsafe(READ_CHUNK)
        const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, null)
        if (bytesRead === 0) break
        chunks.push(buf.subarray(0, bytesRead))
        total += bytesRead
        if (total > MAX_READ_BYTES) throw new SysfsError('EFAULT', `read ${p}: more than ${MAX_READ_BYTES} bytes`)
      }
      return Buffer.concat(chunks, total).toString('utf8')
    } catch (e) {
      throw e instanceof SysfsError ? e : fsError(e, 'read', p)
    } finally {
      await fh.close().catch(() => undefined)
    }
  }

  /** One write(2) of `value`'s UTF-8 bytes under the lock (a hold of its own; see the file comment). */
  async write(p: string, value: string): Promise<void> {
    if (!this.lock) return this.writeOnce(p, value)
    const hold = await this.lock.acquire(this.lockWaitMs)
    try {
      await this.writeOnce(p, value)
    } finally {
      await hold.release()
    }
  }

  async list(p: string): Promise<string[]> {
    try {
      // Byte order, as `ls` in the C locale and the emulator list.
      return (await fsp.readdir(this.resolve(p))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    } catch (e) {
      throw e instanceof SysfsError ? e : fsError(e, 'list', p)
    }
  }

  async readlink(p: string): Promise<string> {
    try {
      return await fsp.readlink(this.resolve(p))
    } catch (e) {
      throw e instanceof SysfsError ? e : fsError(e, 'readlink', p)
    }
  }

  /** Whether `p` exists (a dangling symlink counts); never rejects. */
  async exists(p: string): Promise<boolean> {
    try {
      await fsp.lstat(this.resolve(p))
      return true
    } catch {
      return false
    }
  }

  /** Stops change detection. */
  async close(): Promise<void> {
    await this.watcher?.close()
  }

  /** The view an exclusive section hands out: writes go straight to the file, the section holds the lock. */
  private readonly locked: SysfsAccess = {
    read: (p) => this.read(p),
    write: (p, v) => this.writeOnce(p, v),
    list: (p) => this.list(p),
    readlink: (p) => this.readlink(p),
  }

  private async writeOnce(p: string, value: string): Promise<void> {
    const file = this.resolve(p)
    const data = Buffer.from(value, 'utf8')
    let fh: fsp.FileHandle
    try {
      fh = await fsp.open(file, fsConstants.O_WRONLY)
    } catch (e) {
      throw fsError(e, 'write', p)
    }
    try {
      // position null: write(2), not pwrite(2), as a shell redirection does.
      await fh.write(data, 0, data.length, null)
    } catch (e) {
      throw fsError(e, 'write', p)
    } finally {
      await fh.close().catch(() => undefined)
    }
  }
}
