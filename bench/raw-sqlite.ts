/**
 * The raw SQLite baseline of the durable-write figures: single-row INSERT transactions through
 * better-sqlite3, WAL with `synchronous = FULL` (every commit fsynced), on a given file. Two ways: one
 * connection committing back to back on this thread, and `clients` worker threads with a connection each
 * (they queue on SQLite's write lock, through its busy handler). Workers run this same file.
 */
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

// better-sqlite3 ships no types: the little used here.
interface RawDb {
  pragma(p: string): unknown
  exec(sql: string): void
  prepare(sql: string): { run(...args: unknown[]): unknown }
  transaction<A extends unknown[]>(fn: (...args: A) => unknown): ((...args: A) => unknown) & { immediate(...args: A): unknown }
  close(): void
}
const Database = createRequire(import.meta.url)('better-sqlite3') as new (file: string) => RawDb

function open(file: string): RawDb {
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.pragma('busy_timeout = 30000')
  db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)')
  return db
}

/** Commits/s of one connection doing one durable single-row INSERT transaction at a time, for `ms`. */
export function rawSqliteCommits(file: string, ms: number): number {
  const db = open(file)
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)')
  const one = db.transaction((v: string) => insert.run(v))
  let n = 0
  const t0 = performance.now()
  while (performance.now() - t0 < ms) {
    one.immediate(`row ${n}`)
    n++
  }
  const rate = (n / (performance.now() - t0)) * 1000
  db.close()
  return rate
}

interface RawJob {
  kind: 'apmatrix-raw-sqlite'
  file: string
  k: number
}

/** Commits/s of `clients` worker threads, a connection each, committing durable single-row INSERTs for `ms`. */
export async function rawSqliteCommitsWorkers(file: string, clients: number, ms: number): Promise<number> {
  open(file).close() // the table exists before the workers race to create it
  const workers = Array.from(
    { length: clients },
    (_, k) => new Worker(fileURLToPath(import.meta.url), { workerData: { kind: 'apmatrix-raw-sqlite', file, k } satisfies RawJob }),
  )
  try {
    await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => (w.once('message', () => resolve()), w.once('error', reject)))))
    const t0 = performance.now()
    const counts = workers.map((w) => new Promise<number>((resolve, reject) => (w.once('message', (n: number) => resolve(n)), w.once('error', reject))))
    const deadline = performance.timeOrigin + t0 + ms
    for (const w of workers) w.postMessage(deadline)
    const total = (await Promise.all(counts)).reduce((a, b) => a + b, 0)
    return (total / (performance.now() - t0)) * 1000
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
}

function runRawWorker(job: RawJob): void {
  const db = open(job.file)
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)')
  const one = db.transaction((v: string) => insert.run(v))
  parentPort!.once('message', (deadline: number) => {
    let n = 0
    while (performance.timeOrigin + performance.now() < deadline) {
      one.immediate(`client ${job.k} row ${n}`)
      n++
    }
    db.close()
    parentPort!.postMessage(n)
  })
  parentPort!.postMessage('ready')
}

const job = isMainThread ? undefined : (workerData as RawJob | undefined)
if (job?.kind === 'apmatrix-raw-sqlite') runRawWorker(job)
