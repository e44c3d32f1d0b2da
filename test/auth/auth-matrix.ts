/**
 * The authorization matrix, generated (issue 9 §5): every subject (anonymous, viewer, two tenants,
 * operator, host-admin, emulator-admin, admin) x every operation of both APIs (the REST list read from
 * /openapi.json, the gRPC list from the loaded service descriptors: a new route or method without a
 * sample request here, or without a permission, fails this test) x 3 ownerships of the target device
 * (the caller's own, another tenant's, unowned) x 2 transports, over real sockets. Each expected outcome
 * is derived from the role table (src/auth/roles.ts) through authorize(): anonymous → 401 /
 * UNAUTHENTICATED, deny → 403 / PERMISSION_DENIED, a foreign device of a tenant → 404 / NOT_FOUND, allow →
 * the operation runs (any answer but those; a device the caller may see is never NOT_FOUND). Writes are
 * dry runs, so every cell sees the same state; the stores' devices are checked unchanged at the end.
 * Event streams have their own matrix (events-matrix.test.ts). One process per database (matrix.test.ts,
 * matrix-postgres.test.ts), so the two halves run side by side.
 */
import * as grpc from '@grpc/grpc-js'
import type { Test } from 'tap'
import { authorize } from '../../src/auth/authorize.js'
import type { Principal } from '../../src/auth/identity.js'
import { GRPC_PERMISSIONS } from '../../src/transport/grpc/permissions.js'
import { API_SERVICES } from '../../src/transport/grpc/proto.js'
import { REST_PERMISSIONS } from '../../src/transport/http/permissions.js'
import type { TestDatabase } from '../store/pg-helper.js'
import { callUnary, DEVICES, SUBJECTS, type Subject, securedFixture } from './auth-fixture.js'

type Ownership = 'own' | 'other' | 'unowned'
const OWNERSHIPS: Ownership[] = ['own', 'other', 'unowned']
type Device = (typeof DEVICES)['none']

/** The device a subject's cell targets: its own (tenant-a's for non-tenants), another tenant's, the unowned one. */
function deviceFor(p: Principal | undefined, o: Ownership): Device {
  const own = p?.tenant === 'tenant-b' ? 'tenant-b' : 'tenant-a'
  if (o === 'own') return DEVICES[own]
  if (o === 'other') return DEVICES[own === 'tenant-a' ? 'tenant-b' : 'tenant-a']
  return DEVICES.none
}

/** Streams: covered by events-matrix.test.ts. */
const STREAMS = new Set(['GET /v1/events', '/apmatrix.v1.EventService/Watch'])

