/** Optimistic concurrency at load on PostgreSQL (test/reliability/optimistic-concurrency.ts); needs TEST_POSTGRES_URL. */
import t from 'tap'
import { requireOrSkip } from '../helpers/required.js'
import { freshDatabase, postgresMissing } from '../store/pg-helper.js'
import { optimisticConcurrency } from './optimistic-concurrency.js'

// A hang guard for this file (tap's default is 300 s): 3,200 conditional RMWs of one object are serial by nature.
t.setTimeout(900_000)

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
