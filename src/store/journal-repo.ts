import { ApmatrixError } from '../domain/errors.js'
import type { StoreContext } from './context.js'
import { fromJson, toJson } from './json-column.js'

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

/** The reconcile journal: what a crashed reconcile had planned and not finished. */
export class JournalRepo {
  constructor(private readonly ctx: StoreContext) {}

  /** Records the steps of a plan as `planned`, atomically. A (reconcileId, step) already stored: `ALREADY_EXISTS`. */
  append(entries: JournalInput[]): Promise<JournalRecord[]> {
    return this.ctx.write('journal entries', async (db) => {
      const out: JournalRecord[] = []
      for (const e of entries) {
        out.push(
          toRecord(
            await db.journalEntry.create({
              data: { ...e, operation: toJson(e.operation), state: 'planned', time: this.ctx.clock(), updatedAt: this.ctx.clock() },
            }),
          ),
        )
      }
      return out
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

  /** The host's steps still `planned` (started, outcome unknown), in plan order. */
  listOpen(host: string): Promise<JournalRecord[]> {
    return this.ctx.read(`journal of ${host}`, async (db) =>
      (await db.journalEntry.findMany({ where: { host, state: 'planned' }, orderBy: { id: 'asc' } })).map(toRecord),
    )
  }

  /** Deletes the host's finished entries (done or failed) last updated before `before` (store clock); returns how many. */
  prune(host: string, before: Date): Promise<number> {
    return this.ctx.write(
      `journal of ${host}`,
      async (db) => (await db.journalEntry.deleteMany({ where: { host, state: { in: ['done', 'failed'] }, updatedAt: { lt: before } } })).count,
    )
  }
}
