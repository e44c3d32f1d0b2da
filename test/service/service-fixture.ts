/**
 * A real service for tests: a migrated store (SQLite or PostgreSQL), an in-process emulated host
 * `local` (demo profile, virtual time), and a ReconcileTrigger stub that records enqueues (the
 * reconciler itself is tested elsewhere).
 */
import type { SubjectLimits } from '../../src/auth/limits.js'
import type { Test } from 'tap'
import { EventHub, type EventHubOptions } from '../../src/events/hub.js'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { ApmatrixService } from '../../src/service/index.js'
import type { Store } from '../../src/store/index.js'
import type { TestDatabase } from '../store/pg-helper.js'
import { openStore } from '../store/store-fixture.js'

export interface ServiceFixture {
  service: ApmatrixService
  store: Store
  host: LocalEmulatedHost
  /** Hosts passed to reconciler.enqueue, in order. */
  enqueued: string[]
  /** The started event hub behind `service.watch` (closed at teardown, after what was registered before it). */
  hub: EventHub
}

/**
 * Builds the fixture; everything is closed at t's teardown. `hub` options tune the event hub (poll period 20 ms
 * by default); `moreHosts` names further emulated hosts of the same profile, managed after `local`.
 */
export async function serviceFixture(
  t: Test,
  db: TestDatabase,
  profile = 'demo',
  opts: { hub?: Omit<EventHubOptions, 'source'>; limits?: SubjectLimits; moreHosts?: readonly string[] } = {},
): Promise<ServiceFixture> {
  const store = await openStore(t, db)
  const host = new LocalEmulatedHost({ name: 'local', profile, realtime: false })
  t.teardown(() => host.close())
  const more = (opts.moreHosts ?? []).map((name) => new LocalEmulatedHost({ name, profile, realtime: false }))
  for (const h of more) t.teardown(() => h.close())
  const hub = new EventHub({ source: store.events, pollIntervalMs: 20, ...opts.hub })
  t.teardown(() => hub.close())
  const enqueued: string[] = []
  const service = new ApmatrixService({
    store,
    hosts: new StaticHostRegistry([host, ...more]),
    reconciler: { enqueue: (h) => void enqueued.push(h) },
    hub,
    ...(opts.limits ? { limits: opts.limits } : {}),
  })
  await service.syncHosts()
  // Started after the first contact: a watch "from now" begins after the MasksAdopted event.
  await hub.start()
  return { service, store, host, enqueued, hub }
}

/** Canonical test uuids. */
export const U1 = '11111111-1111-4111-8111-111111111111'
export const U2 = '22222222-2222-4222-8222-222222222222'
export const U3 = '33333333-3333-4333-8333-333333333333'
