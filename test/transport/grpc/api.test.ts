/**
 * Every apmatrix.v1 method over a real socket with a grpc-js client built from the same protos:
 * the success path and each error path, with the docs/api.md (REST) status mapping and the `code`,
 * `errno`, `violations` and `violations-bin` trailers. SQLite and PostgreSQL.
 */
import * as grpc from '@grpc/grpc-js'
import t, { type Test } from 'tap'
import { forEachDatabase } from '../../store/pg-helper.js'
import { U1, U2, U3 } from '../../service/service-fixture.js'
import { grpcFixture, ok, unary, type Outcome } from './grpc-fixture.js'

const MATRIX = '/sys/devices/vfio_ap/matrix'

/** Asserts a gRPC error: status, the `code` trailer, and never a leaked stack. */
function isError(t: Test, o: Outcome<unknown>, status: grpc.status, code: string | RegExp): void {
  t.ok(o.err, `expected ${grpc.status[status]}`)
  if (!o.err) return
  t.equal(grpc.status[o.err.code], grpc.status[status], `${grpc.status[status]}: ${o.err.details}`)
  t.match(o.err.metadata.get('code')[0], code, `code trailer ${code}`)
  t.notMatch(o.err.details, /\bat .*\.(ts|js):\d+/, 'no stack trace in details')
  t.ok(o.err.metadata.get('x-request-id')[0], 'request id in trailers')
}

function violationsOf(o: Outcome<unknown>): Array<Record<string, unknown>> {
  const v = o.err?.metadata.get('violations')[0]
  return typeof v === 'string' ? JSON.parse(v) : []
}

