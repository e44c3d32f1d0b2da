/** The authorization matrix (auth-matrix.ts) on PostgreSQL: skipped loudly without TEST_POSTGRES_URL, required in CI. */
import t from 'tap'
import { onDatabase } from '../store/pg-helper.js'
import { authMatrix } from './auth-matrix.js'

onDatabase(t, 'postgres', authMatrix)
