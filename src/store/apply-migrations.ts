/**
 * Start-up migration runner: applies the committed prisma/<provider>/migrations/<name>/migration.sql
 * files in name order, each inside its own transaction, and records them in `_prisma_migrations`
 * exactly as Prisma does (same table, uuid id, checksum = sha256 of the file, applied_steps_count 1),
 * so `prisma migrate deploy`/`status` and ./migrate.ts see the same history. The running service
 * never loads the schema engine (toolchain.md, "Sensible split").
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { ApmatrixError } from '../domain/errors.js'
import { ensureSqliteFolder, parseDatabaseUrl, prismaPaths, redact } from './config.js'
import { isUnavailable } from './store-errors.js'

/** What {@link applyMigrations} did. */
export interface MigrationResult {
  /** Names applied by this call, in order. */
  applied: string[]
  /** Applied migrations whose file changed since (Prisma only warns about these, so do we). */
  edited: string[]
}

interface Migration {
  name: string
  sql: string
  checksum: string
}

interface AppliedRow {
  migration_name: string
  checksum: string
  finished_at: unknown
  rolled_back_at: unknown
}

// better-sqlite3 ships no types (and @types/better-sqlite3 is not installed): the little used here.
interface SqliteDb {
  exec(sql: string): void
  prepare(sql: string): { all(...args: unknown[]): unknown[]; run(...args: unknown[]): unknown }
  readonly inTransaction: boolean
  close(): void
}
type SqliteCtor = new (file: string, opts?: { timeout?: number }) => SqliteDb
const require = createRequire(import.meta.url)

/** Prisma migrate's own advisory lock key: a runner and `prisma migrate deploy` exclude each other. */
const PRISMA_MIGRATE_LOCK = 72707369

// The exact DDL Prisma uses for its history table, per provider.
const HISTORY_TABLE = {
  postgres: `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`,
  sqlite: `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
)`,
}

/** Reads a migrations folder: one entry per sub-folder holding migration.sql, sorted by name. */
export function readMigrationFiles(migrationsDir: string): Migration[] {
  if (!fs.existsSync(migrationsDir)) return []
  return fs
    .readdirSync(migrationsDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(migrationsDir, d.name, 'migration.sql')))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const bytes = fs.readFileSync(path.join(migrationsDir, name, 'migration.sql'))
      return { name, sql: bytes.toString('utf8'), checksum: crypto.createHash('sha256').update(bytes).digest('hex') }
    })
}

/** What is left to do, given the history rows. Throws if a migration failed earlier (Prisma's P3009). */
function plan(migrations: Migration[], rows: AppliedRow[]): { pending: Migration[]; edited: string[] } {
  const failed = rows.filter((r) => r.finished_at == null && r.rolled_back_at == null).map((r) => r.migration_name)
  if (failed.length) {
    throw new Error(`migrations failed earlier and need manual resolution (prisma migrate resolve): ${failed.join(', ')}`)
  }
  const done = new Map(rows.filter((r) => r.finished_at != null && r.rolled_back_at == null).map((r) => [r.migration_name, r.checksum]))
  return {
    pending: migrations.filter((m) => !done.has(m.name)),
    edited: migrations.filter((m) => done.has(m.name) && done.get(m.name) !== m.checksum).map((m) => m.name),
  }
}

/**
 * Brings the database at `url` up to date with the committed migrations of its provider.
 * Idempotent: a second call applies nothing. Safe with concurrent callers: PostgreSQL callers
 * serialise on Prisma's migrate advisory lock, SQLite callers on the write lock (BEGIN IMMEDIATE).
 * A migration that fails is rolled back entirely (no half-applied DDL, no history row) and the
 * call throws naming it. An unreachable database throws `UNAVAILABLE`.
 * @param migrationsDir override of prisma/<provider>/migrations (tests).
 */
export async function applyMigrations(url?: string, migrationsDir?: string): Promise<MigrationResult> {
  const cfg = parseDatabaseUrl(url)
  const migrations = readMigrationFiles(migrationsDir ?? prismaPaths(cfg.provider).migrationsDir)
  try {
    return cfg.provider === 'postgres' ? await applyPostgres(cfg.url, migrations) : await applySqlite(cfg.url, migrations)
  } catch (e) {
    if (e instanceof ApmatrixError) throw e
    if (isUnavailable(e)) {
      throw new ApmatrixError('UNAVAILABLE', `database unavailable (${redact(cfg.url)}): ${(e as Error).message}`, { cause: e })
    }
    throw e
  }
}

