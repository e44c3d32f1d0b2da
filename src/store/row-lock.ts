import type { DbTx } from './client.js'
import type { StoreContext } from './context.js'

// Read-modify-write inside a transaction: on PostgreSQL (READ COMMITTED) take the row lock before
// reading, so concurrent writers of one object queue up instead of failing their compare-and-set
// and re-running. SQLite needs nothing: it has one writer and transactions run one at a time.
// Client-facing optimistic concurrency (resourceVersion preconditions) is unaffected.

/** Locks the matrix device row until the transaction ends (PostgreSQL; no-op on SQLite). */
export async function lockMdevRow(ctx: StoreContext, db: DbTx, host: string, uuid: string): Promise<void> {
  if (ctx.provider === 'postgres') await db.$executeRaw`SELECT 1 FROM "Mdev" WHERE "host" = ${host} AND "uuid" = ${uuid} FOR UPDATE`
}

/**
 * Locks the host masks row until the transaction ends (PostgreSQL; no-op on SQLite). On PostgreSQL, says
 * whether the row exists (the rows the locking read matched); `undefined` on SQLite, where nothing was read.
 */
export async function lockMasksRow(ctx: StoreContext, db: DbTx, host: string): Promise<boolean | undefined> {
  if (ctx.provider !== 'postgres') return undefined
  return (await db.$executeRaw`SELECT 1 FROM "HostMasks" WHERE "host" = ${host} FOR UPDATE`) > 0
}
