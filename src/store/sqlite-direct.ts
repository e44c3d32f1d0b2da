/**
 * SQL straight to the SQLite connection Prisma's better-sqlite3 adapter opened. A Prisma model query costs
 * about 0.4-1 ms of CPU; the same statement through better-sqlite3 about 10 µs, so the store's hot paths (the
 * statements of a create, a delete, a reconcile pass) run here on SQLite. The statements run on the very
 * connection Prisma runs its transaction on, so inside `store.transaction` they belong to that transaction and
 * mix with Prisma queries freely. Values are written exactly as the adapter writes them (dates as ISO 8601
 * text ending `+00:00`, booleans as 0/1), so a row written either way reads the same either way.
 * PostgreSQL keeps Prisma for everything (its client overlaps round trips; the statements are not the cost).
 */

/** A prepared better-sqlite3 statement, as far as the store uses it (the package ships no types). */
interface SqliteStatement {
  get(...params: unknown[]): unknown
  all(...params: unknown[]): unknown[]
  run(...params: unknown[]): { changes: number }
  safeIntegers(on?: boolean): SqliteStatement
  readonly reader: boolean
}

/** A better-sqlite3 connection, as far as the store uses it. */
export interface SqliteConnection {
  prepare(sql: string): SqliteStatement
  pragma(source: string): unknown
  readonly open: boolean
}

/** True for an object that looks like a better-sqlite3 connection (what {@link captureConnection} expects to find). */
export function isSqliteConnection(x: unknown): x is SqliteConnection {
  return typeof x === 'object' && x !== null && typeof (x as SqliteConnection).prepare === 'function' && typeof (x as SqliteConnection).pragma === 'function'
}

/** A date as Prisma's SQLite adapter stores it (`timestampFormat` iso8601). */
export function sqliteDate(d: Date): string {
  return d.toISOString().replace('Z', '+00:00')
}

/** A stored date column (text as the adapter wrote it) as a Date; null stays null. */
export function dateOf(v: unknown): Date
export function dateOf(v: unknown | null): Date | null
export function dateOf(v: unknown): Date | null {
  return v === null || v === undefined ? null : new Date(String(v))
}

function bind(v: unknown): unknown {
  if (v instanceof Date) return sqliteDate(v)
  if (typeof v === 'boolean') return v ? 1 : 0
  return v === undefined ? null : v
}

/** Runs SQL with `?` placeholders on one connection, each statement prepared once. Throws better-sqlite3's errors. */
export class DirectSqlite {
  private readonly statements = new Map<string, SqliteStatement>()

  constructor(private readonly conn: SqliteConnection) {}

  /** The first row, or undefined. */
  get<T>(sql: string, ...params: unknown[]): T | undefined {
    return this.statement(sql).get(...params.map(bind)) as T | undefined
  }

  /** Every row. */
  all<T>(sql: string, ...params: unknown[]): T[] {
    return this.statement(sql).all(...params.map(bind)) as T[]
  }

  /** A statement without rows; returns how many rows it changed. */
  run(sql: string, ...params: unknown[]): number {
    return this.statement(sql).run(...params.map(bind)).changes
  }

  private statement(sql: string): SqliteStatement {
    let s = this.statements.get(sql)
    if (!s) {
      // The adapter turns on safe integers for the whole connection; the store's integers are all small.
      s = this.conn.prepare(sql).safeIntegers(false)
      this.statements.set(sql, s)
    }
    return s
  }
}

/** `?, ?, ?` for `n` values. */
export function placeholders(n: number): string {
  return Array.from({ length: n }, () => '?').join(', ')
}