async function applyPostgres(url: string, migrations: Migration[]): Promise<MigrationResult> {
  const { default: pg } = await import('pg')
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  await client.connect()
  const applied: string[] = []
  try {
    // Session lock held across all migrations: a second replica waits here, then finds nothing to do.
    await client.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK])
    try {
      await client.query(HISTORY_TABLE.postgres)
      const { rows } = await client.query<AppliedRow>('SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations"')
      const { pending, edited } = plan(migrations, rows)
      for (const m of pending) {
        await client.query('BEGIN')
        try {
          await client.query('INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES ($1, $2, $3, now(), 0)', [
            crypto.randomUUID(),
            m.checksum,
            m.name,
          ])
          await client.query(m.sql)
          await client.query(
            'UPDATE "_prisma_migrations" SET finished_at = clock_timestamp(), applied_steps_count = 1 WHERE migration_name = $1 AND finished_at IS NULL',
            [m.name],
          )
          await client.query('COMMIT')
        } catch (e) {
          await client.query('ROLLBACK').catch(() => {})
          throw migrationFailed(m, e)
        }
        applied.push(m.name)
      }
      return { applied, edited }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK]).catch(() => {})
    }
  } finally {
    await client.end().catch(() => {})
  }
}

async function applySqlite(url: string, migrations: Migration[]): Promise<MigrationResult> {
  const cfg = parseDatabaseUrl(url)
  ensureSqliteFolder(cfg)
  const Database = require('better-sqlite3') as SqliteCtor
  const db = new Database(cfg.file!, { timeout: 10_000 })
  // Prisma writes SQLite DATETIME history columns as RFC 3339 text with an explicit offset.
  const now = () => new Date().toISOString().replace('Z', '+00:00')
  const applied: string[] = []
  let edited: string[] = []
  try {
    // Persistent per file: readers (CLI, other processes) are not blocked by the service's writes.
    db.exec('PRAGMA journal_mode = WAL')
    db.exec(HISTORY_TABLE.sqlite)
    // Prisma's table-rebuild migrations (CREATE new_X, copy, DROP X, rename) start with
    // `PRAGMA foreign_keys=OFF`, which SQLite ignores inside a transaction: with foreign keys on, the
    // DROP would cascade and delete every child row. So foreign keys go off *before* BEGIN, and
    // `foreign_key_check` proves the migration left no dangling reference before it commits.
    const foreignKeys = (db.prepare('PRAGMA foreign_keys').all()[0] as { foreign_keys: number }).foreign_keys
    db.exec('PRAGMA foreign_keys = OFF')
    try {
      for (;;) {
        // IMMEDIATE takes the write lock before reading the history, so two processes cannot both apply.
        db.exec('BEGIN IMMEDIATE')
        try {
          const rows = db.prepare('SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations"').all() as AppliedRow[]
          const p = plan(migrations, rows)
          edited = p.edited
          const m = p.pending[0]
          if (!m) {
            db.exec('COMMIT')
            break
          }
          const id = crypto.randomUUID()
          db.prepare('INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES (?, ?, ?, ?, 0)').run(
            id,
            m.checksum,
            m.name,
            now(),
          )
          try {
            db.exec(m.sql)
          } catch (e) {
            throw migrationFailed(m, e)
          }
          const dangling = db.prepare('PRAGMA foreign_key_check').all() as Array<{ table: string; rowid: number; parent: string }>
          if (dangling.length) {
            const sample = dangling
              .slice(0, 5)
              .map((d) => `${d.table} row ${d.rowid} -> ${d.parent}`)
              .join(', ')
            throw migrationFailed(m, new Error(`it leaves ${dangling.length} foreign key violation(s): ${sample}`))
          }
          db.prepare('UPDATE "_prisma_migrations" SET finished_at = ?, applied_steps_count = 1 WHERE id = ?').run(now(), id)
          db.exec('COMMIT')
          applied.push(m.name)
        } catch (e) {
          if (db.inTransaction) db.exec('ROLLBACK')
          throw e
        }
      }
    } finally {
      // The pragma is per connection; restored for symmetry (the connection closes right after).
      db.exec(`PRAGMA foreign_keys = ${foreignKeys ? 'ON' : 'OFF'}`)
    }
    return { applied, edited }
  } finally {
    db.close()
  }
}

function migrationFailed(m: Migration, e: unknown): Error {
  return new Error(`migration ${m.name} failed and was rolled back: ${(e as Error).message}`, { cause: e })
}
