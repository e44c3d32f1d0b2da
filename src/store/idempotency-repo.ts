import { RetryTransaction, type StoreContext } from './context.js'
import { fromJson, toJson } from './json-column.js'
import { prismaCode } from './store-errors.js'

/** A stored answer to a request that carried an Idempotency-Key. */
export interface IdempotencyRecord {
  /** Who may reuse the key: e.g. `POST /v1/hosts/local/mdevs` + caller identity. */
  scope: string
  key: string
  /** Hash of the request; the same key with another hash is a different request. */
  requestHash: string
  responseStatus: number
  responseBody: unknown
  createdAt: Date
  expiresAt: Date
}

/** What {@link IdempotencyRepo.put} stores. */
export interface IdempotencyInput {
  scope: string
  key: string
  requestHash: string
  responseStatus: number
  responseBody: unknown
  ttlMs: number
}

type Row = Omit<IdempotencyRecord, 'responseBody'> & { responseBody: string }
const toRecord = (r: Row): IdempotencyRecord => ({ ...r, responseBody: fromJson<unknown>(r.responseBody, null) })

/** Idempotency keys with expiry. Expired records behave as absent. */
export class IdempotencyRepo {
  constructor(private readonly ctx: StoreContext) {}

  /** The live record for (scope, key), or null (absent or expired). */
  get(scope: string, key: string): Promise<IdempotencyRecord | null> {
    return this.ctx.read(`idempotency key ${key}`, async (db) => {
      const r = await db.idempotencyKey.findUnique({ where: { scope_key: { scope, key } } })
      return r && r.expiresAt > this.ctx.clock() ? toRecord(r) : null
    })
  }

  /**
   * Stores the answer unless a live record exists; first writer wins and the stored record is
   * returned either way, so the caller compares `requestHash` to detect a reused key. An expired
   * record is replaced.
   */
  put(p: IdempotencyInput): Promise<IdempotencyRecord> {
    return this.ctx.write(`idempotency key ${p.key}`, async (db) => {
      const now = this.ctx.clock()
      const where = { scope_key: { scope: p.scope, key: p.key } }
      const cur = await db.idempotencyKey.findUnique({ where })
      if (cur && cur.expiresAt > now) return toRecord(cur)
      const data = {
        requestHash: p.requestHash,
        responseStatus: p.responseStatus,
        responseBody: toJson(p.responseBody),
        createdAt: now,
        expiresAt: new Date(now.getTime() + p.ttlMs),
      }
      if (cur) {
        // Replace the expired record only if nobody replaced it since we read it.
        const n = await db.idempotencyKey.updateMany({ where: { scope: p.scope, key: p.key, expiresAt: cur.expiresAt }, data })
        if (n.count === 0) throw new RetryTransaction(`idempotency key ${p.key}: concurrent put`)
        return toRecord((await db.idempotencyKey.findUnique({ where }))!)
      }
      try {
        return toRecord(await db.idempotencyKey.create({ data: { scope: p.scope, key: p.key, ...data } }))
      } catch (e) {
        if (prismaCode(e) === 'P2002') throw new RetryTransaction(`idempotency key ${p.key}: concurrent put`)
        throw e
      }
    })
  }

  /** Deletes expired records; returns how many. */
  purgeExpired(): Promise<number> {
    return this.ctx.write('idempotency keys', async (db) => (await db.idempotencyKey.deleteMany({ where: { expiresAt: { lte: this.ctx.clock() } } })).count)
  }

  /**
   * The expiry at or before which the count limit removes keys: the `maxCount + 1`-th latest expiry (null:
   * there are not more than `maxCount` keys). Keys that expire first are evicted first; a request repeated with
   * an evicted key runs again, as after its expiry.
   */
  countCutoff(maxCount: number): Promise<Date | null> {
    if (maxCount <= 0) return Promise.resolve(null)
    return this.ctx.read(
      'idempotency retention',
      async (db) => (await db.idempotencyKey.findFirst({ orderBy: { expiresAt: 'desc' }, skip: maxCount, select: { expiresAt: true } }))?.expiresAt ?? null,
    )
  }

  /**
   * One pruning batch (retention): deletes the keys that expired (store clock) or that the count limit evicts
   * (expiry <= `cutoff`, see {@link countCutoff}), about `batch` at a time (keys sharing the last expiry of the
   * batch go with it). `more`: there may be more to delete.
   */
  pruneBatch(limits: { cutoff: Date | null }, batch: number): Promise<{ deleted: number; more: boolean }> {
    return this.ctx.write('idempotency retention', async (db) => {
      const now = this.ctx.clock()
      let upTo = limits.cutoff && limits.cutoff > now ? limits.cutoff : now
      const nth = await db.idempotencyKey.findFirst({
        where: { expiresAt: { lte: upTo } },
        orderBy: { expiresAt: 'asc' },
        skip: batch - 1,
        select: { expiresAt: true },
      })
      if (nth) upTo = nth.expiresAt
      const deleted = (await db.idempotencyKey.deleteMany({ where: { expiresAt: { lte: upTo } } })).count
      return { deleted, more: nth !== null }
    })
  }
}
