/**
 * Interop routes over a real socket, on SQLite and PostgreSQL (issue 4 §4, docs/api.md (REST)): export in each
 * format with exact bodies, import of an mdevctl dump and of a node-device XML (stored objects, events,
 * audit, enqueue), idempotent re-import, adoption of a foreign device on the bus, and the refusals
 * (malformed documents, unknown attributes, every APQN violation at once, all or nothing, dry run).
 * Demo profile: adapters 0,1,2,5,6,7; domains 1,2,4,5,0x0a,0x47.
 */
import t from 'tap'
import { forEachDatabase } from '../../store/pg-helper.js'
import { U1, U2, U3 } from '../../service/service-fixture.js'
import { apiFixture } from './http-fixture.js'

const U4 = '44444444-4444-4444-8444-444444444444'
const U5 = '55555555-5555-4555-8555-555555555555'
const FOREIGN = '66666666-6666-4666-8666-666666666666'
const IMPORT = '/v1/hosts/local/import'
const JSON_TYPE = { 'content-type': 'application/json' }
const XML_TYPE = { 'content-type': 'application/xml' }

/** An mdevctl dump (`mdevctl list --defined --dumpjson`) of matrix devices, plus a vGPU that is not one. */
function dump(devices: Array<{ uuid: string; start?: 'auto' | 'manual'; attrs: Array<Record<string, string>> }>, withOther = false): unknown[] {
  const matrix = { matrix: devices.map((d) => ({ [d.uuid]: { mdev_type: 'vfio_ap-passthrough', start: d.start ?? 'auto', attrs: d.attrs } })) }
  const other = { '0000:00:02.0': [{ 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa': { mdev_type: 'i915-GVTg_V5_4', start: 'manual' } }] }
  return withOther ? [matrix, other] : [matrix]
}

function nodedevXml(uuid: string, attrs: Array<[string, string]>): string {
  return (
    `<device>\n  <name>mdev_${uuid.replace(/-/g, '_')}</name>\n  <parent>ap_matrix</parent>\n  <capability type='mdev'>\n` +
    `    <type id='vfio_ap-passthrough'/>\n    <uuid>${uuid}</uuid>\n` +
    attrs.map(([n, v]) => `    <attr name='${n}' value='${v}'/>\n`).join('') +
    '  </capability>\n</device>\n'
  )
}

forEachDatabase(t, async (t, db) => {
  const api = await apiFixture(t, db)
  const { call, store, host, enqueued } = api
  // Adapters 5, 6, 7 leave the host's default drivers: their APQNs are free for matrix devices.
  t.equal((await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-5,-6,-7' } })).status, 200)
  const created = await call('POST', '/v1/hosts/local/mdevs', { body: { uuid: U1, spec: { adapters: [5], domains: [4, 0x47], controlDomains: [11] } } })
  t.equal(created.status, 201)

  const eventsOf = async (uuid: string) => (await store.events.list({ host: 'local', limit: 1000 })).filter((e) => e.name === uuid)

  t.test('export: mdevctl definition, node-device XML, hostdev XML (exact bodies)', async (t) => {
    const m = await call('GET', `/v1/hosts/local/mdevs/${U1}/export?format=mdevctl`)
    t.equal(m.status, 200)
    t.equal(m.headers.get('content-type'), 'application/json; charset=utf-8')
    t.equal(
      m.text,
      '{\n  "mdev_type": "vfio_ap-passthrough",\n  "start": "auto",\n  "attrs": [\n' +
        '    {\n      "assign_adapter": "0x05"\n    },\n' +
        '    {\n      "assign_domain": "0x0004"\n    },\n' +
        '    {\n      "assign_domain": "0x0047"\n    },\n' +
        '    {\n      "assign_control_domain": "0x000b"\n    }\n  ]\n}\n',
    )
    const n = await call('GET', `/v1/hosts/local/mdevs/${U1.toUpperCase()}/export?format=libvirt-nodedev`)
    t.equal(n.status, 200)
    t.equal(n.headers.get('content-type'), 'application/xml; charset=utf-8')
    t.equal(
      n.text,
      nodedevXml(U1, [
        ['assign_adapter', '0x05'],
        ['assign_domain', '0x0004'],
        ['assign_domain', '0x0047'],
        ['assign_control_domain', '0x000b'],
      ]),
    )
    const h = await call('GET', `/v1/hosts/local/mdevs/${U1}/export?format=libvirt-hostdev`)
    t.equal(h.headers.get('content-type'), 'application/xml; charset=utf-8')
    t.equal(h.text, `<hostdev mode='subsystem' type='mdev' model='vfio-ap'>\n  <source>\n    <address uuid='${U1}'/>\n  </source>\n</hostdev>\n`)
  })

  t.test('OpenAPI documents the interop routes', async (t) => {
    const o = await call('GET', '/openapi.json')
    t.ok(o.body.paths['/v1/hosts/{host}/mdevs/{uuid}/export'].get)
    t.ok(o.body.paths['/v1/hosts/{host}/import'].post)
    t.ok(o.body.paths['/v1/events'].get)
  })

  t.test('export errors: format, unknown device or host, bad uuid', async (t) => {
    const bogus = await call('GET', `/v1/hosts/local/mdevs/${U1}/export?format=bogus`)
    t.match(bogus, { status: 400, body: { code: 'INVALID_ARGUMENT', violations: [{ field: 'format' }] } })
    t.match(bogus.headers.get('content-type'), /^application\/problem\+json/)
    t.match(await call('GET', `/v1/hosts/local/mdevs/${U1}/export`), { status: 400, body: { code: 'INVALID_ARGUMENT' } }, 'format is required')
    t.match(await call('GET', `/v1/hosts/local/mdevs/${U1}/export?format=mdevctl&x=1`), { status: 400, body: { code: 'INVALID_ARGUMENT' } })
    t.match(await call('GET', `/v1/hosts/local/mdevs/${U5}/export?format=mdevctl`), { status: 404, body: { code: 'NOT_FOUND' } })
    t.match(await call('GET', `/v1/hosts/nope/mdevs/${U1}/export?format=mdevctl`), { status: 404, body: { code: 'NOT_FOUND' } })
    t.match(await call('GET', '/v1/hosts/local/mdevs/not-a-uuid/export?format=mdevctl'), { status: 400, body: { code: 'INVALID_ARGUMENT' } })
  })

  t.test('import an mdevctl dump: stored, origin imported, events, audit, enqueue; re-import is a no-op', async (t) => {
    const doc = dump(
      [
        { uuid: U2, attrs: [{ assign_adapter: '6' }, { assign_domain: '4' }, { assign_domain: '0x0005' }] },
        { uuid: U3.toUpperCase(), start: 'manual', attrs: [{ assign_adapter: '0x07' }, { assign_domain: '1' }, { assign_control_domain: '2' }] },
      ],
      true,
    )
    const n = enqueued.length
    const r = await call('POST', `${IMPORT}?format=mdevctl&owner=fleet`, { body: doc })
    t.equal(r.status, 201, r.text)
    t.same(r.body.actions, [
      { uuid: U2, action: 'created' },
      { uuid: U3, action: 'created' },
    ])
    t.match(r.body.items, [
      {
        metadata: { uuid: U2, origin: 'imported', owner: 'fleet', generation: 1 },
        spec: { adapters: [6], domains: [4, 5], controlDomains: [], state: 'started', drain: null },
      },
      { metadata: { uuid: U3, origin: 'imported', owner: 'fleet' }, spec: { adapters: [7], domains: [1], controlDomains: [2], state: 'stopped', drain: null } },
    ])
    t.match(r.body.skipped, [
      { parent: '0000:00:02.0', uuid: 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', mdevType: 'i915-GVTg_V5_4', reason: /not the vfio_ap matrix/ },
    ])
    const stored = await store.mdevs.get('local', U3)
    t.same(stored.spec, { adapters: [7], domains: [1], controlDomains: [2], state: 'stopped' })
    t.equal(stored.origin, 'imported')
    t.match(await eventsOf(U2), [{ type: 'MdevDefined', kind: 'mdev', message: /defined by a mdevctl import/, requestId: r.headers.get('x-request-id') }])
    t.equal((await eventsOf(U3)).length, 1)
    t.match(await store.audit.list({ target: 'hosts/local/import' }), [
      {
        action: 'mdev.import',
        outcome: 'ok',
        detail: { format: 'mdevctl', created: true, createdDevices: 2, adoptedDevices: 0, unchangedDevices: 0, skippedDefinitions: 1 },
      },
    ])
    t.same(enqueued.slice(n), ['local'], 'the reconciler was nudged once')
    // What apmatrix exports, mdevctl's format, imports back losslessly.
    const back = await call('GET', `/v1/hosts/local/mdevs/${U3}/export?format=mdevctl`)
    t.same(JSON.parse(back.text), {
      mdev_type: 'vfio_ap-passthrough',
      start: 'manual',
      attrs: [{ assign_adapter: '0x07' }, { assign_domain: '0x0001' }, { assign_control_domain: '0x0002' }],
    })

    const again = await call('POST', `${IMPORT}?format=mdevctl`, { body: doc })
    t.equal(again.status, 200, 'nothing new: 200')
    t.same(
      again.body.actions.map((a: { action: string }) => a.action),
      ['unchanged', 'unchanged'],
    )
    t.equal(again.body.items[0].metadata.resourceVersion, r.body.items[0].metadata.resourceVersion, 'left as is')
    t.equal((await eventsOf(U2)).length, 1, 'no second MdevDefined')
  })

  t.test('import refusals: different spec, malformed, unknown attribute, every APQN violation, all or nothing', async (t) => {
    const before = await store.events.lastSeq()
    const countMdevs = async () => (await store.mdevs.listAll('local')).length
    const n = await countMdevs()
    const diff = await call('POST', `${IMPORT}?format=mdevctl`, {
      body: dump([
        { uuid: U2, attrs: [{ assign_adapter: '6' }, { assign_domain: '4' }] },
        { uuid: U3, attrs: [{ assign_adapter: '7' }, { assign_domain: '2' }] },
      ]),
    })
    t.match(diff, { status: 409, body: { code: 'ALREADY_EXISTS' } })
    t.same(
      diff.body.violations.map((v: { field: string }) => v.field),
      [U2, U3],
      'every device with another spec is listed',
    )

    const malformed = await call('POST', `${IMPORT}?format=mdevctl`, { raw: '[{"matrix": [', headers: JSON_TYPE })
    t.match(malformed, { status: 400, body: { code: 'INVALID_ARGUMENT' } })
    const shape = await call('POST', `${IMPORT}?format=mdevctl`, { body: { matrix: [] } })
    t.match(shape, { status: 400, body: { code: 'INVALID_ARGUMENT', detail: /JSON array/ } })
    const unknown = await call('POST', `${IMPORT}?format=mdevctl`, {
      body: dump([{ uuid: U4, attrs: [{ assign_adapter: '5' }, { assign_foo: '1' }, { bogus_attr: '2' }] }]),
    })
    t.match(unknown, { status: 400, body: { code: 'INVALID_ARGUMENT' } })
    t.equal(unknown.body.violations.length, 2, 'both unknown attributes are reported')
    t.match(unknown.text, /assign_foo/)
    t.match(unknown.text, /bogus_attr/)
    t.match(await call('POST', `${IMPORT}?format=mdevctl`, { body: dump([{ uuid: U4, attrs: [{ assign_adapter: '300' }] }]) }), {
      status: 400,
      body: { code: 'OUT_OF_RANGE' },
    })
    const badXml = await call('POST', `${IMPORT}?format=libvirt-nodedev`, { raw: '<device><name>x</name>', headers: XML_TYPE })
    t.match(badXml, { status: 400, body: { code: 'INVALID_ARGUMENT' } })
    t.match(await call('POST', `${IMPORT}?format=libvirt-nodedev`, { body: { not: 'xml' } }), {
      status: 400,
      body: { code: 'INVALID_ARGUMENT', detail: /XML text/ },
    })
    t.match(await call('POST', `${IMPORT}?format=libvirt-hostdev`, { body: [] }), {
      status: 400,
      body: { code: 'INVALID_ARGUMENT', violations: [{ field: 'format' }] },
    })
    t.match(await call('POST', `${IMPORT}?format=mdevctl&state=started`, { body: [] }), {
      status: 400,
      body: { code: 'INVALID_ARGUMENT', violations: [{ field: 'state' }] },
    })
    t.match(await call('POST', `${IMPORT}?format=mdevctl`, { raw: '[]', headers: { 'content-type': 'text/plain' } }), { status: 415 })
    t.match(await call('POST', `${IMPORT}?format=libvirt-nodedev`, { raw: `<device>${' '.repeat(1 << 20)}</device>`, headers: XML_TYPE }), {
      status: 413,
      body: { code: 'PAYLOAD_TOO_LARGE' },
    })
    t.match(await call('POST', '/v1/hosts/nope/import?format=mdevctl', { body: [] }), { status: 404, body: { code: 'NOT_FOUND' } })

    // U4 alone would be fine; U5 takes 05.0004 from U1 and 00.0001, 00.0004 from the host: one answer lists all.
    const conflict = await call('POST', `${IMPORT}?format=mdevctl`, {
      body: dump([
        { uuid: U4, attrs: [{ assign_adapter: '6' }, { assign_domain: '0x0a' }] },
        { uuid: U5, attrs: [{ assign_adapter: '5' }, { assign_adapter: '0' }, { assign_domain: '4' }, { assign_domain: '1' }] },
      ]),
    })
    t.match(conflict, { status: 409, body: { code: 'APQN_IN_USE', errno: 'EADDRINUSE' } })
    const seen = conflict.body.violations.map((v: { rule: string; apqn: string; owner?: string }) => `${v.rule} ${v.apqn} ${v.owner ?? ''}`.trim())
    t.ok(seen.includes(`APQN_IN_USE 05.0004 ${U1}`), seen.join('; '))
    t.ok(seen.includes('APQN_RESERVED 00.0001 host'), seen.join('; '))
    t.ok(seen.includes('APQN_RESERVED 00.0004 host'), 'every reserved APQN of the cross product is listed')

    const dry = await call('POST', `${IMPORT}?format=mdevctl&dryRun=true&view=full`, {
      body: dump([{ uuid: U4, attrs: [{ assign_adapter: '6' }, { assign_domain: '0x0a' }] }]),
    })
    t.equal(dry.status, 200)
    t.equal(dry.body.dryRun, true)
    t.ok(
      dry.body.plan.operations.some((o: { kind: string; uuid?: string }) => o.kind === 'createMdev' && o.uuid === U4),
      'the plan creates U4',
    )
    t.match(
      await call('POST', `${IMPORT}?format=mdevctl&dryRun=true`, { body: dump([{ uuid: U5, attrs: [{ assign_adapter: '5' }, { assign_domain: '4' }] }]) }),
      {
        status: 409,
        body: { code: 'APQN_IN_USE' },
      },
    )

    t.equal(await countMdevs(), n, 'nothing was stored by any refused or dry-run import')
    t.equal(await store.events.lastSeq(), before, 'no event either')
    const refusals = (await store.audit.list({ target: 'hosts/local/import' })).map((a) => a.outcome)
    t.ok(refusals.includes('APQN_IN_USE') && refusals.includes('ALREADY_EXISTS'), 'refusals are audited')
  })

  t.test('import a node-device XML (application/xml and text/xml), state, Idempotency-Key', async (t) => {
    const xml = nodedevXml(U4, [
      ['assign_adapter', '0x06'],
      ['assign_domain', '0x000a'],
    ])
    const key = { ...XML_TYPE, 'idempotency-key': 'import-u4' }
    const r = await call('POST', `${IMPORT}?format=libvirt-nodedev`, { raw: xml, headers: key })
    t.equal(r.status, 201, r.text)
    t.match(r.body.items, [
      { metadata: { uuid: U4, origin: 'imported', owner: null }, spec: { adapters: [6], domains: [10], controlDomains: [], state: 'stopped', drain: null } },
    ])
    t.same(r.body.skipped, [])
    t.match(await eventsOf(U4), [{ type: 'MdevDefined', message: /libvirt-nodedev import/ }])
    const replay = await call('POST', `${IMPORT}?format=libvirt-nodedev`, { raw: xml, headers: key })
    t.equal(replay.status, 201)
    t.equal(replay.headers.get('idempotent-replayed'), 'true')
    t.same(replay.body, r.body)
    t.match(
      await call('POST', `${IMPORT}?format=libvirt-nodedev&state=started`, { raw: xml, headers: key }),
      { status: 409, body: { code: 'CONFLICT' } },
      'same key, another request',
    )
    t.equal((await eventsOf(U4)).length, 1)

    const started = await call('POST', `${IMPORT}?format=libvirt-nodedev&state=started`, {
      raw: nodedevXml(U5, [
        ['assign_adapter', '7'],
        ['assign_domain', '0x47'],
      ]),
      headers: { 'content-type': 'text/xml; charset=utf-8' },
    })
    t.equal(started.status, 201, started.text)
    t.same(started.body.items[0].spec, { adapters: [7], domains: [71], controlDomains: [], state: 'started', drain: null })
    // Round trip: the exported node-device XML imports to the same device (idempotent: unchanged).
    const exported = await call('GET', `/v1/hosts/local/mdevs/${U5}/export?format=libvirt-nodedev`)
    const round = await call('POST', `${IMPORT}?format=libvirt-nodedev&state=started`, { raw: exported.text, headers: XML_TYPE })
    t.match(round, { status: 200, body: { actions: [{ uuid: U5, action: 'unchanged' }] } })
  })

  t.test('import adopts a foreign device found on the bus (docs/api.md (Reconcile))', async (t) => {
    // A root user defines a device directly on the bus (07.0002 is free: adapter 7 left the host).
    await host.write('/sys/bus/ap/apmask', '-7\n')
    await host.write('/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create', FOREIGN)
    await host.write(`/sys/devices/vfio_ap/matrix/${FOREIGN}/assign_adapter`, '7')
    await host.write(`/sys/devices/vfio_ap/matrix/${FOREIGN}/assign_domain`, '2')
    const seen = await call('GET', '/v1/hosts/local/bus-mdevs')
    t.equal(seen.status, 200)
    t.match(
      (seen.body.items as Array<{ uuid: string }>).find((m) => m.uuid === FOREIGN),
      { managed: false, adapters: [7], domains: [2], matrix: ['07.0002'], guest: null },
      'the inventory shows the foreign device, not managed',
    )
    const taken = await call('POST', '/v1/hosts/local/mdevs', { body: { spec: { adapters: [7], domains: [2] } } })
    t.match(taken, { status: 409, body: { code: 'APQN_IN_USE', violations: [{ apqn: '07.0002', owner: FOREIGN }] } }, 'the foreign device holds its APQN')
    const r = await call('POST', `${IMPORT}?format=mdevctl&owner=adopter`, {
      body: dump([{ uuid: FOREIGN, attrs: [{ assign_adapter: '7' }, { assign_domain: '2' }] }]),
    })
    t.equal(r.status, 201, r.text)
    t.same(r.body.actions, [{ uuid: FOREIGN, action: 'adopted' }])
    t.match(r.body.items, [{ metadata: { uuid: FOREIGN, origin: 'imported', owner: 'adopter' }, spec: { adapters: [7], domains: [2] } }])
    t.match(await eventsOf(FOREIGN), [{ type: 'MdevDefined', message: /adopted from the bus/ }])
    const audit = await store.audit.list({ target: 'hosts/local/import' })
    t.ok(
      audit.some((a) => a.outcome === 'ok' && (a.detail as { adoptedDevices?: number }).adoptedDevices === 1),
      'audited as an adoption',
    )
    t.equal((await call('GET', `/v1/hosts/local/mdevs/${FOREIGN}`)).status, 200, 'now ours')
    t.match(
      (await call('GET', '/v1/hosts/local/bus-mdevs')).body.items.find((m: { uuid: string }) => m.uuid === FOREIGN),
      { managed: true },
      'and managed in the inventory',
    )
  })
})
