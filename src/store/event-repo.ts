import type { DbTx } from './client.js'
import type { StoreContext } from './context.js'
import { fromJson, toJson } from './json-column.js'
import { type CompactionBatch, compactBatch, countCutoff, type LogTable, readFloor } from './log-compaction.js'
import { pageSize } from './page-token.js'
import { dateOf, placeholders, type DirectSqlite } from './sqlite-direct.js'

/** What a caller records (docs/api.md (Resources), Event). */
export interface EventInput {
  host: string
  /** What the event is about: `mdev`, `masks`, `queue`, `host`, ... */
  kind: string
  name: string
  /** `MdevDefined`, `MasksChanged`, `DriftDetected`, ... */
  type: string
  message?: string
  requestId?: string | null
  actor?: string | null
  data?: Record<string, unknown>
}

/** A stored event. */
export interface EventRecord extends Required<Omit<EventInput, 'data'>> {
  /** Monotonic per store; readers resume from the last seq they saw. */
  seq: number
  time: Date
  data: Record<string, unknown>
}

/** Filters of {@link EventRepo.list}. */
export interface EventQuery {
  /** Only events with seq > since (default 0: from the start). */
  since?: number
  host?: string
  kinds?: string[]
  /** 1..1000, default 100. */
  limit?: number
}

/** Rows per insert of {@link EventRepo.appendMany}: well under the bound-parameter limits of both databases. */
const ROW_CHUNK = 100

/** Largest page {@link EventRepo.list} returns. */
export const MAX_EVENT_PAGE = 1000

type Row = Omit<EventRecord, 'data'> & { data: string }
const toRecord = (r: Row): EventRecord => ({ ...r, data: fromJson<Record<string, unknown>>(r.data, {}) })

/** The stored columns of an event. */
function columns(e: EventInput, time: Date) {
  return {
    host: e.host,
    kind: e.kind,
    name: e.name,
    type: e.type,
    message: e.message ?? '',
    requestId: e.requestId ?? null,
    actor: e.actor ?? null,
    data: toJson(e.data ?? {}),
    time,
  }
}

/** The event log as compaction sees it (log-compaction.ts). */
const EVENT_TABLE: LogTable = {
  log: 'events',
  newestKey: async (db) => (await db.event.aggregate({ _max: { seq: true } }))._max.seq ?? null,
  keyBelowNewest: async (db, offset) => (await db.event.findFirst({ orderBy: { seq: 'desc' }, skip: offset, select: { seq: true } }))?.seq ?? null,
  oldest: async (db, after, take) =>
    (await db.event.findMany({ where: { seq: { gt: after } }, orderBy: { seq: 'asc' }, take, select: { seq: true, time: true } })).map((r) => ({
      key: r.seq,
      time: r.time,
    })),
  deleteUpTo: async (db, upTo) => (await db.event.deleteMany({ where: { seq: { lte: upTo } } })).count,
}

const COLUMNS = ['host', 'kind', 'name', 'type', 'message', 'requestId', 'actor', 'data', 'time'] as const

/** One INSERT of `rows` through SQLite directly; the stored events in seq order. */
function directInsert(sql: DirectSqlite, rows: ReturnType<typeof columns>[]): EventRecord[] {
  const values = rows.map(() => `(${placeholders(COLUMNS.length)})`).join(', ')
  const stored = sql.all<Omit<Row, 'time'> & { time: string }>(
    `INSERT INTO "Event" (${COLUMNS.map((c) => `"${c}"`).join(', ')}) VALUES ${values} RETURNING *`,
    ...rows.flatMap((r) => COLUMNS.map((c) => r[c])),
  )
  return stored.map((r) => toRecord({ ...r, time: dateOf(r.time) })).sort((a, b) => a.seq - b.seq)
}

