/** The convergence scenarios with host `local` emulated inside the service, on SQLite (PostgreSQL: convergence-in-process-postgres.test.ts). */
import t from 'tap'
import { onDatabase } from '../store/pg-helper.js'
import { scenarios } from './convergence-scenarios.js'

onDatabase(t, 'sqlite', async (t, db) => scenarios(t, db, 'in-process'))
