import { ApmatrixError } from '../domain/errors.js'
import { RetryTransaction, type StoreContext } from './context.js'
import { dateOf } from './sqlite-direct.js'
import { isUniqueViolation } from './store-errors.js'

/** The lease of a host: which replica reconciles it (docs/api.md (Reconcile)). */
export interface LeaseRecord {
  host: string
  holder: string
  /** Strictly increases with every new acquisition; writes by an old holder can be refused with it. */
  fencingToken: number
  acquiredAt: Date
  renewedAt: Date
  expiresAt: Date
}

/** Result of {@link LeaseRepo.tryAcquire}: the current lease, and whether the caller holds it. */
export interface LeaseResult {
  acquired: boolean
  fencingToken: number
  holder: string
  expiresAt: Date
}

/**
 * Host leases on the store's clock. Every change is a compare-and-set on the fencing token read in
 * the same transaction, so two replicas racing for an expired lease cannot both win, on SQLite or
 * PostgreSQL. Rows are never deleted (release only expires them), so tokens never restart at 1.
 * Holders must be unique per process (e.g. `hostname:pid:random`): a holder id reused after a
 * crash would renew the old lease as its own. Replicas' clocks must agree to well within the TTL.
 */
export class LeaseRepo {
  constructor(private readonly ctx: StoreContext) {}

  /**
   * Takes the lease if it is free or expired (new fencing token), or extends it if `holder` already
   * holds it (same token). Otherwise returns `acquired: false` with the current holder.
   */
  tryAcquire(host: string, holder: string, ttlMs: number): Promise<LeaseResult> {
    return this.ctx.write(`lease ${host}`, async (db) => {
      const now = this.ctx.clock()
      const expiresAt = new Date(now.getTime() + ttlMs)
      const cur = await db.lease.findUnique({ where: { host } })
      if (!cur) {
        try {
          await db.lease.create({ data: { host, holder, fencingToken: 1, acquiredAt: now, renewedAt: now, expiresAt } })
        } catch (e) {
          if (isUniqueViolation(e)) throw new RetryTransaction(`lease ${host}: concurrent first acquisition`)
          throw e
        }
        return { acquired: true, fencingToken: 1, holder, expiresAt }
      }
      const live = cur.expiresAt > now
      if (live && cur.holder !== holder) {
        return { acquired: false, fencingToken: cur.fencingToken, holder: cur.holder, expiresAt: cur.expiresAt }
      }
      const fencingToken = live ? cur.fencingToken : cur.fencingToken + 1
      const n = await db.lease.updateMany({
        where: { host, fencingToken: cur.fencingToken, holder: cur.holder, expiresAt: cur.expiresAt },
        data: live ? { renewedAt: now, expiresAt } : { holder, fencingToken, acquiredAt: now, renewedAt: now, expiresAt },
      })
      if (n.count === 0) throw new RetryTransaction(`lease ${host}: concurrent change`)
      return { acquired: true, fencingToken, holder, expiresAt }
    })
  }

  /**
   * Extends a lease the caller still holds (same token, not expired) to `ttlMs` from now; returns the new
   * expiry (store clock), or null if the lease was lost.
   */
  renew(host: string, holder: string, fencingToken: number, ttlMs: number): Promise<Date | null> {
    return this.ctx.writeOne(`lease ${host}`, async (db) => {
      const now = this.ctx.clock()
      const expiresAt = new Date(now.getTime() + ttlMs)
      const n = await db.lease.updateMany({
        where: { host, holder, fencingToken, expiresAt: { gt: now } },
        data: { renewedAt: now, expiresAt },
      })
      return n.count === 1 ? expiresAt : null
    })
  }

  /**
   * {@link renew} for many leases of `holder` at once (one transaction, two statements, whatever their number):
   * returns the new expiry and the hosts whose lease was extended; the others were lost.
   */
  renewMany(holder: string, leases: Array<{ host: string; fencingToken: number }>, ttlMs: number): Promise<{ expiresAt: Date; renewed: Set<string> }> {
    return this.ctx.write(`${leases.length} leases`, async (db) => {
      const now = this.ctx.clock()
      const expiresAt = new Date(now.getTime() + ttlMs)
      if (!leases.length) return { expiresAt, renewed: new Set<string>() }
      await db.lease.updateMany({
        where: { holder, expiresAt: { gt: now }, OR: leases.map((l) => ({ host: l.host, fencingToken: l.fencingToken })) },
        data: { renewedAt: now, expiresAt },
      })
      const rows = await db.lease.findMany({
        where: { holder, expiresAt, OR: leases.map((l) => ({ host: l.host, fencingToken: l.fencingToken })) },
        select: { host: true },
      })
      return { expiresAt, renewed: new Set(rows.map((r) => r.host)) }
    })
  }

  /** Gives the lease up now (the next acquisition gets a new token). False if the caller did not hold it. */
  release(host: string, holder: string, fencingToken: number): Promise<boolean> {
    return this.ctx.writeOne(`lease ${host}`, async (db) => {
      const now = this.ctx.clock()
      const n = await db.lease.updateMany({ where: { host, holder, fencingToken, expiresAt: { gt: now } }, data: { expiresAt: now } })
      return n.count === 1
    })
  }

  /** Every lease row (live or expired), by host: one read for a replica that decides which hosts to claim. */
  list(): Promise<LeaseRecord[]> {
    return this.ctx.read('leases', async (db) => db.lease.findMany({ orderBy: { host: 'asc' } }))
  }

  /** The lease row, or null if the host never had one. */
  get(host: string): Promise<LeaseRecord | null> {
    return this.ctx.read(`lease ${host}`, async (db, sql) => {
      if (!sql) return db.lease.findUnique({ where: { host } })
      const r = sql.get<Record<keyof LeaseRecord, string> & { fencingToken: number }>('SELECT * FROM "Lease" WHERE "host" = ?', host)
      return r ? { ...r, fencingToken: r.fencingToken, acquiredAt: dateOf(r.acquiredAt), renewedAt: dateOf(r.renewedAt), expiresAt: dateOf(r.expiresAt) } : null
    })
  }

  /**
   * Fencing check without a write: reads the lease row (committed state, no transaction, no lock) and throws
   * `UNAVAILABLE` ("lease lost") unless `holder` holds the live lease with this token; returns its expiry
   * (store clock). It says the lease was held when read, nothing about a takeover a moment later: a bus
   * write after it is safe only on a host that checks the token itself, or before the returned expiry.
   */
  async confirmHeld(host: string, holder: string, fencingToken: number): Promise<Date> {
    const cur = await this.get(host)
    if (!cur || cur.holder !== holder || cur.fencingToken !== fencingToken || !(cur.expiresAt > this.ctx.clock())) {
      throw new ApmatrixError('UNAVAILABLE', `lease on ${host} lost (token ${fencingToken})`)
    }
    return cur.expiresAt
  }

  /**
   * Fencing check for a write made under the lease: throws `UNAVAILABLE` ("lease lost") unless
   * `holder` holds the live lease with this token. Call it inside the write's transaction: it
   * write-locks the lease row (a no-op update), so a takeover waits until that transaction ends.
   */
  assertHeld(host: string, holder: string, fencingToken: number): Promise<void> {
    return this.ctx.write(`lease ${host}`, async (db) => {
      const n = await db.lease.updateMany({
        where: { host, holder, fencingToken, expiresAt: { gt: this.ctx.clock() } },
        data: { holder },
      })
      if (n.count !== 1) throw new ApmatrixError('UNAVAILABLE', `lease on ${host} lost (token ${fencingToken})`)
    })
  }
}