/**
 * The event log. Invariant for resuming readers: when a reader has seen seq N, no event with
 * seq < N becomes visible later. PostgreSQL sequences hand out numbers at insert time but
 * transactions commit in any order, so a reader could see 7 before 6 commits and then skip 6.
 * Appends therefore take `LOCK TABLE "Event" IN SHARE ROW EXCLUSIVE MODE` (conflicts with itself and
 * with inserts, not with reads) just before inserting, held to commit: seqs are allocated in commit
 * order. A rolled-back append leaves a permanent gap, never a late one. SQLite has a single writer,
 * which gives the same order. Cost: event-writing transactions serialise from their append to
 * their commit, so append events as the last step of a transaction.
 */
export class EventRepo {
  constructor(private readonly ctx: StoreContext) {}

  /** Appends one event (in the ambient transaction, if any) and returns it with its seq. */
  append(e: EventInput): Promise<EventRecord> {
    return this.ctx.write(`event ${e.type}`, async (db, sql) => {
      await this.lockForAppend(db)
      const data = columns(e, this.ctx.clock())
      if (sql) return directInsert(sql, [data])[0]!
      return toRecord(await db.event.create({ data }))
    })
  }

  /**
   * Appends several events (in the ambient transaction, if any), a hundred per statement: their seqs increase
   * in the order given. Returns how many were stored.
   */
  appendMany(events: EventInput[]): Promise<number> {
    return this.ctx.write(`${events.length} events`, async (db, sql) => {
      if (events.length === 0) return 0
      await this.lockForAppend(db)
      const time = this.ctx.clock()
      let n = 0
      for (let i = 0; i < events.length; i += ROW_CHUNK) {
        const data = events.slice(i, i + ROW_CHUNK).map((e) => columns(e, time))
        n += sql ? directInsert(sql, data).length : (await db.event.createMany({ data })).count
      }
      return n
    })
  }

  /** Events with seq > since, ascending, at most `limit` (`INVALID_ARGUMENT` outside 1..1000). */
  async list(q: EventQuery = {}): Promise<EventRecord[]> {
    const limit = pageSize(q.limit, MAX_EVENT_PAGE)
    return this.ctx.read('events', async (db) =>
      (
        await db.event.findMany({
          where: {
            seq: { gt: q.since ?? 0 },
            ...(q.host !== undefined ? { host: q.host } : {}),
            ...(q.kinds?.length ? { kind: { in: q.kinds } } : {}),
          },
          orderBy: { seq: 'asc' },
          take: limit,
        })
      ).map(toRecord),
    )
  }

  /**
   * The highest seq stored, 0 when the log is empty (a watcher that wants only new events starts here). Never
   * below the compaction floor, so positions do not go back even if the log were emptied.
   */
  lastSeq(): Promise<number> {
    return this.ctx.read('events', async (db) => {
      const [max, mark] = await Promise.all([db.event.aggregate({ _max: { seq: true } }), db.logCompaction.findUnique({ where: { log: 'events' } })])
      return Math.max(max._max.seq ?? 0, mark?.floor ?? 0)
    })
  }

  /**
   * The compaction floor (docs/api.md (Events) Retention): every event with seq <= floor was removed by
   * retention, every event with seq > floor that was stored is still there. A reader positioned at or above
   * the floor misses nothing; 0 until the first compaction.
   */
  floor(): Promise<number> {
    return readFloor(this.ctx, 'events')
  }

  /** The seq below which the count limit removes events: `maxCount` events below the newest (0: none; see log-compaction.ts). */
  countCutoff(maxCount: number): Promise<number> {
    return countCutoff(this.ctx, EVENT_TABLE, maxCount)
  }

  /**
   * One compaction batch (log-compaction.ts): deletes the oldest events with seq <= `cutoff` or a time before
   * `before`, at most `batch`, never the newest, and moves the floor. Safe to run from several replicas at once.
   */
  compact(limits: { cutoff: number; before: Date | null }, batch: number): Promise<CompactionBatch> {
    return compactBatch(this.ctx, EVENT_TABLE, limits, batch)
  }

  private async lockForAppend(db: DbTx): Promise<void> {
    if (this.ctx.provider === 'postgres') await db.$executeRawUnsafe('LOCK TABLE "Event" IN SHARE ROW EXCLUSIVE MODE')
  }
}
