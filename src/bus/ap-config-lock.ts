/**
 * The AP configuration lock of s390-tools, so that apmatrix never changes a host's AP configuration while
 * chzdev (zdev), mdevctl's vfio-ap callout ap-check, or another apmatrix does (README).
 *
 * The protocol is s390-tools' `libutil/util_lockfile.c`, used by `libap` with the path
 * `/run/lock/s390apconfig.lock` (`AP_LOCKFILE` in include/lib/ap.h), reproduced here from reading it:
 * - take: write the owner's pid and a newline (`"%d\n"`) into a temporary file named `<lock><pid %05d><time & 255 %02x>`
 *   opened O_WRONLY|O_CREAT|O_EXCL, then link(2) it to the lock path; link succeeding is the acquisition
 *   (atomic on every local file system); the temporary file is unlinked either way.
 * - busy: link fails with EEXIST. Read the lock (at most 40 bytes) and `atoi` it. A pid that `kill(pid, 0)`
 *   reports as ESRCH is dead: the lock is stale, unlink it and retry at once (EPERM counts as alive). A pid of
 *   0 (nothing written yet) is stale only when the file's mtime is more than 120 s old. A lock that cannot
 *   be opened (released meanwhile) is retried at once. Otherwise wait and retry: libap retries 3000 times
 *   with a random 30..33 ms pause (`AP_LOCK_DELAY_US`, `AP_LOCK_VARIANCE_US`).
 * - release: unlink the lock only if it holds the releasing owner's pid.
 * ap-check (`ap_get_lock_callout`) writes its PARENT's pid, i.e. mdevctl's, and releases in the post
 * callout, so the lock covers a whole mdevctl command; chzdev writes its own pid around a mask change.
 *
 * Pids only mean something inside one pid namespace: apmatrix must see the same processes as the s390-tools
 * on the host (no private pid namespace), or it would take a live holder for a dead one.
 */
import fsp from 'node:fs/promises'
import { constants as fsConstants } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { errnoFromNode } from './node-errno.js'
import { BusError, ConfigLockBusyError } from './port.js'

/** The lock file s390-tools' libap uses (`AP_LOCKFILE`). */
export const AP_CONFIG_LOCK_PATH = '/run/lock/s390apconfig.lock'

/** libutil WAITPID: a lock without a pid in it is stale after this long (it should be written at once). */
const WAITPID_MS = 120_000
/** libutil BUFSIZE: how much of the lock file is read for the pid. */
const PID_BUFSIZE = 40
/** libap: at least 30 ms between retries, plus up to 3 ms of jitter so waiters do not retry in step. */
const RETRY_MIN_MS = 30
const RETRY_JITTER_MS = 3

/** Options of {@link ApConfigLock}. */
export interface ApConfigLockOptions {
  /** Lock file path (default {@link AP_CONFIG_LOCK_PATH}). */
  path?: string
  /** Pid written as the owner (default this process). */
  pid?: number
}

/** A held lock. */
export interface ApConfigLockHold {
  /** Unlinks the lock if it still holds our pid; idempotent, never rejects. */
  release(): Promise<void>
}

/** C `atoi`: optional blanks and sign, then decimal digits up to the first non-digit; 0 when there are none. */
export function atoi(text: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(text)
  if (!m) return 0
  const n = Number(m[1])
  return Number.isSafeInteger(n) ? n : 0
}

/** libutil `pid_exists`: kill(pid, 0); ESRCH means gone, anything else (EPERM) counts as alive. */
function pidExists(pid: number): boolean {
  // A value outside the kernel's pid range names no process (kill(2) would fail with ESRCH).
  if (Math.abs(pid) > 0x7fff_ffff) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code
}

/**
 * One process's handle on the s390-tools AP configuration lock. Acquisitions by this process are also
 * serialised among themselves (one hold at a time, FIFO), since the file protocol cannot tell two holds of
 * the same pid apart.
 */
export class ApConfigLock {
  /** The lock file path. */
  readonly path: string
  private readonly pid: number
  /** Tail of the in-process queue of holds. */
  private tail: Promise<void> = Promise.resolve()

  constructor(opts: ApConfigLockOptions = {}) {
    this.path = opts.path ?? AP_CONFIG_LOCK_PATH
    this.pid = opts.pid ?? process.pid
    if (!this.path.startsWith('/')) throw new RangeError(`AP configuration lock path must be absolute, got '${this.path}'`)
    if (!Number.isSafeInteger(this.pid) || this.pid < 1) throw new RangeError(`lock owner pid must be a positive integer, got ${this.pid}`)
  }

