// One codebase, two providers: each provider has its own generated client (the query compiler is
// per provider, a swapped adapter is refused at run time). Application code is typed against the
// SQLite client; the PostgreSQL client has the same API for the shared data model and is cast.
import type { PrismaClient as SqliteClient } from '../generated/prisma-sqlite/client.js'
import type { Prisma } from '../generated/prisma-sqlite/client.js'
import { ensureSqliteFolder, type DatabaseConfig } from './config.js'

/** The Prisma client type the store is written against (either provider at run time). */
export type Db = SqliteClient
/** A client inside an interactive transaction. */
export type DbTx = Prisma.TransactionClient

/**
 * Opens a Prisma client for the parsed URL (lazily: nothing connects before the first query).
 * SQLite: creates the database folder first (the adapter does not).
 */
export async function createPrismaClient(cfg: DatabaseConfig): Promise<Db> {
  if (cfg.provider === 'postgres') {
    const [{ PrismaClient }, { PrismaPg }] = await Promise.all([import('../generated/prisma-postgres/client.js'), import('@prisma/adapter-pg')])
    const adapter = new PrismaPg({ connectionString: cfg.url, connectionTimeoutMillis: 5_000 })
    return new PrismaClient({ adapter }) as unknown as Db
  }
  ensureSqliteFolder(cfg)
  const [{ PrismaClient }, { PrismaBetterSqlite3 }] = await Promise.all([
    import('../generated/prisma-sqlite/client.js'),
    import('@prisma/adapter-better-sqlite3'),
  ])
  return new PrismaClient({ adapter: new PrismaBetterSqlite3({ url: cfg.file ?? cfg.url, timeout: 5_000 }) })
}
