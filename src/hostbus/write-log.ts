/**
 * A host-bus server's record of bus writes (agent and emulator alike): the fencing check (one replica
 * drives a host, docs/api.md (Reconcile)) and a bounded log of every Write with its fence and wall time (the
 * `WriteLog` RPC), from which a test can prove that no two lease holders drove the host at once.
 */
import { SysfsError } from '../domain/errors.js'
import { BusError, type BusFence } from '../bus/port.js'

function errnoOf(e: unknown): string {
  return e instanceof SysfsError || e instanceof BusError ? e.errno : 'EIO'
}

/**
 * Which face of the emulator process the write came through: the gRPC `Write` call, or a `write(2)` on the
 * FUSE mount (`emulator serve --mount`, root at a shell or mdevctl: never fenced).
 */
export type WriteOrigin = 'grpc' | 'fuse'

/** One Write call as the server answered it. */
export interface WriteRecord {
  seq: number
  wallTimeMs: number
  path: string
  value: string
  /** Null for an unfenced write (root, tests). */
  fence: BusFence | null
  /** Undefined when the kernel accepted the write; else the errno (EACCES for a stale fence). */
  errno?: string
  /** True when the fence check refused it (errno EACCES; the kernel never saw the write). */
  fenceRefused: boolean
  bootId: string
  origin: WriteOrigin
}

/** How many writes the log keeps (the oldest are dropped first). */
export const WRITE_LOG_CAPACITY = 10_000

/** Fencing check and bounded write log of one host-bus server. Not thread-safe: used on Node's one thread. */
export class FencedWriteLog {
  private readonly entries: WriteRecord[] = []
  private nextSeq = 1
  private readonly highest = new Map<string, { token: number; holder: string }>()
  /** Tail of the chain that runs asynchronous writes one at a time. */
  private tail: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly capacity = WRITE_LOG_CAPACITY,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Runs `write` unless `fence` is stale, and records the call either way. Stale: a token lower than
   * the highest this host has seen, or the same token from another holder (tokens are unique per
   * acquisition). Throws SysfsError EACCES for a stale fence, or whatever `write` throws.
   */
  apply(path: string, value: string, fence: BusFence | null, bootId: string, write: () => void, origin: WriteOrigin = 'grpc'): void {
    const rec = this.check(path, value, fence, bootId, origin)
    try {
      write()
    } catch (e) {
      rec.errno = errnoOf(e)
      throw e
    }
  }

  /**
   * {@link apply} for a write that completes later (a real sysfs write through node:fs): calls run one at
   * a time in arrival order, so no other write can come between a fence check and its write.
   */
  applyAsync(path: string, value: string, fence: BusFence | null, bootId: string, write: () => Promise<void>): Promise<void> {
    const run = this.tail.then(async () => {
      const rec = this.check(path, value, fence, bootId, 'grpc')
      try {
        await write()
      } catch (e) {
        rec.errno = errnoOf(e)
        throw e
      }
    })
    this.tail = run.catch(() => undefined)
    return run
  }

  /** Records the call and checks its fence: throws SysfsError EACCES (recorded) for a stale one. */
  private check(path: string, value: string, fence: BusFence | null, bootId: string, origin: WriteOrigin): WriteRecord {
    const rec: WriteRecord = { seq: this.nextSeq++, wallTimeMs: this.clock(), path, value, fence, fenceRefused: false, bootId, origin }
    this.push(rec)
    if (fence) {
      const top = this.highest.get(fence.host)
      if (top && (fence.token < top.token || (fence.token === top.token && fence.holder !== top.holder))) {
        rec.errno = 'EACCES'
        rec.fenceRefused = true
        throw new SysfsError(
          'EACCES',
          `fenced write refused: host ${fence.host} token ${fence.token} of ${fence.holder} is stale (token ${top.token} of ${top.holder} already wrote)`,
        )
      }
      this.highest.set(fence.host, { token: fence.token, holder: fence.holder })
    }
    return rec
  }

  /** Entries with seq > `sinceSeq`, oldest first, at most `limit`. */
  since(sinceSeq: number, limit = this.capacity): WriteRecord[] {
    const out: WriteRecord[] = []
    for (const e of this.entries) {
      if (e.seq <= sinceSeq) continue
      if (out.length >= limit) break
      out.push(e)
    }
    return out
  }

  /** Seq of the oldest kept entry and of the newest (0 when none). */
  bounds(): { first: number; last: number } {
    return { first: this.entries[0]?.seq ?? 0, last: this.nextSeq - 1 }
  }

  /** The highest token whose check passed, per host. */
  highestTokens(): Map<string, number> {
    return new Map([...this.highest].map(([h, v]) => [h, v.token]))
  }

  private push(rec: WriteRecord): void {
    this.entries.push(rec)
    // Amortised trim: drop a batch once the log is 10% over, so a write stays O(1) on average.
    if (this.entries.length > this.capacity + Math.max(1, this.capacity / 10)) this.entries.splice(0, this.entries.length - this.capacity)
  }
}