interface RestSample {
  path: string
  body?: unknown
  headers?: Record<string, string>
}
const H = '/v1/hosts/local'
/** One request per REST operation (OpenAPI path form); writes are dry runs or refused after authorization. */
const REST_SAMPLES: Record<string, (d: Device) => RestSample> = {
  'GET /v1/auth/whoami': () => ({ path: '/v1/auth/whoami' }),
  'GET /v1/audit': () => ({ path: '/v1/audit?limit=5&outcome=PERMISSION_DENIED' }),
  'GET /v1/hosts': () => ({ path: '/v1/hosts' }),
  'GET /v1/hosts/{host}': () => ({ path: H }),
  'GET /v1/hosts/{host}/adapters': () => ({ path: `${H}/adapters` }),
  'GET /v1/hosts/{host}/queues': () => ({ path: `${H}/queues` }),
  'GET /v1/hosts/{host}/bus-mdevs': () => ({ path: `${H}/bus-mdevs` }),
  'GET /v1/hosts/{host}/domains': () => ({ path: `${H}/domains` }),
  'GET /v1/hosts/{host}/masks': () => ({ path: `${H}/masks` }),
  'PUT /v1/hosts/{host}/masks': () => ({ path: `${H}/masks?dryRun=true`, body: { apmask: '-5,-6' } }),
  'GET /v1/hosts/{host}/mdevs': () => ({ path: `${H}/mdevs` }),
  'POST /v1/hosts/{host}/mdevs': () => ({ path: `${H}/mdevs?dryRun=true`, body: { spec: { adapters: [6], domains: [5] } } }),
  'GET /v1/hosts/{host}/mdevs/{uuid}': (d) => ({ path: `${H}/mdevs/${d.uuid}` }),
  'PUT /v1/hosts/{host}/mdevs/{uuid}': (d) => ({ path: `${H}/mdevs/${d.uuid}?dryRun=true`, body: { spec: d.spec, owner: d.owner } }),
  'PATCH /v1/hosts/{host}/mdevs/{uuid}': (d) => ({
    path: `${H}/mdevs/${d.uuid}?dryRun=true`,
    body: { labels: { k: 'v' } },
    headers: { 'content-type': 'application/merge-patch+json' },
  }),
  'DELETE /v1/hosts/{host}/mdevs/{uuid}': (d) => ({ path: `${H}/mdevs/${d.uuid}?dryRun=true` }),
  'GET /v1/hosts/{host}/mdevs/{uuid}/export': (d) => ({ path: `${H}/mdevs/${d.uuid}/export?format=mdevctl` }),
  'POST /v1/hosts/{host}/import': () => ({ path: `${H}/import?dryRun=true`, body: { format: 'mdevctl', document: [] } }),
  'PUT /v1/hosts/{host}/desired': () => ({ path: `${H}/desired?dryRun=true`, body: {} }),
  'POST /v1/hosts/{host}/plan': () => ({ path: `${H}/plan`, body: {} }),
  'GET /v1/hosts/{host}/emulator/sysfs': () => ({ path: `${H}/emulator/sysfs?path=bus/ap/apmask` }),
  'POST /v1/hosts/{host}/emulator/sysfs': () => ({ path: `${H}/emulator/sysfs`, body: { path: 'bus/ap/no-such-attribute', value: '1' } }),
  'POST /v1/hosts/{host}/emulator/hardware': () => ({ path: `${H}/emulator/hardware`, body: { action: 'no-such-action' } }),
  'GET /v1/hosts/{host}/emulator/guests': () => ({ path: `${H}/emulator/guests` }),
  'POST /v1/hosts/{host}/emulator/guests': (d) => ({ path: `${H}/emulator/guests`, body: { uuid: d.uuid, guest: 'g1' } }),
  'DELETE /v1/hosts/{host}/emulator/guests/{guest}': () => ({ path: `${H}/emulator/guests/no-such-guest` }),
  'POST /v1/hosts/{host}/emulator/requests': () => ({ path: `${H}/emulator/requests`, body: { apqn: '05.0004', count: 0 } }),
  'PUT /v1/hosts/{host}/emulator/workload': () => ({ path: `${H}/emulator/workload`, body: { apqn: '05.0004', perSecond: 0 } }),
  'POST /v1/hosts/{host}/emulator/reboot': () => ({ path: `${H}/emulator/reboot` }),
  'GET /v1/hosts/{host}/emulator/faults': () => ({ path: `${H}/emulator/faults` }),
  'PUT /v1/hosts/{host}/emulator/faults': () => ({ path: `${H}/emulator/faults`, body: { rules: [{ path: '/sys/bus', rate: 2, kind: 'eio' }] } }),
  'DELETE /v1/hosts/{host}/emulator/faults': () => ({ path: `${H}/emulator/faults` }),
}

