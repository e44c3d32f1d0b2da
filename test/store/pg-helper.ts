/**
 * Shared database fixtures for tests: run the SAME test body against SQLite and PostgreSQL.
 *
 * PostgreSQL runs when TEST_POSTGRES_URL names a role that may CREATE DATABASE
 * (e.g. postgresql://postgres@127.0.0.1:5432/postgres): each call gets a fresh database with a
 * unique name, dropped at teardown. Without TEST_POSTGRES_URL the PostgreSQL tests are SKIPPED
 * loudly, except under CI=... or APMATRIX_REQUIRE_POSTGRES=1, where they FAIL (test/helpers/required.ts).
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'
import type { Provider } from '../../src/store/config.js'
import { requiredHere, requireOrSkip } from '../helpers/required.js'

/** One database a test body runs against: an empty database (not migrated). */
export interface TestDatabase {
  provider: Provider
  url: string
}

const SKIP_MESSAGE = 'PostgreSQL tests SKIPPED: set TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres) to run them'

/** True when PostgreSQL tests must run (CI, or APMATRIX_REQUIRE_POSTGRES=1). */
export function postgresRequired(): boolean {
  return requiredHere('postgres')
}

/** Why PostgreSQL tests cannot run here (undefined: they can). */
export function postgresMissing(): string | undefined {
  return postgresAdminUrl() ? undefined : 'TEST_POSTGRES_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)'
}

/** The admin URL from TEST_POSTGRES_URL, or undefined. */
export function postgresAdminUrl(): string | undefined {
  return process.env.TEST_POSTGRES_URL || undefined
}

/** A database name no other run or file can pick. */
function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${crypto.randomBytes(4).toString('hex')}`.toLowerCase()
}

/** Creates an empty PostgreSQL database through `adminUrl`; dropped (WITH FORCE) at t's teardown. Returns its URL. */
export async function freshPostgresDatabase(t: Test, adminUrl: string, prefix = 'apmatrix_test'): Promise<string> {
  const name = uniqueName(prefix)
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE "${name}"`)
  } finally {
    await admin.end()
  }
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: adminUrl })
    await c.connect()
    try {
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
    } finally {
      await c.end()
    }
  })
  const u = new URL(adminUrl)
  u.pathname = `/${name}`
  return u.toString()
}

/** A new SQLite file URL in a temp folder removed at t's teardown. */
export function freshSqliteDatabase(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-test-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return `file:${path.join(dir, 'test.db')}`
}

/** A fresh empty database of the given provider (PostgreSQL needs TEST_POSTGRES_URL). */
export async function freshDatabase(t: Test, provider: Provider): Promise<TestDatabase> {
  if (provider === 'sqlite') return { provider, url: freshSqliteDatabase(t) }
  const admin = postgresAdminUrl()
  if (!admin) throw new Error(SKIP_MESSAGE)
  return { provider, url: await freshPostgresDatabase(t, admin) }
}

/**
 * Runs `body` once per database, as subtests named `sqlite` and `postgres`, each with its own fresh
 * empty database. The PostgreSQL subtest is skipped with a loud message when TEST_POSTGRES_URL is
 * unset, and fails instead when {@link postgresRequired}.
 */
export function forEachDatabase(t: Test, body: (t: Test, db: TestDatabase) => Promise<void>): void {
  onDatabase(t, 'sqlite', body)
  onDatabase(t, 'postgres', body)
}

/**
 * Runs `body` on one database, as a subtest named after it (PostgreSQL skipped or required as in
 * {@link forEachDatabase}): for a long test split into one file per database, so the halves run side by side.
 */
export function onDatabase(t: Test, provider: Provider, body: (t: Test, db: TestDatabase) => Promise<void>): void {
  if (provider === 'sqlite') t.test('sqlite', async (t) => body(t, await freshDatabase(t, 'sqlite')))
  else requireOrSkip(t, 'postgres', postgresMissing(), async (t) => body(t, await freshDatabase(t, 'postgres')), 'postgres')
}
