import type { StoreContext } from './context.js'
import { dateOf } from './sqlite-direct.js'
import { fromJson, toJson } from './json-column.js'
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

type Row = Omit<AuditRecord, 'detail'> & { detail: string }
const toRecord = (r: Row): AuditRecord => ({ ...r, detail: fromJson<Record<string, unknown>>(r.detail, {}) })

/** Append-only audit trail. */
export class AuditRepo {
  constructor(private readonly ctx: StoreContext) {}

  /** Appends a record (in the ambient transaction, if any). */
  append(a: AuditInput): Promise<AuditRecord> {
    return this.ctx.write('audit record', async (db, sql) => {
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

  /** Records with id > afterId (ascending), optionally for one target; limit 1..500, default 100. */
  async list(q: { target?: string; afterId?: number; limit?: number } = {}): Promise<AuditRecord[]> {
    const take = pageSize(q.limit)
    return this.ctx.read('audit records', async (db) =>
      (
        await db.auditRecord.findMany({
          where: { id: { gt: q.afterId ?? 0 }, ...(q.target !== undefined ? { target: q.target } : {}) },
          orderBy: { id: 'asc' },
          take,
        })
      ).map(toRecord),
    )
  }
}
