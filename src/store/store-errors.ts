/**
 * Maps database and Prisma errors to {@link ApmatrixError} codes in one place: unique violation →
 * ALREADY_EXISTS, missing row or parent → NOT_FOUND, a database that cannot be reached, is busy or
 * went away → UNAVAILABLE (docs/api.md (Errors): 503, never 500). Anything else is a bug and is rethrown.
 */
import { ApmatrixError } from '../domain/errors.js'

// Prisma codes: P1xxx connection/initialisation, P2024 pool timeout, P2028 transaction could not start/expired.
const UNAVAILABLE_PRISMA = new Set(['P1001', 'P1002', 'P1003', 'P1008', 'P1011', 'P1017', 'P2024', 'P2028'])
// Driver adapter error kinds (@prisma/driver-adapter-utils) that mean "not reachable right now".
const UNAVAILABLE_KINDS = new Set([
  'DatabaseNotReachable',
  'DatabaseDoesNotExist',
  'DatabaseAccessDenied',
  'ConnectionClosed',
  'SocketTimeout',
  'TooManyConnections',
  'TransactionAlreadyClosed',
])
// Node socket errors, PostgreSQL SQLSTATE classes 08 (connection) and 57P (shutdown), 53300, 57014 (a statement
// cancelled: the store's statement timeout, under lock contention or a slow server) and 55P03 (lock timeout),
// SQLite I/O.
const UNAVAILABLE_SYSTEM =
  /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|EPIPE|08...|57P0[1-4]|57014|55P03|53300|SQLITE_(BUSY|LOCKED|CANTOPEN|IOERR|FULL|READONLY|NOTADB)\w*)$/

// node-postgres reports these without a code: the pool could not connect in time, the client's read timeout,
// and a connection that ended under a query (server stopped, backend terminated, network gone). PostgreSQL's
// own texts for a database closed to connections (ALLOW_CONNECTIONS false, SQLSTATE 55000, a class too broad to
// map whole) and for a statement the store's statement_timeout cancelled (57014, not a user's cancel: apmatrix
// never sends one), both of which the driver adapter passes on as `originalMessage`.
const UNAVAILABLE_MESSAGE =
  /timeout exceeded when trying to connect|Query read timeout|Connection terminated|Client has encountered a connection error|terminating connection due to administrator command|is not currently accepting connections|canceling statement due to statement timeout/i

/** A store round trip that got no answer within the store timeout (mapped to `UNAVAILABLE`). */
export class StoreTimeoutError extends Error {
  override name = 'StoreTimeoutError'
}

interface ErrorLike {
  name?: string
  code?: unknown
  kind?: unknown
  message?: unknown
  /** The driver adapter's copy of the database's own message (@prisma/adapter-pg `convertDriverError`). */
  originalMessage?: unknown
  cause?: unknown
  meta?: { driverAdapterError?: { cause?: ErrorLike }; modelName?: string; target?: unknown }
}

/** The error and everything it wraps (cause chain and Prisma's driverAdapterError), outermost first. */
function chain(e: unknown): ErrorLike[] {
  const out: ErrorLike[] = []
  let cur: unknown = e
  while (cur && typeof cur === 'object' && out.length < 8 && !out.includes(cur as ErrorLike)) {
    const x = cur as ErrorLike
    out.push(x)
    cur = x.meta?.driverAdapterError?.cause ?? x.cause
  }
  return out
}

/** True when the error means the database cannot serve requests now (retry later), not a bad request. */
export function isUnavailable(e: unknown): boolean {
  return chain(e).some(
    (x) =>
      x.name === 'PrismaClientInitializationError' ||
      x.name === 'PrismaClientRustPanicError' ||
      x.name === 'StoreTimeoutError' ||
      (typeof x.message === 'string' && UNAVAILABLE_MESSAGE.test(x.message)) ||
      (typeof x.originalMessage === 'string' && UNAVAILABLE_MESSAGE.test(x.originalMessage)) ||
      (typeof x.code === 'string' && (UNAVAILABLE_PRISMA.has(x.code) || UNAVAILABLE_SYSTEM.test(x.code))) ||
      (typeof x.kind === 'string' && UNAVAILABLE_KINDS.has(x.kind)) ||
      (typeof (x as { originalCode?: unknown }).originalCode === 'string' && UNAVAILABLE_SYSTEM.test((x as { originalCode: string }).originalCode)),
  )
}

/** The Prisma request error code (`P2002`...), if any. */
export function prismaCode(e: unknown): string | undefined {
  const c = (e as ErrorLike | undefined)?.code
  return typeof c === 'string' && /^P\d{4}$/.test(c) ? c : undefined
}

/**
 * A PostgreSQL deadlock (40P01) or serialization failure (40001): the transaction can simply run again. Prisma
 * reports it as P2034 for its own queries, but as P2010 (raw query failed) with the code in the driver adapter's
 * error for a raw statement (the row locks of row-lock.ts, the event log's table lock).
 */
export function isTransientConflict(e: unknown): boolean {
  if (prismaCode(e) === 'P2034') return true
  const cause = (e as { meta?: { driverAdapterError?: { cause?: { originalCode?: unknown } } } } | undefined)?.meta?.driverAdapterError?.cause
  return cause?.originalCode === '40P01' || cause?.originalCode === '40001'
}

/** better-sqlite3's code of an error of a statement the store ran directly (`SQLITE_CONSTRAINT_UNIQUE`...). */
function sqliteCode(e: unknown): string | undefined {
  const c = (e as ErrorLike | undefined)?.code
  return typeof c === 'string' && c.startsWith('SQLITE_') ? c : undefined
}

/** True for a unique or primary key violation, through Prisma (P2002) or straight from SQLite. */
export function isUniqueViolation(e: unknown): boolean {
  const c = sqliteCode(e)
  return prismaCode(e) === 'P2002' || c === 'SQLITE_CONSTRAINT_UNIQUE' || c === 'SQLITE_CONSTRAINT_PRIMARYKEY'
}

/**
 * Converts an error thrown by a store operation. `what` names the object for messages
 * (`mdev local/0b...`). ApmatrixErrors pass through unchanged.
 */
export function toStoreError(e: unknown, what: string): unknown {
  if (e instanceof ApmatrixError) return e
  if (isUnavailable(e)) {
    return new ApmatrixError('UNAVAILABLE', `store unavailable: ${firstLine(e)}`, { cause: e })
  }
  switch (prismaCode(e) ?? sqliteCode(e)) {
    case 'SQLITE_CONSTRAINT_UNIQUE':
    case 'SQLITE_CONSTRAINT_PRIMARYKEY':
    case 'P2002':
      return new ApmatrixError('ALREADY_EXISTS', `${what} already exists`, { cause: e })
    case 'P2025':
      return new ApmatrixError('NOT_FOUND', `${what} not found`, { cause: e })
    case 'SQLITE_CONSTRAINT_FOREIGNKEY':
    case 'P2003':
      // The only foreign keys point at Host: the parent host is not registered.
      return new ApmatrixError('NOT_FOUND', `${what}: host not found`, { cause: e })
  }
  return e
}

function firstLine(e: unknown): string {
  const lines = String((e as Error)?.message ?? e)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
  return lines[lines.length - 1] ?? 'unknown error'
}
