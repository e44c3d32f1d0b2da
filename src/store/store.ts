import { setTimeout as sleep } from 'node:timers/promises'
import { ApmatrixError } from '../domain/errors.js'
import { AuditRepo } from './audit-repo.js'
import { createPrismaClient, type Db, type DbTx, type OpenedClient } from './client.js'
import { parseDatabaseUrl, type Provider } from './config.js'
import { mapped, RetryTransaction, TxContext, type StoreContext } from './context.js'
import { EventRepo } from './event-repo.js'
import { GroupCommit } from './group-commit.js'
import { HostRepo } from './host-repo.js'
import { IdempotencyRepo } from './idempotency-repo.js'
import { JournalRepo } from './journal-repo.js'
import { LeaseRepo } from './lease-repo.js'
import { MasksRepo } from './masks-repo.js'
import { MdevRepo } from './mdev-repo.js'
import { ReplicaRepo } from './replica-repo.js'
import { DirectSqlite, type SqliteConnection } from './sqlite-direct.js'
import { isTransientConflict, StoreTimeoutError, toStoreError } from './store-errors.js'

/** The repositories, bound either to the store or to one transaction. */
export interface Repos {
  readonly hosts: HostRepo
  readonly mdevs: MdevRepo
  readonly masks: MasksRepo
  readonly events: EventRepo
  readonly audit: AuditRepo
  readonly journal: JournalRepo
  readonly idempotency: IdempotencyRepo
  readonly leases: LeaseRepo
  readonly replicas: ReplicaRepo
}

/** Options of {@link createStore}. */
export interface StoreOptions {
  /** The store's wall clock (leases, expiries, deletion markers). Default: `new Date()`. */
  clock?: () => Date
  /** Attempts of a transaction that lost a race before giving up with `CONFLICT`. Default 5. */
  maxAttempts?: number
  /**
   * SQLite: transactions of one event-loop turn share one durable commit (src/store/group-commit.ts). Default
   * true. PostgreSQL ignores it: commits from the pool overlap by themselves.
   */
  groupCommit?: boolean
  /**
   * The longest one database round trip may take before it fails with `UNAVAILABLE` (default 10 s): PostgreSQL
   * connect, statement and client read timeouts, and the readiness ping. A frozen server (or a network that drops
   * packets) then answers 503 within this bound instead of holding the request.
   */
  timeoutMs?: number
  /**
   * Told of every store operation (metrics): its kind (`transaction`, `write`, `read`), its duration, and the
   * error code when it failed (`UNAVAILABLE`, `CONFLICT`, ... or `error`).
   */
  observe?: StoreObserver
}

/** See {@link StoreOptions.observe}. */
export type StoreObserver = (kind: 'transaction' | 'write' | 'read', seconds: number, errorCode?: string) => void

/** Default of {@link StoreOptions.timeoutMs}. */
export const DEFAULT_STORE_TIMEOUT_MS = 10_000

// Waiting for a connection / the SQLite transaction mutex, and the longest a transaction may run.
const TX_OPTIONS = { maxWait: 10_000, timeout: 30_000 }
/** Most transactions sharing one SQLite commit. */
const MAX_BATCH = 64

function repos(ctx: StoreContext): Repos {
  return {
    hosts: new HostRepo(ctx),
    mdevs: new MdevRepo(ctx),
    masks: new MasksRepo(ctx),
    events: new EventRepo(ctx),
    audit: new AuditRepo(ctx),
    journal: new JournalRepo(ctx),
    idempotency: new IdempotencyRepo(ctx),
    leases: new LeaseRepo(ctx),
    replicas: new ReplicaRepo(ctx),
  }
}

/** A client and, on SQLite, direct statements on its connection once it is open. */
class Connection {
  private conn: SqliteConnection | undefined
  private direct: DirectSqlite | undefined
  constructor(readonly opened: OpenedClient) {}
  get db(): Db {
    return this.opened.db
  }
  sql(): DirectSqlite | undefined {
    const c = this.opened.connection()
    if (c !== this.conn) {
      this.conn = c
      this.direct = c ? new DirectSqlite(c) : undefined
    }
    return this.direct
  }
  /** {@link sql}, connecting first when nothing did yet (Prisma connects lazily). */
  async ready(provider: Provider): Promise<DirectSqlite | undefined> {
    if (provider !== 'sqlite' || this.sql()) return this.direct
    await this.opened.db.$connect()
    return this.sql()
  }
}

/**
 * The persistent store: repositories over SQLite or PostgreSQL, and {@link Store.transaction}.
 * The schema must already be migrated (see applyMigrations). Every method maps database failures
 * to `UNAVAILABLE`, so callers answer 503, never 500 (docs/api.md (Errors)).
 *
 * SQLite: every commit is durable (`synchronous = FULL`: the write-ahead log is flushed to disk before the
 * commit returns), concurrent transactions share commits ({@link StoreOptions.groupCommit}), and the hot
 * statements run on the adapter's connection directly (src/store/sqlite-direct.ts).
 */
