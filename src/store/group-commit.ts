/**
 * Group commit on SQLite: transactions that arrive in the same event-loop turn (and while one commit is being
 * made) share one database transaction and one durable COMMIT (one fsync), each in a savepoint of its own.
 * SQLite has one writer, and with `synchronous = FULL` every COMMIT waits for the disk; concurrent clients'
 * writes then cost one disk flush per batch instead of one each.
 *
 * Guarantees, the same as one transaction each: a transaction's writes commit whole or not at all (its
 * savepoint is rolled back when it throws); a caller learns of success only after the shared COMMIT returned,
 * so an acknowledged write is durable; when the COMMIT fails, every transaction of the batch fails. The
 * transactions of a batch run one after the other and each sees the writes of those before it, as if they had
 * committed one by one in that order.
 */
import { setImmediate as nextTurn } from 'node:timers/promises'
import type { Db, DbTx } from './client.js'
import { RetryTransaction } from './context.js'

/** One logical transaction waiting for a batch. */
interface Job {
  what: string
  fn: (tx: DbTx) => Promise<unknown>
  resolve(v: unknown): void
  reject(e: unknown): void
}

/** How {@link GroupCommit} drives the database. */
export interface GroupCommitOptions {
  /** Most transactions in one batch. */
  maxBatch: number
  /** Attempts of a transaction that lost a race (RetryTransaction) before it fails with the last error. */
  maxAttempts: number
  /** Options of the database transaction of a batch (Prisma's maxWait/timeout). */
  txOptions: { maxWait: number; timeout: number }
  /** Runs a savepoint statement (`SAVEPOINT g`, `RELEASE g`, `ROLLBACK TO g`) inside the batch's transaction. */
  savepoint(tx: DbTx, sql: string): Promise<void>
  /** Called once per database transaction begun (the store's counters). */
  onBatch(size: number): void
  /** Maps an error that reaches a caller (the store's error mapping). */
  mapError(e: unknown, what: string, attempts: number): unknown
}

/** Batches `store.transaction`s of one event-loop turn into one durable commit (see the file comment). */
export class GroupCommit {
  private queue: Job[] = []
  private draining = false

  constructor(
    private readonly db: Db,
    private readonly o: GroupCommitOptions,
  ) {}

  /** Runs `fn` in the next batch; resolves with its result once the batch committed. */
  submit<T>(what: string, fn: (tx: DbTx) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ what, fn, resolve: resolve as (v: unknown) => void, reject })
      if (!this.draining) {
        this.draining = true
        void this.drain()
      }
    })
  }

  private async drain(): Promise<void> {
    try {
      // The window: whatever else this event-loop turn submits joins the first batch.
      await nextTurn()
      while (this.queue.length) await this.batch(this.queue.splice(0, this.o.maxBatch))
    } finally {
      this.draining = false
    }
  }

  /** One database transaction for `jobs`; settles every job. */
  private async batch(jobs: Job[]): Promise<void> {
    const results = new Map<Job, unknown>()
    this.o.onBatch(jobs.length)
    try {
      await this.db.$transaction(async (tx) => {
        for (const job of jobs) {
          for (let attempt = 1; ; attempt++) {
            await this.o.savepoint(tx, 'SAVEPOINT apmatrix_job')
            try {
              const r = await job.fn(tx)
              await this.o.savepoint(tx, 'RELEASE apmatrix_job')
              results.set(job, r)
              break
            } catch (e) {
              await this.o.savepoint(tx, 'ROLLBACK TO apmatrix_job')
              await this.o.savepoint(tx, 'RELEASE apmatrix_job')
              // On one writer a lost race means a row changed under a read of this same batch: run it again.
              if (e instanceof RetryTransaction && attempt < this.o.maxAttempts) continue
              // Its writes are undone; the others' commit goes on. It learns now: nothing of it will commit.
              job.reject(this.o.mapError(e, job.what, attempt))
              break
            }
          }
        }
      }, this.o.txOptions)
    } catch (e) {
      for (const job of results.keys()) job.reject(this.o.mapError(e, job.what, 1))
      return
    }
    for (const [job, r] of results) job.resolve(r)
  }
}
