import { setTimeout as sleep } from 'node:timers/promises'
import { ApmatrixError } from '../domain/errors.js'
import { AuditRepo } from './audit-repo.js'
import { createPrismaClient, type Db, type DbTx } from './client.js'
import { parseDatabaseUrl, type Provider } from './config.js'
import { mapped, RetryTransaction, TxContext, type StoreContext } from './context.js'
import { EventRepo } from './event-repo.js'
import { HostRepo } from './host-repo.js'
import { IdempotencyRepo } from './idempotency-repo.js'
import { JournalRepo } from './journal-repo.js'
import { LeaseRepo } from './lease-repo.js'
import { MasksRepo } from './masks-repo.js'
import { MdevRepo } from './mdev-repo.js'
import { prismaCode, toStoreError } from './store-errors.js'

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
}

/** Options of {@link createStore}. */
export interface StoreOptions {
  /** The store's wall clock (leases, expiries, deletion markers). Default: `new Date()`. */
  clock?: () => Date
  /** Attempts of a transaction that lost a race before giving up with `CONFLICT`. Default 5. */
  maxAttempts?: number
}

// Waiting for a connection / the SQLite transaction mutex, and the longest a transaction may run.
const TX_OPTIONS = { maxWait: 10_000, timeout: 30_000 }

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
  }
}

/**
 * The persistent store: repositories over SQLite or PostgreSQL, and {@link Store.transaction}.
 * The schema must already be migrated (see applyMigrations). Every method maps database failures
 * to `UNAVAILABLE`, so callers answer 503, never 500 (docs/api.md (Errors)).
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
  private closed = false
  private readonly counts = { transactions: 0, retries: 0 }

  constructor(
    private readonly db: Db,
    readonly provider: Provider,
    private readonly clock: () => Date,
    private readonly maxAttempts: number,
    /**
     * SQLite: a second connection for plain reads. The writer's single connection would run a plain read
     * inside whatever transaction is open on it (StoreContext.read), so reads used to be wrapped in their
     * own transaction; a separate connection in WAL mode sees exactly the committed state, without the cost.
     */
    private readonly readDb?: Db,
  ) {
    const reader = provider === 'sqlite' ? readDb : db
    const root: StoreContext = {
      provider,
      clock,
      write: (what, fn) => this.run(what, fn),
      read: (what, fn) => (reader ? mapped(what, async () => (this.assertOpen(), fn(reader as unknown as DbTx))) : this.run(what, fn)),
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
    } = repos(root))
  }

  /**
   * Runs `fn` in one transaction: everything it stores commits together or not at all (an object,
   * its event and its audit record). It is re-run from the start when it lost a race to a
   * concurrent writer (so it must do nothing but store work), and gives up with `CONFLICT` after
   * `maxAttempts`. An ApmatrixError thrown by `fn` rolls back and reaches the caller unchanged.
   */
  transaction<T>(fn: (tx: Repos) => Promise<T>): Promise<T> {
    return this.run('transaction', (tx) => fn(repos(new TxContext(tx, this.provider, this.clock))))
  }

  /** The store's clock (leases and expiries are judged by it). */
  now(): Date {
    return this.clock()
  }

  /** Readiness probe: resolves if the database answers, else `UNAVAILABLE`. */
  ping(): Promise<void> {
    return mapped('store', async () => {
      this.assertOpen()
      await this.db.$queryRawUnsafe('SELECT 1')
    })
  }

  /** Closes the connections (idempotent). The store cannot be used afterwards. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.db.$disconnect()
    await this.readDb?.$disconnect()
  }

  /**
   * What this store did since it was opened: `transactions` counts every database transaction begun
   * (each attempt of a re-run one too), `retries` the re-runs. Plain reads outside a transaction are not
   * counted. A snapshot: later work does not change the returned object.
   */
  stats(): { transactions: number; retries: number } {
    return { ...this.counts }
  }

  private assertOpen(): void {
    if (this.closed) throw new ApmatrixError('UNAVAILABLE', 'store is closed')
  }

  private async run<T>(what: string, fn: (tx: DbTx) => Promise<T>): Promise<T> {
    this.assertOpen()
    for (let attempt = 1; ; attempt++) {
      this.counts.transactions++
      if (attempt > 1) this.counts.retries++
      try {
        return await this.db.$transaction(fn, TX_OPTIONS)
      } catch (e) {
        // P2034: PostgreSQL serialization failure or deadlock; the transaction can simply run again.
        const retry = e instanceof RetryTransaction || prismaCode(e) === 'P2034'
        if (retry && attempt < this.maxAttempts) {
          // Jittered backoff, so racing writers do not collide again in lockstep.
          await sleep(Math.random() * 5 * attempt)
          continue
        }
        if (retry) throw new ApmatrixError('CONFLICT', `${what}: gave up after ${attempt} attempts (${(e as Error).message})`, { cause: e })
        throw toStoreError(e, what)
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
  const db = await mapped('store', () => createPrismaClient(cfg))
  const readDb = cfg.provider === 'sqlite' ? await mapped('store', () => createPrismaClient(cfg)) : undefined
  return new Store(db, cfg.provider, opts.clock ?? (() => new Date()), opts.maxAttempts ?? 5, readDb)
}