/** One request per gRPC method; writes are dry runs or refused after authorization. */
const GRPC_SAMPLES: Record<string, (d: Device) => object> = {
  '/apmatrix.v1.HostService/ListHosts': () => ({}),
  '/apmatrix.v1.HostService/GetHost': () => ({ host: 'local' }),
  '/apmatrix.v1.HostService/GetMasks': () => ({ host: 'local' }),
  '/apmatrix.v1.HostService/SetMasks': () => ({ host: 'local', apmask: '-5,-6', dry_run: true }),
  '/apmatrix.v1.InventoryService/ListAdapters': () => ({ host: 'local' }),
  '/apmatrix.v1.InventoryService/ListQueues': () => ({ host: 'local' }),
  '/apmatrix.v1.InventoryService/ListDomains': () => ({ host: 'local' }),
  '/apmatrix.v1.InventoryService/ListBusMdevs': () => ({ host: 'local' }),
  '/apmatrix.v1.MdevService/CreateMdev': () => ({ host: 'local', spec: { adapters: [6], domains: [5] }, dry_run: true }),
  '/apmatrix.v1.MdevService/GetMdev': (d) => ({ host: 'local', uuid: d.uuid }),
  '/apmatrix.v1.MdevService/ListMdevs': () => ({ host: 'local' }),
  '/apmatrix.v1.MdevService/UpdateMdev': (d) => ({ host: 'local', uuid: d.uuid, spec: d.spec, owner: d.owner ?? '', dry_run: true }),
  '/apmatrix.v1.MdevService/DeleteMdev': (d) => ({ host: 'local', uuid: d.uuid, dry_run: true }),
  '/apmatrix.v1.MdevService/ExportMdev': (d) => ({ host: 'local', uuid: d.uuid, format: 'mdevctl' }),
  '/apmatrix.v1.MdevService/ImportMdevs': () => ({ host: 'local', format: 'mdevctl', document: '[]', dry_run: true }),
  '/apmatrix.v1.DesiredStateService/Plan': () => ({ host: 'local', desired: {} }),
  '/apmatrix.v1.DesiredStateService/Apply': () => ({ host: 'local', desired: {}, dry_run: true }),
  '/apmatrix.v1.EmulatorService/ReadSysfs': () => ({ host: 'local', path: 'bus/ap/apmask' }),
  '/apmatrix.v1.EmulatorService/WriteSysfs': () => ({ host: 'local', path: 'bus/ap/no-such-attribute', value: '1' }),
  '/apmatrix.v1.EmulatorService/Hardware': () => ({ host: 'local', action: 'no-such-action' }),
  '/apmatrix.v1.EmulatorService/ListGuests': () => ({ host: 'local' }),
  '/apmatrix.v1.EmulatorService/OpenGuest': (d) => ({ host: 'local', uuid: d.uuid, guest: 'g1' }),
  '/apmatrix.v1.EmulatorService/CloseGuest': () => ({ host: 'local', guest: 'no-such-guest' }),
  '/apmatrix.v1.EmulatorService/SubmitRequests': () => ({ host: 'local', apqn: '05.0004', count: 0 }),
  '/apmatrix.v1.EmulatorService/SetWorkload': () => ({ host: 'local', apqn: '05.0004', per_second: 0 }),
  '/apmatrix.v1.EmulatorService/Reboot': () => ({ host: 'local' }),
  '/apmatrix.v1.EmulatorService/GetFaults': () => ({ host: 'local' }),
  '/apmatrix.v1.EmulatorService/SetFaults': () => ({ host: 'local', rules: [{ path: '/sys/bus', rate: 1, kind: 'no-such-kind' }] }),
  '/apmatrix.v1.EmulatorService/ClearFaults': () => ({ host: 'local' }),
  '/apmatrix.v1.AuthService/WhoAmI': () => ({}),
  '/apmatrix.v1.AuthService/ListAuditRecords': () => ({ limit: 5, outcome: 'PERMISSION_DENIED' }),
}

type Expected = 'unauthenticated' | 'denied' | 'hidden' | 'allowed'

/** What the role table says of one cell. */
function expected(
  p: Principal | undefined,
  perm: { verb: Parameters<typeof authorize>[1]; resource: Parameters<typeof authorize>[2] },
  d: Device,
  targetsDevice: boolean,
): Expected {
  if (!p) return 'unauthenticated'
  if (authorize(p, perm.verb, perm.resource, { host: 'local' }) === 'deny') return 'denied'
  if (!targetsDevice) return 'allowed'
  const fine = authorize(p, perm.verb, perm.resource, { host: 'local', owner: d.owner })
  return fine === 'allow' ? 'allowed' : fine === 'hidden' ? 'hidden' : 'denied'
}

function restOutcome(status: number, code: string | undefined): Expected | `other ${number}` {
  if (status === 401 && code === 'UNAUTHENTICATED') return 'unauthenticated'
  if (status === 403 && code === 'PERMISSION_DENIED') return 'denied'
  if (status === 404 && code === 'NOT_FOUND') return 'hidden'
  if (status === 401 || status === 403) return `other ${status}`
  return 'allowed'
}

