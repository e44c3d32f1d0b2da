import t from 'tap'
import { forEachDatabase } from './pg-helper.js'
import { addHost, codeOf, manualClock, openStore } from './store-fixture.js'

const ONES = `0x${'f'.repeat(64)}`
const ZEROS = `0x${'0'.repeat(64)}`

forEachDatabase(t, async (t, db) => {
  const clock = manualClock()
  const store = await openStore(t, db, { clock: clock.now })

  t.test('hosts: upsert, get, list', async (t) => {
    await addHost(store, 'local')
    const h = await store.hosts.upsert({
      name: 'local',
      driver: 'emulator',
      machineId: 'm',
      bootId: 'b2',
      features: ['qact', 'apxa'],
      maxAdapterId: 15,
      maxDomainId: 84,
      profile: 'demo',
    })
    t.equal(h.bootId, 'b2')
    t.same(h.features, ['apxa', 'qact'])
    t.same(await store.hosts.get('local'), h)
    t.same(
      (await store.hosts.list()).map((x) => x.name),
      ['local'],
    )
    t.equal(await codeOf(store.hosts.get('nope')), 'NOT_FOUND')
  })

  t.test('masks: set creates, OCC, generation on mask change only, status', async (t) => {
    t.equal(await store.masks.get('local'), null, 'never set')
    const m1 = await store.masks.set('local', { apmask: ONES, aqmask: ONES })
    t.equal(m1.generation, 1)
    t.equal(await codeOf(store.masks.set('local', { apmask: ZEROS, aqmask: ONES }, { expectedResourceVersion: 'stale' })), 'CONFLICT')
    const m2 = await store.masks.set('local', { apmask: ZEROS, aqmask: ONES }, { expectedResourceVersion: m1.resourceVersion })
    t.equal(m2.generation, 2)
    t.equal(m2.apmask, ZEROS)
    t.same(await store.masks.set('local', { apmask: ZEROS, aqmask: ONES }), m2, 'unchanged masks: no write')
    const s = await store.masks.setStatus('local', { apmask: ZEROS, aqmask: ONES, observedGeneration: 2 })
    t.equal(s.generation, 2)
    t.not(s.resourceVersion, m2.resourceVersion)
    t.same(s.status, { apmask: ZEROS, aqmask: ONES, observedGeneration: 2 })
    t.same(await store.masks.get('local'), s)
    t.equal(await codeOf(store.masks.set('local', { apmask: 'ff', aqmask: ONES })), 'INVALID_ARGUMENT')
    t.equal(await codeOf(store.masks.set('nohost', { apmask: ONES, aqmask: ONES })), 'NOT_FOUND')
    t.equal(await codeOf(store.masks.set('nohost', { apmask: ONES, aqmask: ONES }, { expectedResourceVersion: 'x' })), 'CONFLICT')
    t.equal(await codeOf(store.masks.setStatus('nohost', {})), 'NOT_FOUND')
  })

  t.test('audit: append and list', async (t) => {
    const a = await store.audit.append({ actor: 'alice', action: 'mdev.create', target: 't1', outcome: 'ok', requestId: 'r1', detail: { x: 1 } })
    const b = await store.audit.append({ actor: 'bob', action: 'masks.set', target: 't2', outcome: 'CONFLICT' })
    t.ok(b.id > a.id)
    t.same(a.detail, { x: 1 })
    t.equal(a.time.getTime(), clock.now().getTime())
    t.same(
      (await store.audit.list()).map((r) => r.id),
      [a.id, b.id],
    )
    t.same(
      (await store.audit.list({ target: 't2' })).map((r) => r.actor),
      ['bob'],
    )
    t.same(
      (await store.audit.list({ afterId: a.id })).map((r) => r.id),
      [b.id],
    )
  })

  t.test('journal: append, update, list open', async (t) => {
    const steps = await store.journal.append([
      { host: 'local', reconcileId: 'rc1', step: 0, operation: { op: 'unassign', apqn: '05.0004' } },
      { host: 'local', reconcileId: 'rc1', step: 1, operation: { op: 'remove', uuid: 'u' } },
      { host: 'other', reconcileId: 'rc2', step: 0, operation: { op: 'noop' } },
    ])
    t.same(
      steps.map((s) => s.state),
      ['planned', 'planned', 'planned'],
    )
    t.same(
      (await store.journal.listOpen('local')).map((s) => s.step),
      [0, 1],
    )
    const done = await store.journal.update(steps[0].id, 'done')
    t.equal(done.state, 'done')
    const failed = await store.journal.update(steps[1].id, 'failed', 'EBUSY')
    t.equal(failed.error, 'EBUSY')
    t.same(await store.journal.listOpen('local'), [])
    t.same(
      (await store.journal.listOpen('other')).map((s) => s.operation),
      [{ op: 'noop' }],
    )
    t.equal(await codeOf(store.journal.update(999999, 'done')), 'NOT_FOUND')
    t.equal(await codeOf(store.journal.append([{ host: 'local', reconcileId: 'rc1', step: 0, operation: {} }])), 'ALREADY_EXISTS')
    clock.advance(1000)
    t.equal(await store.journal.prune('local', clock.now()), 2)
  })

  t.test('idempotency keys: first writer wins, expiry', async (t) => {
    t.equal(await store.idempotency.get('s', 'k1'), null)
    const put = { scope: 's', key: 'k1', requestHash: 'h1', responseStatus: 201, responseBody: { uuid: 'u1' }, ttlMs: 60_000 }
    const r1 = await store.idempotency.put(put)
    t.same(r1.responseBody, { uuid: 'u1' })
    const r2 = await store.idempotency.put({ ...put, requestHash: 'h2', responseStatus: 200 })
    t.equal(r2.requestHash, 'h1', 'the stored answer wins; the caller sees the different hash')
    t.same(await store.idempotency.get('s', 'k1'), r1)
    t.equal(await store.idempotency.get('other-scope', 'k1'), null, 'keys are per scope')
    const racing = await Promise.all(Array.from({ length: 5 }, (_, i) => store.idempotency.put({ ...put, key: 'k2', requestHash: `h${i}` })))
    t.equal(new Set(racing.map((r) => r.requestHash)).size, 1, 'concurrent puts agree on one winner')
    clock.advance(60_001)
    t.equal(await store.idempotency.get('s', 'k1'), null, 'expired')
    const r3 = await store.idempotency.put({ ...put, requestHash: 'h3' })
    t.equal(r3.requestHash, 'h3', 'an expired record is replaced')
    t.equal(await store.idempotency.purgeExpired(), 1, 'k2 expired')
    t.equal(await store.idempotency.purgeExpired(), 0)
  })
})
