/**
 * Developer-side Prisma migrations (create, deploy, status, diff): drives Prisma's schema engine compiled to WebAssembly
 * (@prisma/schema-engine-wasm) through a Prisma driver adapter. Works without
 * Prisma's downloadable schema-engine binary. Reads and writes the standard
 * prisma/<provider>/migrations folder and the `_prisma_migrations` table, so
 * `prisma migrate deploy` on a connected machine sees the same history.
 * The running service never loads this engine: it applies committed migrations with
 * ./apply-migrations.ts (toolchain.md, "Sensible split").
 */
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { randomUUID } from 'node:crypto'
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils'
import type { SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils'
import { ensureSqliteFolder, parseDatabaseUrl, prismaPaths, type Provider } from './config.js'
import type { SchemaEngine, MigrationList, SchemaFilter, SchemaContainer } from '@prisma/schema-engine-wasm/schema_engine_bg'

/** What the engine works on. */
export interface MigrateOptions {
  provider: Provider
  /** `file:./data/apmatrix.db` for SQLite, `postgresql://…` for PostgreSQL. */
  url: string
  /** Prisma schema file for this provider. */
  schemaPath: string
  /** The provider's migrations folder (Prisma's standard layout). */
  migrationsDir: string
  /** Log callback for the engine's tracing output. */
  log?: (line: string) => void
}

const require = createRequire(import.meta.url)
const filters: SchemaFilter = { externalTables: [], externalEnums: [] }

type EngineModule = typeof import('@prisma/schema-engine-wasm/schema_engine_bg')
// @types/node@20 has no WebAssembly declarations (they live in lib.dom); declare what we use.
interface WasmApi {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: Record<string, object>) => { exports: Record<string, unknown> }
}
const { Module: WasmModule, Instance: WasmInstance } = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly
let engineModule: Promise<EngineModule> | undefined

/** wasm-bindgen keeps global state: instantiate the module once per process. */
function loadEngineModule(): Promise<EngineModule> {
  engineModule ??= (async () => {
    const glue: EngineModule = await import('@prisma/schema-engine-wasm/schema_engine_bg')
    // SCHEMA_ENGINE_WASM: use another build of the engine with the same glue (e.g. the one the
    // prisma CLI ships in node_modules/prisma/build/schema_engine_bg.wasm).
    const wasmFile = process.env.SCHEMA_ENGINE_WASM ?? require.resolve('@prisma/schema-engine-wasm/schema_engine_bg').replace(/\.js$/, '.wasm')
    const g = globalThis as { PRISMA_WASM_PANIC_REGISTRY?: { set_message(m: string): void } }
    g.PRISMA_WASM_PANIC_REGISTRY ??= {
      set_message: (m: string) => {
        lastPanic = m
      },
    }
    // The engine arms setTimeout()s (e.g. 10 s) and never clears them, which keeps a
    // CLI or test process alive for that long after the work is done: unref them.
    const imports: Record<string, unknown> = { ...glue }
    for (const key of Object.keys(imports)) {
      if (key.startsWith('__wbg_setTimeout_')) {
        const orig = imports[key] as (f: () => void, ms: number) => { unref?: () => void }
        imports[key] = (f: () => void, ms: number) => {
          const timer = orig(f, ms)
          timer.unref?.()
          return timer
        }
      }
    }
    const instance = new WasmInstance(new WasmModule(fs.readFileSync(wasmFile)), { './schema_engine_bg.js': imports })
    glue.__wbg_set_wasm(instance.exports)
    ;(instance.exports.__wbindgen_start as () => void)()
    return glue
  })()
  return engineModule
}
let lastPanic: string | undefined

/** Migration options for a database URL, using the repository's layout (prisma/<provider>/...). */
export function migrateOptions(url?: string): MigrateOptions {
  const cfg = parseDatabaseUrl(url)
  return { provider: cfg.provider, url: cfg.url, ...prismaPaths(cfg.provider) }
}

