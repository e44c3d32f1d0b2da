import t, { type Test } from 'tap'
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { applyMigrations, readMigrationFiles } from '../../src/store/apply-migrations.js'
import { parseDatabaseUrl, prismaPaths } from '../../src/store/config.js'
import { migrateDeploy, migrateDiff, migrateOptions, migrateStatus } from '../../src/store/migrate.js'
import { createPrismaClient } from '../../src/store/client.js'
import { projectRoot } from '../../src/paths.js'
import { ApmatrixError } from '../../src/domain/errors.js'
import { forEachDatabase, freshDatabase, type TestDatabase } from './pg-helper.js'

interface SqliteStmt {
  get(...a: unknown[]): unknown
  all(...a: unknown[]): unknown[]
  run(...a: unknown[]): unknown
}
const Sqlite = createRequire(import.meta.url)('better-sqlite3') as new (file: string) => { prepare(sql: string): SqliteStmt; close(): void }

/** The `_prisma_migrations` rows, whatever the provider. */
async function history(db: TestDatabase): Promise<{ migration_name: string; checksum: string; finished: boolean; steps: number }[]> {
  const { db: client } = await createPrismaClient(parseDatabaseUrl(db.url))
  try {
    const rows = await client.$queryRawUnsafe<Record<string, unknown>[]>(
      'SELECT migration_name, checksum, finished_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name',
    )
    return rows.map((r) => ({
      migration_name: String(r.migration_name),
      checksum: String(r.checksum),
      finished: r.finished_at != null,
      steps: Number(r.applied_steps_count),
    }))
  } finally {
    await client.$disconnect()
  }
}

t.test('db:schemas --check: the provider schemas are generated from schema.base.prisma', async (t) => {
  const r = spawnSync(process.execPath, [path.join(projectRoot, 'scripts/prisma-schemas.mjs'), '--check'], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stderr)
})

t.test('both providers have the same migration names', async (t) => {
  const names = (p: 'sqlite' | 'postgres') => readMigrationFiles(prismaPaths(p).migrationsDir).map((m) => m.name)
  t.ok(names('sqlite').length >= 1)
  t.same(names('postgres'), names('sqlite'))
})

