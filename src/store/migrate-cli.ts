// Developer CLI for migrations (wasm schema engine, works offline):
//   node dist/src/store/migrate-cli.js <create NAME|deploy|status|diff> [--url URL] [--all]
// Default URL: $DATABASE_URL, else the embedded SQLite file. `create --all` creates the migration for
// both providers so the folders stay in step: SQLite in a temp file, PostgreSQL in a temp database created
// through $MIGRATE_POSTGRES_URL (a role that may CREATE DATABASE; the temp database is dropped afterwards).
// Exit codes: status 1 = pending/failed/edited migrations, diff 2 = schema drifted from migrations, 64 = usage.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { engineVersion, migrateCreate, migrateDeploy, migrateDiff, migrateOptions, migrateStatus, type MigrateOptions } from './migrate.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name)
  return i >= 0 ? args.splice(i, 2)[1] : undefined
}
const url = flag('--url')
const all = args.includes('--all') ? (args.splice(args.indexOf('--all'), 1), true) : false
const [cmd, name] = args

async function create(opts: MigrateOptions, name: string, folder?: string): Promise<string | null> {
  let created = await migrateCreate({ ...opts, name })
  // Keep one folder name for both providers (the engine stamps each with its own second).
  if (created && folder && created !== folder) {
    fs.renameSync(path.join(opts.migrationsDir, created), path.join(opts.migrationsDir, folder))
    created = folder
  }
  const where = path.relative(process.cwd(), opts.migrationsDir)
  console.log(created ? `${opts.provider}: created ${where}/${created}/migration.sql` : `${opts.provider}: schema unchanged, no migration`)
  return created
}

console.error(`schema engine (wasm) ${await engineVersion()}`)
switch (cmd) {
  case 'create': {
    if (!name) {
      console.error('usage: create NAME [--all]')
      process.exitCode = 64
      break
    }
    if (!all) {
      await create(migrateOptions(url), name)
      break
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-migrate-'))
    let folder: string | null
    try {
      folder = await create(migrateOptions(`file:${path.join(dir, 'dev.db')}`), name)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
    const adminUrl = process.env.MIGRATE_POSTGRES_URL
    if (!adminUrl) throw new Error('create --all needs MIGRATE_POSTGRES_URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres')
    const db = `apmatrix_migrate_${process.pid}_${Date.now()}`
    const admin = new pg.Client({ connectionString: adminUrl })
    await admin.connect()
    try {
      await admin.query(`CREATE DATABASE "${db}"`)
      const u = new URL(adminUrl)
      u.pathname = `/${db}`
      await create(migrateOptions(u.toString()), name, folder ?? undefined)
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`)
      await admin.end()
    }
    break
  }
  case 'deploy': {
    const applied = await migrateDeploy(migrateOptions(url))
    console.log(applied.length ? `Applied: ${applied.join(', ')}` : 'No pending migrations.')
    break
  }
  case 'status': {
    const s = await migrateStatus(migrateOptions(url))
    console.log(JSON.stringify(s, null, 2))
    if (s.history || s.failedMigrationNames.length || s.editedMigrationNames.length) process.exitCode = 1
    break
  }
  case 'diff': {
    const d = await migrateDiff(migrateOptions(url))
    process.stdout.write(d.script)
    if (d.changed) process.exitCode = 2
    break
  }
  default:
    console.error('usage: migrate-cli <create NAME [--all]|deploy|status|diff> [--url URL]')
    process.exitCode = 64
}
