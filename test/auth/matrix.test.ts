/** The authorization matrix (auth-matrix.ts) on SQLite. */
import t from 'tap'
import { onDatabase } from '../store/pg-helper.js'
import { authMatrix } from './auth-matrix.js'

onDatabase(t, 'sqlite', authMatrix)
