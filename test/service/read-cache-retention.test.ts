/**
 * The read cache and retention (src/service/read-cache.ts, src/store/retention.ts), on SQLite and PostgreSQL:
 * the cache follows the event log by seq; when retention removes events the cache had not replayed yet (another
 * replica's writes, then compaction past the cache's position), the log no longer names every change, so the
 * cache reloads whole instead of replaying what is left, and answers what the store holds.
 */
import t from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import { ReadCache } from '../../src/service/read-cache.js'
import type { Store } from '../../src/store/index.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { addHost, compactEvents, openStore } from '../store/store-fixture.js'
import { U1, U2 } from './service-fixture.js'

/** A device write the way the service makes them: the row and its event in one transaction. */
function define(store: Store, uuid: string, adapters: number[]) {
  return store.transaction(async (tx) => {
    const { mdev } = await tx.mdevs.create({
      host: 'h1',
      uuid,
      spec: { adapters, domains: [1], controlDomains: [], state: 'started' },
      labels: {},
      owner: null,
    })
    return (await tx.events.append({ host: 'h1', kind: 'mdev', name: uuid, type: 'MdevDefined', data: { resourceVersion: mdev.resourceVersion } })).seq
  })
}

function remove(store: Store, uuid: string) {
  return store.transaction(async (tx) => {
    await tx.mdevs.delete('h1', uuid)
    return (await tx.events.append({ host: 'h1', kind: 'mdev', name: uuid, type: 'MdevDeleted' })).seq
  })
}

forEachDatabase(t, async (t, db) => {
  const store = await openStore(t, db)
  await addHost(store, 'h1')
  const cache = new ReadCache({ store, hosts: () => ['h1'], maxStalenessMs: 0 })
  await cache.start()

  t.test('compaction passed the cache position: the cache reloads and shows every change the removed events named', async (t) => {
    await define(store, U1, [1])
    t.same((await cache.mdev('h1', U1)).value.spec.adapters, [1])
    const position = cache.syncedSeq
    const before = cache.stats()
    // Writes this cache has not seen (another replica's), then enough other events that retention removes theirs.
    const defined = await define(store, U2, [2])
    const removed = await remove(store, U1)
    await store.events.appendMany(Array.from({ length: 30 }, (_, i) => ({ host: 'h1', kind: 'queue', name: `q${i}`, type: 'QueueBound' })))
    t.ok((await compactEvents(store, 10)) > Math.max(defined, removed), 'both device events are gone from the log')
    const left = await store.events.list({ since: position, limit: 1000 })
    t.notOk(
      left.some((e) => e.kind === 'mdev'),
      'replaying what is left would not name either device',
    )

    t.same((await cache.mdev('h1', U2)).value.spec.adapters, [2], 'the device defined meanwhile is there')
    const gone = await cache.mdev('h1', U1).catch((e: unknown) => e)
    t.ok(gone instanceof ApmatrixError && gone.code === 'NOT_FOUND', 'the device deleted meanwhile is gone')
    const after = cache.stats()
    t.equal(after.compactedPast - before.compactedPast, 1, 'the sync saw the floor past its position')
    t.equal(after.rebuilds - before.rebuilds, 1, 'and loaded everything once')
    t.equal(cache.syncedSeq, await store.events.lastSeq())

    // Back to replaying: a later write is picked up from the log, without another load.
    await define(store, U1, [3])
    t.same((await cache.mdev('h1', U1)).value.spec.adapters, [3])
    t.equal(cache.stats().rebuilds, after.rebuilds)
  })
})
