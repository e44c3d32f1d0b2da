import { ApmatrixError } from '../domain/errors.js'
import { RetryTransaction, type StoreContext } from './context.js'
import { fromJson, toJson } from './json-column.js'
import type { Precondition } from './mdev-repo.js'
import { newResourceVersion } from './resource-version.js'
import { lockMasksRow } from './row-lock.js'
import { dateOf, type DirectSqlite } from './sqlite-direct.js'
import { isUniqueViolation, prismaCode } from './store-errors.js'

/** Observed masks as last read from the bus (status side). */
export interface MasksStatus {
  apmask?: string
  aqmask?: string
  observedGeneration?: number
  readAt?: string
  /** Requests flushed by this host's hand-overs so far (the sum of their QueueFlushed events). */
  lostRequests?: number
}

/** Desired host masks (docs/api.md (Resources)), `0x` + 64 lowercase hex digits each. */
export interface HostMasksRecord {
  host: string
  apmask: string
  aqmask: string
  /**
   * Bumped when apmask or aqmask change. 0: adopted from the host at first contact and never set through
   * apmatrix (see {@link MasksRepo.adopt}); the first set makes it 1 even when the masks stay the same.
   */
  generation: number
  /** Opaque; changes on every write, status included. */
  resourceVersion: string
  status: MasksStatus
  updatedAt: Date
}

const MASK_TEXT = /^0x[0-9a-f]{64}$/

type Row = Omit<HostMasksRecord, 'status'> & { status: string }
const toRecord = (r: Row): HostMasksRecord => ({ ...r, status: fromJson<MasksStatus>(r.status, {}) })

/** The row through SQLite directly (dates as stored text). */
function directRow(sql: DirectSqlite, host: string): Row | undefined {
  const r = sql.get<Omit<Row, 'updatedAt'> & { updatedAt: string }>('SELECT * FROM "HostMasks" WHERE "host" = ?', host)
  return r && { ...r, updatedAt: dateOf(r.updatedAt) }
}

/** Desired masks per host, with optimistic concurrency. */
export class MasksRepo {
  constructor(private readonly ctx: StoreContext) {}

  /** The stored masks, or null when never set (then the kernel default, all ones, applies). */
  get(host: string): Promise<HostMasksRecord | null> {
    return this.ctx.read(`masks of ${host}`, async (db, sql) => {
      const r = sql ? directRow(sql, host) : await db.hostMasks.findUnique({ where: { host } })
      return r ? toRecord(r) : null
    })
  }

  /**
   * First contact (docs/api.md (Resources) "Host masks"): a host apmatrix has never seen adopts its observed masks as
   * the desired ones, so nothing is handed back to the host drivers that an admin set aside (chzdev). Creates
   * the row at generation 0 when there is none, or refreshes adopted masks (generation still 0) that the
   * host changed since. Returns what happened; `unchanged` also when a caller already set the masks
   * (generation > 0: those are never overwritten). INVALID_ARGUMENT for masks not in canonical form.
   */
  async adopt(host: string, masks: { apmask: string; aqmask: string }): Promise<{ outcome: 'created' | 'refreshed' | 'unchanged'; record: HostMasksRecord }> {
    for (const m of [masks.apmask, masks.aqmask]) {
      if (!MASK_TEXT.test(m)) throw new ApmatrixError('INVALID_ARGUMENT', `mask must be 0x + 64 lowercase hex digits, got ${m}`)
    }
    return this.ctx.write(`masks of ${host}`, async (db) => {
      await lockMasksRow(this.ctx, db, host)
      const cur = await db.hostMasks.findUnique({ where: { host } })
      if (!cur) {
        try {
          return {
            outcome: 'created' as const,
            record: toRecord(await db.hostMasks.create({ data: { host, ...masks, generation: 0, resourceVersion: newResourceVersion() } })),
          }
        } catch (e) {
          if (prismaCode(e) === 'P2002') throw new RetryTransaction(`masks of ${host}: concurrent create`)
          throw e
        }
      }
      if (cur.generation !== 0 || (cur.apmask === masks.apmask && cur.aqmask === masks.aqmask)) return { outcome: 'unchanged' as const, record: toRecord(cur) }
      const n = await db.hostMasks.updateMany({
        where: { host, generation: 0, resourceVersion: cur.resourceVersion },
        data: { ...masks, resourceVersion: newResourceVersion() },
      })
      if (n.count === 0) throw new RetryTransaction(`masks of ${host}: concurrent write`)
      return { outcome: 'refreshed' as const, record: toRecord((await db.hostMasks.findUnique({ where: { host } }))!) }
    })
  }