function grpcOutcome(code: number): Expected {
  if (code === grpc.status.UNAUTHENTICATED) return 'unauthenticated'
  if (code === grpc.status.PERMISSION_DENIED) return 'denied'
  if (code === grpc.status.NOT_FOUND) return 'hidden'
  return 'allowed'
}

/** An allowed cell that is not about a device may still be NOT_FOUND for its own reasons (a missing guest, attribute). */
const sameClass = (want: Expected, got: string, targetsDevice: boolean) => want === got || (want === 'allowed' && got === 'hidden' && !targetsDevice)

/** The whole matrix against one database (matrix.test.ts: SQLite; matrix-postgres.test.ts: PostgreSQL). */
export async function authMatrix(t: Test, db: TestDatabase): Promise<void> {
  const fx = await securedFixture(t, db)
  const openapi = (await (await fetch(`${fx.base}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> }
  const restOps: string[] = []
  for (const [path, methods] of Object.entries(openapi.paths)) {
    for (const m of Object.keys(methods)) if (['get', 'put', 'post', 'patch', 'delete'].includes(m)) restOps.push(`${m.toUpperCase()} ${path}`)
  }
  const grpcOps: string[] = []
  for (const [, client] of Object.entries(fx.clients)) {
    const def = (client.constructor as unknown as { service: Record<string, { path: string; responseStream: boolean }> }).service
    for (const m of Object.values(def)) grpcOps.push(m.path)
  }
  t.ok(restOps.length >= 25, `REST operations from /openapi.json: ${restOps.length}`)
  t.ok(
    API_SERVICES.every((s) => grpcOps.some((p) => p.startsWith(`/${s}/`))),
    `gRPC methods from the service descriptors: ${grpcOps.length}`,
  )

  const mismatches: string[] = []
  let cells = 0
  const tally: Record<Expected, number> = { unauthenticated: 0, denied: 0, hidden: 0, allowed: 0 }
  const principal = (s: Subject) => (s === 'anonymous' ? undefined : fx.principals.get(s))

  await t.test('REST', async (st) => {
    const before = cells
    for (const op of restOps) {
      if (STREAMS.has(op)) continue
      const route = op.replace(/\{(\w+)\}/g, ':$1')
      const perm = REST_PERMISSIONS[route]
      const sample = REST_SAMPLES[op]
      if (!perm || perm === 'public') {
        mismatches.push(`${op}: no permission declared (src/transport/http/permissions.ts)`)
        continue
      }
      if (!sample) {
        mismatches.push(`${op}: no sample request in this test`)
        continue
      }
      const targetsDevice = op.includes('{uuid}')
      for (const s of SUBJECTS) {
        for (const o of OWNERSHIPS) {
          const d = deviceFor(principal(s), o)
          const want = expected(principal(s), perm, d, targetsDevice)
          const req = sample(d)
          const headers: Record<string, string> = { ...fx.headersOf(s), ...(req.headers ?? {}) }
          if (req.body !== undefined) headers['content-type'] ??= 'application/json'
          const res = await fetch(fx.base + req.path, {
            method: op.split(' ')[0],
            headers,
            ...(req.body !== undefined ? { body: JSON.stringify(req.body) } : {}),
          })
          const text = await res.text()
          const code = text.startsWith('{') ? (JSON.parse(text) as { code?: string }).code : undefined
          const got = restOutcome(res.status, code)
          cells++
          tally[want]++
          if (!sameClass(want, got, targetsDevice)) mismatches.push(`REST ${op} ${s} ${o}: want ${want}, got ${got} (${res.status} ${text.slice(0, 120)})`)
          if (want === 'unauthenticated' && !/^Bearer/.test(res.headers.get('www-authenticate') ?? ''))
            mismatches.push(`REST ${op}: 401 without WWW-Authenticate`)
          // A tenant's list holds its own devices only.
          if (op === 'GET /v1/hosts/{host}/mdevs' && got === 'allowed') {
            const owners = (JSON.parse(text) as { items: Array<{ metadata: { owner: string | null } }> }).items.map((i) => i.metadata.owner)
            const p = principal(s)!
            const wantOwners = Object.values(DEVICES)
              .filter((x) => authorize(p, 'read', 'mdevs', { host: 'local', owner: x.owner }) === 'allow')
              .map((x) => x.owner)
            if (JSON.stringify(owners) !== JSON.stringify(wantOwners))
              mismatches.push(`REST list ${s}: owners ${JSON.stringify(owners)}, want ${JSON.stringify(wantOwners)}`)
          }
        }
      }
    }
    st.pass(`${cells - before} REST cells`)
  })

  await t.test('gRPC', async (st) => {
    const before = cells
    for (const path of grpcOps) {
      if (STREAMS.has(path)) continue
      const perm = GRPC_PERMISSIONS[path]
      const sample = GRPC_SAMPLES[path]
      if (!perm) {
        mismatches.push(`${path}: no permission declared (src/transport/grpc/permissions.ts)`)
        continue
      }
      if (!sample) {
        mismatches.push(`${path}: no sample request in this test`)
        continue
      }
      const [, service, method] = path.split('/') as [string, string, string]
      const client = fx.clients[service.split('.').pop()!]!
      const targetsDevice = ['GetMdev', 'UpdateMdev', 'DeleteMdev', 'ExportMdev'].includes(method)
      for (const s of SUBJECTS) {
        for (const o of OWNERSHIPS) {
          const d = deviceFor(principal(s), o)
          const want = expected(principal(s), perm, d, targetsDevice)
          const r = await callUnary(client, method, sample(d), fx.metadataOf(s))
          const got = grpcOutcome(r.code)
          cells++
          tally[want]++
          if (!sameClass(want, got, targetsDevice))
            mismatches.push(`gRPC ${path} ${s} ${o}: want ${want}, got ${grpc.status[r.code]} ${r.details.slice(0, 120)}`)
          if (method === 'ListMdevs' && r.code === 0) {
            const owners = (r.res as { items: Array<{ metadata: { owner: string } }> }).items.map((i) => i.metadata.owner || null)
            const p = principal(s)!
            const wantOwners = Object.values(DEVICES)
              .filter((x) => authorize(p, 'read', 'mdevs', { host: 'local', owner: x.owner }) === 'allow')
              .map((x) => x.owner)
            if (JSON.stringify(owners) !== JSON.stringify(wantOwners))
              mismatches.push(`gRPC list ${s}: owners ${JSON.stringify(owners)}, want ${JSON.stringify(wantOwners)}`)
          }
        }
      }
    }
    st.pass(`${cells - before} gRPC cells`)
  })

  t.same(
    mismatches,
    [],
    `authorization matrix: ${cells} cells (${SUBJECTS.length} subjects x operations x ${OWNERSHIPS.length} ownerships x 2 transports), 0 mismatches`,
  )
  t.ok(
    Object.values(tally).every((n) => n > 0),
    `every kind of outcome is exercised: ${JSON.stringify(tally)}`,
  )
  t.ok(cells >= SUBJECTS.length * OWNERSHIPS.length * (restOps.length + grpcOps.length - 2), `every cell ran (${cells})`)
  // Dry runs and refusals stored nothing.
  const stored = (await fx.service.listMdevs('local')).items.map((m) => [m.metadata.uuid, m.metadata.owner, m.metadata.generation])
  t.same(
    stored,
    Object.values(DEVICES)
      .map((d) => [d.uuid, d.owner, 1])
      .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    'the stored devices are unchanged',
  )
  const refusals = (await fx.store.audit.list({ limit: 500 })).filter((a) => a.outcome === 'UNAUTHENTICATED' || a.outcome === 'PERMISSION_DENIED')
  t.ok(refusals.length > 0, `refusals are audited (${refusals.length} in the first page)`)
  t.ok(
    refusals.filter((a) => a.outcome === 'PERMISSION_DENIED').every((a) => /^(rest|grpc):token:/.test(a.actor) && Array.isArray(a.detail.roles)),
    'a refusal names the authenticated subject, its roles and the transport',
  )
}
