import { createYielder } from '../async/yielder.js'
import { ApmatrixError } from '../domain/errors.js'
import type { StoreContext } from './context.js'
import { fromJson, toJson } from './json-column.js'
import { dateOf, placeholders, type DirectSqlite } from './sqlite-direct.js'

/** planned: written before the bus operation runs; done/failed: after (docs/api.md (Reconcile), "journaled"). */
export type JournalState = 'planned' | 'done' | 'failed'

/** One planned bus operation of a reconcile. */
export interface JournalInput {
  host: string
  /** Groups the steps of one reconcile run. */
  reconcileId: string
  /** Position in the plan, from 0. */
  step: number
  operation: Record<string, unknown>
}

/** A stored journal entry. */
export interface JournalRecord extends JournalInput {
  id: number
  state: JournalState
  error: string | null
  time: Date
  updatedAt: Date
}

type Row = Omit<JournalRecord, 'operation' | 'state'> & { operation: string; state: string }
const toRecord = (r: Row): JournalRecord => ({
  ...r,
  state: r.state as JournalState,
  operation: fromJson<Record<string, unknown>>(r.operation, {}),
})

type DirectRow = Omit<Row, 'time' | 'updatedAt'> & { time: string; updatedAt: string }
const fromDirect = (r: DirectRow): JournalRecord => toRecord({ ...r, time: dateOf(r.time), updatedAt: dateOf(r.updatedAt) })

const COLUMNS = ['host', 'reconcileId', 'step', 'operation', 'state', 'time', 'updatedAt'] as const

function directInsert(sql: DirectSqlite, rows: Array<Record<(typeof COLUMNS)[number], unknown>>): JournalRecord[] {
  const values = rows.map(() => `(${placeholders(COLUMNS.length)})`).join(', ')
  return sql
    .all<DirectRow>(
      `INSERT INTO "JournalEntry" (${COLUMNS.map((c) => `"${c}"`).join(', ')}) VALUES ${values} RETURNING *`,
      ...rows.flatMap((r) => COLUMNS.map((c) => r[c])),
    )
    .map(fromDirect)
}

/** Ids per statement, rows per insert: well under the bound-parameter limits of both databases. */
const ID_CHUNK = 500
const ROW_CHUNK = 100

/** The reconcile journal: what a crashed reconcile had planned and not finished. */
export class JournalRepo {
  constructor(private readonly ctx: StoreContext) {}

  /** Records the steps of a plan as `planned`, atomically. A (reconcileId, step) already stored: `ALREADY_EXISTS`. */
  append(entries: JournalInput[]): Promise<JournalRecord[]> {
    return this.ctx.write('journal entries', async (db, sql) => {
      const turn = createYielder()
      const byKey = new Map<string, JournalRecord>()
      const time = this.ctx.clock()
      // A few statements for a plan of thousands of steps, each well under the bound-parameter limits.
      for (let i = 0; i < entries.length; i += ROW_CHUNK) {
        await turn()
        const data = entries.slice(i, i + ROW_CHUNK).map((e) => ({ ...e, operation: toJson(e.operation), state: 'planned', time, updatedAt: time }))
        const stored = sql ? directInsert(sql, data) : (await db.journalEntry.createManyAndReturn({ data })).map(toRecord)
        for (const r of stored) byKey.set(`${r.reconcileId}\n${r.step}`, r)
      }
      return entries.map((e) => byKey.get(`${e.reconcileId}\n${e.step}`)!)
    })
  }

  /** Sets the outcome of a step. `NOT_FOUND` for an unknown id. */
  update(id: number, state: JournalState, error?: string): Promise<JournalRecord> {
    return this.ctx.write(`journal entry ${id}`, async (db) => {
      const r = await db.journalEntry.findUnique({ where: { id } })
      if (!r) throw new ApmatrixError('NOT_FOUND', `journal entry ${id} not found`)
      return toRecord(await db.journalEntry.update({ where: { id }, data: { state, error: error ?? null, updatedAt: this.ctx.clock() } }))
    })
  }