/** The wasm engine's version string. */
export async function engineVersion(): Promise<string> {
  return (await loadEngineModule()).version()
}

async function adapterFactory(provider: Provider, url: string): Promise<SqlMigrationAwareDriverAdapterFactory> {
  if (provider === 'postgres') {
    const { PrismaPg } = await import('@prisma/adapter-pg')
    return patchPgFactory(new PrismaPg({ connectionString: url }), url, PrismaPg)
  }
  const { PrismaBetterSqlite3 } = await import('@prisma/adapter-better-sqlite3')
  const cfg = parseDatabaseUrl(url)
  ensureSqliteFolder(cfg)
  return new PrismaBetterSqlite3({ url: cfg.url })
}

/**
 * The wasm engine replays migrations on the shadow database with executeRaw(),
 * which better-sqlite3 rejects for multi-statement scripts ("The supplied SQL
 * string contains more than one statement"). Fall back to executeScript().
 */
function patchShadowMultiStatement(f: SqlMigrationAwareDriverAdapterFactory) {
  const connectToShadowDb = f.connectToShadowDb.bind(f)
  f.connectToShadowDb = async () => {
    const a = await connectToShadowDb()
    const executeRaw = a.executeRaw.bind(a)
    a.executeRaw = async (q) => {
      try {
        return await executeRaw(q)
      } catch (e) {
        if (q.args.length === 0 && /more than one statement/i.test(String((e as Error)?.message))) {
          await a.executeScript(q.sql)
          return 0
        }
        throw e
      }
    }
    return a
  }
  return f
}

/**
 * The engine's PostgreSQL schema describer selects catalog columns of type "char"
 * (OID 18, e.g. pg_constraint.contype); @prisma/adapter-pg 7.10 has no mapping for it
 * and fails every describe with "Column type 'char' could not be deserialized".
 * Report those columns as text (OID 25), which is what their values are.
 */
type Queryable = { performIO?: (...a: unknown[]) => Promise<{ fields?: { dataTypeID: number }[] }> }
function patchPgCharColumns<T extends object>(q: T): T {
  const io = (q as Queryable).performIO?.bind(q)
  if (io) {
    ;(q as Queryable).performIO = async (...a) => {
      const res = await io(...a)
      for (const f of res.fields ?? []) if (f.dataTypeID === 18) f.dataTypeID = 25
      return res
    }
  }
  const tx = (q as { startTransaction?: (...a: unknown[]) => Promise<object> }).startTransaction?.bind(q)
  if (tx) (q as { startTransaction: unknown }).startTransaction = async (...a: unknown[]) => patchPgCharColumns(await tx(...a))
  return q
}
/**
 * @prisma/adapter-pg 7.10 builds its shadow database pool as
 * `new pg.Pool({ ...config, database: shadowName })`; when the factory was created
 * from a connection string, pg lets the connection string win, so the "shadow"
 * pool silently points at the MAIN database and migrations get replayed there.
 * Replace connectToShadowDb: create a throwaway database, connect to it by URL,
 * and drop it when the engine disposes the adapter. SHADOW_DATABASE_URL, if set,
 * names an existing empty database to use instead (for roles without CREATEDB).
 */
