/**
 * Retention (docs/api.md (Events) Retention): what the store keeps of its ever-growing tables, enforced in the
 * background in small batches.
 *
 * - Events and audit records: the newest `maxCount`, no older than `maxAgeMs` (either limit removes a row); the
 *   log keeps a contiguous suffix and records its floor (log-compaction.ts), so a watcher asking for a position
 *   below it is told so instead of missing events.
 * - The reconcile journal: finished entries (done, failed) by the same two limits; entries still `planned`
 *   (a pass in flight, or one a crash interrupted) are never removed.
 * - Idempotency keys: expired keys (their age limit is the key's lifetime), and the keys beyond `maxCount`
 *   (those expiring first).
 *
 * Each batch is one short transaction of at most `batchSize` rows, and the event loop turns between batches, so
 * writers wait at most one batch: on SQLite a batch is one more job of the shared commit queue; on PostgreSQL it
 * holds the event table's append lock only for its own DELETE. Replicas compacting the same database take turns
 * per batch (each batch locks its log's LogCompaction row) and never remove more than the policy says.
 */
import { setImmediate as nextTurn } from 'node:timers/promises'
import type { RetentionPolicy } from './log-compaction.js'
import type { Store } from './store.js'

export type { RetentionPolicy } from './log-compaction.js'

/** The tables {@link Retention} prunes. */
export const RETAINED_TABLES = ['events', 'audit', 'journal', 'idempotency'] as const
/** A {@link RETAINED_TABLES} member. */
export type RetainedTable = (typeof RETAINED_TABLES)[number]

/** Options of {@link Retention}. */
export interface RetentionOptions {
  store: Pick<Store, 'events' | 'audit' | 'journal' | 'idempotency' | 'now'>
  events: RetentionPolicy
  audit: RetentionPolicy
  /** Finished journal entries. */
  journal: RetentionPolicy
  /** Live keys kept at most (0: no limit); expired keys always go. */
  idempotency: { maxCount: number }
  /** Period of the background passes (ms, >= 1). */
  intervalMs: number
  /** Rows per batch (default 500). */
  batchSize?: number
  /** Told after every background pass. */
  onPass?: (report: RetentionReport) => void
  /** Told when a background pass failed (store down: the next pass tries again). */
  onError?: (err: unknown) => void
}

/** What one pass removed per table, and the logs' floors after it. */
export interface RetentionReport {
  deleted: Record<RetainedTable, number>
  /** Batches (transactions) the pass ran. */
  batches: number
  floors: { events: number; audit: number }
}

/** Default rows per batch: a few milliseconds of work on either database. */
export const DEFAULT_RETENTION_BATCH = 500

/** The background pruning of the store (see the file comment). `start()` to run it periodically, `runOnce()` for one pass. */
export class Retention {
  private readonly batchSize: number
  private timer: NodeJS.Timeout | null = null
  private running: Promise<RetentionReport> | null = null
  private stopped = false
  private readonly totals: Record<RetainedTable, number> = { events: 0, audit: 0, journal: 0, idempotency: 0 }

  constructor(private readonly o: RetentionOptions) {
    if (!o?.store) throw new TypeError('Retention needs a store')
    for (const [name, p] of [
      ['events', o.events],
      ['audit', o.audit],
      ['journal', o.journal],
    ] as const) {
      if (!p || !isLimit(p.maxCount) || !isLimit(p.maxAgeMs)) throw new RangeError(`Retention ${name}: maxCount and maxAgeMs must be integers >= 0`)
    }
    if (!isLimit(o.idempotency?.maxCount)) throw new RangeError('Retention idempotency.maxCount must be an integer >= 0')
    if (!Number.isInteger(o.intervalMs) || o.intervalMs < 1) throw new RangeError('Retention intervalMs must be a positive integer')
    this.batchSize = o.batchSize ?? DEFAULT_RETENTION_BATCH
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1 || this.batchSize > 10_000) throw new RangeError('Retention batchSize must be 1..10000')
  }

  /** Rows removed per table since this object was made (metrics). */
  stats(): Record<RetainedTable, number> {
    return { ...this.totals }
  }

  /** Runs a pass now, then every `intervalMs` unless one is still running (idempotent). */
  start(): void {
    if (this.timer || this.stopped) return
    const tick = () => {
      // A pass still running (a large backlog, a slow store) is not joined: the next tick looks again.
      if (this.running) return
      this.runOnce().then(
        (r) => this.o.onPass?.(r),
        (e: unknown) => this.o.onError?.(e),
      )
    }
    this.timer = setInterval(tick, this.o.intervalMs).unref()
    tick()
  }

  /** Stops the periodic passes and waits for the one in flight (its batches end early). */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    await this.running?.catch(() => undefined)
  }

  /**
   * One pass over every table (or joins the pass in flight). Rejects with the store's error (UNAVAILABLE) when a
   * batch fails; what earlier batches removed stays removed.
   */
  runOnce(): Promise<RetentionReport> {
    this.running ??= this.pass().finally(() => {
      this.running = null
    })
    return this.running
  }

  private async pass(): Promise<RetentionReport> {
    const { store } = this.o
    const deleted: Record<RetainedTable, number> = { events: 0, audit: 0, journal: 0, idempotency: 0 }
    let batches = 0
    const now = store.now().getTime()
    const before = (p: RetentionPolicy) => (p.maxAgeMs > 0 ? new Date(now - p.maxAgeMs) : null)
    const drain = async (table: RetainedTable, batch: () => Promise<{ deleted: number; more: boolean }>) => {
      for (;;) {
        if (this.stopped) return
        const r = await batch()
        batches++
        deleted[table] += r.deleted
        this.totals[table] += r.deleted
        if (!r.more) return
        // Writers go first: one batch at a time holds them up.
        await nextTurn()
      }
    }
    const floors = { events: 0, audit: 0 }
    for (const log of ['events', 'audit'] as const) {
      const p = this.o[log]
      if (p.maxCount === 0 && p.maxAgeMs === 0) {
        floors[log] = await store[log].floor()
        continue
      }
      const limits = { cutoff: await store[log].countCutoff(p.maxCount), before: before(p) }
      await drain(log, async () => {
        const r = await store[log].compact(limits, this.batchSize)
        floors[log] = r.floor
        return r
      })
    }
    const j = this.o.journal
    if (j.maxCount > 0 || j.maxAgeMs > 0) {
      const limits = { cutoff: await store.journal.finishedCutoff(j.maxCount), before: before(j) }
      await drain('journal', () => store.journal.pruneBatch(limits, this.batchSize))
    }
    const cutoff = await store.idempotency.countCutoff(this.o.idempotency.maxCount)
    await drain('idempotency', () => store.idempotency.pruneBatch({ cutoff }, this.batchSize))
    return { deleted, batches, floors }
  }
}

function isLimit(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0
}