  /**
   * Takes the lock, waiting at most `waitMs` for other holders (another process, or an earlier hold of this
   * one). Rejects with {@link ConfigLockBusyError} when it is still held after that, with a BusError (errno of
   * the failing file operation) when the lock cannot be written at all (no /run/lock, no permission), and with
   * the signal's reason when `signal` aborts the wait. A stale lock (dead pid) is removed and does not count
   * as held.
   */
  async acquire(waitMs: number, signal?: AbortSignal): Promise<ApConfigLockHold> {
    const started = Date.now()
    const deadline = started + Math.max(0, waitMs)
    // In-process FIFO: wait for the previous hold of this process to end (bounded by the same deadline).
    let done!: () => void
    const mine = new Promise<void>((r) => (done = r))
    const previous = this.tail
    this.tail = previous.then(() => mine)
    try {
      const turn = await this.within(previous, deadline, signal)
      if (!turn)
        throw new ConfigLockBusyError(
          this.path,
          String(this.pid),
          Date.now() - started,
          `AP configuration lock ${this.path} is held by this process (pid ${this.pid}) for another pass (waited ${Date.now() - started} ms)`,
        )
      for (;;) {
        signal?.throwIfAborted()
        if (await this.tryOnce()) break
        const left = deadline - Date.now()
        if (left <= 0) throw new ConfigLockBusyError(this.path, await this.holder(), Date.now() - started)
        await sleep(Math.min(left, RETRY_MIN_MS + Math.random() * RETRY_JITTER_MS), undefined, { signal })
      }
    } catch (e) {
      done()
      // timers/promises rejects with a generic AbortError: the caller wants its own reason.
      throw signal?.aborted ? signal.reason : e
    }
    let released = false
    return {
      release: async () => {
        if (released) return
        released = true
        try {
          await this.unlinkIfOurs()
        } finally {
          done()
        }
      },
    }
  }

  /** Resolves true when `p` settles before `deadline`, false after it; the timer never outlives the race. */
  private async within(p: Promise<void>, deadline: number, signal?: AbortSignal): Promise<boolean> {
    const timer = new AbortController()
    const onAbort = () => timer.abort(signal?.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      return await Promise.race([p.then(() => true), sleep(Math.max(0, deadline - Date.now()), false, { signal: timer.signal })])
    } finally {
      signal?.removeEventListener('abort', onAbort)
      timer.abort()
    }
  }

  /** The pid text in the lock file ('' when there is no lock or nothing in it). */
  async holder(): Promise<string> {
    try {
      return String(atoi(await this.readHead()) || '')
    } catch {
      return ''
    }
  }

  /** One attempt: true when the lock is now ours; false when a live holder has it. */
  private async tryOnce(): Promise<boolean> {
    const tmp = `${this.path}${String(this.pid).padStart(5, '0')}${(Math.floor(Date.now() / 1000) & 255).toString(16).padStart(2, '0')}`
    await this.writeTemp(tmp)
    try {
      // A stale lock is removed and the link retried at once (util_lockfile: "retry now").
      for (let i = 0; i < 3; i++) {
        try {
          await fsp.link(tmp, this.path)
          return true
        } catch (e) {
          if (errnoOf(e) !== 'EEXIST') throw this.ioError(e, `cannot create ${this.path}`)
        }
        if (await this.heldByLiveOwner()) return false
      }
      return false
    } finally {
      await fsp.unlink(tmp).catch(() => undefined)
    }
  }

  private async writeTemp(tmp: string): Promise<void> {
    const data = Buffer.from(`${this.pid}\n`)
    for (let attempt = 0; ; attempt++) {
      let fh: fsp.FileHandle
      try {
        // libuv adds O_CLOEXEC to every open, as util_lockfile asks for.
        fh = await fsp.open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644)
      } catch (e) {
        // The name embeds our pid: a leftover can only come from an earlier process with the same pid.
        if (errnoOf(e) === 'EEXIST' && attempt === 0) {
          await fsp.unlink(tmp).catch(() => undefined)
          continue
        }
        throw this.ioError(e, `cannot create the temporary lock file ${tmp}`)
      }
      try {
        const { bytesWritten } = await fh.write(data, 0, data.length, null)
        if (bytesWritten !== data.length) throw new BusError('EIO', tmp, `${tmp}: short write of the lock owner's pid`)
      } finally {
        await fh.close()
      }
      return
    }
  }

  /** util_lockfile `handle_stale_lock`: removes a stale lock (returns false), or reports a live one (true). */
  private async heldByLiveOwner(): Promise<boolean> {
    let fh: fsp.FileHandle
    try {
      fh = await fsp.open(this.path, fsConstants.O_RDONLY)
    } catch {
      return false // gone meanwhile: retry now
    }
    try {
      const buf = Buffer.alloc(PID_BUFSIZE)
      const { bytesRead } = await fh.read(buf, 0, PID_BUFSIZE, 0)
      if (bytesRead > 0) {
        const pid = atoi(buf.subarray(0, bytesRead).toString('latin1'))
        if (!pidExists(pid)) {
          await fsp.unlink(this.path).catch(() => undefined)
          return false
        }
        if (pid !== 0) return true
      }
      // No pid yet: a lock being written right now, or a broken one (stale after WAITPID).
      const st = await fh.stat().catch(() => null)
      if (!st) return false
      if (Date.now() > st.mtimeMs + WAITPID_MS) {
        await fsp.unlink(this.path).catch(() => undefined)
        return false
      }
      return true
    } finally {
      await fh.close()
    }
  }

  private async readHead(): Promise<string> {
    const fh = await fsp.open(this.path, fsConstants.O_RDONLY)
    try {
      const buf = Buffer.alloc(PID_BUFSIZE)
      const { bytesRead } = await fh.read(buf, 0, PID_BUFSIZE, 0)
      return buf.subarray(0, bytesRead).toString('latin1')
    } finally {
      await fh.close()
    }
  }

  /** util_lockfile `do_lockfile_release`: unlink only a lock that holds our pid. */
  private async unlinkIfOurs(): Promise<void> {
    try {
      if (atoi(await this.readHead()) === this.pid) await fsp.unlink(this.path)
    } catch {
      // No lock file (someone removed it as stale): nothing to release.
    }
  }

  private ioError(e: unknown, what: string): BusError {
    return new BusError(errnoFromNode(e).errno, this.path, `${what}: ${(e as Error).message}`)
  }
}