function patchPgFactory(f: SqlMigrationAwareDriverAdapterFactory, url: string, PrismaPg: PrismaPgCtor) {
  const connect = f.connect.bind(f)
  f.connect = async () => patchPgCharColumns(await connect())
  f.connectToShadowDb = async () => {
    const shadowUrl = process.env.SHADOW_DATABASE_URL
    if (shadowUrl) {
      if (new URL(shadowUrl).pathname === new URL(url).pathname && new URL(shadowUrl).host === new URL(url).host) {
        throw new Error('SHADOW_DATABASE_URL must not point at the database being migrated')
      }
      // like Prisma with shadowDatabaseUrl: the shadow database is wiped before each use
      const shadow = patchPgCharColumns(await new PrismaPg({ connectionString: shadowUrl }).connect())
      await shadow.executeScript('DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;')
      return shadow
    }
    const admin = await connect()
    const name = `prisma_migrate_shadow_db_${randomUUID()}`
    await admin.executeScript(`CREATE DATABASE "${name}"`)
    const u = new URL(url)
    u.pathname = `/${name}`
    const shadow = patchPgCharColumns(await new PrismaPg({ connectionString: u.toString() }).connect())
    const dispose = shadow.dispose.bind(shadow)
    shadow.dispose = async () => {
      try {
        await dispose()
        await admin.executeScript(`DROP DATABASE IF EXISTS "${name}"`)
      } finally {
        await admin.dispose()
      }
    }
    return shadow
  }
  return f
}
type PrismaPgCtor = typeof import('@prisma/adapter-pg').PrismaPg

function readSchemaFiles(schemaPath: string): SchemaContainer[] {
  const abs = path.resolve(schemaPath)
  return [{ path: abs, content: fs.readFileSync(abs, 'utf8') }]
}

/** The migrations folder in the engine's input format (folders sorted by name). */
export function readMigrations(migrationsDir: string): MigrationList {
  const baseDir = path.resolve(migrationsDir)
  fs.mkdirSync(baseDir, { recursive: true })
  const lock = path.join(baseDir, 'migration_lock.toml')
  const names = fs
    .readdirSync(baseDir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
  return {
    baseDir,
    lockfile: { path: 'migration_lock.toml', content: fs.existsSync(lock) ? fs.readFileSync(lock, 'utf8') : null },
    shadowDbInitScript: '',
    migrationDirectories: names.map((name) => {
      const file = path.join(baseDir, name, 'migration.sql')
      return {
        path: name,
        migrationFile: {
          path: 'migration.sql',
          content: fs.existsSync(file) ? { tag: 'ok' as const, value: fs.readFileSync(file, 'utf8') } : { tag: 'error' as const, value: `${file} is missing` },
        },
      }
    }),
  }
}

/**
 * engine.free() does not dispose the adapters the engine opened, so a SQLite
 * connection keeps its lock (the next engine gets SQLITE_BUSY, surfaced as
 * "unknown variant `SocketTimeout`") and a pg pool stays open. Track and dispose them.
 */
function trackAdapters(f: SqlMigrationAwareDriverAdapterFactory) {
  const opened: { dispose(): Promise<void> }[] = []
  const connect = f.connect.bind(f)
  const connectToShadowDb = f.connectToShadowDb.bind(f)
  f.connect = async () => {
    const a = await connect()
    opened.push(a)
    return a
  }
  f.connectToShadowDb = async () => {
    const a = await connectToShadowDb()
    opened.push(a)
    return a
  }
  return async () => {
    for (const a of opened.splice(0)) await a.dispose().catch(() => {})
  }
}

/** Runs fn with a schema engine bound to the database; always frees it. */
export async function withEngine<T>(opts: MigrateOptions, fn: (engine: SchemaEngine) => Promise<T>): Promise<T> {
  const { SchemaEngine } = await loadEngineModule()
  const factory = patchShadowMultiStatement(await adapterFactory(opts.provider, opts.url))
  const disposeAll = trackAdapters(factory)
  const bound = bindMigrationAwareSqlAdapterFactory(factory)
  const schema = readSchemaFiles(opts.schemaPath)
  let engine: SchemaEngine | undefined
  try {
    engine = await SchemaEngine.new({ datamodels: schema.map((f) => [f.path, f.content]) }, opts.log ?? (() => {}), bound)
    return await fn(engine)
  } catch (e) {
    throw explain(e, bound)
  } finally {
    engine?.free()
    await disposeAll()
  }
}

/** Adapter errors reach us as "External error id#N": swap in the real JS error. */
function explain(e: unknown, bound: { errorRegistry: { consumeError(id: number): { error: unknown } | undefined } }): unknown {
  const m = /External error id#(\d+)/.exec(String((e as Error)?.message))
  const inner = m ? bound.errorRegistry.consumeError(Number(m[1]))?.error : undefined
  if (inner instanceof Error) (e as Error).message += `\nCaused by: ${inner.message}`
  if (lastPanic) (e as Error).message += `\nWasm panic: ${lastPanic}`
  return e
}

/** `prisma migrate deploy`: applies pending migrations; returns their names. */
export async function migrateDeploy(opts: MigrateOptions): Promise<string[]> {
  return withEngine(opts, async (engine) => {
    const out = await engine.applyMigrations({ migrationsList: readMigrations(opts.migrationsDir), filters })
    return out.appliedMigrationNames
  })
}

/**
 * `prisma migrate dev --create-only`: writes prisma/<provider>/migrations/<ts>_<name>/migration.sql
 * for the difference between the migrations folder and the schema. Returns the folder name,
 * or null when the schema has no changes. Applies pending migrations first (like migrate dev).
 */
export async function migrateCreate(opts: MigrateOptions & { name: string; allowEmpty?: boolean }): Promise<string | null> {
  return withEngine(opts, async (engine) => {
    const migrationsList = readMigrations(opts.migrationsDir)
    // creates _prisma_migrations if missing and brings the dev database up to date
    await engine.applyMigrations({ migrationsList, filters })
    // fills the engine's migrations→schema cache using the shadow DB, which createMigration needs
    const diag = await engine.devDiagnostic({ migrationsList, filters })
    if (diag.action.tag === 'reset') throw new Error(`The database needs a reset: ${diag.action.reason}`)
    const out = await engine.createMigration({
      draft: opts.allowEmpty ?? false,
      migrationName: opts.name,
      migrationsList,
      schema: { files: readSchemaFiles(opts.schemaPath) },
      filters,
    })
    if (out.migrationScript == null) return null
    const dir = path.join(migrationsList.baseDir, out.generatedMigrationName)
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, `migration.${out.extension}`), out.migrationScript)
    const lock = path.join(migrationsList.baseDir, 'migration_lock.toml')
    if (!fs.existsSync(lock)) {
      fs.writeFileSync(
        lock,
        `# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = "${out.connectorType}"\n`,
      )
    }
    return out.generatedMigrationName
  })
}

