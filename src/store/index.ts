// The store's public surface: what the service and the composition root import.
export { applyMigrations, type MigrationResult } from './apply-migrations.js'
export { DEFAULT_DATABASE_URL, parseDatabaseUrl, type DatabaseConfig, type Provider } from './config.js'
export { createStore, Store, type Repos, type StoreOptions } from './store.js'
export type { AuditInput, AuditQuery, AuditRecord } from './audit-repo.js'
export type { EventInput, EventQuery, EventRecord } from './event-repo.js'
export type { HostInput, HostRecord } from './host-repo.js'
export type { IdempotencyInput, IdempotencyRecord } from './idempotency-repo.js'
export type { JournalInput, JournalRecord, JournalState } from './journal-repo.js'
export type { LeaseRecord, LeaseResult } from './lease-repo.js'
export type { HostMasksRecord, MasksStatus } from './masks-repo.js'
export type {
  MdevCondition,
  MdevCreate,
  MdevListQuery,
  MdevOrigin,
  MdevPatch,
  MdevRecord,
  MdevSpec,
  MdevState,
  MdevStatus,
  Precondition,
} from './mdev-repo.js'
