/**
 * Store error mapping with errors PostgreSQL really sends (src/store/store-errors.ts): a database that refuses
 * connections (ALLOW_CONNECTIONS false, SQLSTATE 55000) and a statement the store's own statement_timeout cancelled
 * (57014) mean "not now" (UNAVAILABLE, 503), like a stopped server; a bad statement stays a bug (not mapped).
 * Found by the outage matrix (test/reliability/store-outage-matrix.test.ts): both answered 500 INTERNAL. And a
 * connection whose answer did not come in time is closed: reused, it let the next transaction commit the
 * abandoned one's first writes (the outage matrix found a device stored without its event).
 */
import pg from 'pg'
import t, { type Test } from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import { createPrismaClient } from '../../src/store/client.js'
import { parseDatabaseUrl } from '../../src/store/config.js'
import { isUnavailable, toStoreError } from '../../src/store/store-errors.js'
import { requireOrSkip } from '../helpers/required.js'
import { freshPostgresDatabase, postgresAdminUrl, postgresMissing } from './pg-helper.js'

/** The error `query` fails with on a Prisma client of `url` with store timeout `timeoutMs`. */
async function failure(t: Test, url: string, query: string, timeoutMs = 10_000): Promise<unknown> {
  const { db } = await createPrismaClient(parseDatabaseUrl(url), { timeoutMs })
  t.teardown(() => db.$disconnect())
  return db.$queryRawUnsafe(query).then(
    () => t.fail(`${query} was expected to fail`),
    (e: unknown) => e,
  )
}

requireOrSkip(
  t,
  'PostgreSQL errors of an unavailable store map to UNAVAILABLE',
  postgresMissing(),
  async (t) => {
    const admin = postgresAdminUrl()!
    const url = await freshPostgresDatabase(t, admin, 'apmatrix_errors')
    const name = new URL(url).pathname.slice(1)

    const timedOut = await failure(t, url, 'SELECT pg_sleep(2)', 200)
    t.ok(isUnavailable(timedOut), `a statement cancelled by the store timeout is unavailability: ${String(timedOut).split('\n').at(-1)}`)
    const mapped = toStoreError(timedOut, 'test')
    t.ok(mapped instanceof ApmatrixError && mapped.code === 'UNAVAILABLE', 'toStoreError: UNAVAILABLE')

    const c = new pg.Client({ connectionString: admin })
    await c.connect()
    t.teardown(() => c.end())
    await c.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`)
    t.teardown(() => c.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`))
    const closed = await failure(t, url, 'SELECT 1')
    t.ok(isUnavailable(closed), `a database that does not accept connections is unavailability: ${String(closed).split('\n').at(-1)}`)
    const mappedClosed = toStoreError(closed, 'test')
    t.ok(mappedClosed instanceof ApmatrixError && mappedClosed.code === 'UNAVAILABLE', 'toStoreError: UNAVAILABLE')

    const bad = await failure(t, admin, 'SELEC 1')
    t.notOk(isUnavailable(bad), 'a syntax error is not unavailability (it is a bug: 500)')
    t.equal(toStoreError(bad, 'test'), bad, 'and passes through unmapped')
  },
  'postgres',
)

requireOrSkip(
  t,
  'PostgreSQL: a transaction whose answer did not come in time never leaks into the next one on its connection',
  postgresMissing(),
  async (t) => {
    const url = await freshPostgresDatabase(t, postgresAdminUrl()!, 'apmatrix_leak')
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    t.teardown(() => c.end())
    await c.query('CREATE TABLE t (v text)')
    const { db } = await createPrismaClient(parseDatabaseUrl(url), { timeoutMs: 200 })
    t.teardown(() => db.$disconnect())
    // A statement the server has not answered when the client gives up (statement_timeout off for it, as a frozen
    // server would not answer either): the ROLLBACK queues behind it and times out too.
    const cut = await db
      .$transaction(async (tx) => {
        await tx.$executeRawUnsafe("INSERT INTO t VALUES ('half')")
        await tx.$executeRawUnsafe('SET LOCAL statement_timeout = 0')
        await tx.$queryRawUnsafe('SELECT pg_sleep(4)')
      })
      .then(
        () => 'committed',
        (e: unknown) => e,
      )
    t.ok(isUnavailable(cut), `the cut transaction fails as unavailability (${String(cut).split('\n').at(-1)})`)
    await new Promise((r) => setTimeout(r, 4500)) // the server answers at last (the frozen one thaws)
    // The next transactions reuse the pool's connections (the most recently released first).
    for (let i = 0; i < 3; i++) await db.$transaction(async (tx) => tx.$executeRawUnsafe(`INSERT INTO t VALUES ('next ${i}')`))
    const rows = (await c.query('SELECT v FROM t ORDER BY v')).rows.map((r) => r.v)
    t.same(rows, ['next 0', 'next 1', 'next 2'], 'the cut transaction stored nothing; the next ones are whole')
  },
  'postgres',
)
