// One codebase, two providers: each provider has its own generated client (the query compiler is
// per provider, a swapped adapter is refused at run time). Application code is typed against the
// SQLite client; the PostgreSQL client has the same API for the shared data model and is cast.
import type { PrismaClient as SqliteClient } from '../generated/prisma-sqlite/client.js'
import type { Prisma } from '../generated/prisma-sqlite/client.js'
import type { SqlDriverAdapterFactory } from '@prisma/driver-adapter-utils'
import { ensureSqliteFolder, type DatabaseConfig } from './config.js'
import { isSqliteConnection, type SqliteConnection } from './sqlite-direct.js'

/** The Prisma client type the store is written against (either provider at run time). */
export type Db = SqliteClient
/** A client inside an interactive transaction. */
export type DbTx = Prisma.TransactionClient

/** An opened client; on SQLite also the connection its adapter opened (see {@link createPrismaClient}). */
export interface OpenedClient {
  db: Db
  /**
   * SQLite: the better-sqlite3 connection the adapter runs every query of `db` on, once connected (undefined
   * before, and for PostgreSQL). The store runs its hot statements on it directly (src/store/sqlite-direct.ts).
   */
  connection(): SqliteConnection | undefined
}

/**
 * Opens a Prisma client for the parsed URL (lazily: nothing connects before the first query).
 * SQLite: creates the database folder first (the adapter does not), keeps hold of the connection the
 * adapter opens (the adapter's `client` field: @prisma/adapter-better-sqlite3 7.10, pinned; when a later
 * version hides it, `connection()` stays undefined and the store runs everything through Prisma), and sets
 * `synchronous = FULL` on it as it opens, reconnections included.
 */
export async function createPrismaClient(cfg: DatabaseConfig, opts: { timeoutMs?: number } = {}): Promise<OpenedClient> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  if (cfg.provider === 'postgres') {
    const [{ PrismaClient }, { PrismaPg }, { default: pg }] = await Promise.all([
      import('../generated/prisma-postgres/client.js'),
      import('@prisma/adapter-pg'),
      import('pg'),
    ])
    // Every round trip bounded (node-postgres pool options): connecting, a statement on the server, and the
    // client's wait for an answer (a SIGSTOPped server accepts nothing and answers nothing). TCP keepalive
    // finds connections that died with the network. The query timeouts exceed the statement timeout a little,
    // so a slow statement is cancelled by the server (clean) before the client gives up on the connection.
    const pool = new pg.Pool({
      connectionString: cfg.url,
      connectionTimeoutMillis: Math.min(5_000, timeoutMs),
      statement_timeout: timeoutMs,
      query_timeout: timeoutMs + 1_000,
      keepAlive: true,
    })
    pool.on('connect', closeOnReadTimeout)
    const adapter = new PrismaPg(pool, { disposeExternalPool: true })
    return { db: new PrismaClient({ adapter }) as unknown as Db, connection: () => undefined }
  }
  ensureSqliteFolder(cfg)
  const [{ PrismaClient }, { PrismaBetterSqlite3 }] = await Promise.all([
    import('../generated/prisma-sqlite/client.js'),
    import('@prisma/adapter-better-sqlite3'),
  ])
  const factory = new PrismaBetterSqlite3({ url: cfg.file ?? cfg.url, timeout: 5_000 })
  let connection: SqliteConnection | undefined
  const capturing: SqlDriverAdapterFactory = {
    provider: factory.provider,
    adapterName: factory.adapterName,
    connect: async () => {
      const adapter = await factory.connect()
      const client = (adapter as { client?: unknown }).client
      connection = isSqliteConnection(client) ? client : undefined
      // Every commit flushed to disk: a database already in WAL mode opens at NORMAL (better-sqlite3's
      // SQLITE_DEFAULT_WAL_SYNCHRONOUS=1), which keeps a commit only in the OS cache.
      connection?.pragma('synchronous = FULL')
      return adapter
    },
  }
  return { db: new PrismaClient({ adapter: capturing }), connection: () => (connection?.open ? connection : undefined) }
}

/**
 * A connection whose answer did not come within the client's read timeout is closed at once and never reused.
 * node-postgres leaves it in the pool: the statement it gave up on is still in the server's hands, and the
 * adapter, when the ROLLBACK that follows times out too, hands the connection back as healthy. Once the server
 * answered, the next transaction on it began inside the old one (BEGIN is then only a warning) and its COMMIT
 * stored the abandoned transaction's first writes with its own: a device without its event. Closed, the server
 * rolls the old transaction back, the pool drops the connection (it is no longer queryable), and the ROLLBACK
 * fails at once instead of waiting a second read timeout (a write caught by a frozen server took twice the bound).
 */
function closeOnReadTimeout(client: import('pg').PoolClient): void {
  const query = client.query.bind(client) as (...a: unknown[]) => unknown
  client.query = ((...a: unknown[]) => {
    const r = query(...a)
    if (r instanceof Promise) {
      r.catch((e: unknown) => {
        if ((e as Error)?.message === 'Query read timeout')
          (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
      })
    }
    return r
  }) as typeof client.query
}
