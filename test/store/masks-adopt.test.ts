/**
 * First contact in the store (docs/api.md (Resources) "Host masks"): masks adopted from the host are generation 0,
 * follow the host while still adopted, are never overwritten once a caller set them, and taking the
 * admission lock changes nothing, on SQLite and PostgreSQL, also when replicas register a host at once.
 */
import t from 'tap'
import { forEachDatabase } from './pg-helper.js'
import { addHost, codeOf, openStore } from './store-fixture.js'

const ONES = `0x${'f'.repeat(64)}`
const FB = `0xfb${'f'.repeat(62)}`
const F9 = `0xf9${'f'.repeat(62)}`

forEachDatabase(t, async (t, db) => {
  const store = await openStore(t, db)
  await addHost(store, 'lpar1')
  await addHost(store, 'lpar2')

  t.test("adopt: created at generation 0, refreshed while adopted, never over a caller's masks", async (t) => {
    const a = await store.masks.adopt('lpar1', { apmask: FB, aqmask: ONES })
    t.match(a, { outcome: 'created', record: { generation: 0, apmask: FB, aqmask: ONES } })
    t.match(await store.masks.adopt('lpar1', { apmask: FB, aqmask: ONES }), { outcome: 'unchanged', record: { resourceVersion: a.record.resourceVersion } })
    const r = await store.masks.adopt('lpar1', { apmask: F9, aqmask: ONES })
    t.match(r, { outcome: 'refreshed', record: { generation: 0, apmask: F9 } })
    t.not(r.record.resourceVersion, a.record.resourceVersion)
    await store.masks.lockForAdmission('lpar1')
    t.same(await store.masks.get('lpar1'), r.record, 'the admission lock changes nothing, not even the version')
    const set = await store.masks.set('lpar1', { apmask: F9, aqmask: ONES })
    t.equal(set.generation, 1, 'a caller setting the same masks makes them theirs')
    t.same(await store.masks.set('lpar1', { apmask: F9, aqmask: ONES }), set, 'from then on an unchanged set is no write')
    t.match(
      await store.masks.adopt('lpar1', { apmask: FB, aqmask: ONES }),
      { outcome: 'unchanged', record: { generation: 1, apmask: F9 } },
      "a caller's masks are never replaced by the host's",
    )
    t.equal(await codeOf(store.masks.adopt('lpar1', { apmask: '-5', aqmask: ONES })), 'INVALID_ARGUMENT')
  })

  t.test('replicas registering a host at once: exactly one adoption', async (t) => {
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => store.masks.adopt('lpar2', { apmask: FB, aqmask: ONES }).then((r) => r.outcome)))
    t.same(outcomes.filter((o) => o === 'created').length, 1, outcomes.join(','))
    t.ok(outcomes.every((o) => o === 'created' || o === 'unchanged'))
  })

  t.test('the admission lock of a host never registered creates the kernel default (generation 1)', async (t) => {
    await addHost(store, 'old')
    await store.masks.lockForAdmission('old')
    t.match(await store.masks.get('old'), { generation: 1, apmask: ONES, aqmask: ONES })
  })
})