/** `prisma migrate status`. */
export async function migrateStatus(opts: MigrateOptions) {
  const migrationsList = readMigrations(opts.migrationsDir)
  try {
    return await withEngine(opts, (engine) => engine.diagnoseMigrationHistory({ migrationsList, optInToShadowDatabase: false, filters }))
  } catch (e) {
    // The binary engine reports a database without _prisma_migrations as
    // hasMigrationsTable: false; through a driver adapter the wasm engine throws P1014.
    if ((e as { code?: string }).code === 'P1014' && /_prisma_migrations/.test(String((e as Error).message))) {
      const names = migrationsList.migrationDirectories.map((d) => d.path)
      return {
        editedMigrationNames: [],
        failedMigrationNames: [],
        hasMigrationsTable: false,
        history: names.length ? { diagnostic: 'databaseIsBehind' as const, unappliedMigrationNames: names } : null,
      }
    }
    throw e
  }
}

/**
 * `prisma migrate diff --from-migrations … --to-schema … --script`: the SQL that the schema
 * still needs beyond the migrations folder (empty-migration comment when in sync).
 */
export async function migrateDiff(opts: MigrateOptions): Promise<{ changed: boolean; script: string }> {
  return withEngine(opts, async (engine) => {
    const out = await engine.diff({
      from: { tag: 'migrations', ...readMigrations(opts.migrationsDir) },
      to: { tag: 'schemaDatamodel', files: readSchemaFiles(opts.schemaPath) },
      script: true,
      exitCode: true,
      filters,
    })
    return { changed: out.exitCode === 2, script: out.stdout ?? '' }
  })
}
