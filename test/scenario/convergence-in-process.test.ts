/** The convergence scenarios with host `local` emulated inside the service, on SQLite and PostgreSQL. */
import t from 'tap'
import { forEachDatabase } from '../store/pg-helper.js'
import { scenarios } from './convergence-scenarios.js'

forEachDatabase(t, async (t, db) => scenarios(t, db, 'in-process'))
