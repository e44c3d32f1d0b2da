import type { Provider } from './config.js'
import type { DbTx } from './client.js'
import type { DirectSqlite } from './sqlite-direct.js'
import { toStoreError } from './store-errors.js'

/**
 * Thrown inside a transaction when a concurrent writer won a race that a fresh attempt would see
 * (a unique insert lost, a compare-and-set matched nothing without a caller-supplied version).
 * The outermost transaction re-runs its whole function; callers never see this error.
 */
export class RetryTransaction extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'RetryTransaction'
  }
}

/** What a repository runs its queries through: the root client or an open transaction. */
export interface StoreContext {
  readonly provider: Provider
  /** Wall clock of this store (leases, expiries, deletion markers); injectable for tests. */
  readonly clock: () => Date
  /**
   * Runs `fn` inside a transaction: the ambient one, else a new one (re-run on {@link RetryTransaction}).
   * Errors are mapped with toStoreError, naming `what`. On SQLite `sql` runs statements on the connection
   * `db` runs on, in the same transaction (undefined when the adapter does not expose it, and on PostgreSQL).
   */
  write<T>(what: string, fn: (db: DbTx, sql: DirectSqlite | undefined) => Promise<T>): Promise<T>
  /**
   * As {@link write}, for `fn` that stores with one statement (atomic by itself). Outside a transaction on
   * PostgreSQL it runs without one: no BEGIN and COMMIT round trips, no interactive transaction to set up.
   * SQLite's writer has one connection shared by every transaction, so there it is {@link write}.
   */
  writeOne<T>(what: string, fn: (db: DbTx, sql: DirectSqlite | undefined) => Promise<T>): Promise<T>
  /**
   * Runs a read of committed data. On SQLite it uses a second connection (WAL): the writer's adapter has one
   * connection, and a plain query issued there while another caller's transaction is open would run (and
   * see uncommitted data) inside it. `sql` as for {@link write}.
   */
  read<T>(what: string, fn: (db: DbTx, sql: DirectSqlite | undefined) => Promise<T>): Promise<T>
}

/** Runs fn and maps errors for the store's callers. */
export async function mapped<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (e) {
    throw toStoreError(e, what)
  }
}

/** A context bound to an open transaction: everything runs in it, nothing retries here. */
export class TxContext implements StoreContext {
  constructor(
    private readonly tx: DbTx,
    readonly provider: Provider,
    readonly clock: () => Date,
    private readonly sql?: DirectSqlite,
  ) {}
  write<T>(what: string, fn: (db: DbTx, sql: DirectSqlite | undefined) => Promise<T>): Promise<T> {
    return mapped(what, () => fn(this.tx, this.sql))
  }
  writeOne<T>(what: string, fn: (db: DbTx, sql: DirectSqlite | undefined) => Promise<T>): Promise<T> {
    return this.write(what, fn)
  }
  read<T>(what: string, fn: (db: DbTx, sql: DirectSqlite | undefined) => Promise<T>): Promise<T> {
    return mapped(what, () => fn(this.tx, this.sql))
  }
}
