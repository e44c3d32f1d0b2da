import fs from 'node:fs'
import path from 'node:path'
import { ApmatrixError } from '../domain/errors.js'
import { projectRoot } from '../paths.js'

/** The two supported databases: each has its own schema, generated client and migrations folder. */
export type Provider = 'sqlite' | 'postgres'

/** The embedded default (README (Configuration)); relative paths resolve against the working directory. */
export const DEFAULT_DATABASE_URL = 'file:./data/apmatrix.db'

/** A parsed DATABASE_URL. */
export interface DatabaseConfig {
  provider: Provider
  url: string
  /** SQLite only: the database file (absolute), or `:memory:`. */
  file?: string
}

/**
 * Parses a DATABASE_URL: `file:PATH` is SQLite, `postgresql://` or `postgres://` is PostgreSQL.
 * Anything else throws `INVALID_ARGUMENT` with a message naming the accepted forms.
 * Pure: does not touch the file system (see {@link ensureSqliteFolder}).
 */
export function parseDatabaseUrl(url: string = process.env.DATABASE_URL || DEFAULT_DATABASE_URL): DatabaseConfig {
  if (/^postgres(ql)?:\/\//i.test(url)) {
    try {
      new URL(url)
    } catch {
      throw new ApmatrixError('INVALID_ARGUMENT', `DATABASE_URL is not a valid PostgreSQL URL: ${redact(url)}`)
    }
    return { provider: 'postgres', url }
  }
  if (url.startsWith('file:')) {
    const rest = url.slice('file:'.length).replace(/^\/\/(?=\/)/, '')
    const file = rest.split('?')[0]
    if (!file) throw new ApmatrixError('INVALID_ARGUMENT', 'DATABASE_URL file: needs a path, e.g. file:./data/apmatrix.db')
    return { provider: 'sqlite', url: `file:${file}`, file: file === ':memory:' ? file : path.resolve(file) }
  }
  throw new ApmatrixError('INVALID_ARGUMENT', `DATABASE_URL must be file:PATH (SQLite) or postgresql://USER@HOST:PORT/DB (PostgreSQL), got ${redact(url)}`)
}

/** Creates the folder of a SQLite file (better-sqlite3 does not); no-op for PostgreSQL and `:memory:`. */
export function ensureSqliteFolder(cfg: DatabaseConfig): void {
  if (cfg.provider === 'sqlite' && cfg.file && cfg.file !== ':memory:') {
    fs.mkdirSync(path.dirname(cfg.file), { recursive: true })
  }
}

/** The repository's Prisma layout for a provider. */
export function prismaPaths(provider: Provider): { schemaPath: string; migrationsDir: string } {
  return {
    schemaPath: path.join(projectRoot, 'prisma', provider, 'schema.prisma'),
    migrationsDir: path.join(projectRoot, 'prisma', provider, 'migrations'),
  }
}

/** A URL safe to print: the password is replaced. */
export function redact(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return url.replace(/:\/\/([^:@/]+):[^@/]*@/, '://$1:***@')
  }
}
