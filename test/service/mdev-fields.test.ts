/**
 * `updateMdevFields` (gRPC UpdateMdev with a field mask): `labels` replaces the whole map with the
 * device as read under the host lock, `labelChanges` sets or removes single keys, spec fields merge,
 * owner; preconditions and dry runs as every write.
 */
import t from 'tap'
import { forEachDatabase } from '../store/pg-helper.js'
import { codeOf } from '../store/store-fixture.js'
import { serviceFixture, U1 } from './service-fixture.js'

forEachDatabase(t, async (t, db) => {
  const { service, store } = await serviceFixture(t, db)
  await service.setMasks('local', { apmask: '-5', aqmask: '-4' })
  await service.createMdev('local', { uuid: U1, spec: { adapters: [5], domains: [4] }, labels: { a: '1', b: '2' }, owner: 'ops' })
  const labels = async () => (await service.getMdev('local', U1)).metadata.labels

  await t.test('labels: replace the whole map, then single keys', async (t) => {
    const r = await service.updateMdevFields('local', U1, { labels: { c: '3' } })
    if (r.dryRun) return t.fail('not a dry run')
    t.same(r.result.metadata.labels, { c: '3' }, 'a and b are gone')
    await service.updateMdevFields('local', U1, { labelChanges: { c: null, d: '4' } })
    t.same(await labels(), { d: '4' })
    await service.updateMdevFields('local', U1, { labels: { x: '1' }, labelChanges: { y: '2', x: null } })
    t.same(await labels(), { y: '2' }, 'single keys apply after the replaced map')
    t.same((await service.getMdev('local', U1)).spec, { adapters: [5], domains: [4], controlDomains: [], state: 'started', drain: null }, 'spec untouched')
    t.equal((await service.getMdev('local', U1)).metadata.owner, 'ops', 'owner untouched')
  })

  await t.test('spec fields and owner', async (t) => {
    const r = await service.updateMdevFields('local', U1, { spec: { domains: [4, 5], state: null }, owner: null })
    if (r.dryRun) return t.fail('not a dry run')
    t.same(r.result.spec, { adapters: [5], domains: [4, 5], controlDomains: [], state: 'started', drain: null })
    t.equal(r.result.metadata.owner, null)
    t.same(r.result.metadata.labels, { y: '2' }, 'labels untouched')
  })

  await t.test('precondition, dry run and bad labels change nothing', async (t) => {
    const before = await service.getMdev('local', U1)
    t.equal(await codeOf(service.updateMdevFields('local', U1, { labels: {} }, { ifMatch: 'stale' })), 'CONFLICT')
    const dry = await service.updateMdevFields('local', U1, { labels: {} }, { dryRun: true })
    t.ok(dry.dryRun)
    t.equal(await codeOf(service.updateMdevFields('local', U1, { labelChanges: { '-bad-': 'x' } })), 'INVALID_ARGUMENT')
    t.equal(await codeOf(service.updateMdevFields('local', U1, { labels: { ok: 'x'.repeat(257) } })), 'INVALID_ARGUMENT')
    const after = await service.getMdev('local', U1)
    t.equal(after.metadata.resourceVersion, before.metadata.resourceVersion, 'nothing stored')
    const ok = await service.updateMdevFields('local', U1, { labels: {} }, { ifMatch: before.metadata.resourceVersion })
    if (ok.dryRun) return t.fail('not a dry run')
    t.same(ok.result.metadata.labels, {})
    t.equal((await store.events.list({ host: 'local' })).filter((e) => e.type === 'MdevUpdated').length, 5, 'one MdevUpdated per stored change')
  })
})
