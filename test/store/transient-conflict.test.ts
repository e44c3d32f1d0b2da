/**
 * Which store errors re-run a transaction: a PostgreSQL deadlock or serialization failure, as Prisma reports it for
 * its own queries (P2034) and for a raw statement (P2010 with the code in the driver adapter's error). Found by the
 * optimistic-concurrency load test (test/reliability): 32 concurrent PATCHes of one device on PostgreSQL met
 * `deadlock detected` in the masks row lock and answered 500 INTERNAL.
 */
import t from 'tap'
import { isTransientConflict } from '../../src/store/store-errors.js'

const raw = (originalCode: string) => ({ code: 'P2010', meta: { driverAdapterError: { name: 'DriverAdapterError', cause: { originalCode } } } })

t.test('deadlocks and serialization failures are transient; other failures are not', async (t) => {
  t.ok(isTransientConflict({ code: 'P2034' }), 'P2034')
  t.ok(isTransientConflict(raw('40P01')), 'raw statement: deadlock detected')
  t.ok(isTransientConflict(raw('40001')), 'raw statement: could not serialize access')
  t.notOk(isTransientConflict(raw('23505')), 'a unique violation is not')
  t.notOk(isTransientConflict({ code: 'P2002' }), 'P2002 is not')
  t.notOk(isTransientConflict(new Error('x')), 'a plain error is not')
  t.notOk(isTransientConflict(undefined), 'nothing is not')
})