  /**
   * Sets the outcome of several steps at once (one transaction when called outside one): a reconcile journals
   * a whole phase of its plan this way. Steps are matched by id; an id not stored is `NOT_FOUND` and nothing
   * changes. Returns how many entries were updated.
   */
  finish(outcomes: Array<{ id: number; state: Exclude<JournalState, 'planned'>; error?: string }>): Promise<number> {
    return this.ctx.write('journal entries', async (db, sql) => {
      const updatedAt = this.ctx.clock()
      let n = 0
      // Steps with the same outcome (nearly all: done, no message) share one UPDATE per chunk of ids.
      const groups = new Map<string, { state: Exclude<JournalState, 'planned'>; error: string | null; ids: number[] }>()
      for (const o of outcomes) {
        const key = JSON.stringify([o.state, o.error ?? null])
        let g = groups.get(key)
        if (!g) groups.set(key, (g = { state: o.state, error: o.error ?? null, ids: [] }))
        g.ids.push(o.id)
      }
      for (const { state, error, ids } of groups.values()) {
        for (let i = 0; i < ids.length; i += ID_CHUNK) {
          const chunk = ids.slice(i, i + ID_CHUNK)
          n += sql
            ? sql.run(
                `UPDATE "JournalEntry" SET "state" = ?, "error" = ?, "updatedAt" = ? WHERE "id" IN (${placeholders(chunk.length)})`,
                state,
                error,
                updatedAt,
                ...chunk,
              )
            : (await db.journalEntry.updateMany({ where: { id: { in: chunk } }, data: { state, error, updatedAt } })).count
        }
      }
      if (n !== outcomes.length) throw new ApmatrixError('NOT_FOUND', `journal: ${outcomes.length - n} of ${outcomes.length} entries not found`)
      return n
    })
  }

  /** The host's steps still `planned` (started, outcome unknown), in plan order. */
  listOpen(host: string): Promise<JournalRecord[]> {
    return this.ctx.read(`journal of ${host}`, async (db, sql) =>
      sql
        ? sql.all<DirectRow>('SELECT * FROM "JournalEntry" WHERE "host" = ? AND "state" = ? ORDER BY "id"', host, 'planned').map(fromDirect)
        : (await db.journalEntry.findMany({ where: { host, state: 'planned' }, orderBy: { id: 'asc' } })).map(toRecord),
    )
  }

  /** Deletes the host's finished entries (done or failed) last updated before `before` (store clock); returns how many. */
  prune(host: string, before: Date): Promise<number> {
    return this.ctx.write(
      `journal of ${host}`,
      async (db) => (await db.journalEntry.deleteMany({ where: { host, state: { in: ['done', 'failed'] }, updatedAt: { lt: before } } })).count,
    )
  }

  /**
   * The id at or below which the count limit removes finished entries (done or failed): the id `maxCount`
   * finished entries below the newest one (0: none). Entries still `planned` are never counted or removed.
   */
  finishedCutoff(maxCount: number): Promise<number> {
    if (maxCount <= 0) return Promise.resolve(0)
    return this.ctx.read(
      'journal retention',
      async (db) =>
        (await db.journalEntry.findFirst({ where: { state: { in: FINISHED } }, orderBy: { id: 'desc' }, skip: maxCount, select: { id: true } }))?.id ?? 0,
    )
  }

  /**
   * One pruning batch (retention): deletes at most `batch` of the oldest finished entries (done or failed) with
   * an id <= `cutoff` (see {@link finishedCutoff}) or last updated before `before` (null: no age limit). An entry
   * still `planned` is never removed: it is what a restarted reconcile resumes from. `more`: the batch was full.
   */
  pruneBatch(limits: { cutoff: number; before: Date | null }, batch: number): Promise<{ deleted: number; more: boolean }> {
    return this.ctx.write('journal retention', async (db) => {
      const which = [{ id: { lte: limits.cutoff } }, ...(limits.before ? [{ updatedAt: { lt: limits.before } }] : [])]
      const ids = (
        await db.journalEntry.findMany({ where: { state: { in: FINISHED }, OR: which }, orderBy: { id: 'asc' }, take: batch, select: { id: true } })
      ).map((r) => r.id)
      if (!ids.length) return { deleted: 0, more: false }
      const deleted = (await db.journalEntry.deleteMany({ where: { id: { in: ids }, state: { in: FINISHED } } })).count
      return { deleted, more: ids.length === batch }
    })
  }
}

const FINISHED = ['done', 'failed']
