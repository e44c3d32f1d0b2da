import t from 'tap'
import { forEachDatabase } from './pg-helper.js'
import { addHost, codeOf, openStore } from './store-fixture.js'
import type { MdevSpec, MdevStatus } from '../../src/store/mdev-repo.js'
import type { MdevStatus as ReconcilerStatus } from '../../src/reconciler/status.js'

// Compile-time: what the reconciler computes can be stored as is.
const storable = (s: ReconcilerStatus): MdevStatus => s
void storable

const spec = (over: Partial<MdevSpec> = {}): MdevSpec => ({ adapters: [5, 3, 5], domains: [4], controlDomains: [], state: 'started', ...over })
const uuid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`

forEachDatabase(t, async (t, db) => {
  const store = await openStore(t, db)
  await addHost(store, 'local')
  await addHost(store, 'other')

  t.test('create stores a normalized spec; same spec again returns the stored object', async (t) => {
    const a = await store.mdevs.create({ host: 'local', uuid: uuid(1), spec: spec(), labels: { team: 'a' }, owner: 'cp' })
    t.equal(a.created, true)
    t.same(a.mdev.spec, { adapters: [3, 5], domains: [4], controlDomains: [], state: 'started' })
    t.equal(a.mdev.generation, 1)
    t.same(a.mdev.labels, { team: 'a' })
    t.equal(a.mdev.owner, 'cp')
    t.equal(a.mdev.origin, 'apmatrix')
    t.same(a.mdev.status, {})
    t.ok(a.mdev.createdAt instanceof Date)
    const again = await store.mdevs.create({ host: 'local', uuid: uuid(1), spec: spec({ adapters: [3, 5] }) })
    t.equal(again.created, false)
    t.same(again.mdev, a.mdev, 'the same object, same resourceVersion')
    t.equal(await codeOf(store.mdevs.create({ host: 'local', uuid: uuid(1), spec: spec({ domains: [6] }) })), 'ALREADY_EXISTS')
    t.equal(await codeOf(store.mdevs.create({ host: 'nohost', uuid: uuid(1), spec: spec() })), 'NOT_FOUND', 'unknown host')
    const otherHost = await store.mdevs.create({ host: 'other', uuid: uuid(1), spec: spec({ domains: [9] }) })
    t.equal(otherHost.created, true, 'uuids are per host')
  })

  t.test('concurrent creates of one uuid: one creates, the others get the same object', async (t) => {
    const results = await Promise.all(Array.from({ length: 8 }, () => store.mdevs.create({ host: 'local', uuid: uuid(2), spec: spec() })))
    t.equal(results.filter((r) => r.created).length, 1)
    t.equal(new Set(results.map((r) => r.mdev.resourceVersion)).size, 1)
  })

  t.test('get', async (t) => {
    t.equal((await store.mdevs.get('local', uuid(1))).uuid, uuid(1))
    t.equal(await codeOf(store.mdevs.get('local', uuid(99))), 'NOT_FOUND')
  })

  t.test('update: OCC on resourceVersion, generation only on spec changes', async (t) => {
    const cur = await store.mdevs.get('local', uuid(1))
    const labelled = await store.mdevs.update('local', uuid(1), { labels: { team: 'b', tier: 'gold' } }, { expectedResourceVersion: cur.resourceVersion })
    t.equal(labelled.generation, 1, 'labels do not bump the generation')
    t.not(labelled.resourceVersion, cur.resourceVersion)
    t.same(labelled.labels, { team: 'b', tier: 'gold' })
    t.equal(await codeOf(store.mdevs.update('local', uuid(1), { owner: 'x' }, { expectedResourceVersion: cur.resourceVersion })), 'CONFLICT', 'stale version')
    const respec = await store.mdevs.update('local', uuid(1), { spec: spec({ domains: [4, 7] }) }, { expectedResourceVersion: labelled.resourceVersion })
    t.equal(respec.generation, 2)
    t.same(respec.spec.domains, [4, 7])
    const same = await store.mdevs.update('local', uuid(1), { spec: spec({ domains: [7, 4] }) })
    t.same(same, respec, 'a patch that changes nothing writes nothing')
    // update() answers the row without reading it back: each answer is what a read then returns.
    t.strictSame(labelled.updatedAt.getTime() >= cur.updatedAt.getTime(), true, 'updatedAt moves on')
    const drained = await store.mdevs.update('local', uuid(1), {
      spec: spec({ adapters: [9, 3], drain: { timeoutSeconds: 5, onTimeout: 'flush' } }),
      labels: { z: '1', a: '2' },
      owner: 'tenant-b',
    })
    t.strictSame(drained, await store.mdevs.get('local', uuid(1)), 'spec, labels, owner, versions and dates as stored')
    t.strictSame(Object.keys(drained.labels), ['a', 'z'], 'labels in key order, as a read gives them')
    const relabelled = await store.mdevs.update('local', uuid(1), { labels: {} })
    t.strictSame(relabelled, await store.mdevs.get('local', uuid(1)), 'a label-only change as stored')
    t.equal(await codeOf(store.mdevs.update('local', uuid(99), { owner: 'x' })), 'NOT_FOUND')
  })

  t.test('update with the row the transaction read: no second read; a write in between makes it run again or CONFLICT', async (t) => {
    const read = await store.mdevs.get('local', uuid(1))
    const rec = await store.transaction(async (tx) => tx.mdevs.update('local', uuid(1), { labels: { known: '1' } }, {}, await tx.mdevs.get('local', uuid(1))))
    t.strictSame(rec, await store.mdevs.get('local', uuid(1)), 'the answer is what a read returns')
    t.not(rec.resourceVersion, read.resourceVersion)
    // A status write (the reconciler's path, no host lock) lands after the transaction read the row.
    const stale = rec
    await store.mdevs.updateStatus('local', uuid(1), { observedGeneration: stale.generation, conditions: [] } as never)
    let attempts = 0
    const again = await store.transaction(async (tx) => {
      attempts++
      const known = attempts === 1 ? stale : await tx.mdevs.get('local', uuid(1))
      return tx.mdevs.update('local', uuid(1), { labels: { known: '2' } }, {}, known)
    })
    t.equal(attempts, 2, 'the compare-and-set on the stale row matched nothing: the transaction ran again on a fresh read')
    t.same(again.labels, { known: '2' })
    t.same(again.status, { observedGeneration: stale.generation, conditions: [] }, 'the status write is kept')
    t.equal(
      await codeOf(
        store.transaction(async (tx) => tx.mdevs.update('local', uuid(1), { owner: 'x' }, { expectedResourceVersion: stale.resourceVersion }, stale)),
      ),
      'CONFLICT',
      'with a precondition on the stale version: CONFLICT',
    )
    t.equal(
      await codeOf(
        store.transaction(async (tx) => tx.mdevs.update('local', uuid(1), { owner: 'x' }, { expectedResourceVersion: stale.resourceVersion }, again)),
      ),
      'CONFLICT',
      'a precondition that names another version than the row read: CONFLICT before any write',
    )
    t.equal((await store.mdevs.get('local', uuid(1))).owner, again.owner, 'nothing stored by the refused writes')
  })

  t.test('concurrent unconditional updates all land (re-run on the fresh row)', async (t) => {
    await Promise.all(Array.from({ length: 6 }, (_, i) => store.mdevs.update('local', uuid(2), { labels: { n: String(i) } })))
    const m = await store.mdevs.get('local', uuid(2))
    t.match(m.labels.n, /^[0-5]$/)
    const cur = m.resourceVersion
    const racing = await Promise.all(
      Array.from({ length: 4 }, (_, i) => codeOf(store.mdevs.update('local', uuid(2), { owner: `o${i}` }, { expectedResourceVersion: cur }))),
    )
    t.same(racing.sort(), ['CONFLICT', 'CONFLICT', 'CONFLICT', 'resolved'], 'with one precondition exactly one writer wins')
  })

  t.test('updateStatus keeps the generation and changes the resourceVersion', async (t) => {
    const cur = await store.mdevs.get('local', uuid(1))
    const status = {
      observedGeneration: cur.generation,
      active: true,
      matrix: ['03.0004'],
      guestMatrix: [],
      conditions: [
        {
          type: 'Ready' as const,
          status: 'True' as const,
          reason: 'Reconciled',
          message: '',
          lastTransitionTime: '2026-01-01T00:00:00Z',
          observedGeneration: 2,
        },
      ],
    }
    const s = await store.mdevs.updateStatus('local', uuid(1), status)
    t.same(s.status, status)
    t.equal(s.generation, cur.generation)
    t.not(s.resourceVersion, cur.resourceVersion)
    t.same(await store.mdevs.updateStatus('local', uuid(1), status), s, 'the same status again writes nothing')
    t.equal(await codeOf(store.mdevs.updateStatus('local', uuid(1), {}, { expectedResourceVersion: cur.resourceVersion })), 'CONFLICT')
  })

  t.test('markDeleted is idempotent, force sticks; delete honours the precondition', async (t) => {
    const m1 = await store.mdevs.markDeleted('local', uuid(2))
    t.ok(m1.deletionRequestedAt instanceof Date)
    t.equal(m1.force, false)
    const m2 = await store.mdevs.markDeleted('local', uuid(2))
    t.same(m2, m1, 'second request changes nothing')
    const m3 = await store.mdevs.markDeleted('local', uuid(2), { force: true })
    t.equal(m3.force, true)
    t.same(m3.deletionRequestedAt, m1.deletionRequestedAt, 'first request time kept')
    t.equal((await store.mdevs.markDeleted('local', uuid(2))).force, true)
    t.equal(await codeOf(store.mdevs.delete('local', uuid(2), { expectedResourceVersion: m1.resourceVersion })), 'CONFLICT')
    await store.mdevs.delete('local', uuid(2), { expectedResourceVersion: m3.resourceVersion })
    t.equal(await codeOf(store.mdevs.get('local', uuid(2))), 'NOT_FOUND')
    t.equal(await codeOf(store.mdevs.delete('local', uuid(2))), 'NOT_FOUND')
  })

  t.test('list: filters and pagination', async (t) => {
    for (let i = 10; i < 17; i++) {
      await store.mdevs.create({
        host: 'other',
        uuid: uuid(i),
        spec: spec({ domains: [i], state: i % 2 ? 'stopped' : 'started' }),
        owner: i < 13 ? 'alpha' : 'beta',
        labels: { parity: i % 2 ? 'odd' : 'even', ...(i === 12 ? { special: 'yes' } : {}) },
      })
    }
    const seen: string[] = []
    let token: string | undefined
    let pages = 0
    do {
      const page = await store.mdevs.list('other', { limit: 3, pageToken: token })
      t.ok(page.items.length <= 3)
      seen.push(...page.items.map((m) => m.uuid))
      token = page.nextPageToken
      pages++
    } while (token)
    const all = (await store.mdevs.listAll('other')).map((m) => m.uuid)
    t.same(seen, all, 'pages cover everything once, in uuid order')
    t.equal(all.length, 8)
    t.equal(pages, 3)
    t.same(
      (await store.mdevs.list('other', { owner: 'alpha' })).items.map((m) => m.uuid),
      [uuid(10), uuid(11), uuid(12)],
    )
    t.same(
      (await store.mdevs.list('other', { state: 'stopped' })).items.map((m) => m.uuid),
      [uuid(11), uuid(13), uuid(15)],
    )
    t.same(
      (await store.mdevs.list('other', { labels: { parity: 'even', special: 'yes' } })).items.map((m) => m.uuid),
      [uuid(12)],
    )
    t.same((await store.mdevs.list('other', { labels: { parity: 'EVEN' } })).items, [], 'label values match exactly (case-sensitive on both databases)')
    const p1 = await store.mdevs.list('other', { labels: { parity: 'odd' }, limit: 2 })
    const p2 = await store.mdevs.list('other', { labels: { parity: 'odd' }, limit: 2, pageToken: p1.nextPageToken })
    t.same(
      [...p1.items, ...p2.items].map((m) => m.uuid),
      [uuid(11), uuid(13), uuid(15)],
    )
    t.equal(p2.nextPageToken, undefined)
    t.equal((await store.mdevs.list('local', { limit: 500 })).items.length, 1)
    t.equal(await codeOf(store.mdevs.list('other', { limit: 501 })), 'INVALID_ARGUMENT')
    t.equal(await codeOf(store.mdevs.list('other', { limit: 0 })), 'INVALID_ARGUMENT')
    t.equal(await codeOf(store.mdevs.list('other', { pageToken: 'garbage' })), 'INVALID_ARGUMENT')
  })
})
