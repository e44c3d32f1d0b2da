import type { DbTx } from './client.js'
import type { StoreContext } from './context.js'

/** How long a replica row stays after its expiry before a heartbeat of another replica deletes it. */
const FORGET_AFTER_MS = 3_600_000

/**
 * Which `apmatrix serve` replicas are alive (docs/api.md (Reconcile), "Sharing the hosts"): each replica renews
 * its row with its leases, on the store's clock, and counts the live rows to know its share of the hosts.
 * A replica that stops deletes its row; a killed one's row expires after the lease time like its leases.
 */
export class ReplicaRepo {
  constructor(private readonly ctx: StoreContext) {}

  /**
   * Marks `holder` alive for `ttlMs` from now, or until `until` (the expiry its leases were just renewed to: the row
   * then never outlives them); returns how many replicas are alive (itself included) and the earliest expiry among
   * the others' rows (null when it is alone): if that replica is dead, its share is free then.
   * Rows expired for an hour are deleted on the way (holders are unique per process, so each restart adds one).
   */
  heartbeat(holder: string, ttlMs: number, until?: Date): Promise<{ live: number; othersNextExpiry: Date | null }> {
    return this.ctx.write(`replica ${holder}`, async (db) => {
      const now = this.ctx.clock()
      const expiresAt = until ?? new Date(now.getTime() + ttlMs)
      await db.replica.upsert({ where: { holder }, create: { holder, renewedAt: now, expiresAt }, update: { renewedAt: now, expiresAt } })
      await db.replica.deleteMany({ where: { expiresAt: { lt: new Date(now.getTime() - FORGET_AFTER_MS) } } })
      return liveCount(db, holder, now)
    })
  }

  /**
   * Counts without marking anyone alive (a read): the live replicas, `holder` always among them, and the earliest
   * expiry among the others' rows. A count between heartbeats must not renew the row: a replica's row is renewed
   * only with its leases, to their expiry, so when it dies the row runs out no later than they do.
   */
  async count(holder: string): Promise<{ live: number; othersNextExpiry: Date | null }> {
    return this.ctx.read('replicas', (db) => liveCount(db, holder, this.ctx.clock()))
  }

  /** Removes `holder` (a replica that stops): the others may take its share at once. */
  async leave(holder: string): Promise<void> {
    await this.ctx.write(`replica ${holder}`, (db) => db.replica.deleteMany({ where: { holder } }))
  }
}

/**
 * The live replicas at `now`, `holder` counted whether or not its row is live, and the earliest expiry among the
 * others' rows: one read of the others' live rows (a row per replica, a handful) gives both.
 */
async function liveCount(db: DbTx, holder: string, now: Date): Promise<{ live: number; othersNextExpiry: Date | null }> {
  const rows = await db.replica.findMany({
    where: { holder: { not: holder }, expiresAt: { gt: now } },
    orderBy: { expiresAt: 'asc' },
    select: { expiresAt: true },
  })
  return { live: rows.length + 1, othersNextExpiry: rows[0]?.expiresAt ?? null }
}
