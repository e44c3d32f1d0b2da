/**
 * The read cache (src/service/read-cache.ts) over a real store (SQLite and PostgreSQL): LIST answers exactly
 * what store.mdevs.list answers (property test over random devices and queries), the log keeps it current,
 * a failing store leaves reads answering from memory marked stale, a cache far behind the log reloads, and
 * the views it hands out are shared until the device changes.
 */
import fc from 'fast-check'
import t from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import type { MdevQuery } from '../../src/service/index.js'
import { ReadCache, type ReadCacheStore } from '../../src/service/read-cache.js'
import { mdevView } from '../../src/service/views.js'
import type { EventQuery, Store } from '../../src/store/index.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { addHost, openStore } from '../store/store-fixture.js'

const uuidOf = (i: number) => `${i.toString(16).padStart(8, '0')}-0000-4000-8000-${(i * 7919).toString(16).padStart(12, '0')}`

/** A device write the way the service makes them: the row and its event in one transaction. */
async function define(store: Store, host: string, r: { uuid: string; state: 'started' | 'stopped'; owner: string | null; labels: Record<string, string> }) {
  return store.transaction(async (tx) => {
    const { mdev } = await tx.mdevs.create({
      host,
      uuid: r.uuid,
      spec: { adapters: [1], domains: [1], controlDomains: [], state: r.state },
      labels: r.labels,
      owner: r.owner,
    })
    const e = await tx.events.append({ host, kind: 'mdev', name: mdev.uuid, type: 'MdevDefined', data: { resourceVersion: mdev.resourceVersion } })
    return { mdev, seq: e.seq }
  })
}

/** Walks every page of a query; returns the uuids in order and the page tokens. */
async function walk(list: (q: MdevQuery) => Promise<{ items: Array<{ metadata: { uuid: string } }>; nextPageToken?: string }>, q: MdevQuery) {
  const pages: string[][] = []
  const tokens: string[] = []
  let token: string | undefined
  do {
    const p = await list({ ...q, ...(token ? { pageToken: token } : {}) })
    pages.push(p.items.map((m) => m.metadata.uuid))
    token = p.nextPageToken
    if (token) tokens.push(token)
  } while (token && pages.length < 100)
  return { pages, tokens }
}

