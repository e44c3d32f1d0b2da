import { ApmatrixError } from '../domain/errors.js'
import { RetryTransaction, type StoreContext } from './context.js'
import { fromJson, toJson } from './json-column.js'
import type { Precondition } from './mdev-repo.js'
import { newResourceVersion } from './resource-version.js'
import { lockMasksRow } from './row-lock.js'
import { prismaCode } from './store-errors.js'

/** Observed masks as last read from the bus (status side). */
export interface MasksStatus {
  apmask?: string
  aqmask?: string
  observedGeneration?: number
  readAt?: string
}

/** Desired host masks (product.md §2), `0x` + 64 lowercase hex digits each. */
export interface HostMasksRecord {
  host: string
  apmask: string
  aqmask: string
  /** Bumped when apmask or aqmask change. */
  generation: number
  /** Opaque; changes on every write, status included. */
  resourceVersion: string
  status: MasksStatus
  updatedAt: Date
}

const MASK_TEXT = /^0x[0-9a-f]{64}$/

type Row = Omit<HostMasksRecord, 'status'> & { status: string }
const toRecord = (r: Row): HostMasksRecord => ({ ...r, status: fromJson<MasksStatus>(r.status, {}) })

/** Desired masks per host, with optimistic concurrency. */
export class MasksRepo {
  constructor(private readonly ctx: StoreContext) {}

  /** The stored masks, or null when never set (then the kernel default, all ones, applies). */
  get(host: string): Promise<HostMasksRecord | null> {
    return this.ctx.read(`masks of ${host}`, async (db) => {
      const r = await db.hostMasks.findUnique({ where: { host } })
      return r ? toRecord(r) : null
    })
  }

  /**
   * Stores the desired masks (creating the row on first use). The generation is bumped only when
   * a mask changes; an unchanged write returns the stored record. Masks must be in canonical form
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
      if (cur.apmask === masks.apmask && cur.aqmask === masks.aqmask) return toRecord(cur)
      const n = await db.hostMasks.updateMany({
        where: { host, resourceVersion: cur.resourceVersion },
        data: { ...masks, generation: cur.generation + 1, resourceVersion: newResourceVersion() },
      })
      if (n.count === 0) lostRace(host, pre)
      return toRecord((await db.hostMasks.findUnique({ where: { host } }))!)
    })
  }

  /** Stores the observed masks; no generation bump. `NOT_FOUND` if the masks were never set. */
  setStatus(host: string, status: MasksStatus): Promise<HostMasksRecord> {
    return this.ctx.write(`masks of ${host}`, async (db) =>
      toRecord(await db.hostMasks.update({ where: { host }, data: { status: toJson(status), resourceVersion: newResourceVersion() } })),
    )
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
