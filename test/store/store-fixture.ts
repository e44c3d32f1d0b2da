import type { Test } from 'tap'
import { applyMigrations } from '../../src/store/apply-migrations.js'
import { Retention } from '../../src/store/retention.js'
import { createStore, type Store, type StoreOptions } from '../../src/store/store.js'
import type { TestDatabase } from './pg-helper.js'

/** A migrated store on `db`, closed at t's teardown. */
export async function openStore(t: Test, db: TestDatabase, opts: StoreOptions = {}): Promise<Store> {
  await applyMigrations(db.url)
  const store = await createStore(db.url, opts)
  t.teardown(() => store.close())
  return store
}

/** Registers an emulated host named `name`. */
export async function addHost(store: Store, name: string): Promise<void> {
  await store.hosts.upsert({ name, driver: 'emulator', machineId: `m-${name}`, bootId: 'b1', features: ['apxa'], maxAdapterId: 255, maxDomainId: 255 })
}

/** A controllable clock for leases and expiries. */
export function manualClock(start = Date.parse('2026-01-01T00:00:00Z')): { now: () => Date; advance(ms: number): void } {
  let t = start
  return { now: () => new Date(t), advance: (ms) => void (t += ms) }
}

/** Resolves with the ApmatrixError code the promise rejects with (or 'resolved'). */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'resolved'
  } catch (e) {
    return (e as { code?: string }).code ?? String(e)
  }
}

/** Compacts the event log of `store` down to its newest `keep` events (one retention pass, nothing else pruned); returns the floor. */
export async function compactEvents(store: Store, keep: number): Promise<number> {
  const off = { maxCount: 0, maxAgeMs: 0 }
  const r = new Retention({ store, events: { maxCount: keep, maxAgeMs: 0 }, audit: off, journal: off, idempotency: { maxCount: 0 }, intervalMs: 60_000 })
  return (await r.runOnce()).floors.events
}
