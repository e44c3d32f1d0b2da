/**
 * Compaction of an append-only log (the event log, the audit trail) by retention: count and age. The log keeps
 * a contiguous suffix of its keys: a batch deletes the oldest rows up to a key `floor` and records that floor
 * (table LogCompaction), so a reader knows that every key <= floor is gone and every key > floor that was ever
 * stored is still there. The newest row is never deleted, so the newest key (the position a new watcher starts
 * from) survives restarts even when the age limit would remove everything.
 *
 * A batch is one short transaction: it locks the log's LogCompaction row first (an upsert), so replicas that
 * compact the same database take turns and each batch starts from the floor the previous one left; it reads at
 * most `batch` of the oldest rows, deletes those the policy removes up to the first one it keeps, and moves the
 * floor. Rows are judged in key order and the walk stops at the first row kept: a row older than the age limit
 * that follows a younger one (a clock stepped back) goes once the younger one does.
 */
import type { DbTx } from './client.js'
import type { StoreContext } from './context.js'

/** The logs compaction knows (the LogCompaction row of each). */
export type CompactedLog = 'events' | 'audit'

/** How much of a log is kept: a row goes when either limit removes it; 0 = no limit of that kind. */
export interface RetentionPolicy {
  /** Keep at most this many of the newest rows. */
  maxCount: number
  /** Keep rows at most this old (by their `time`, store clock). */
  maxAgeMs: number
}

/** What one batch did. */
export interface CompactionBatch {
  deleted: number
  /** The floor after the batch: every key <= floor is gone. */
  floor: number
  /** True when the batch stopped at its size, not at a row the policy keeps: run another. */
  more: boolean
}

/** A log table as compaction sees it: an integer key ascending with insertion, and a time. */
export interface LogTable {
  readonly log: CompactedLog
  /** The newest key, null when the table is empty. */
  newestKey(db: DbTx): Promise<number | null>
  /** The key `offset` rows below the newest (offset 0 = the newest), null when there are not that many rows. */
  keyBelowNewest(db: DbTx, offset: number): Promise<number | null>
  /** The oldest `take` rows with key > after, ascending. */
  oldest(db: DbTx, after: number, take: number): Promise<Array<{ key: number; time: Date }>>
  /**
   * Deletes every row with key <= upTo; returns how many. Not only those above the old floor: an audit record
   * whose transaction committed after a batch passed its id (ids are taken at insert, on PostgreSQL commits
   * come in any order) goes with the next batch instead of staying below the floor for ever.
   */
  deleteUpTo(db: DbTx, upTo: number): Promise<number>
}

/**
 * The highest key whose row the count limit removes (0 when none): the key `maxCount` rows below the newest.
 * Computed once per pass: keys only grow, so a cutoff read earlier removes no more than one read later.
 */
export function countCutoff(ctx: StoreContext, table: LogTable, maxCount: number): Promise<number> {
  if (maxCount <= 0) return Promise.resolve(0)
  return ctx.read(`${table.log} retention`, async (db) => (await table.keyBelowNewest(db, maxCount)) ?? 0)
}

/** The floor of `log`: every key <= floor was removed by compaction (0: nothing was). */
export function readFloor(ctx: StoreContext, log: CompactedLog): Promise<number> {
  return ctx.read(`${log} floor`, async (db) => (await db.logCompaction.findUnique({ where: { log } }))?.floor ?? 0)
}

/**
 * One compaction batch of `table` (see the file comment): rows with key <= `cutoff` (see {@link countCutoff}) or
 * a time before `before` (null: no age limit) are deleted, oldest first, at most `batch` of them, never the newest.
 */
export function compactBatch(ctx: StoreContext, table: LogTable, limits: { cutoff: number; before: Date | null }, batch: number): Promise<CompactionBatch> {
  return ctx.write(`${table.log} compaction`, async (db) => {
    const now = ctx.clock()
    // Ensures and locks the log's row until commit: concurrent compactions of this log (other replicas) wait here.
    const mark = await db.logCompaction.upsert({
      where: { log: table.log },
      create: { log: table.log, floor: 0, compactedAt: now },
      update: { compactedAt: now },
    })
    const newest = await table.newestKey(db)
    if (newest === null) return { deleted: 0, floor: mark.floor, more: false }
    const rows = await table.oldest(db, mark.floor, batch)
    let upTo = mark.floor
    let stopped = false
    for (const r of rows) {
      const removable = r.key < newest && (r.key <= limits.cutoff || (limits.before !== null && r.time < limits.before))
      if (!removable) {
        stopped = true
        break
      }
      upTo = r.key
    }
    if (upTo === mark.floor) return { deleted: 0, floor: mark.floor, more: false }
    const deleted = await table.deleteUpTo(db, upTo)
    await db.logCompaction.update({ where: { log: table.log }, data: { floor: upTo } })
    return { deleted, floor: upTo, more: !stopped && rows.length === batch }
  })
}
