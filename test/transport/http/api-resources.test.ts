/**
 * REST routes of docs/api.md (REST) over a real socket, on SQLite and PostgreSQL: hosts, inventory, masks,
 * matrix devices, desired state and plan. Demo profile: adapters 0,1,2,5,6,7; domains 1,2,4,5,0x0a,0x47.
 */
import t from 'tap'
import { forEachDatabase } from '../../store/pg-helper.js'
import { U1, U2, U3 } from '../../service/service-fixture.js'
import { apiFixture } from './http-fixture.js'

const MDEVS = '/v1/hosts/local/mdevs'
const etagOf = (h: Headers) => (h.get('etag') ?? '').replace(/"/g, '')

forEachDatabase(t, async (t, db) => {
  const api = await apiFixture(t, db)
  const { call, store, enqueued } = api

  t.test('hosts, request ids', async (t) => {
    const r = await call('GET', '/v1/hosts', { headers: { 'x-request-id': 'req-42' } })
    t.equal(r.status, 200)
    t.match(r.headers.get('x-request-id'), /^[0-9a-f-]{36}$/, "the request id is the server's")
    t.equal(r.headers.get('x-correlation-id'), 'req-42', "the caller's is echoed as the correlation id")
    t.match(r.body.items, [{ name: 'local', driver: 'emulator', maxAdapterId: 255, features: Array }])
    const one = await call('GET', '/v1/hosts/local')
    t.equal(one.body.machineId, r.body.items[0].machineId)
    const missing = await call('GET', '/v1/hosts/nope', { headers: { 'x-request-id': 'bad id with spaces' } })
    t.equal(missing.status, 404)
    t.match(missing.headers.get('content-type'), /^application\/problem\+json/)
    t.match(missing.body, { status: 404, code: 'NOT_FOUND', title: String, detail: /nope/ })
    t.not(missing.body.requestId, 'bad id with spaces', 'an unusable request id is replaced')
    t.equal(missing.body.requestId, missing.headers.get('x-request-id'))
    t.equal(missing.headers.get('x-correlation-id'), null, 'an unusable caller id is not echoed')
  })

  t.test('inventory: adapters, queues with filters and pages, domains', async (t) => {
    const a = await call('GET', '/v1/hosts/local/adapters')
    t.same(
      a.body.items.map((x: { apid: number }) => x.apid),
      [0, 1, 2, 5, 6, 7],
    )
    t.match(a.body.items[0], { type: 'CEX7C', mode: 'cca', driver: 'cex4card', depth: 8 }, 'depth: the card attribute (profile default 8)')
    const q = await call('GET', '/v1/hosts/local/queues?adapter=0x05&domain=4&driver=cex4queue')
    t.same(
      q.body.items.map((x: { apqn: string }) => x.apqn),
      ['05.0004'],
    )
    const seen: string[] = []
    let token: string | undefined
    let pages = 0
    do {
      const p = await call('GET', `/v1/hosts/local/queues?limit=10${token ? `&pageToken=${encodeURIComponent(token)}` : ''}`)
      t.equal(p.status, 200)
      t.ok(p.body.items.length <= 10)
      seen.push(...p.body.items.map((x: { apqn: string }) => x.apqn))
      token = p.body.nextPageToken
      pages++
    } while (token && pages < 10)
    t.equal(pages, 4)
    t.equal(new Set(seen).size, 36, 'every queue exactly once')
    t.equal((await call('GET', '/v1/hosts/local/queues?limit=501')).status, 400)
    t.equal((await call('GET', '/v1/hosts/local/queues?limit=0')).status, 400)
    t.match((await call('GET', '/v1/hosts/local/queues?pageToken=garbage')).body, { status: 400, code: 'INVALID_ARGUMENT' })
    t.match((await call('GET', '/v1/hosts/local/queues?adapter=zz')).body, { code: 'INVALID_ARGUMENT' })
    t.match((await call('GET', '/v1/hosts/local/queues?bogus=1')).body, { code: 'INVALID_ARGUMENT' }, 'unknown query parameters are refused')
    const d = await call('GET', '/v1/hosts/local/domains')
    t.same(d.body, { usageDomains: [1, 2, 4, 5, 10, 71], controlDomains: [1, 2, 4, 5, 10, 11, 71], hostDomains: [1, 2, 4, 5, 10, 71] })
  })

  t.test('masks: ETag, If-Match, kernel syntax, id arrays, dry run', async (t) => {
    const g = await call('GET', '/v1/hosts/local/masks')
    t.equal(g.status, 200)
    const tag = etagOf(g.headers)
    t.equal(tag, g.body.metadata.resourceVersion)
    t.equal(g.body.spec.apmask, `0x${'f'.repeat(64)}`)
    t.same(g.body.status.apmaskIds.length, 256)
    const stale = await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-5' }, headers: { 'if-match': '"stale"' } })
    t.match(stale, { status: 409, body: { code: 'CONFLICT' } })
    const dry = await call('PUT', '/v1/hosts/local/masks?dryRun=true&view=full', { body: { apmask: '-5,-6' } })
    t.equal(dry.status, 200)
    t.equal(dry.body.dryRun, true)
    t.ok(dry.body.plan.operations.some((o: { kind: string }) => o.kind === 'takeFromHost'))
    t.same(dry.body.plan.drainedQueues.length, 12, 'the 12 queues of adapters 5 and 6 would be drained')
    t.equal((await store.masks.get('local'))!.resourceVersion, tag, 'dry run stored nothing')
    const n = enqueued.length
    const put = await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-5,-6', aqmask: [1, 2, 4, 5, '0x0a'] }, headers: { 'if-match': `"${tag}"` } })
    t.equal(put.status, 200)
    t.not(etagOf(put.headers), tag)
    t.same(put.body.spec.aqmaskIds, [1, 2, 4, 5, 10])
    t.notOk(put.body.spec.apmaskIds.includes(5))
    t.equal(enqueued.length, n + 1, 'the reconciler was nudged')
    t.equal((await store.events.list({ host: 'local' })).filter((e) => e.type === 'MasksChanged').length, 1)
    const back = await call('PUT', '/v1/hosts/local/masks', { body: { aqmask: '+0x47' } })
    t.ok(back.body.spec.aqmaskIds.includes(0x47))
    t.match((await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '+300' } })).body, { status: 400, code: 'INVALID_ARGUMENT', errno: 'EINVAL' })
  })

  t.test('mdevs: create (201, ETag, Location), idempotent repeat, ALREADY_EXISTS', async (t) => {
    const c = await call('POST', MDEVS, {
      body: { uuid: U1.toUpperCase(), spec: { adapters: [5, '0x06'], domains: ['4'] }, labels: { team: 'a' }, owner: 'ops' },
    })
    t.equal(c.status, 201)
    t.equal(c.body.metadata.uuid, U1, 'uuids are canonical lowercase')
    t.same(c.body.spec, { adapters: [5, 6], domains: [4], controlDomains: [], state: 'started', drain: null })
    t.equal(etagOf(c.headers), c.body.metadata.resourceVersion)
    t.equal(c.headers.get('location'), `${MDEVS}/${U1}`)
    const again = await call('POST', MDEVS, { body: { uuid: U1, spec: { adapters: [6, 5], domains: [4] } } })
    t.equal(again.status, 200)
    t.same(again.body, c.body, 'the same object')
    t.match(await call('POST', MDEVS, { body: { uuid: U1, spec: { adapters: [5], domains: [4] } } }), { status: 409, body: { code: 'ALREADY_EXISTS' } })
    const got = await call('GET', `${MDEVS}/${U1}`)
    t.same(got.body, c.body)
    t.equal(etagOf(got.headers), c.body.metadata.resourceVersion)
    t.match(await call('GET', `${MDEVS}/${U2}`), { status: 404, body: { code: 'NOT_FOUND' } })
    t.match(await call('GET', `${MDEVS}/not-a-uuid`), { status: 400, body: { code: 'INVALID_ARGUMENT' } })
    t.ok((await store.events.list({ host: 'local' })).some((e) => e.type === 'MdevDefined' && e.name === U1 && e.requestId))
  })

  t.test('admission over REST: APQN_IN_USE, APQN_RESERVED, OUT_OF_RANGE, every violation with owner and fix', async (t) => {
    const r = await call('POST', MDEVS, { body: { uuid: U2, spec: { adapters: [5, 6, 0], domains: [4, 1] } } })
    t.equal(r.status, 409)
    t.equal(r.body.code, 'APQN_IN_USE')
    t.equal(r.body.errno, 'EADDRINUSE')
    const byRule = (rule: string) =>
      r.body.violations
        .filter((v: { rule: string }) => v.rule === rule)
        .map((v: { apqn: string; owner: string }) => `${v.apqn}@${v.owner}`)
        .sort()
    t.same(byRule('APQN_IN_USE'), [`05.0004@${U1}`, `06.0004@${U1}`])
    t.same(byRule('APQN_RESERVED'), ['00.0001@host', '00.0004@host'])
    t.ok(r.body.violations.every((v: { fix?: string }) => typeof v.fix === 'string' && v.fix.length > 0))
    const reserved = await call('POST', MDEVS, { body: { spec: { adapters: [0], domains: [2] } } })
    t.match(reserved, {
      status: 409,
      body: { code: 'APQN_RESERVED', errno: 'EADDRNOTAVAIL', violations: [{ apqn: '00.0002', owner: 'host', fix: /clear bit/ }] },
    })
    t.match(await call('POST', MDEVS, { body: { spec: { adapters: [300, '0x100'], domains: [4] } } }), {
      status: 400,
      body: {
        code: 'OUT_OF_RANGE',
        violations: [
          { rule: 'OUT_OF_RANGE', id: 300 },
          { rule: 'OUT_OF_RANGE', id: 256 },
        ],
      },
    })
    t.match(await call('POST', MDEVS, { body: { spec: { adapters: [7], controlDomains: [4] } } }), { status: 400, body: { code: 'INVALID_ARGUMENT' } })
    t.equal((await store.mdevs.listAll('local')).length, 1, 'nothing stored')
  })

  t.test('Idempotency-Key replay and misuse; dry-run create stores nothing', async (t) => {
    const body = { spec: { adapters: [5], domains: [0x47] }, owner: 'batch' }
    const a = await call('POST', MDEVS, { body, headers: { 'idempotency-key': 'key-1' } })
    t.equal(a.status, 201)
    const b = await call('POST', MDEVS, { body, headers: { 'idempotency-key': 'key-1' } })
    t.equal(b.status, 201)
    t.same(b.body, a.body, 'the stored response: no second device with a new uuid')
    t.equal(b.headers.get('idempotent-replayed'), 'true')
    t.equal(a.headers.get('idempotent-replayed'), null)
    t.equal((await store.mdevs.list('local', { owner: 'batch' })).items.length, 1)
    t.match(await call('POST', MDEVS, { body: { ...body, owner: 'other' }, headers: { 'idempotency-key': 'key-1' } }), {
      status: 409,
      body: { code: 'CONFLICT' },
    })
    t.match(await call('POST', MDEVS, { body, headers: { 'idempotency-key': 'bad key with spaces' } }), { status: 400 })
    const before = (await store.mdevs.listAll('local')).length
    const dry = await call('POST', `${MDEVS}?dryRun=true&view=full`, { body: { uuid: U3, spec: { adapters: [6], domains: [0x47] } } })
    t.equal(dry.status, 200)
    t.ok(dry.body.plan.operations.some((o: { kind: string; uuid?: string }) => o.kind === 'createMdev' && o.uuid === U3))
    t.equal((await store.mdevs.listAll('local')).length, before, 'dry run stored nothing')
    t.equal((await call('GET', `${MDEVS}/${U3}`)).status, 404)
    await call('DELETE', `${MDEVS}/${a.body.metadata.uuid}`)
  })

  t.test('list with filters and pages', async (t) => {
    await call('POST', MDEVS, {
      body: { uuid: U3, spec: { adapters: [6], domains: [0x0a], state: 'stopped' }, labels: { team: 'b', tier: 'x' }, owner: 'ops' },
    })
    const all = await call('GET', `${MDEVS}?limit=1`)
    t.equal(all.body.items.length, 1)
    t.ok(all.body.nextPageToken)
    const next = await call('GET', `${MDEVS}?limit=500&pageToken=${encodeURIComponent(all.body.nextPageToken)}`)
    t.ok(next.body.items.length >= 1)
    t.notOk(next.body.items.some((m: { metadata: { uuid: string } }) => m.metadata.uuid === all.body.items[0].metadata.uuid))
    t.same(
      (await call('GET', `${MDEVS}?state=stopped`)).body.items.map((m: { metadata: { uuid: string } }) => m.metadata.uuid),
      [U3],
    )
    t.same(
      (await call('GET', `${MDEVS}?owner=ops&label=team%3Db,tier%3Dx`)).body.items.map((m: { metadata: { uuid: string } }) => m.metadata.uuid),
      [U3],
    )
    t.same((await call('GET', `${MDEVS}?label=team%3Dnone`)).body.items, [])
    t.equal((await call('GET', `${MDEVS}?label=novalue`)).status, 400)
    t.equal((await call('GET', `${MDEVS}?state=running`)).status, 400)
  })

  t.test('PUT, PATCH (merge patch), If-Match, DELETE', async (t) => {
    const cur = await call('GET', `${MDEVS}/${U1}`)
    const tag = etagOf(cur.headers)
    t.match(await call('PUT', `${MDEVS}/${U1}`, { body: { spec: { adapters: [5], domains: [4] } }, headers: { 'if-match': '"nope"' } }), {
      status: 409,
      body: { code: 'CONFLICT' },
    })
    const put = await call('PUT', `${MDEVS}/${U1}`, {
      body: { spec: { adapters: [5, 6], domains: [4, 5] }, labels: { team: 'a' }, owner: 'ops' },
      headers: { 'if-match': `"${tag}"` },
    })
    t.equal(put.status, 200)
    t.equal(put.body.metadata.generation, 2)
    t.not(etagOf(put.headers), tag)
    const mp = { 'content-type': 'application/merge-patch+json' }
    const patch = await call('PATCH', `${MDEVS}/${U1}`, {
      raw: JSON.stringify({ spec: { domains: [4] }, metadata: { labels: { env: 'prod', team: null } } }),
      headers: { ...mp, 'if-match': etagOf(put.headers) },
    })
    t.equal(patch.status, 200)
    t.same(patch.body.spec, { adapters: [5, 6], domains: [4], controlDomains: [], state: 'started', drain: null })
    t.same(patch.body.metadata.labels, { env: 'prod' })
    t.equal(patch.body.metadata.owner, 'ops')
    t.equal((await call('PATCH', `${MDEVS}/${U1}`, { body: { spec: { domains: [4] } } })).status, 415, 'merge patch content type required')
    t.match(await call('PATCH', `${MDEVS}/${U1}`, { raw: '{"status":{"active":true}}', headers: mp }), { status: 400, body: { code: 'INVALID_ARGUMENT' } })
    t.match(await call('PATCH', `${MDEVS}/${U1}`, { raw: '{"metadata":{"generation":9}}', headers: mp }), { status: 400 })
    t.match(await call('PATCH', `${MDEVS}/${U1}`, { raw: '{"spec":{"domains":[5]}}', headers: { ...mp, 'if-match': '"old"' } }), {
      status: 409,
      body: { code: 'CONFLICT' },
    })
    const dry = await call('PATCH', `${MDEVS}/${U1}?dryRun=true`, { raw: '{"spec":{"domains":[4,5]}}', headers: mp })
    t.equal(dry.body.dryRun, true)
    t.equal((await call('GET', `${MDEVS}/${U1}`)).body.metadata.resourceVersion, patch.body.metadata.resourceVersion, 'dry run stored nothing')

    t.match(await call('DELETE', `${MDEVS}/${U3}`, { headers: { 'if-match': '"old"' } }), { status: 409, body: { code: 'CONFLICT' } })
    const del = await call('DELETE', `${MDEVS}/${U3}?force=true`)
    t.equal(del.status, 202)
    t.ok(del.body.metadata.deletionRequestedAt)
    t.equal(del.body.metadata.force, true)
    t.equal((await call('DELETE', `${MDEVS}/${U3}`)).status, 202, 'idempotent')
    t.match(await call('PUT', `${MDEVS}/${U3}`, { body: { spec: { adapters: [6], domains: [10] } } }), { status: 409, body: { code: 'CONFLICT' } })
    t.equal((await call('DELETE', `${MDEVS}/${U2}`)).status, 404)
    const types = (await store.events.list({ host: 'local' })).map((e) => `${e.type}:${e.name}`)
    t.ok(types.includes(`MdevUpdated:${U1}`))
    t.ok(types.includes(`MdevUndefined:${U3}`))
  })

  t.test('BUSY: a mask change that hands a device APQN back to the host', async (t) => {
    const r = await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '+5-6' } })
    t.equal(r.status, 409)
    t.equal(r.body.code, 'BUSY')
    t.same(r.body.violations.map((v: { apqn: string; owner: string }) => `${v.apqn}@${v.owner}`).sort(), [`05.0004@${U1}`, `06.0004@${U1}`])
    t.ok(r.body.violations.every((v: { fix: string }) => /unassign/.test(v.fix)))
  })

  t.test('PUT desired (whole host, owner semantics) and POST plan', async (t) => {
    const doc = {
      owner: 'fleet',
      masks: { aqmask: '-2' },
      mdevs: [{ uuid: U2, spec: { adapters: [7], domains: [2] }, labels: { vm: 'g1' } }],
    }
    const plan = await call('POST', '/v1/hosts/local/plan?view=full', { body: doc })
    t.equal(plan.status, 200)
    t.same(plan.body.violations, [])
    // The stub reconciler changed nothing on the bus: the queue still belongs to the host's driver.
    t.same(plan.body.claimedApqns, [{ apqn: '07.0002', uuid: U2, currentOwner: 'host' }])
    t.same(plan.body.drainedQueues.filter((q: string) => q.endsWith('.0002')).length, 6, "domain 2 leaves the host on every adapter still the host's")
    t.ok(plan.body.operations.some((o: { kind: string }) => o.kind === 'createMdev'))
    t.same(plan.body.filteredAdapters, [])
    t.equal((await call('GET', `${MDEVS}/${U2}`)).status, 404, 'plan stores nothing')

    const bad = await call('POST', '/v1/hosts/local/plan', { body: { mdevs: [{ uuid: U2, spec: { adapters: [5], domains: [4, 1] } }] } })
    t.equal(bad.status, 200)
    t.equal(bad.body.summary.violations.count, 1, 'the summary (default view) counts the violations')
    t.same(bad.body.summary.violations.first.map((v: { rule: string; apqn: string }) => `${v.rule}:${v.apqn}`).sort(), ['APQN_IN_USE:05.0004'])
    const single = await call('POST', '/v1/hosts/local/plan?view=full', { body: { spec: { adapters: [5], domains: [0x47] } } })
    t.match(single.body.claimedApqns, [{ apqn: '05.0047', currentOwner: 'host' }])

    const dry = await call('PUT', '/v1/hosts/local/desired?dryRun=true', { body: doc })
    t.equal(dry.body.dryRun, true)
    t.equal((await call('GET', `${MDEVS}/${U2}`)).status, 404)
    const applied = await call('PUT', '/v1/hosts/local/desired', { body: doc })
    t.equal(applied.status, 200)
    t.match(applied.body.mdevs, [{ uuid: U2, action: 'created', generation: 1 }])
    t.ok(applied.body.masks.generation > 1)
    t.equal(applied.body.plan.view, 'summary', 'an apply answers the summary by default')
    t.ok(applied.body.plan.summary.operationCount > 0)
    t.equal(applied.body.plan.operations, undefined, 'no lists in the summary')
    const u2 = await call('GET', `${MDEVS}/${U2}`)
    t.match(u2.body.metadata, { owner: 'fleet', labels: { vm: 'g1' } })

    const conflicting = await call('PUT', '/v1/hosts/local/desired', {
      body: {
        owner: 'fleet',
        mdevs: [
          { uuid: U2, spec: { adapters: [7], domains: [2] } },
          { uuid: U3.replace(/3/g, '9'), spec: { adapters: [7, 5], domains: [2, 4] } },
        ],
      },
    })
    t.equal(conflicting.status, 409)
    t.same(
      conflicting.body.violations.map((v: { rule: string; apqn: string }) => `${v.rule}:${v.apqn}`).sort(),
      ['APQN_IN_USE:05.0004', 'APQN_IN_USE:07.0002', 'APQN_RESERVED:07.0004'],
      'every conflict of the document',
    )
    const emptied = await call('PUT', '/v1/hosts/local/desired', { body: { owner: 'fleet', mdevs: [] } })
    t.match(emptied.body.mdevs, [{ uuid: U2, action: 'deleted' }])
    t.ok((await call('GET', `${MDEVS}/${U1}`)).body.metadata.deletionRequestedAt === null, 'other owners untouched')
  })
})
