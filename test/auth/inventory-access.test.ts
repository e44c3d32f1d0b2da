/**
 * What the inventory and the host list show each caller (docs/security.md (Tenants), (Roles)), over REST and
 * gRPC, on both databases. The fixture's three stored devices are put on the bus by a real reconcile pass,
 * with a second unowned device (the first one's 06.0006 is no queue of the demo host), and a foreign device
 * (made as root would, not managed) is added, so every kind of queue owner is on the bus: tenant-a's
 * (05.0004), tenant-b's (05.0005), an unowned device's (06.0005) and the foreign one's (06.0004).
 * - a tenant sees its own device's uuid as a queue owner and "in use" for every other holder; an `owner`
 *   filter naming a device it may not see answers exactly as one naming no device; bus-mdevs lists its own
 *   device only. Callers not limited to their own devices (viewer; emulator-admin, which reads the inventory
 *   but not matrix devices) see every uuid.
 * - a binding limited to hosts lists only those hosts (ListHosts / GET /v1/hosts), and whoami says so on both
 *   transports (REST whoami and gRPC AuthService.WhoAmI answer the same).
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { Reconciler } from '../../src/reconciler/reconciler.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { callUnary, DEVICES, securedFixture } from './auth-fixture.js'

const FOREIGN = 'f0f0f0f0-0000-4000-8000-0000000000f0'
/** A uuid of no device at all. */
const NOBODY = '99999999-0000-4000-8000-000000000099'
const U = { a: DEVICES['tenant-a'].uuid, b: DEVICES['tenant-b'].uuid, none: DEVICES.none.uuid, none2: '44444444-4444-4444-8444-444444444444' }
const HELD = { '05.0004': U.a, '05.0005': U.b, '06.0005': U.none2, '06.0004': FOREIGN } as const

/** The owner each caller is shown for each held APQN ("in use" = held by a device it may not see). */
const SHOWN: Record<string, Record<keyof typeof HELD, string>> = {
  'tenant-a': { '05.0004': U.a, '05.0005': 'in use', '06.0005': 'in use', '06.0004': 'in use' },
  'tenant-b': { '05.0004': 'in use', '05.0005': U.b, '06.0005': 'in use', '06.0004': 'in use' },
  viewer: HELD,
  'emulator-admin': HELD,
  admin: HELD,
}
/** The bus devices each caller is shown. */
const EVERY = [U.a, U.b, U.none, U.none2, FOREIGN].sort()
const BUS: Record<string, string[]> = {
  'tenant-a': [U.a],
  'tenant-b': [U.b],
  viewer: EVERY,
  'emulator-admin': EVERY,
  admin: EVERY,
}

const EXTRA = {
  subjects: ['lab-viewer', 'local-admin', 'lab-tenant'],
  bindings: `  - subjects: [lab-viewer]
    roles: [viewer]
    hosts: [lab]
  - subjects: [local-admin]
    roles: [admin]
    hosts: [local]
  - subjects: [lab-tenant]
    roles: [tenant]
    hosts: [lab]
    tenant: team-lab
`,
}

