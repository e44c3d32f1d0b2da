/** Optimistic concurrency at load on SQLite (test/reliability/optimistic-concurrency.ts). */
import t from 'tap'
import { freshDatabase } from '../store/pg-helper.js'
import { optimisticConcurrency } from './optimistic-concurrency.js'

// A hang guard for this file (tap's default is 300 s): 3,200 conditional RMWs of one object are serial by nature.
t.setTimeout(900_000)

t.test('sqlite: read-modify-writes of one device by 32 concurrent writers, If-Match: 0 lost; without: losses', async (t) => {
  const db = await freshDatabase(t, 'sqlite')
  await optimisticConcurrency(t, db.url, 'sqlite')
})
