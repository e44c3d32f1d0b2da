/**
 * REST bad input, emulator controls, operations endpoints and store failure, over a real socket on
 * SQLite and PostgreSQL (docs/api.md (REST), §8: never a 500 for bad input; 503 + Retry-After when the store is down).
 */
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { forEachDatabase } from '../../store/pg-helper.js'
import { U1, U2 } from '../../service/service-fixture.js'
import { apiFixture, type ApiResponse } from './http-fixture.js'

const MDEVS = '/v1/hosts/local/mdevs'

function isProblem(t: Test, r: ApiResponse, status: number, code: string): void {
  t.equal(r.status, status, `status ${status}: ${r.text.slice(0, 200)}`)
  t.match(r.headers.get('content-type'), /^application\/problem\+json/)
  t.match(r.body, { status, code, title: String, detail: String, requestId: String })
}

forEachDatabase(t, async (t, db) => {
  const api = await apiFixture(t, db, { bodyLimit: 64 * 1024 })
  const { call, store, enqueued, host } = api

  t.test('bad bodies are 4xx problems and store nothing', async (t) => {
    const cases: Array<[string, { body?: unknown; raw?: string; headers?: Record<string, string> }, number, string]> = [
      ['wrong type: adapters is a string', { body: { spec: { adapters: 'x', domains: [1] } } }, 400, 'INVALID_ARGUMENT'],
      ['wrong type: spec is an array', { body: { spec: [] } }, 400, 'INVALID_ARGUMENT'],
      ['wrong type: owner is a number', { body: { spec: {}, owner: 5 } }, 400, 'INVALID_ARGUMENT'],
      ['unknown top-level field', { body: { spec: {}, extra: 1 } }, 400, 'INVALID_ARGUMENT'],
      ['unknown spec field', { body: { spec: { adapterz: [1] } } }, 400, 'INVALID_ARGUMENT'],
      ['oversized string', { body: { spec: {}, owner: 'o'.repeat(129) } }, 400, 'INVALID_ARGUMENT'],
      ['oversized label value', { body: { spec: {}, labels: { a: 'v'.repeat(257) } } }, 400, 'INVALID_ARGUMENT'],
      ['oversized array', { body: { spec: { adapters: Array.from({ length: 1025 }, () => 1) } } }, 400, 'INVALID_ARGUMENT'],
      ['too many labels', { body: { spec: {}, labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) } }, 400, 'INVALID_ARGUMENT'],
      ['bad label key', { body: { spec: {}, labels: { '-bad': 'v' } } }, 400, 'INVALID_ARGUMENT'],
      ['negative id', { body: { spec: { adapters: [-1] } } }, 400, 'INVALID_ARGUMENT'],
      ['id string garbage', { body: { spec: { adapters: ['5x'], domains: [1] } } }, 400, 'INVALID_ARGUMENT'],
      ['bad uuid', { body: { uuid: 'x'.repeat(36), spec: {} } }, 400, 'INVALID_ARGUMENT'],
      ['malformed JSON', { raw: '{"spec": {', headers: { 'content-type': 'application/json' } }, 400, 'INVALID_ARGUMENT'],
      ['empty JSON body', { raw: '', headers: { 'content-type': 'application/json' } }, 400, 'INVALID_ARGUMENT'],
      ['JSON null', { raw: 'null', headers: { 'content-type': 'application/json' } }, 400, 'INVALID_ARGUMENT'],
      ['prototype poisoning', { raw: '{"spec":{},"__proto__":{"x":1}}', headers: { 'content-type': 'application/json' } }, 400, 'INVALID_ARGUMENT'],
      ['body too large', { body: { spec: {}, owner: 'x'.repeat(70 * 1024) } }, 413, 'PAYLOAD_TOO_LARGE'],
    ]
    for (const [name, opts, status, code] of cases) {
      t.test(name, async (t) => isProblem(t, await call('POST', MDEVS, opts), status, code))
    }
    t.test('schema violations name the field', async (t) => {
      const r = await call('POST', MDEVS, { body: { spec: { adapters: 'x' } } })
      t.ok(r.body.violations.some((v: { field: string }) => v.field.includes('adapters')))
    })
    t.test('unsupported media type', async (t) =>
      isProblem(t, await call('POST', MDEVS, { raw: 'spec', headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE'),
    )
    t.test('bad masks and desired bodies', async (t) => {
      isProblem(t, await call('PUT', '/v1/hosts/local/masks', { body: { apmask: 5 } }), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '0X12' } }), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('PUT', '/v1/hosts/local/masks', { body: { apmask: `0x${'1'.repeat(65)}` } }), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-1', bogus: true } }), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('PUT', '/v1/hosts/local/desired', { body: { mdevs: [{ uuid: U1 }] } }), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('PUT', '/v1/hosts/local/desired', { body: { mdevs: {} } }), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('POST', '/v1/hosts/local/plan', { body: 'text' }), 400, 'INVALID_ARGUMENT')
      isProblem(
        t,
        await call('PUT', '/v1/hosts/local/desired', {
          body: {
            mdevs: [
              { uuid: U1, spec: {} },
              { uuid: U1, spec: {} },
            ],
          },
        }),
        400,
        'INVALID_ARGUMENT',
      )
    })
    t.test('bad headers and parameters', async (t) => {
      isProblem(t, await call('PUT', `${MDEVS}/${U1}`, { body: { spec: {} }, headers: { 'if-match': '"a", b' } }), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('GET', `/v1/hosts/${'h'.repeat(100)}`), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('GET', `${MDEVS}?limit=abc`), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('GET', `${MDEVS}?dryRun=true`), 400, 'INVALID_ARGUMENT')
      isProblem(t, await call('DELETE', `${MDEVS}/${U1}?force=maybe`), 400, 'INVALID_ARGUMENT')
      // Found by test/reliability/fuzz-rest.test.ts: an audit id past the store's 32-bit ids was a 500.
      for (const afterId of ['1e+308', '2147483648']) isProblem(t, await call('GET', `/v1/audit?afterId=${afterId}`), 400, 'INVALID_ARGUMENT')
      t.equal((await call('GET', '/v1/audit?afterId=2147483647')).status, 200, 'the largest audit id is a valid position')
      isProblem(t, await call('GET', '/v1/nothing'), 404, 'NOT_FOUND')
      isProblem(t, await call('POST', '/v1/hosts'), 404, 'NOT_FOUND')
    })
    t.test('nothing was stored', async (t) => {
      t.same(await store.mdevs.listAll('local'), [])
      t.same(enqueued, [])
    })
  })

  t.test('fuzz: arbitrary JSON bodies never give a 5xx (time-boxed)', async (t) => {
    const routes: Array<[string, string, Record<string, string>]> = [
      ['POST', MDEVS, {}],
      ['PUT', `${MDEVS}/${U1}`, {}],
      ['PATCH', `${MDEVS}/${U1}`, { 'content-type': 'application/merge-patch+json' }],
      ['PUT', '/v1/hosts/local/masks?dryRun=true', {}],
      ['PUT', '/v1/hosts/local/desired?dryRun=true', {}],
      ['POST', '/v1/hosts/local/plan', {}],
    ]
    const spec = fc.record(
      {
        adapters: fc.array(fc.oneof(fc.integer({ min: -2, max: 300 }), fc.string({ maxLength: 6 })), { maxLength: 4 }),
        domains: fc.anything(),
        state: fc.string(),
      },
      { requiredKeys: [] },
    )
    const body = fc.oneof(
      fc.jsonValue(),
      fc.record(
        { spec, uuid: fc.oneof(fc.uuid(), fc.string()), owner: fc.anything(), labels: fc.dictionary(fc.string(), fc.jsonValue()) },
        { requiredKeys: [] },
      ),
      fc.record({ apmask: fc.oneof(fc.string(), fc.array(fc.jsonValue())), aqmask: fc.string() }, { requiredKeys: [] }),
      fc.record({ mdevs: fc.array(fc.record({ uuid: fc.uuid(), spec }), { maxLength: 3 }), owner: fc.string() }, { requiredKeys: [] }),
    )
    let runs = 0
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), body, async ([method, path, headers], b) => {
        runs++
        const r = await call(method, path, { raw: JSON.stringify(b), headers: { 'content-type': 'application/json', ...headers } })
        return r.status < 500
      }),
      { numRuns: 150, interruptAfterTimeLimit: 8000 },
    )
    t.ok(runs > 20, `${runs} requests`)
    // Clean up whatever a lucky input created, so the tests below start from an empty host.
    for (const m of await store.mdevs.listAll('local')) await store.mdevs.delete('local', m.uuid)
  })

  t.test('emulator controls', async (t) => {
    const r = await call('GET', '/v1/hosts/local/emulator/sysfs?path=/sys/bus/ap/ap_max_domain_id')
    t.equal(r.status, 200)
    t.match(r.headers.get('content-type'), /^text\/plain/)
    t.equal(r.text, '255\n', 'the exact kernel text, newline included')
    const missing = await call('GET', '/v1/hosts/local/emulator/sysfs?path=/sys/bus/ap/nope')
    isProblem(t, missing, 404, 'NOT_FOUND')
    t.equal(missing.body.errno, 'ENOENT')
    isProblem(t, await call('GET', '/v1/hosts/local/emulator/sysfs'), 400, 'INVALID_ARGUMENT')

    const w = await call('POST', '/v1/hosts/local/emulator/sysfs', { body: { path: '/sys/bus/ap/apmask', value: '-7\n' } })
    t.equal(w.status, 204)
    t.equal(w.text, '')
    t.ok((await host.read('/sys/bus/ap/apmask')).startsWith('0xfe'), 'the write reached the bus')
    t.ok(enqueued.includes('local'), 'a manual write is drift: the host is reconciled')
    const einval = await call('POST', '/v1/hosts/local/emulator/sysfs', { body: { path: '/sys/bus/ap/apmask', value: 'garbage' } })
    isProblem(t, einval, 400, 'INVALID_ARGUMENT')
    t.equal(einval.body.errno, 'EINVAL')

    // A device made by hand, then a guest opens it and the host refuses to take its APQN back (B-24: EBUSY).
    await host.write('/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create', U2)
    await host.write(`/sys/devices/vfio_ap/matrix/${U2}/assign_adapter`, '7')
    await host.write(`/sys/devices/vfio_ap/matrix/${U2}/assign_domain`, '1')
    const owned = await call('GET', `/v1/hosts/local/queues?owner=${U2}`)
    t.match(owned.body.items, [{ apqn: '07.0001', driver: 'vfio_ap', owner: U2 }])
    t.equal(owned.body.items.length, 1, 'the owner filter sees the device on the bus')
    const busy = await call('POST', '/v1/hosts/local/emulator/sysfs', { body: { path: '/sys/bus/ap/apmask', value: '+7' } })
    isProblem(t, busy, 409, 'BUSY')
    t.equal(busy.body.errno, 'EBUSY')

    const nodev = await call('POST', '/v1/hosts/local/emulator/guests', { body: { uuid: U1, guest: 'vm1' } })
    isProblem(t, nodev, 404, 'NOT_FOUND')
    t.equal(nodev.body.errno, 'ENODEV')
    isProblem(t, await call('POST', '/v1/hosts/local/emulator/hardware', { body: { action: 'config-off' } }), 400, 'INVALID_ARGUMENT')
    isProblem(t, await call('POST', '/v1/hosts/local/emulator/requests', { body: { apqn: '99.0001', count: 1 } }), 404, 'NOT_FOUND')
    t.equal((await call('POST', '/v1/hosts/local/emulator/guests', { body: { uuid: U2, guest: 'vm1' } })).status, 204)
    t.same((await call('GET', '/v1/hosts/local/emulator/guests')).body, { items: [{ uuid: U2, guest: 'vm1' }] })
    t.equal((await call('DELETE', '/v1/hosts/local/emulator/guests/vm1')).status, 204)
    const again = await call('DELETE', '/v1/hosts/local/emulator/guests/vm1')
    isProblem(t, again, 404, 'NOT_FOUND')
    t.equal(again.body.errno, 'ENOENT')

    t.equal((await call('POST', '/v1/hosts/local/emulator/hardware', { body: { action: 'config-off', apid: 1 } })).status, 204)
    t.match(
      (await call('GET', '/v1/hosts/local/adapters')).body.items.find((a: { apid: number }) => a.apid === 1),
      { config: false },
    )
    isProblem(t, await call('POST', '/v1/hosts/local/emulator/hardware', { body: { action: 'explode' } }), 400, 'INVALID_ARGUMENT')

    const req = await call('POST', '/v1/hosts/local/emulator/requests', { body: { apqn: '00.0004', count: 5 } })
    t.equal(req.status, 200)
    t.equal(req.body.accepted, 5)
    isProblem(t, await call('POST', '/v1/hosts/local/emulator/requests', { body: { apqn: '00.0004', count: 0 } }), 400, 'INVALID_ARGUMENT')

    const before = (await call('GET', '/v1/hosts/local')).body.bootId
    const boot = await call('POST', '/v1/hosts/local/emulator/reboot')
    t.equal(boot.status, 200)
    t.not(boot.body.bootId, before, 'a new boot')
    t.equal((await store.hosts.get('local')).bootId, before, 'the store keeps the old boot until the reconciler sees the reboot and reports HostBooted')
    t.ok((await store.audit.list()).some((a) => a.action === 'emulator.reboot' && a.outcome === 'ok'))
  })

  t.test('operations: healthz, readyz, metrics, openapi, docs', async (t) => {
    t.same((await call('GET', '/healthz')).body, { status: 'ok' })
    t.same((await call('GET', '/readyz')).body, { status: 'ready' })
    const m = await call('GET', '/metrics')
    t.equal(m.status, 200)
    t.match(m.text, /apmatrix_http_request_duration_seconds_bucket\{.*route="\/v1\/hosts\/:host\/mdevs"/)
    t.match(m.text, /process_cpu_user_seconds_total/)
    const o = await call('GET', '/openapi.json')
    t.equal(o.body.openapi, '3.0.3')
    t.ok(o.body.paths['/v1/hosts/{host}/mdevs/{uuid}'].patch)
    t.ok(o.body.paths['/v1/hosts/{host}/desired'].put.requestBody)
    t.equal((await call('GET', '/docs/')).status, 200)
  })

  t.test('store down: 503 UNAVAILABLE with Retry-After, healthz still up', async (t) => {
    await store.close()
    for (const [method, path, body] of [
      ['GET', '/readyz'],
      ['GET', `${MDEVS}/${U1}`],
      ['GET', MDEVS],
      ['POST', MDEVS, { spec: { adapters: [7], domains: [4] } }],
    ] as Array<[string, string, unknown?]>) {
      const r = await call(method, path, body === undefined ? {} : { body })
      isProblem(t, r, 503, 'UNAVAILABLE')
      t.equal(r.headers.get('retry-after'), '1')
    }
    t.equal((await call('GET', '/healthz')).status, 200)
  })
})