forEachDatabase(t, async (t, db) => {
  const files = readMigrationFiles(prismaPaths(db.provider).migrationsDir)

  t.test('applyMigrations on an empty database, then again (no-op)', async (t) => {
    t.equal((await migrateStatus(migrateOptions(db.url))).hasMigrationsTable, false, 'engine: empty before')
    const first = await applyMigrations(db.url)
    t.same(
      first.applied,
      files.map((f) => f.name),
      'all committed migrations applied in order',
    )
    t.same((await applyMigrations(db.url)).applied, [], 'second apply is a no-op')
    const rows = await history(db)
    t.same(
      rows,
      files.map((f) => ({ migration_name: f.name, checksum: f.checksum, finished: true, steps: 1 })),
      'history rows as Prisma writes them (checksum = sha256 of the file)',
    )
    t.equal(
      files[0].checksum,
      crypto
        .createHash('sha256')
        .update(fs.readFileSync(path.join(prismaPaths(db.provider).migrationsDir, files[0].name, 'migration.sql')))
        .digest('hex'),
    )
    const status = await migrateStatus(migrateOptions(db.url))
    t.equal(status.history, null, 'the schema engine sees nothing pending')
    t.same(status.failedMigrationNames, [])
    t.same(status.editedMigrationNames, [], 'the engine accepts our checksums')
    t.same(await migrateDeploy(migrateOptions(db.url)), [], 'prisma migrate deploy (engine) has nothing to do either')
  })

  t.test('schema, migrations and generated client agree (engine diff is clean)', async (t) => {
    const d = await migrateDiff(migrateOptions(db.url))
    t.equal(d.changed, false, d.script)
  })

  t.test('the diff check does catch a schema that drifted from the migrations', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-drift-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const opts = migrateOptions(db.url)
    const schemaPath = path.join(dir, 'schema.prisma')
    fs.writeFileSync(schemaPath, `${fs.readFileSync(opts.schemaPath, 'utf8')}\nmodel Drift {\n  id Int @id\n}\n`)
    const d = await migrateDiff({ ...opts, schemaPath })
    t.equal(d.changed, true)
    t.match(d.script, /CREATE TABLE "Drift"/)
  })

  t.test('a database migrated by the engine is up to date for the runner', async (t) => {
    const other = await freshDatabase(t, db.provider)
    t.same(
      await migrateDeploy(migrateOptions(other.url)),
      files.map((f) => f.name),
    )
    t.same(await applyMigrations(other.url), { applied: [], edited: [] })
  })

  t.test('two runners starting at once: each migration is applied exactly once', async (t) => {
    const other = await freshDatabase(t, db.provider)
    const [a, b] = await Promise.all([applyMigrations(other.url), applyMigrations(other.url)])
    t.same([...a.applied, ...b.applied].sort(), files.map((f) => f.name).sort())
    t.equal((await history(other)).length, files.length)
  })

  t.test('a failing migration is rolled back entirely and named in the error', async (t) => {
    const other = await freshDatabase(t, db.provider)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-badmig-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    fs.mkdirSync(path.join(dir, '20000101000000_ok'))
    fs.writeFileSync(path.join(dir, '20000101000000_ok', 'migration.sql'), 'CREATE TABLE "A" ("id" INTEGER NOT NULL PRIMARY KEY);\n')
    fs.mkdirSync(path.join(dir, '20000101000001_bad'))
    fs.writeFileSync(path.join(dir, '20000101000001_bad', 'migration.sql'), 'CREATE TABLE "B" ("id" INTEGER NOT NULL PRIMARY KEY);\nTHIS IS NOT SQL;\n')
    await t.rejects(applyMigrations(other.url, dir), /migration 20000101000001_bad failed/)
    const rows = await history(other)
    t.same(
      rows.map((r) => r.migration_name),
      ['20000101000000_ok'],
      'only the good migration is recorded',
    )
    const { db: q } = await createPrismaClient(parseDatabaseUrl(other.url))
    t.teardown(() => q.$disconnect())
    await t.rejects(q.$queryRawUnsafe('SELECT * FROM "B"'), 'table B of the failed migration does not exist')
    t.same(await q.$queryRawUnsafe('SELECT * FROM "A"'), [])
  })
})

t.test('postgres unreachable: applyMigrations fails with UNAVAILABLE', async (t) => {
  const e = await applyMigrations('postgresql://postgres@127.0.0.1:1/nothing').catch((e: unknown) => e)
  t.ok(e instanceof ApmatrixError)
  t.equal((e as ApmatrixError).code, 'UNAVAILABLE')
})

t.test('the runner creates the SQLite folder', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-folder-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'a', 'b', 'x.db')
  t.ok((await applyMigrations(`file:${file}`)).applied.length >= 1)
  t.ok(fs.existsSync(file))
})

/**
 * A copy of the committed SQLite migrations plus `extra` (name -> SQL) in a temp folder, so a test can
 * apply a future migration on top of a database that holds data.
 */
function migrationsWith(t: Test, extra: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-rebuild-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.cpSync(prismaPaths('sqlite').migrationsDir, dir, { recursive: true })
  for (const [name, sql] of Object.entries(extra)) {
    fs.mkdirSync(path.join(dir, name))
    fs.writeFileSync(path.join(dir, name, 'migration.sql'), sql)
  }
  return dir
}

/** One host, one matrix device, one label, written with plain SQL (the store's own shape). */
function seedLabelledMdev(file: string): void {
  const db = new Sqlite(file)
  try {
    const now = new Date().toISOString()
    db.prepare(
      `INSERT INTO "Host" (name, driver, machineId, bootId, maxAdapterId, maxDomainId, updatedAt) VALUES ('h', 'emulator', 'm', 'b', 255, 255, ?)`,
    ).run(now)
    db.prepare(
      `INSERT INTO "Mdev" (host, uuid, adapters, domains, controlDomains, state, resourceVersion, updatedAt) VALUES ('h', 'u1', '[5]', '[4]', '[]', 'started', 'rv1', ?)`,
    ).run(now)
    db.prepare(`INSERT INTO "MdevLabel" (host, uuid, key, value) VALUES ('h', 'u1', 'team', 'crypto')`).run()
  } finally {
    db.close()
  }
}

