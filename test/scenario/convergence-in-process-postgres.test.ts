/** The convergence scenarios with host `local` emulated inside the service, on PostgreSQL (skipped loudly without TEST_POSTGRES_URL, required in CI). */
import t from 'tap'
import { onDatabase } from '../store/pg-helper.js'
import { scenarios } from './convergence-scenarios.js'

onDatabase(t, 'postgres', async (t, db) => scenarios(t, db, 'in-process'))
