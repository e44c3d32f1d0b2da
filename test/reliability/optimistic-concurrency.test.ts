/**
 * Optimistic concurrency at load (test/reliability/optimistic-concurrency.ts), on SQLite and then on PostgreSQL
 * (needs TEST_POSTGRES_URL). One file, one database after the other: each run keeps the CPU busy (one acknowledged
 * write at a time, refused ones in between). As two files on a 2-core machine they ran side by side and took
 * 139 s and 292 s (431 s of the suite's two lanes); one after the other, alone, 64 s and 173 s.
 */
import t from 'tap'
import { requireOrSkip } from '../helpers/required.js'
import { freshDatabase, postgresMissing } from '../store/pg-helper.js'
import { optimisticConcurrency } from './optimistic-concurrency.js'

// A hang guard for this file (tap's default is 300 s): 2 x 3,200 conditional RMWs of one object, serial by nature.
t.setTimeout(1_200_000)

t.test('sqlite: read-modify-writes of one device by 32 concurrent writers, If-Match: 0 lost; without: losses', async (t) => {
  const db = await freshDatabase(t, 'sqlite')
  await optimisticConcurrency(t, db.url, 'sqlite')
})

requireOrSkip(
  t,
  'postgres: read-modify-writes of one device by 32 concurrent writers, If-Match: 0 lost; without: losses',
  postgresMissing(),
  async (t) => {
    const db = await freshDatabase(t, 'postgres')
    await optimisticConcurrency(t, db.url, 'postgres')
  },
  'postgres',
)