forEachDatabase(t, async (t, db) => {
  const fx = await grpcFixture(t, db)
  const { hosts, inventory, mdevs, desired, emulator } = fx.clients
  const H = hosts
  const call = {
    listHosts: H.ListHosts.bind(H),
    getHost: H.GetHost.bind(H),
    getMasks: H.GetMasks.bind(H),
    setMasks: H.SetMasks.bind(H),
    adapters: inventory.ListAdapters.bind(inventory),
    queues: inventory.ListQueues.bind(inventory),
    domains: inventory.ListDomains.bind(inventory),
    create: mdevs.CreateMdev.bind(mdevs),
    get: mdevs.GetMdev.bind(mdevs),
    list: mdevs.ListMdevs.bind(mdevs),
    update: mdevs.UpdateMdev.bind(mdevs),
    del: mdevs.DeleteMdev.bind(mdevs),
    exp: mdevs.ExportMdev.bind(mdevs),
    imp: mdevs.ImportMdevs.bind(mdevs),
    plan: desired.Plan.bind(desired),
    apply: desired.Apply.bind(desired),
    read: emulator.ReadSysfs.bind(emulator),
    write: emulator.WriteSysfs.bind(emulator),
    hardware: emulator.Hardware.bind(emulator),
    guests: emulator.ListGuests.bind(emulator),
    open: emulator.OpenGuest.bind(emulator),
    close: emulator.CloseGuest.bind(emulator),
    submit: emulator.SubmitRequests.bind(emulator),
    reboot: emulator.Reboot.bind(emulator),
  }

  await t.test('HostService', async (t) => {
    const list = await ok(t, call.listHosts, {})
    t.same(
      list.hosts.map((h) => h.name),
      ['local'],
    )
    t.match(list.hosts[0], { driver: 'emulator', profile: 'demo', max_adapter_id: 255, max_domain_id: 255, boot_id: String })
    t.ok(list.hosts[0]!.features.includes('ap_config'))

    const h = await ok(t, call.getHost, { host: 'local' })
    t.equal(h.name, 'local')
    isError(t, await unary(call.getHost, { host: 'nope' }), grpc.status.NOT_FOUND, 'NOT_FOUND')
    isError(t, await unary(call.getHost, { host: '' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.getHost, { host: '../etc' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')

    const m = await ok(t, call.getMasks, { host: 'local' })
    t.equal(m.spec!.apmask, `0x${'f'.repeat(64)}`)
    t.equal(m.status!.apmask_ids.length, 256)
    t.equal(m.metadata!.host, 'local')

    const dry = await ok(t, call.setMasks, { host: 'local', apmask: '-5', dry_run: true })
    t.equal(dry.dry_run, true)
    t.ok(dry.plan, 'a dry run returns the plan')
    t.equal((await ok(t, call.getMasks, { host: 'local' })).spec!.apmask_ids.length, 256, 'dry run stored nothing')

    isError(t, await unary(call.setMasks, { host: 'local', apmask: '0X12' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.setMasks, { host: 'local', apmask: '-5', resource_version: 'stale' }), grpc.status.ABORTED, 'CONFLICT')

    const before = (await ok(t, call.getMasks, { host: 'local' })).metadata!.resource_version
    const set = await ok(t, call.setMasks, { host: 'local', apmask: '-5,-6', aqmask: '-4', resource_version: before })
    t.equal(set.dry_run, false)
    t.notOk(set.masks!.spec!.apmask_ids.includes(5))
    t.notOk(set.masks!.spec!.aqmask_ids.includes(4))
    t.ok(set.masks!.spec!.apmask_ids.includes(7), 'empty aqmask/other bits unchanged')
    t.not(set.masks!.metadata!.resource_version, before)
  })

  await t.test('InventoryService', async (t) => {
    const a = await ok(t, call.adapters, { host: 'local' })
    t.same(
      a.items.map((x) => x.apid),
      [0, 1, 2, 5, 6, 7],
    )
    t.match(
      a.items.find((x) => x.apid === 5),
      { type: 'CEX8C', mode: 'cca', config: true, depth: { value: 8 } },
    )
    isError(t, await unary(call.adapters, { host: 'nope' }), grpc.status.NOT_FOUND, 'NOT_FOUND')

    const q5 = await ok(t, call.queues, { host: 'local', adapter: { value: 5 } })
    t.ok(q5.items.length > 0 && q5.items.every((q) => q.apid === 5), 'adapter filter')
    const q0 = await ok(t, call.queues, { host: 'local', adapter: { value: 0 } })
    t.ok(q0.items.length > 0 && q0.items.every((q) => q.apid === 0), 'adapter 0 is a filter, not "absent"')
    const all = await ok(t, call.queues, { host: 'local' })
    t.equal(all.items.length, 36, '6 adapters x 6 domains')
    const p1 = await ok(t, call.queues, { host: 'local', limit: 10 })
    t.equal(p1.items.length, 10)
    t.ok(p1.next_page_token)
    const p2 = await ok(t, call.queues, { host: 'local', limit: 10, page_token: p1.next_page_token })
    t.ok(p2.items[0]!.apqn > p1.items[9]!.apqn, 'pages continue in APQN order')
    isError(t, await unary(call.queues, { host: 'local', page_token: 'garbage' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.queues, { host: 'local', limit: 501 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.queues, { host: 'local', owner: 'not-a-uuid' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.queues, { host: 'local', driver: 'zcrypt' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')

    const d = await ok(t, call.domains, { host: 'local' })
    t.same(d.usage_domains, [1, 2, 4, 5, 10, 71])
    t.ok(
      d.host_domains.every((x) => d.usage_domains.includes(x)),
      'host domains are usage domains',
    )
  })

  await t.test('MdevService: create, get, list', async (t) => {
    const dry = await ok(t, call.create, { host: 'local', uuid: U1, spec: { adapters: [5], domains: [4] }, dry_run: true, view: 'PLAN_VIEW_FULL' })
    t.equal(dry.dry_run, true)
    t.ok(dry.plan!.operations.some((op) => op.kind === 'createMdev' && op.uuid === U1))
    const summary = await ok(t, call.create, { host: 'local', uuid: U1, spec: { adapters: [5], domains: [4] }, dry_run: true })
    t.equal(summary.plan!.view, 'summary', 'the summary by default')
    t.same(summary.plan!.operations, [], 'no lists in the summary')
    t.ok(summary.plan!.summary!.operations.some((o) => o.kind === 'createMdev' && o.count === 1 && o.devices.includes(U1)))
    isError(t, await unary(call.get, { host: 'local', uuid: U1 }), grpc.status.NOT_FOUND, 'NOT_FOUND')

    const c = await ok(t, call.create, {
      host: 'local',
      uuid: U1,
      spec: { adapters: [5], domains: [4], control_domains: [4] },
      labels: { team: 'a' },
      owner: 'ci',
    })
    t.equal(c.created, true)
    t.match(c.mdev, {
      metadata: { uuid: U1, host: 'local', generation: '1', owner: 'ci', labels: { team: 'a' } },
      spec: { adapters: [5], domains: [4], control_domains: [4], state: 'started' },
    })
    t.ok(c.mdev!.metadata!.resource_version)

    const again = await ok(t, call.create, { host: 'local', uuid: U1, spec: { adapters: [5], domains: [4], control_domains: [4] } })
    t.equal(again.created, false, 'same spec again: idempotent')
    isError(t, await unary(call.create, { host: 'local', uuid: U1, spec: { adapters: [6], domains: [4] } }), grpc.status.ALREADY_EXISTS, 'ALREADY_EXISTS')

    isError(t, await unary(call.create, { host: 'local', uuid: 'not-a-uuid', spec: {} }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.create, { host: 'local', uuid: U2 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.create, { host: '', spec: {} }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.create, { host: 'local', spec: { state: 'sideways' } }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    const range = await unary(call.create, { host: 'local', uuid: U2, spec: { adapters: [300], domains: [4] } })
    isError(t, range, grpc.status.OUT_OF_RANGE, 'OUT_OF_RANGE')
    t.equal(range.err?.metadata.get('errno')[0], 'ENODEV', 'E-3: ENODEV')

    // Masks now: apmask without 5 and 6, aqmask without 4. 06.0001 is free, 07.0001 is still the
    // host's (APQN_RESERVED, rule 3); 05.0004 is U1's (APQN_IN_USE, rule 2).
    const reserved = await unary(call.create, { host: 'local', uuid: U2, spec: { adapters: [6, 7], domains: [1] } })
    isError(t, reserved, grpc.status.FAILED_PRECONDITION, 'APQN_RESERVED')
    t.match(violationsOf(reserved), [{ rule: 'APQN_RESERVED', apqn: '07.0001', owner: 'host', fix: String }])
    t.equal(violationsOf(reserved).length, 1)
    const bin = reserved.err?.metadata.get('violations-bin')[0]
    t.ok(Buffer.isBuffer(bin) && bin.includes(Buffer.from('07.0001')), 'violations-bin carries the encoded violations')
    const inUse = await unary(call.create, { host: 'local', uuid: U2, spec: { adapters: [5, 7], domains: [1, 4] } })
    isError(t, inUse, grpc.status.FAILED_PRECONDITION, /^APQN_(IN_USE|RESERVED)$/)
    const rules = violationsOf(inUse)
      .map((v) => `${v.rule} ${v.apqn}`)
      .sort()
    t.same(rules, ['APQN_IN_USE 05.0004', 'APQN_RESERVED 07.0001'], 'every violation, not only the first')

    const key = await ok(t, call.create, { host: 'local', uuid: U2, spec: { adapters: [6], domains: [4] }, idempotency_key: 'k-1' })
    t.equal(key.created, true)
    const replay = await ok(t, call.create, { host: 'local', uuid: U2, spec: { adapters: [6], domains: [4] }, idempotency_key: 'k-1' })
    t.equal(replay.replayed, true, 'idempotency key replays')
    isError(t, await unary(call.create, { host: 'local', spec: {}, idempotency_key: 'bad key' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')

    const g = await ok(t, call.get, { host: 'local', uuid: U1.toUpperCase() })
    t.equal(g.metadata!.uuid, U1)
    t.same(g.spec!.adapters, [5])
    isError(t, await unary(call.get, { host: 'local', uuid: '' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.get, { host: 'local', uuid: U3 }), grpc.status.NOT_FOUND, 'NOT_FOUND')
    isError(t, await unary(call.get, { host: 'nope', uuid: U1 }), grpc.status.NOT_FOUND, 'NOT_FOUND')

    const l = await ok(t, call.list, { host: 'local' })
    t.same(
      l.items.map((m) => m.metadata!.uuid),
      [U1, U2],
    )
    t.same(
      (await ok(t, call.list, { host: 'local', labels: { team: 'a' } })).items.map((m) => m.metadata!.uuid),
      [U1],
    )
    t.same(
      (await ok(t, call.list, { host: 'local', owner: 'ci' })).items.map((m) => m.metadata!.uuid),
      [U1],
    )
    const page = await ok(t, call.list, { host: 'local', limit: 1 })
    t.equal(page.items.length, 1)
    const page2 = await ok(t, call.list, { host: 'local', limit: 1, page_token: page.next_page_token })
    t.same(
      page2.items.map((m) => m.metadata!.uuid),
      [U2],
    )
    isError(t, await unary(call.list, { host: 'local', limit: 501 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.list, { host: 'local', state: 'running' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
  })

  await t.test('MdevService: update with field mask and resource_version, delete', async (t) => {
    const cur = await ok(t, call.get, { host: 'local', uuid: U1 })
    const rv = cur.metadata!.resource_version
    isError(
      t,
      await unary(call.update, { host: 'local', uuid: U1, spec: { domains: [4, 5] }, update_mask: { paths: ['spec.domains'] }, resource_version: 'stale' }),
      grpc.status.ABORTED,
      'CONFLICT',
    )
    isError(
      t,
      await unary(call.update, { host: 'local', uuid: U1, update_mask: { paths: ['metadata.uuid'] } }),
      grpc.status.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    )
    isError(t, await unary(call.update, { host: 'local', uuid: U3, spec: {}, update_mask: { paths: ['owner'] } }), grpc.status.NOT_FOUND, 'NOT_FOUND')

    // Only domains change: adapters and control domains stay.
    const dry = await ok(t, call.update, { host: 'local', uuid: U1, spec: { domains: [4, 5] }, update_mask: { paths: ['spec.domains'] }, dry_run: true })
    t.equal(dry.dry_run, true)
    t.equal((await ok(t, call.get, { host: 'local', uuid: U1 })).metadata!.resource_version, rv, 'dry run stored nothing')
    // 06.0004 is U2's: APQN_IN_USE naming the owner.
    const refused = await unary(call.update, {
      host: 'local',
      uuid: U1,
      spec: { adapters: [5, 6] },
      update_mask: { paths: ['spec.adapters'] },
      resource_version: rv,
    })
    isError(t, refused, grpc.status.FAILED_PRECONDITION, 'APQN_IN_USE')
    t.match(violationsOf(refused), [{ apqn: '06.0004', owner: U2 }])
    const up = await ok(t, call.update, { host: 'local', uuid: U1, spec: { domains: [4, 5] }, update_mask: { paths: ['spec.domains'] }, resource_version: rv })
    t.same(up.mdev!.spec, { adapters: [5], domains: [4, 5], control_domains: [4], state: 'started', drain: null })
    t.equal(up.mdev!.metadata!.generation, '2')
    t.same(up.mdev!.metadata!.labels, { team: 'a' }, 'labels untouched by a spec path')

    const lab = await ok(t, call.update, { host: 'local', uuid: U1, labels: { env: 'prod' }, update_mask: { paths: ['labels', 'owner'] } })
    t.same(lab.mdev!.metadata!.labels, { env: 'prod' }, 'labels path replaces the whole map')
    t.equal(lab.mdev!.metadata!.owner, '', 'owner path with empty owner clears it')
    // Replace-all is the service's (updateMdevFields): a label set in between by REST is dropped by the
    // replace, in one audited write, and a stale resource_version refuses it without a change.
    await fx.service.patchMdev('local', U1, { metadata: { labels: { late: 'yes' } } })
    const between = await ok(t, call.get, { host: 'local', uuid: U1 })
    t.same(between.metadata!.labels, { env: 'prod', late: 'yes' })
    isError(
      t,
      await unary(call.update, { host: 'local', uuid: U1, labels: { only: 'this' }, update_mask: { paths: ['labels'] }, resource_version: 'stale' }),
      grpc.status.ABORTED,
      'CONFLICT',
    )
    const dryLabels = await ok(t, call.update, { host: 'local', uuid: U1, labels: { only: 'this' }, update_mask: { paths: ['labels'] }, dry_run: true })
    t.equal(dryLabels.dry_run, true)
    t.same((await ok(t, call.get, { host: 'local', uuid: U1 })).metadata!.labels, { env: 'prod', late: 'yes' }, 'refused and dry runs change nothing')
    const audits = (await fx.store.audit.list({ target: `hosts/local/mdevs/${U1}`, limit: 500 })).filter((a) => a.action === 'mdev.patch').length
    const all = await ok(t, call.update, {
      host: 'local',
      uuid: U1,
      labels: { env: 'prod' },
      update_mask: { paths: ['labels'] },
      resource_version: between.metadata!.resource_version,
    })
    t.same(all.mdev!.metadata!.labels, { env: 'prod' }, 'the label set in between is gone: the whole map replaced')
    t.equal(
      (await fx.store.audit.list({ target: `hosts/local/mdevs/${U1}`, limit: 500 })).filter((a) => a.action === 'mdev.patch').length,
      audits + 1,
      'one write',
    )
    const one = await ok(t, call.update, { host: 'local', uuid: U1, labels: { tier: '1' }, update_mask: { paths: ['labels.tier', 'labels.env'] } })
    t.same(one.mdev!.metadata!.labels, { tier: '1' }, 'labels.<key> sets one key, or removes it when absent')

    const stop = await ok(t, call.update, { host: 'local', uuid: U1, spec: { state: 'stopped' }, update_mask: { paths: ['spec.state'] } })
    t.equal(stop.mdev!.spec!.state, 'stopped')
    const repl = await ok(t, call.update, { host: 'local', uuid: U1, spec: { adapters: [5], domains: [4] }, labels: { x: 'y' } })
    t.same(repl.mdev!.spec, { adapters: [5], domains: [4], control_domains: [], state: 'started', drain: null }, 'empty mask replaces spec (PUT)')
    t.same(repl.mdev!.metadata!.labels, { x: 'y' })

    const d0 = await ok(t, call.get, { host: 'local', uuid: U2 })
    isError(t, await unary(call.del, { host: 'local', uuid: U2, resource_version: 'stale' }), grpc.status.ABORTED, 'CONFLICT')
    isError(t, await unary(call.del, { host: 'local', uuid: U3 }), grpc.status.NOT_FOUND, 'NOT_FOUND')
    const ddry = await ok(t, call.del, { host: 'local', uuid: U2, dry_run: true })
    t.equal(ddry.dry_run, true)
    const del = await ok(t, call.del, { host: 'local', uuid: U2, resource_version: d0.metadata!.resource_version, force: true })
    t.ok(del.mdev!.metadata!.deletion_requested_at, 'deletion requested')
    t.equal(del.mdev!.metadata!.force, true)
    isError(t, await unary(call.update, { host: 'local', uuid: U2, spec: { adapters: [6], domains: [4] } }), grpc.status.ABORTED, 'CONFLICT')
  })

  await t.test('MdevService: export and import', async (t) => {
    const e = await ok(t, call.exp, { host: 'local', uuid: U1, format: 'mdevctl' })
    t.match(e, { format: 'mdevctl', content_type: 'application/json', path: `/etc/mdevctl.d/matrix/${U1}` })
    const def = JSON.parse(e.content)
    t.match(def, { mdev_type: 'vfio_ap-passthrough', attrs: [{ assign_adapter: String }] })
    const xml = await ok(t, call.exp, { host: 'local', uuid: U1, format: 'libvirt-hostdev' })
    t.match(xml, { content_type: 'application/xml', content: new RegExp(U1) })
    isError(t, await unary(call.exp, { host: 'local', uuid: U1, format: 'bogus' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.exp, { host: 'local', uuid: U1, format: '' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.exp, { host: 'local', uuid: U3, format: 'mdevctl' }), grpc.status.NOT_FOUND, 'NOT_FOUND')

    const U4 = '44444444-aaaa-4aaa-8aaa-444444444444'
    const doc = JSON.stringify([
      { matrix: [{ [U1]: def }, { [U4]: { mdev_type: 'vfio_ap-passthrough', start: 'auto', attrs: [{ assign_adapter: '6' }, { assign_domain: '0xa' }] } }] },
    ])
    const dry = await ok(t, call.imp, { host: 'local', format: 'mdevctl', document: doc, dry_run: true })
    t.equal(dry.dry_run, true)
    isError(t, await unary(call.get, { host: 'local', uuid: U4 }), grpc.status.NOT_FOUND, 'NOT_FOUND')
    const imp = await ok(t, call.imp, { host: 'local', format: 'mdevctl', document: doc, owner: 'importer' })
    t.same(
      imp.actions.map((a) => [a.uuid, a.action]).sort(),
      [
        [U1, 'unchanged'],
        [U4, 'created'],
      ].sort(),
      'its own export imports unchanged',
    )
    t.equal(imp.created, true)
    t.match((await ok(t, call.get, { host: 'local', uuid: U4 })).metadata, { origin: 'imported', owner: 'importer' })
    t.same((await ok(t, call.get, { host: 'local', uuid: U4 })).spec!.domains, [10])
    const clash = JSON.stringify([
      { matrix: [{ [U4]: { mdev_type: 'vfio_ap-passthrough', start: 'auto', attrs: [{ assign_adapter: '6' }, { assign_domain: '0x47' }] } }] },
    ])
    isError(t, await unary(call.imp, { host: 'local', format: 'mdevctl', document: clash }), grpc.status.ALREADY_EXISTS, 'ALREADY_EXISTS')
    isError(t, await unary(call.imp, { host: 'local', format: 'mdevctl', document: '{"not": "a dump"}' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.imp, { host: 'local', format: 'yaml', document: '[]' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.imp, { host: 'local', format: 'mdevctl', document: '' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
  })

  await t.test('DesiredStateService', async (t) => {
    const p = await ok(t, call.plan, {
      host: 'local',
      desired: { masks: { apmask: '-7' }, mdevs: [{ uuid: U3, spec: { adapters: [7], domains: [1] } }], owner: 'plan-owner' },
      view: 'PLAN_VIEW_FULL',
    })
    t.ok(p.plan!.operations.some((op) => op.kind === 'createMdev' && op.uuid === U3))
    t.same(p.plan!.violations, [])
    t.ok(p.plan!.claimed_apqns.some((c) => c.apqn === '07.0001'))
    const bad = await ok(t, call.plan, { host: 'local', mdev: { uuid: U3, spec: { adapters: [7], domains: [1] } }, view: 'PLAN_VIEW_FULL' })
    t.match(bad.plan!.violations, [{ rule: 'APQN_RESERVED', apqn: '07.0001' }], 'violations are in the plan, not an error')
    isError(t, await unary(call.plan, { host: 'nope', mdev: { spec: {} } }), grpc.status.NOT_FOUND, 'NOT_FOUND')
    isError(t, await unary(call.plan, { host: 'local' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')

    const doc = { masks: { apmask: '-7' }, mdevs: [{ uuid: U3, spec: { adapters: [7], domains: [1] } }], owner: 'fleet' }
    const dry = await ok(t, call.apply, { host: 'local', desired: doc, dry_run: true })
    t.equal(dry.dry_run, true)
    isError(t, await unary(call.get, { host: 'local', uuid: U3 }), grpc.status.NOT_FOUND, 'NOT_FOUND')
    const refused = await unary(call.apply, { host: 'local', desired: { mdevs: doc.mdevs, owner: 'fleet' } })
    isError(t, refused, grpc.status.FAILED_PRECONDITION, 'APQN_RESERVED')
    isError(t, await unary(call.apply, { host: 'local', desired: doc, resource_version: 'stale' }), grpc.status.ABORTED, 'CONFLICT')
    const a = await ok(t, call.apply, { host: 'local', desired: doc })
    t.same(
      a.mdevs.map((m) => [m.uuid, m.action]),
      [[U3, 'created']],
    )
    t.ok(a.masks!.resource_version)
    t.equal((await ok(t, call.get, { host: 'local', uuid: U3 })).metadata!.owner, 'fleet')
  })

  await t.test('EmulatorService', async (t) => {
    const r = await ok(t, call.read, { host: 'local', path: '/sys/bus/ap/ap_max_domain_id' })
    t.equal(r.text, '255\n', 'the kernel text, newline included')
    const missing = await unary(call.read, { host: 'local', path: '/sys/bus/ap/nope' })
    isError(t, missing, grpc.status.NOT_FOUND, 'NOT_FOUND')
    t.equal(missing.err?.metadata.get('errno')[0], 'ENOENT')
    isError(t, await unary(call.read, { host: 'local', path: '' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')

    // Create a foreign device the way root would, and open it from a guest (V-25).
    await ok(t, call.write, { host: 'local', path: `${MATRIX}/mdev_supported_types/vfio_ap-passthrough/create`, value: '44444444-4444-4444-8444-444444444444' })
    t.ok(await ok(t, call.read, { host: 'local', path: `${MATRIX}/44444444-4444-4444-8444-444444444444/matrix` }), 'device exists')
    const bad = await unary(call.write, { host: 'local', path: `${MATRIX}/44444444-4444-4444-8444-444444444444/assign_adapter`, value: 'zz' })
    t.ok(bad.err && bad.err.metadata.get('errno')[0] === 'EINVAL', `bad write: errno EINVAL (${bad.err?.details})`)
    t.not(bad.err?.code, grpc.status.INTERNAL)

    await ok(t, call.open, { host: 'local', uuid: '44444444-4444-4444-8444-444444444444', guest: 'vm1' })
    t.same((await ok(t, call.guests, { host: 'local' })).items, [{ uuid: '44444444-4444-4444-8444-444444444444', guest: 'vm1' }])
    await ok(t, call.close, { host: 'local', guest: 'vm1' })
    t.same((await ok(t, call.guests, { host: 'local' })).items, [])
    const none = await unary(call.close, { host: 'local', guest: 'vm1' })
    isError(t, none, grpc.status.NOT_FOUND, 'NOT_FOUND')

    const sub = await ok(t, call.submit, { host: 'local', apqn: '00.0001', count: 3 })
    t.equal(sub.accepted, 3)

    await ok(t, call.hardware, { host: 'local', action: 'config-off', apid: { value: 0 } })
    const a0 = (await ok(t, call.adapters, { host: 'local' })).items.find((x) => x.apid === 0)
    t.equal(a0?.config, false, 'apid 0 is sent as a value, not as "absent"')
    isError(t, await unary(call.hardware, { host: 'local', action: '' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(t, await unary(call.hardware, { host: 'local', action: 'melt' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    isError(
      t,
      await unary(call.hardware, { host: 'local', action: 'set-mode', apid: { value: 1 }, mode: 'turbo' }),
      grpc.status.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    )
    const noApid = await unary(call.hardware, { host: 'local', action: 'config-on' })
    t.ok(noApid.err && noApid.err.code !== grpc.status.INTERNAL, `a missing apid is the caller's error: ${noApid.err?.details}`)
    const farApid = await unary(call.hardware, { host: 'local', action: 'config-on', apid: { value: 4000 } })
    t.ok(farApid.err && farApid.err.code !== grpc.status.INTERNAL, `apid 4000: ${farApid.err?.details}`)
    const submitBad = await unary(call.submit, { host: 'local', apqn: 'zz.zzzz', count: 1 })
    t.ok(submitBad.err && submitBad.err.code !== grpc.status.INTERNAL, `bad apqn: ${submitBad.err?.details}`)

    // B-43: notify false leaves the change for the next scan (a proto3 optional: false is not "absent").
    await ok(t, call.hardware, { host: 'local', action: 'remove-adapter', apid: { value: 7 }, notify: { value: false } })
    const apids = async () => (await ok(t, call.adapters, { host: 'local' })).items.map((x) => x.apid)
    t.ok((await apids()).includes(7), 'adapter 7 is still on the bus until a scan')
    await ok(t, call.write, { host: 'local', path: '/sys/bus/ap/scans', value: '1\n' })
    t.notOk((await apids()).includes(7), 'the scan removes it')

    const boot = (await ok(t, call.getHost, { host: 'local' })).boot_id
    const rb = await ok(t, call.reboot, { host: 'local' })
    t.not(rb.boot_id, boot, 'a reboot changes boot_id')
    isError(t, await unary(call.reboot, { host: 'nope' }), grpc.status.NOT_FOUND, 'NOT_FOUND')
  })
})
