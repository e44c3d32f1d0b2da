/**
 * The convergence scenarios with host `local` in an `apmatrix emulator serve` child process, driven over
 * gRPC. On SQLite: what varies here is the host, not the store.
 */
import t from 'tap'
import { scenarios } from './convergence-scenarios.js'

scenarios(t, { provider: 'sqlite', url: '' }, 'remote-emulator')
