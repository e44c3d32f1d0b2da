import type { StoreContext } from './context.js'
import { dateOf } from './sqlite-direct.js'
import { fromJson, toJson } from './json-column.js'
import { type CompactionBatch, compactBatch, countCutoff, type LogTable, readFloor } from './log-compaction.js'
import { pageSize } from './page-token.js'

/** One audited action: who did what to which object, and how it ended. */
export interface AuditInput {
  actor: string
  /** `mdev.create`, `masks.set`, ... */
  action: string
  /** The object: `hosts/local/mdevs/<uuid>`. */
  target: string
  /** `ok`, or the error code. */
  outcome: string
  requestId?: string | null
  detail?: Record<string, unknown>
}

/** A stored audit record; ids ascend in insertion order. */
export interface AuditRecord extends Required<Omit<AuditInput, 'detail'>> {
  id: number
  time: Date
  detail: Record<string, unknown>
}

/** Filters of {@link AuditRepo.list}. */
export interface AuditQuery {
  target?: string
  actor?: string
  outcome?: string
  afterId?: number
  limit?: number
}

type Row = Omit<AuditRecord, 'detail'> & { detail: string }
const toRecord = (r: Row): AuditRecord => ({ ...r, detail: fromJson<Record<string, unknown>>(r.detail, {}) })

/** The audit trail as compaction sees it (log-compaction.ts). */
const AUDIT_TABLE: LogTable = {
  log: 'audit',
  newestKey: async (db) => (await db.auditRecord.aggregate({ _max: { id: true } }))._max.id ?? null,
  keyBelowNewest: async (db, offset) => (await db.auditRecord.findFirst({ orderBy: { id: 'desc' }, skip: offset, select: { id: true } }))?.id ?? null,
  oldest: async (db, after, take) =>
    (await db.auditRecord.findMany({ where: { id: { gt: after } }, orderBy: { id: 'asc' }, take, select: { id: true, time: true } })).map((r) => ({
      key: r.id,
      time: r.time,
    })),
  deleteUpTo: async (db, upTo) => (await db.auditRecord.deleteMany({ where: { id: { lte: upTo } } })).count,
}

/** Append-only audit trail, compacted by retention (oldest records first). */
export class AuditRepo {
  constructor(private readonly ctx: StoreContext) {}

  /** Appends a record (in the ambient transaction, if any; one INSERT, so none is begun for it). */
  append(a: AuditInput): Promise<AuditRecord> {
    return this.ctx.writeOne('audit record', async (db, sql) => {
      const data = { ...a, requestId: a.requestId ?? null, detail: toJson(a.detail ?? {}), time: this.ctx.clock() }
      if (!sql) return toRecord(await db.auditRecord.create({ data }))
      const r = sql.get<Omit<Row, 'time'> & { time: string }>(
        'INSERT INTO "AuditRecord" ("time", "actor", "action", "target", "outcome", "requestId", "detail") VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *',
        data.time,
        data.actor,
        data.action,
        data.target,
        data.outcome,
        data.requestId,
        data.detail,
      )!
      return toRecord({ ...r, time: dateOf(r.time) })
    })
  }

  /** Records with id > afterId (ascending), optionally of one target, actor and outcome (exact matches, all must hold); limit 1..500, default 100. */
  async list(q: AuditQuery = {}): Promise<AuditRecord[]> {
    const take = pageSize(q.limit)
    return this.ctx.read('audit records', async (db) =>
      (
        await db.auditRecord.findMany({
          where: {
            id: { gt: q.afterId ?? 0 },
            ...(q.target !== undefined ? { target: q.target } : {}),
            ...(q.actor !== undefined ? { actor: q.actor } : {}),
            ...(q.outcome !== undefined ? { outcome: q.outcome } : {}),
          },
          orderBy: { id: 'asc' },
          take,
        })
      ).map(toRecord),
    )
  }

  /** The compaction floor: every record with id <= floor was removed by retention (0: none was). */
  floor(): Promise<number> {
    return readFloor(this.ctx, 'audit')
  }

  /** The id below which the count limit removes records (see EventRepo.countCutoff). */
  countCutoff(maxCount: number): Promise<number> {
    return countCutoff(this.ctx, AUDIT_TABLE, maxCount)
  }

  /** One compaction batch of the audit trail (see EventRepo.compact). */
  compact(limits: { cutoff: number; before: Date | null }, batch: number): Promise<CompactionBatch> {
    return compactBatch(this.ctx, AUDIT_TABLE, limits, batch)
  }
}
