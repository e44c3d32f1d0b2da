/**
 * Two shortcuts of the mutation runner (src/service/mutation-runner.ts), on SQLite and PostgreSQL:
 * - a stale If-Match on a matrix device is refused from one read of the committed row, before the host lock
 *   (`precheck`): the answer is the CONFLICT the locked check gives, audited, nothing changed; it answers what
 *   `prepare` would answer first (a tenant never learns that another tenant's device exists), and a request
 *   replayed under its Idempotency-Key still gets its stored answer; on PostgreSQL it is refused while another
 *   transaction holds the host lock;
 * - a change of labels or owner only (no new generation) does not nudge the reconciler; a spec change does.
 */
import pg from 'pg'
import t from 'tap'
import type { Principal } from '../../src/auth/identity.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { codeOf } from '../store/store-fixture.js'
import { serviceFixture, U1, U2 } from './service-fixture.js'

const tenant = (name: string): Principal => ({ subject: name, groups: [], roles: ['tenant'], source: 'token', hosts: null, tenant: name })

forEachDatabase(t, async (t, db) => {
  const { service, store, enqueued } = await serviceFixture(t, db)
  // Adapter 5 leaves the host's default drivers, so a device may take its APQNs.
  await service.setMasks('local', { apmask: '-5' })
  const created = await service.createMdev('local', { uuid: U1, spec: { adapters: [5], domains: [4] } })
  if (created.dryRun) throw new Error('not a dry run')
  const v1 = created.result.metadata.resourceVersion

  t.test('labels or owner only: stored, no reconcile; a spec change: one', async (t) => {
    const before = enqueued.length
    const labelled = await service.patchMdev('local', U1, { labels: { tier: 'gold' } }, { ifMatch: v1 })
    if (labelled.dryRun) throw new Error('not a dry run')
    t.same(labelled.result.metadata.labels, { tier: 'gold' })
    await service.patchMdev('local', U1, { owner: 'team-a' })
    await service.patchMdev('local', U1, { labels: { tier: 'gold' } })
    t.equal(enqueued.length, before, 'no pass for bookkeeping')
    await service.patchMdev('local', U1, { spec: { domains: [4, 5] } })
    t.same(enqueued.slice(before), ['local'], 'a new generation is planned')
  })

  t.test('a stale If-Match: CONFLICT, audited, nothing stored', async (t) => {
    const cur = await store.mdevs.get('local', U1)
    const refusedBefore = (await store.audit.list({ target: `hosts/local/mdevs/${U1}`, outcome: 'CONFLICT' })).length
    for (const op of [
      () => service.patchMdev('local', U1, { labels: { tier: 'silver' } }, { ifMatch: v1 }),
      () => service.replaceMdev('local', U1, { spec: { adapters: [5], domains: [4] } }, { ifMatch: [v1, 'other'] }),
      () => service.deleteMdev('local', U1, { ifMatch: v1 }),
    ])
      t.equal(await codeOf(op()), 'CONFLICT')
    t.strictSame(await store.mdevs.get('local', U1), cur, 'the device is as it was')
    const refused = await store.audit.list({ target: `hosts/local/mdevs/${U1}`, outcome: 'CONFLICT' })
    t.equal(refused.length - refusedBefore, 3, 'each refusal audited')
    t.equal(await codeOf(service.patchMdev('local', U2, { labels: { a: 'b' } }, { ifMatch: v1 })), 'NOT_FOUND', 'an absent device is NOT_FOUND, not CONFLICT')
  })

  // The host lock is a PostgreSQL row lock (SQLite has one writer): this case is PostgreSQL's alone.
  if (db.provider === 'postgres')
    t.test('PostgreSQL: the stale writer is refused while another transaction holds the host lock', async (t) => {
      const holder = new pg.Client({ connectionString: db.url })
      await holder.connect()
      t.teardown(() => holder.end())
      await holder.query('BEGIN')
      await holder.query(`SELECT 1 FROM "HostMasks" WHERE "host" = 'local' FOR UPDATE`)
      // Without the early check the refusal would wait for this lock, which is released only after the race.
      let guard: NodeJS.Timeout | undefined
      const outcome = await Promise.race([
        codeOf(service.patchMdev('local', U1, { labels: { x: 'y' } }, { ifMatch: v1 })),
        new Promise<string>((r) => (guard = setTimeout(() => r('still waiting for the host lock after 20 s'), 20_000))),
      ])
      clearTimeout(guard)
      await holder.query('ROLLBACK')
      t.equal(outcome, 'CONFLICT')
    })

  t.test("another tenant's device: NOT_FOUND, stale version or not", async (t) => {
    const cur = await store.mdevs.get('local', U1)
    t.equal(cur.owner, 'team-a')
    const stranger = { principal: tenant('team-b') }
    t.equal(await codeOf(service.patchMdev('local', U1, { labels: { x: 'y' } }, { ...stranger, ifMatch: 'stale' })), 'NOT_FOUND')
    t.equal(await codeOf(service.deleteMdev('local', U1, { ...stranger, ifMatch: 'stale' })), 'NOT_FOUND')
    t.equal(
      await codeOf(service.patchMdev('local', U1, { labels: { x: 'y' } }, { principal: tenant('team-a'), ifMatch: 'stale' })),
      'CONFLICT',
      'its owner learns the version moved',
    )
  })

  t.test('a replay under its Idempotency-Key answers the stored result though its If-Match is stale now', async (t) => {
    const cur = (await store.mdevs.get('local', U1)).resourceVersion
    const ctx = { ifMatch: cur, idempotencyKey: 'k-relabel-1' }
    const first = await service.patchMdev('local', U1, { labels: { tier: 'bronze' } }, ctx)
    if (first.dryRun) throw new Error('not a dry run')
    t.not(first.result.metadata.resourceVersion, cur)
    const again = await service.patchMdev('local', U1, { labels: { tier: 'bronze' } }, ctx)
    if (again.dryRun) throw new Error('not a dry run')
    t.equal(again.replayed, true)
    t.same(again.result, first.result)
    t.equal(await codeOf(service.patchMdev('local', U1, { labels: { tier: 'bronze' } }, { ifMatch: cur })), 'CONFLICT', 'without the key: stale')
  })
})
