/**
 * If-Match lists over a real socket on SQLite and PostgreSQL (docs/api.md (Conventions); RFC 9110
 * §13.1.1): a list of entity tags matches when any listed tag is the current version, `*` matches any
 * existing object, a list without the current version is 409 CONFLICT and changes nothing, a malformed
 * header is 400. Also the mask-text bound that REST and gRPC share.
 */
import t from 'tap'
import { forEachDatabase } from '../../store/pg-helper.js'
import { U1 } from '../../service/service-fixture.js'
import { apiFixture } from './http-fixture.js'

const MDEV = `/v1/hosts/local/mdevs/${U1}`
const MASKS = '/v1/hosts/local/masks'

forEachDatabase(t, async (t, db) => {
  const { call } = await apiFixture(t, db)
  t.equal((await call('PUT', MASKS, { body: { apmask: '-5,-6', aqmask: '-4,-5' } })).status, 200)
  const created = await call('POST', '/v1/hosts/local/mdevs', { body: { uuid: U1, spec: { adapters: [5], domains: [4] } } })
  t.equal(created.status, 201, created.text)
  let etag = created.headers.get('etag')!

  t.test('a list that holds the current version matches (PUT, PATCH)', async (t) => {
    const put = await call('PUT', MDEV, { body: { spec: { adapters: [5], domains: [4, 5] } }, headers: { 'if-match': `"old-1", ${etag}, "old-2"` } })
    t.equal(put.status, 200, put.text)
    t.same(put.body.spec.domains, [4, 5])
    const next = put.headers.get('etag')!
    t.not(next, etag)
    const patch = await call('PATCH', MDEV, {
      raw: '{"labels":{"tier":"gold"}}',
      headers: { 'content-type': 'application/merge-patch+json', 'if-match': `W/"weak", ${next}` },
    })
    t.equal(patch.status, 200, patch.text)
    t.same(patch.body.metadata.labels, { tier: 'gold' })
    etag = patch.headers.get('etag')!
  })

  t.test('a list without the current version is CONFLICT and changes nothing', async (t) => {
    const r = await call('PUT', MDEV, { body: { spec: { adapters: [5], domains: [4] } }, headers: { 'if-match': '"a", "b", "c"' } })
    t.match(r, { status: 409, body: { code: 'CONFLICT' } })
    t.match(r.body.detail, /any of a, b, c/)
    const now = await call('GET', MDEV)
    t.same(now.body.spec.domains, [4, 5])
    t.equal(now.headers.get('etag'), etag)
  })

  t.test('* matches the existing object; masks take lists too', async (t) => {
    const star = await call('PUT', MDEV, { body: { spec: { adapters: [5], domains: [4, 5] }, labels: { tier: 'gold' } }, headers: { 'if-match': '*' } })
    t.equal(star.status, 200, star.text)
    const masks = await call('GET', MASKS)
    const mtag = masks.headers.get('etag')!
    const ok = await call('PUT', MASKS, { body: { apmask: '-7' }, headers: { 'if-match': `"x", ${mtag}` } })
    t.equal(ok.status, 200, ok.text)
    t.match(await call('PUT', MASKS, { body: { apmask: '-8' }, headers: { 'if-match': `"x", ${mtag}` } }), { status: 409, body: { code: 'CONFLICT' } })
  })

  t.test('DELETE with a list', async (t) => {
    const cur = (await call('GET', MDEV)).headers.get('etag')!
    t.match(await call('DELETE', MDEV, { headers: { 'if-match': '"nope", "nada"' } }), { status: 409, body: { code: 'CONFLICT' } })
    t.equal((await call('GET', MDEV)).body.metadata.deletionRequestedAt, null)
    const del = await call('DELETE', MDEV, { headers: { 'if-match': `"nope", ${cur}` } })
    t.equal(del.status, 202, del.text)
  })

  t.test('malformed If-Match is 400', async (t) => {
    for (const h of ['"a", b', '"a",', ', "a"', '"a" "b"', '*, "a"', `${Array.from({ length: 33 }, (_, i) => `"t${i}"`).join(', ')}`]) {
      t.match(await call('PUT', MASKS, { body: { apmask: '-9' }, headers: { 'if-match': h } }), { status: 400, body: { code: 'INVALID_ARGUMENT' } }, h)
    }
  })

  t.test('mask text over 1,024 characters is refused, as on gRPC', async (t) => {
    const long = Array.from({ length: 300 }, (_, i) => `+${i % 256}`).join(',')
    t.ok(long.length > 1024)
    t.match(await call('PUT', MASKS, { body: { apmask: long } }), { status: 400, body: { code: 'INVALID_ARGUMENT' } })
    t.match(await call('PUT', '/v1/hosts/local/desired', { body: { masks: { aqmask: long } } }), { status: 400, body: { code: 'INVALID_ARGUMENT' } })
  })
})
