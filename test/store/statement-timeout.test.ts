/**
 * A PostgreSQL statement cancelled by the store's statement timeout (SQLSTATE 57014: a write waiting on a lock
 * longer than `timeoutMs`) is the store being unavailable, not a bug: `UNAVAILABLE` (503), never a raw
 * Prisma error (500 INTERNAL). Found by the fleet test (test/reliability/fleet.test.ts): under load a
 * PUT /desired waited on the event log's append lock and answered 500.
 */
import pg from 'pg'
import t from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import { requireOrSkip } from '../helpers/required.js'
import { freshDatabase, postgresMissing } from './pg-helper.js'
import { addHost, openStore } from './store-fixture.js'

requireOrSkip(
  t,
  'a write cancelled by the statement timeout is UNAVAILABLE',
  postgresMissing(),
  async (t) => {
    const db = await freshDatabase(t, 'postgres')
    const store = await openStore(t, db, { timeoutMs: 500 })
    await addHost(store, 'h')
    const other = new pg.Client({ connectionString: db.url })
    await other.connect()
    t.teardown(() => other.end())
    await other.query('BEGIN')
    await other.query('LOCK TABLE "Event" IN ACCESS EXCLUSIVE MODE')
    const err = await store.events.appendMany([{ host: 'h', kind: 'host', name: 'h', type: 'HostBooted', message: 'x' }]).catch((e: unknown) => e)
    await other.query('ROLLBACK')
    t.ok(err instanceof ApmatrixError, `an ApmatrixError (${String(err)})`)
    t.equal((err as ApmatrixError).code, 'UNAVAILABLE')
    await store.events.appendMany([{ host: 'h', kind: 'host', name: 'h', type: 'HostBooted', message: 'y' }])
    t.pass('the next write, without the lock held, goes through')
  },
  'postgres',
)