export class Store implements Repos {
  readonly hosts: HostRepo
  readonly mdevs: MdevRepo
  readonly masks: MasksRepo
  readonly events: EventRepo
  readonly audit: AuditRepo
  readonly journal: JournalRepo
  readonly idempotency: IdempotencyRepo
  readonly leases: LeaseRepo
  readonly replicas: ReplicaRepo
  private closed = false
  private readonly counts = { transactions: 0, retries: 0, jobs: 0 }
  private readonly writer: Connection
  /**
   * SQLite: a second connection for plain reads. The writer's single connection would run a plain read
   * inside whatever transaction is open on it (StoreContext.read), so reads used to be wrapped in their
   * own transaction; a separate connection in WAL mode sees exactly the committed state, without the cost.
   */
  private readonly reader: Connection | undefined
  private readonly group: GroupCommit | undefined
  private durable: Promise<void> | undefined

  constructor(
    writer: OpenedClient,
    readonly provider: Provider,
    private readonly clock: () => Date,
    private readonly maxAttempts: number,
    reader?: OpenedClient,
    groupCommit = true,
    private readonly timeoutMs = DEFAULT_STORE_TIMEOUT_MS,
    private readonly observe?: StoreObserver,
  ) {
    this.writer = new Connection(writer)
    this.reader = provider === 'sqlite' && reader ? new Connection(reader) : undefined
    if (provider === 'sqlite' && groupCommit) {
      this.group = new GroupCommit(this.writer.db, {
        maxBatch: MAX_BATCH,
        maxAttempts,
        txOptions: TX_OPTIONS,
        savepoint: async (tx, sql) => {
          const direct = this.writer.sql()
          if (direct) direct.run(sql)
          else await tx.$executeRawUnsafe(sql)
        },
        onBatch: () => void this.counts.transactions++,
        mapError: (e, what, attempts) => this.mapError(e, what, attempts),
      })
    }
    const root: StoreContext = {
      provider,
      clock,
      write: (what, fn) => this.observed('write', () => this.run(what, fn)),
      writeOne: (what, fn) => this.observed('write', () => (provider === 'postgres' ? this.runAlone(what, fn) : this.run(what, fn))),
      read: (what, fn) => {
        const r = this.reader ?? (provider === 'postgres' ? this.writer : undefined)
        return this.observed('read', () =>
          r
            ? mapped(what, async () => {
                this.assertOpen()
                return fn(r.db as unknown as DbTx, await r.ready(provider))
              })
            : this.run(what, fn),
        )
      },
    }
    ;({
      hosts: this.hosts,
      mdevs: this.mdevs,
      masks: this.masks,
      events: this.events,
      audit: this.audit,
      journal: this.journal,
      idempotency: this.idempotency,
      leases: this.leases,
      replicas: this.replicas,
    } = repos(root))
  }

  /**
   * Runs `fn` in one transaction: everything it stores commits together or not at all (an object,
   * its event and its audit record). It is re-run from the start when it lost a race to a
   * concurrent writer (so it must do nothing but store work), and gives up with `CONFLICT` after
   * `maxAttempts`. An ApmatrixError thrown by `fn` rolls back and reaches the caller unchanged.
   * It resolves once the commit is durable; on SQLite the commit may be shared with transactions that
   * ran in the same event-loop turn.
   */
  transaction<T>(fn: (tx: Repos) => Promise<T>): Promise<T> {
    return this.observed('transaction', () => this.run('transaction', (tx, sql) => fn(repos(new TxContext(tx, this.provider, this.clock, sql)))))
  }

  /** Runs one operation, telling {@link StoreOptions.observe} how long it took and how it failed. */
  private async observed<T>(kind: 'transaction' | 'write' | 'read', op: () => Promise<T>): Promise<T> {
    const observe = this.observe
    if (!observe) return op()
    const began = performance.now()
    try {
      const out = await op()
      observe(kind, (performance.now() - began) / 1000)
      return out
    } catch (e) {
      const code = (e as { code?: unknown })?.code
      observe(kind, (performance.now() - began) / 1000, typeof code === 'string' && /^[A-Z_]{2,40}$/.test(code) ? code : 'error')
      throw e
    }
  }

  /** The store's clock (leases and expiries are judged by it). */
  now(): Date {
    return this.clock()
  }