function count(file: string, table: string): number {
  const db = new Sqlite(file)
  try {
    return (db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as { n: number }).n
  } finally {
    db.close()
  }
}

/** The CREATE TABLE statement of "Mdev" from the init migration, renamed to "new_Mdev" (Prisma's rebuild shape). */
function mdevRebuildSql(): string {
  const init = readMigrationFiles(prismaPaths('sqlite').migrationsDir)[0]!.sql
  const create = /CREATE TABLE "Mdev" \([\s\S]*?\n\);/.exec(init)![0].replace('CREATE TABLE "Mdev"', 'CREATE TABLE "new_Mdev"')
  const cols =
    '"host", "uuid", "adapters", "domains", "controlDomains", "state", "generation", "resourceVersion", "owner", "origin", "deletionRequestedAt", "force", "status", "createdAt", "updatedAt"'
  return [
    '-- RedefineTables (as `prisma migrate dev` writes a SQLite table rebuild)',
    'PRAGMA defer_foreign_keys=ON;',
    'PRAGMA foreign_keys=OFF;',
    create,
    `INSERT INTO "new_Mdev" (${cols}) SELECT ${cols} FROM "Mdev";`,
    'DROP TABLE "Mdev";',
    'ALTER TABLE "new_Mdev" RENAME TO "Mdev";',
    'CREATE INDEX "Mdev_host_owner_idx" ON "Mdev"("host", "owner");',
    'PRAGMA foreign_keys=ON;',
    'PRAGMA defer_foreign_keys=OFF;',
    '',
  ].join('\n')
}

t.test('SQLite: a table-rebuild migration of Mdev keeps every MdevLabel row (foreign keys off around the transaction)', async (t) => {
  const db = await freshDatabase(t, 'sqlite')
  await applyMigrations(db.url)
  const file = parseDatabaseUrl(db.url).file!
  seedLabelledMdev(file)
  t.equal(count(file, 'MdevLabel'), 1, 'one label before')
  const dir = migrationsWith(t, { '29990101000000_rebuild_mdev': mdevRebuildSql() })
  const r = await applyMigrations(db.url, dir)
  t.same(r.applied, ['29990101000000_rebuild_mdev'])
  t.equal(count(file, 'Mdev'), 1, 'the device survived the rebuild')
  t.equal(count(file, 'MdevLabel'), 1, 'its label survived: DROP TABLE "Mdev" did not cascade')
  const check = new Sqlite(file)
  t.teardown(() => check.close())
  t.equal((check.prepare('PRAGMA foreign_keys').get() as { foreign_keys: number }).foreign_keys, 1, 'a new connection still enforces foreign keys')
  t.throws(
    () => check.prepare(`INSERT INTO "MdevLabel" (host, uuid, key, value) VALUES ('h', 'nope', 'k', 'v')`).run(),
    /FOREIGN KEY/,
    'the rebuilt table is still referenced',
  )
})

t.test('SQLite: a migration that leaves dangling references is rolled back (foreign_key_check before COMMIT)', async (t) => {
  const db = await freshDatabase(t, 'sqlite')
  await applyMigrations(db.url)
  const file = parseDatabaseUrl(db.url).file!
  seedLabelledMdev(file)
  const dir = migrationsWith(t, { '29990101000001_orphan_labels': 'PRAGMA foreign_keys=OFF;\nDELETE FROM "Mdev";\n' })
  await t.rejects(applyMigrations(db.url, dir), /migration 29990101000001_orphan_labels failed .*foreign key violation/)
  t.equal(count(file, 'Mdev'), 1, 'the delete was rolled back')
  t.equal(count(file, 'MdevLabel'), 1)
  const hist = new Sqlite(file)
  t.teardown(() => hist.close())
  t.same(
    hist.prepare(`SELECT migration_name FROM "_prisma_migrations" WHERE migration_name LIKE '2999%'`).all(),
    [],
    'no history row for the refused migration',
  )
})