forEachDatabase(t, async (t, db) => {
  const store = await openStore(t, db)
  await addHost(store, 'h1')
  await addHost(store, 'h2')

  t.test('LIST from the cache equals store.mdevs.list: random devices, filters, page sizes, tokens', async (t) => {
    const owners = ['alice', 'bob', 'carol']
    const labelKeys = ['team', 'env', 'tier']
    const labelVals = ['a', 'b']
    const devices = fc.uniqueArray(
      fc.record({
        i: fc.integer({ min: 1, max: 5000 }),
        state: fc.constantFrom('started' as const, 'stopped' as const),
        owner: fc.option(fc.constantFrom(...owners), { nil: null }),
        labels: fc.dictionary(fc.constantFrom(...labelKeys), fc.constantFrom(...labelVals), { maxKeys: 3 }),
      }),
      { selector: (d) => d.i, minLength: 0, maxLength: 40 },
    )
    const query = fc.record(
      {
        state: fc.constantFrom('started' as const, 'stopped' as const),
        owner: fc.constantFrom(...owners, 'nobody'),
        labels: fc.dictionary(fc.constantFrom(...labelKeys), fc.constantFrom(...labelVals), { maxKeys: 2 }),
        limit: fc.integer({ min: 1, max: 12 }),
      },
      { requiredKeys: [] },
    )
    let round = 0
    await fc.assert(
      fc.asyncProperty(devices, fc.array(query, { minLength: 1, maxLength: 6 }), async (ds, qs) => {
        const host = round++ % 2 ? 'h1' : 'h2'
        // A fresh set of devices on this host: delete what a previous round left.
        for (const m of await store.mdevs.listAll(host)) await store.mdevs.delete(host, m.uuid)
        for (const d of ds) await define(store, host, { uuid: uuidOf(d.i), state: d.state, owner: d.owner, labels: d.labels })
        const cache = new ReadCache({ store, hosts: () => ['h1', 'h2'], maxStalenessMs: 0 })
        for (const q of [{}, ...qs]) {
          const fromStore = await walk(async (x) => {
            const p = await store.mdevs.list(host, x)
            return { items: p.items.map(mdevView), ...(p.nextPageToken ? { nextPageToken: p.nextPageToken } : {}) }
          }, q)
          const fromCache = await walk(async (x) => (await cache.mdevs(host, x)).value, q)
          t.same(fromCache, fromStore, JSON.stringify(q))
          if (JSON.stringify(fromCache) !== JSON.stringify(fromStore)) return false
        }
        // The objects too, not only the order.
        const all = (await cache.mdevs(host, { limit: 500 })).value.items
        t.same(all, (await store.mdevs.listAll(host)).map(mdevView))
        return true
      }),
      { numRuns: db.provider === 'postgres' ? 8 : 15 },
    )
  })

  t.test('bad limits and tokens are INVALID_ARGUMENT, as the store says', async (t) => {
    const cache = new ReadCache({ store, hosts: () => ['h1'], maxStalenessMs: 0 })
    for (const q of [{ limit: 0 }, { limit: 501 }, { limit: 1.5 }, { pageToken: 'nope' }] as MdevQuery[]) {
      const a = await cache.mdevs('h1', q).catch((e: unknown) => e)
      const b = await store.mdevs.list('h1', q).catch((e: unknown) => e)
      t.ok(a instanceof ApmatrixError && b instanceof ApmatrixError && a.code === 'INVALID_ARGUMENT' && a.message === b.message, JSON.stringify(q))
    }
    t.equal(await cache.mdev('h1', uuidOf(999_999)).catch((e: ApmatrixError) => e.code), 'NOT_FOUND')
  })

  t.test('kept current from the log; views shared until the device changes; deletions and masks followed', async (t) => {
    const host = 'h1'
    for (const m of await store.mdevs.listAll(host)) await store.mdevs.delete(host, m.uuid)
    const cache = new ReadCache({ store, hosts: () => [host], maxStalenessMs: 60_000 })
    await cache.start()
    const u = uuidOf(7001)
    const { mdev, seq } = await define(store, host, { uuid: u, state: 'started', owner: null, labels: {} })
    t.equal(await cache.mdev(host, u).catch((e: ApmatrixError) => e.code), 'NOT_FOUND', 'within the staleness bound and not told: the old copy')
    await cache.syncedTo(seq)
    const a = (await cache.mdev(host, u)).value
    t.equal(a.metadata.resourceVersion, mdev.resourceVersion, 'synced to the write: there')
    t.ok(Object.isFrozen(a) && Object.isFrozen(a.metadata.labels), 'frozen')
    t.equal((await cache.mdev(host, u)).value, a, 'the same object while unchanged')
    const reads = cache.stats().reads
    // An event that names a device at the version the cache holds costs no read.
    const same = await store.events.append({ host, kind: 'mdev', name: u, type: 'GuestAttached', data: { resourceVersion: mdev.resourceVersion } })
    await cache.syncedTo(same.seq)
    t.equal(cache.stats().reads, reads, 'no re-read for a version already held')
    // A status write (the reconciler's event) and a label change.
    const st = await store.transaction(async (tx) => {
      const [w] = await tx.mdevs.setStatuses(host, [{ uuid: u, status: { observedGeneration: 1, conditions: [] } as never }])
      return tx.events.append({ host, kind: 'mdev', name: u, type: 'MdevStatusChanged', data: { resourceVersion: w!.resourceVersion } })
    })
    await cache.syncedTo(st.seq)
    const b = (await cache.mdev(host, u)).value
    t.not(b, a, 'a new object for the new version')
    t.same(b, mdevView(await store.mdevs.get(host, u)))
    // A writer hands over the row it stored (mutation-runner.ts): the sync takes it instead of reading it back.
    const relabel = (labels: Record<string, string>) =>
      store.transaction(async (tx) => {
        const rec = await tx.mdevs.update(host, u, { labels }, {}, await tx.mdevs.get(host, u))
        const e = await tx.events.append({ host, kind: 'mdev', name: u, type: 'MdevUpdated', data: { resourceVersion: rec.resourceVersion } })
        return { rec, seq: e.seq }
      })
    const handed = await relabel({ handed: 'yes' })
    const s0 = cache.stats()
    await cache.syncedTo(handed.seq, [handed.rec])
    t.equal(cache.stats().reads - s0.reads, 0, 'no read of the row handed over')
    t.equal(cache.stats().handed - s0.handed, 1, 'the row handed over was taken')
    t.strictSame((await cache.mdev(host, u)).value, mdevView(await store.mdevs.get(host, u)), 'what a read gives')
    // A row handed over at a version the log has moved past is not taken: the event names a later version.
    const later = await relabel({ handed: 'no' })
    const s1 = cache.stats()
    await cache.syncedTo(later.seq, [handed.rec])
    t.equal(cache.stats().handed - s1.handed, 0, 'an older row is not taken')
    t.equal(cache.stats().reads - s1.reads, 1, 'the row is read instead')
    t.same((await cache.mdev(host, u)).value.metadata.labels, { handed: 'no' }, 'the later write is what the cache holds')
    // Masks.
    const mk = await store.transaction(async (tx) => {
      const r = await tx.masks.set(host, { apmask: `0x${'0'.repeat(64)}`, aqmask: `0x${'f'.repeat(64)}` })
      return tx.events.append({ host, kind: 'masks', name: 'masks', type: 'MasksChanged', data: { resourceVersion: r.resourceVersion } })
    })
    await cache.syncedTo(mk.seq)
    t.same((await cache.masks(host)).value, await store.masks.get(host))
    // The row goes.
    const del = await store.transaction(async (tx) => {
      await tx.mdevs.delete(host, u)
      return tx.events.append({ host, kind: 'mdev', name: u, type: 'MdevDeleted' })
    })
    await cache.syncedTo(del.seq)
    t.equal(await cache.mdev(host, u).catch((e: ApmatrixError) => e.code), 'NOT_FOUND', 'deleted')
    t.same((await cache.mdevs(host)).value.items, [])
  })

  t.test('a store that fails: reads answer from memory, marked stale; a working store makes them fresh again', async (t) => {
    const host = 'h1'
    let failing = false
    const fail = () => {
      if (failing) throw new ApmatrixError('UNAVAILABLE', 'store down (test)')
    }
    const flaky: ReadCacheStore = {
      events: {
        list: async (q: EventQuery) => (fail(), store.events.list(q)),
        lastSeq: async () => (fail(), store.events.lastSeq()),
      } as Store['events'],
      mdevs: store.mdevs,
      masks: store.masks,
    }
    let now = 0
    const cache = new ReadCache({ store: flaky, hosts: () => [host], maxStalenessMs: 1000, retryMs: 500, now: () => now })
    const u = uuidOf(7100)
    await define(store, host, { uuid: u, state: 'stopped', owner: 'x', labels: {} })
    t.equal((await cache.mdev(host, u)).staleMs, null, 'loaded: fresh')
    failing = true
    now = 999
    t.equal((await cache.mdev(host, u)).staleMs, null, 'within the bound: no store read at all')
    now = 1500
    const r = await cache.mdev(host, u)
    t.same([r.value.metadata.uuid, r.staleMs], [u, 1500], 'past the bound, the sync fails: the old copy, 1500 ms old')
    t.same((await cache.mdevs(host)).staleMs, 1500, 'LIST too')
    t.same((await cache.masks(host)).staleMs, 1500, 'masks too')
    const failures = cache.stats().failures
    now = 1900
    t.equal((await cache.mdev(host, u)).staleMs, 1900, 'within retryMs of the failure: answered without trying the store')
    t.equal(cache.stats().failures, failures, 'no new attempt')
    const u2 = uuidOf(7101)
    const w = await define(store, host, { uuid: u2, state: 'stopped', owner: 'x', labels: {} })
    await cache.syncedTo(w.seq)
    t.equal(cache.syncedSeq < w.seq, true, 'syncedTo gives up quietly while the store fails (the write itself is committed)')
    failing = false
    now = 2500 // more than retryMs after the last failed attempt (syncedTo's, at 1900)
    const back = await cache.mdev(host, u2)
    t.same([back.value.metadata.uuid, back.staleMs], [u2, null], 'store back: synced, fresh, the write is there')
  })

  t.test('far behind the log: one full load instead of a replay', async (t) => {
    const host = 'h2'
    for (const m of await store.mdevs.listAll(host)) await store.mdevs.delete(host, m.uuid)
    const cache = new ReadCache({ store, hosts: () => [host], maxStalenessMs: 0, rebuildAfterEvents: 5 })
    await cache.start()
    const before = cache.stats().rebuilds
    let last = 0
    for (let i = 0; i < 1200; i += 100) {
      // 1,200 events: more than a page of the log (1,000) and more than rebuildAfterEvents.
      last = await store.transaction(async (tx) => {
        const n = await tx.events.appendMany(Array.from({ length: 100 }, () => ({ host, kind: 'queue', name: '01.0001', type: 'QueueFlushed' })))
        return n
      })
    }
    t.equal(last, 100)
    const created = await define(store, host, { uuid: uuidOf(7200), state: 'started', owner: null, labels: { a: 'b' } })
    const got = await cache.mdev(host, uuidOf(7200))
    t.equal(got.value.metadata.resourceVersion, created.mdev.resourceVersion)
    t.equal(cache.stats().rebuilds, before + 1, 'reloaded once')
    t.ok(cache.syncedSeq >= created.seq)
  })
})