forEachDatabase(t, async (t, db) => {
  const fx = await securedFixture(t, db, { moreHosts: ['lab'], extra: EXTRA })
  const rest = async (who: string, path: string) => {
    const res = await fetch(fx.base + path, { headers: fx.headersOf(who) })
    const text = await res.text()
    return { status: res.status, text, body: JSON.parse(text) }
  }
  const grpcCall = async (who: string, service: string, method: string, req: object) => {
    const r = await callUnary(fx.clients[service]!, method, req, fx.metadataOf(who))
    if (r.code !== 0) throw new Error(`${who} ${service}/${method}: ${grpc.status[r.code]} ${r.details}`)
    return r.res as Record<string, unknown>
  }

  // The stored devices on the bus (a real reconcile pass), then a foreign one made as root would.
  await fx.service.createMdev('local', { uuid: U.none2, spec: { adapters: [6], domains: [5] } })
  const reconciler = new Reconciler({ store: fx.store, hosts: new StaticHostRegistry([fx.host]), holder: 'r1', drainTimeoutMs: 0, drainPollMs: 1 })
  await reconciler.reconcile('local')
  await fx.service.writeSysfs('local', '/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create', FOREIGN)
  await fx.service.writeSysfs('local', `/sys/devices/vfio_ap/matrix/${FOREIGN}/assign_adapter`, '6')
  await fx.service.writeSysfs('local', `/sys/devices/vfio_ap/matrix/${FOREIGN}/assign_domain`, '4')
  const truth = await fx.service.listQueues('local', { limit: 500 })
  t.same(
    Object.fromEntries(truth.items.filter((q) => q.owner !== null).map((q) => [q.apqn, q.owner])),
    HELD,
    'on the bus: stored devices and the foreign one hold their APQNs (an in-process read)',
  )

  await t.test('queue owners: a tenant sees its own uuid, "in use" for every other holder', async (t) => {
    for (const [who, want] of Object.entries(SHOWN)) {
      const r = await rest(who, '/v1/hosts/local/queues?limit=500')
      t.equal(r.status, 200, `${who}: REST ${r.status}`)
      const g = await grpcCall(who, 'InventoryService', 'ListQueues', { host: 'local', limit: 500 })
      for (const [via, items] of [
        ['REST', r.body.items as Array<{ apqn: string; owner: string | null }>],
        ['gRPC', (g.items as Array<{ apqn: string; owner: string }>).map((q) => ({ apqn: q.apqn, owner: q.owner || null }))],
      ] as const) {
        t.equal(items.length, truth.items.length, `${who} ${via}: every queue is listed`)
        t.same(Object.fromEntries(items.filter((q) => q.owner !== null).map((q) => [q.apqn, q.owner])), want, `${who} ${via}: the owners shown`)
      }
      const hidden = Object.entries(HELD)
        .filter(([apqn]) => want[apqn as keyof typeof HELD] === 'in use')
        .map(([, uuid]) => uuid)
      const wire = r.text + JSON.stringify(g)
      t.same(
        hidden.filter((u) => wire.includes(u)),
        [],
        `${who}: no hidden device's uuid anywhere in the answers`,
      )
    }
  })

  await t.test('an owner filter naming a device the caller may not see answers as one naming no device', async (t) => {
    for (const who of ['tenant-a', 'tenant-b']) {
      const none = await rest(who, `/v1/hosts/local/queues?owner=${NOBODY}`)
      t.same(none.body, { items: [] }, `${who}: an unknown uuid holds no queue`)
      const gNone = await grpcCall(who, 'InventoryService', 'ListQueues', { host: 'local', owner: NOBODY })
      for (const [apqn, uuid] of Object.entries(HELD)) {
        const own = SHOWN[who]![apqn as keyof typeof HELD] === uuid
        const r = await rest(who, `/v1/hosts/local/queues?owner=${uuid.toUpperCase()}`)
        const g = await grpcCall(who, 'InventoryService', 'ListQueues', { host: 'local', owner: uuid })
        if (own) {
          t.same(
            r.body.items.map((q: { apqn: string }) => q.apqn),
            [apqn],
            `${who}: its own device's queue`,
          )
          t.same(
            (g.items as Array<{ apqn: string }>).map((q) => q.apqn),
            [apqn],
            `${who} gRPC: its own device's queue`,
          )
        } else {
          t.same({ status: r.status, text: r.text }, { status: none.status, text: none.text }, `${who}: owner=${apqn}'s device answers as an unknown uuid`)
          t.same(g, gNone, `${who} gRPC: owner=${apqn}'s device answers as an unknown uuid`)
        }
      }
      const free = await rest(who, '/v1/hosts/local/queues?owner=none&limit=500')
      t.equal(free.body.items.length, truth.items.length - Object.keys(HELD).length, `${who}: owner=none lists the queues no device holds`)
    }
    const viewer = await rest('viewer', `/v1/hosts/local/queues?owner=${FOREIGN}`)
    t.same(
      viewer.body.items.map((q: { apqn: string; owner: string }) => [q.apqn, q.owner]),
      [['06.0004', FOREIGN]],
      'a caller not limited to its own devices filters on any device',
    )
  })

  await t.test('bus-mdevs: a tenant gets its own device only', async (t) => {
    for (const [who, want] of Object.entries(BUS)) {
      const r = await rest(who, '/v1/hosts/local/bus-mdevs')
      const g = await grpcCall(who, 'InventoryService', 'ListBusMdevs', { host: 'local' })
      t.same(r.body.items.map((b: { uuid: string }) => b.uuid).sort(), want, `${who}: REST`)
      t.same((g.items as Array<{ uuid: string }>).map((b) => b.uuid).sort(), want, `${who}: gRPC`)
      for (const b of g.items as Array<{ uuid: string; managed: boolean; matrix: string[] }>) {
        const rb = r.body.items.find((x: { uuid: string }) => x.uuid === b.uuid)
        t.same({ managed: b.managed, matrix: b.matrix }, { managed: rb.managed, matrix: rb.matrix }, `${who} ${b.uuid.slice(0, 8)}: REST and gRPC agree`)
        t.equal(b.managed, b.uuid !== FOREIGN, `${b.uuid.slice(0, 8)}: managed unless foreign`)
      }
    }
  })

  await t.test('a binding limited to hosts lists only those hosts', async (t) => {
    const want: Record<string, string[]> = {
      viewer: ['lab', 'local'],
      admin: ['lab', 'local'],
      'lab-viewer': ['lab'],
      'lab-tenant': ['lab'],
      'local-admin': ['local'],
    }
    for (const [who, hosts] of Object.entries(want)) {
      const r = await rest(who, '/v1/hosts')
      const g = await grpcCall(who, 'HostService', 'ListHosts', {})
      t.same(r.body.items.map((h: { name: string }) => h.name).sort(), hosts, `${who}: GET /v1/hosts`)
      t.same((g.hosts as Array<{ name: string }>).map((h) => h.name).sort(), hosts, `${who}: ListHosts`)
    }
    t.equal((await rest('lab-viewer', '/v1/hosts/local')).status, 403, 'a host outside the limit stays refused')
    t.same(
      (await rest('lab-tenant', '/v1/hosts/lab/queues?limit=500')).body.items.filter((q: { owner: string | null }) => q.owner !== null),
      [],
      'lab-tenant reads its host',
    )
  })

  await t.test('whoami: REST and gRPC WhoAmI say the same', async (t) => {
    const want: Record<string, { subject: string; source: string; roles: string[]; groups: string[]; hosts: string[] | null; tenant: string | null }> = {
      viewer: { subject: 'viewer', source: 'token', roles: ['viewer'], groups: [], hosts: null, tenant: null },
      'tenant-a': { subject: 'tenant-a', source: 'token', roles: ['tenant'], groups: [], hosts: null, tenant: 'tenant-a' },
      'lab-tenant': { subject: 'lab-tenant', source: 'token', roles: ['tenant'], groups: [], hosts: ['lab'], tenant: 'team-lab' },
      'local-admin': { subject: 'local-admin', source: 'token', roles: ['admin'], groups: [], hosts: ['local'], tenant: null },
    }
    for (const [who, w] of Object.entries(want)) {
      t.same((await rest(who, '/v1/auth/whoami')).body, w, `${who}: REST`)
      const g = await grpcCall(who, 'AuthService', 'WhoAmI', {})
      t.same(
        g,
        { subject: w.subject, source: w.source, roles: w.roles, groups: w.groups, host_limit: w.hosts ? { hosts: w.hosts } : null, tenant: w.tenant ?? '' },
        `${who}: gRPC (host_limit absent = every host)`,
      )
    }
  })
})