  /** Readiness probe: resolves if the database answers, else `UNAVAILABLE`. */
  ping(): Promise<void> {
    return mapped('store', async () => {
      this.assertOpen()
      // Bounded on its own: a connection already open to a frozen server has no connect timeout to hit.
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new StoreTimeoutError(`no answer from the database within ${this.timeoutMs} ms`)), this.timeoutMs)
      })
      try {
        await Promise.race([this.writer.db.$queryRawUnsafe('SELECT 1'), late])
      } finally {
        clearTimeout(timer)
      }
    })
  }

  /** Closes the connections (idempotent). The store cannot be used afterwards. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.writer.db.$disconnect()
    await this.reader?.db.$disconnect()
  }

  /**
   * What this store did since it was opened: `transactions` counts every database transaction begun
   * (each attempt of a re-run one too, a shared SQLite commit once, a PostgreSQL statement run on its own by
   * `writeOne` too: it is its own transaction), `jobs` the transactions callers asked
   * for (`store.transaction` and each write outside one), `retries` the re-runs. Plain reads outside a
   * transaction are not counted. A snapshot: later work does not change the returned object.
   */
  stats(): { transactions: number; retries: number; jobs: number } {
    return { ...this.counts }
  }

  /**
   * How this store writes: on SQLite the writer connection's `synchronous` setting (2 = FULL: each commit is
   * flushed to disk), whether hot statements run on the connection directly, and whether commits are shared.
   * Opens the connection if needed; `UNAVAILABLE` when the database does not answer.
   */
  async writeMode(): Promise<{ provider: Provider; synchronous: number | null; directSql: boolean; groupCommit: boolean }> {
    const synchronous =
      this.provider === 'sqlite'
        ? await this.run('settings', async (tx, sql) => {
            const rows = sql
              ? [sql.get<{ synchronous: number }>('PRAGMA synchronous')]
              : await tx.$queryRawUnsafe<{ synchronous: number }[]>('PRAGMA synchronous')
            return Number(rows[0]?.synchronous)
          })
        : null
    return { provider: this.provider, synchronous, directSql: this.writer.sql() !== undefined, groupCommit: this.group !== undefined }
  }

  private assertOpen(): void {
    if (this.closed) throw new ApmatrixError('UNAVAILABLE', 'store is closed')
  }

  private mapError(e: unknown, what: string, attempts: number): unknown {
    if (e instanceof RetryTransaction) return new ApmatrixError('CONFLICT', `${what}: gave up after ${attempts} attempts (${e.message})`, { cause: e })
    return toStoreError(e, what)
  }

  /**
   * SQLite: opens the writer connection, which client.ts makes flush every commit. When the adapter hides its
   * connection, the setting goes through Prisma once instead (its one connection).
   */
  private async writerReady(): Promise<void> {
    if (this.provider !== 'sqlite' || this.writer.sql() || (await this.writer.ready(this.provider))) return
    this.durable ??= this.writer.db.$executeRawUnsafe('PRAGMA synchronous = FULL').then(
      () => undefined,
      (e: unknown) => {
        this.durable = undefined
        throw toStoreError(e, 'store')
      },
    )
    await this.durable
  }

  /** Runs `fn`, one statement, on the pool without a transaction (PostgreSQL `writeOne`): it is its own transaction. */
  private runAlone<T>(what: string, fn: (tx: DbTx, sql: DirectSqlite | undefined) => Promise<T>): Promise<T> {
    return mapped(what, async () => {
      this.assertOpen()
      this.counts.jobs++
      this.counts.transactions++
      return fn(this.writer.db as unknown as DbTx, undefined)
    })
  }

  private async run<T>(what: string, fn: (tx: DbTx, sql: DirectSqlite | undefined) => Promise<T>): Promise<T> {
    this.assertOpen()
    this.counts.jobs++
    await mapped(what, () => this.writerReady())
    if (this.group) return this.group.submit(what, (tx) => fn(tx, this.writer.sql()))
    for (let attempt = 1; ; attempt++) {
      this.counts.transactions++
      if (attempt > 1) this.counts.retries++
      try {
        return await this.writer.db.$transaction((tx) => fn(tx, this.writer.sql()), TX_OPTIONS)
      } catch (e) {
        // A PostgreSQL serialization failure or deadlock (also of a raw statement): the transaction can simply run again.
        const retry = e instanceof RetryTransaction || isTransientConflict(e)
        if (retry && attempt < this.maxAttempts) {
          // Jittered backoff, so racing writers do not collide again in lockstep.
          await sleep(Math.random() * 5 * attempt)
          continue
        }
        throw this.mapError(e, what, attempt)
      }
    }
  }
}

/**
 * Opens the store for DATABASE_URL (`file:...` SQLite, default file:./data/apmatrix.db;
 * `postgresql://...`). Nothing connects until the first call. A malformed URL: `INVALID_ARGUMENT`.
 */
export async function createStore(url?: string, opts: StoreOptions = {}): Promise<Store> {
  const cfg = parseDatabaseUrl(url)
  const timeoutMs = opts.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new RangeError('createStore: timeoutMs must be a positive integer')
  const db = await mapped('store', () => createPrismaClient(cfg, { timeoutMs }))
  const readDb = cfg.provider === 'sqlite' ? await mapped('store', () => createPrismaClient(cfg, { timeoutMs })) : undefined
  return new Store(db, cfg.provider, opts.clock ?? (() => new Date()), opts.maxAttempts ?? 5, readDb, opts.groupCommit ?? true, timeoutMs, opts.observe)
}