  /**
   * Stores the desired masks (creating the row on first use). The generation is bumped only when
   * a mask changes, or when they were only adopted so far (generation 0); an unchanged write returns the stored record. Masks must be in canonical form
   * (`INVALID_ARGUMENT` otherwise). A precondition that does not match, or that names a version
   * when none is stored: `CONFLICT`. An unregistered host: `NOT_FOUND`.
   */
  async set(host: string, masks: { apmask: string; aqmask: string }, pre: Precondition = {}): Promise<HostMasksRecord> {
    for (const m of [masks.apmask, masks.aqmask]) {
      if (!MASK_TEXT.test(m)) throw new ApmatrixError('INVALID_ARGUMENT', `mask must be 0x + 64 lowercase hex digits, got ${m}`)
    }
    return this.ctx.write(`masks of ${host}`, async (db) => {
      await lockMasksRow(this.ctx, db, host)
      const cur = await db.hostMasks.findUnique({ where: { host } })
      checkPrecondition(host, cur?.resourceVersion, pre)
      if (!cur) {
        try {
          return toRecord(await db.hostMasks.create({ data: { host, ...masks, generation: 1, resourceVersion: newResourceVersion() } }))
        } catch (e) {
          if (prismaCode(e) === 'P2002') throw new RetryTransaction(`masks of ${host}: concurrent create`)
          throw e
        }
      }
      if (cur.apmask === masks.apmask && cur.aqmask === masks.aqmask && cur.generation > 0) return toRecord(cur)
      const n = await db.hostMasks.updateMany({
        where: { host, resourceVersion: cur.resourceVersion },
        data: { ...masks, generation: cur.generation + 1, resourceVersion: newResourceVersion() },
      })
      if (n.count === 0) lostRace(host, pre)
      return toRecord((await db.hostMasks.findUnique({ where: { host } }))!)
    })
  }

  /**
   * Serialises admission per host: takes the masks row lock until the transaction ends (PostgreSQL;
   * SQLite has one writer anyway) without changing the masks or their generation. A host with no masks
   * yet (never registered through the service) gets the kernel default, all ones, at generation 1.
   */
  lockForAdmission(host: string): Promise<void> {
    return this.ctx.write(`masks of ${host}`, async (db, sql) => {
      const locked = await lockMasksRow(this.ctx, db, host)
      if (locked ?? (sql ? sql.get('SELECT 1 FROM "HostMasks" WHERE "host" = ?', host) : await db.hostMasks.findUnique({ where: { host } }))) return
      const full = `0x${'f'.repeat(64)}`
      try {
        if (sql)
          sql.run(
            'INSERT INTO "HostMasks" ("host", "apmask", "aqmask", "generation", "resourceVersion", "status", "updatedAt") VALUES (?, ?, ?, 1, ?, ?, ?)',
            host,
            full,
            full,
            newResourceVersion(),
            '{}',
            new Date(),
          )
        else await db.hostMasks.create({ data: { host, apmask: full, aqmask: full, generation: 1, resourceVersion: newResourceVersion() } })
      } catch (e) {
        if (isUniqueViolation(e)) throw new RetryTransaction(`masks of ${host}: concurrent create`)
        throw e
      }
    })
  }

  /** Stores the observed masks; no generation bump. `NOT_FOUND` if the masks were never set. */
  setStatus(host: string, status: MasksStatus): Promise<HostMasksRecord> {
    return this.ctx.write(`masks of ${host}`, async (db, sql) => {
      if (!sql) return toRecord(await db.hostMasks.update({ where: { host }, data: { status: toJson(status), resourceVersion: newResourceVersion() } }))
      const n = sql.run(
        'UPDATE "HostMasks" SET "status" = ?, "resourceVersion" = ?, "updatedAt" = ? WHERE "host" = ?',
        toJson(status),
        newResourceVersion(),
        new Date(),
        host,
      )
      if (n === 0) throw new ApmatrixError('NOT_FOUND', `masks of ${host} not found`)
      return toRecord(directRow(sql, host)!)
    })
  }
}

function checkPrecondition(host: string, stored: string | undefined, pre: Precondition): void {
  if (pre.expectedResourceVersion !== undefined && pre.expectedResourceVersion !== stored) {
    throw new ApmatrixError('CONFLICT', `masks of ${host} have resourceVersion ${stored ?? '(none)'}, not ${pre.expectedResourceVersion}`)
  }
}

function lostRace(host: string, pre: Precondition): never {
  if (pre.expectedResourceVersion !== undefined) throw new ApmatrixError('CONFLICT', `masks of ${host} were changed concurrently`)
  throw new RetryTransaction(`masks of ${host}: concurrent write`)
}
