/**
 * REST and gRPC call the same service, so the same scenario through each must give the same outcome
 * (issue 4 §6): one table of steps, run in order on two fresh stacks (REST over fetch, gRPC over a
 * grpc-js client), each step projected to {code, view} and compared. SQLite and PostgreSQL.
 */
import t from 'tap'
import { forEachDatabase, freshDatabase } from '../../store/pg-helper.js'
import { U1, U2, U3 } from '../../service/service-fixture.js'
import { apiFixture, type ApiResponse } from '../http/http-fixture.js'
import { grpcFixture, unary, type Outcome } from './grpc-fixture.js'
import type { Mdev__Output } from '../../../src/generated/grpc/apmatrix/v1/Mdev.js'

/** What a step is compared on. */
interface Result {
  code: string
  view?: unknown
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any

const mdevRest = (b: Json) => ({
  uuid: b.metadata.uuid,
  generation: b.metadata.generation,
  owner: b.metadata.owner ?? '',
  deleting: !!b.metadata.deletionRequestedAt,
  spec: [b.spec.adapters, b.spec.domains, b.spec.controlDomains, b.spec.state],
})
const mdevGrpc = (m: Mdev__Output) => ({
  uuid: m.metadata!.uuid,
  generation: Number(m.metadata!.generation),
  owner: m.metadata!.owner,
  deleting: !!m.metadata!.deletion_requested_at,
  spec: [m.spec!.adapters, m.spec!.domains, m.spec!.control_domains, m.spec!.state],
})
// A set: REST's schema layer may report one bad field twice (length and pattern), the service once.
const violations = (vs: Array<{ rule: string; apqn?: string }>) => [...new Set(vs.map((v) => `${v.rule} ${v.apqn ?? ''}`))].sort()

function rest(r: ApiResponse, view?: (b: Json) => unknown): Result {
  if (r.status >= 400) return { code: r.body.code, view: { errno: r.body.errno ?? '', violations: violations(r.body.violations ?? []) } }
  return { code: 'OK', ...(view ? { view: view(r.body) } : {}) }
}

function grpcOf<R>(o: Outcome<R>, view?: (r: R) => unknown): Result {
  if (o.err) {
    const v = o.err.metadata.get('violations')[0]
    return {
      code: String(o.err.metadata.get('code')[0]),
      view: { errno: String(o.err.metadata.get('errno')[0] ?? ''), violations: violations(typeof v === 'string' ? JSON.parse(v) : []) },
    }
  }
  return { code: 'OK', ...(view ? { view: view(o.res as R) } : {}) }
}

forEachDatabase(t, async (t, db) => {
  const api = await apiFixture(t, db)
  const g = await grpcFixture(t, await freshDatabase(t, db.provider))
  const { hosts, mdevs, desired, emulator } = g.clients
  const MD = '/v1/hosts/local/mdevs'
  const etag = async (uuid: string) => (await api.call('GET', `${MD}/${uuid}`)).headers.get('etag') ?? ''
  const rv = async (uuid: string) => (await unary(mdevs.GetMdev.bind(mdevs), { host: 'local', uuid })).res!.metadata!.resource_version

  const steps: Array<{ name: string; rest: () => Promise<Result>; grpc: () => Promise<Result> }> = [
    {
      name: 'set masks (relative kernel syntax)',
      rest: async () =>
        rest(await api.call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-5,-6', aqmask: '-4' } }), (b) => [b.spec.apmask, b.spec.aqmask]),
      grpc: async () =>
        grpcOf(await unary(hosts.SetMasks.bind(hosts), { host: 'local', apmask: '-5,-6', aqmask: '-4' }), (r) => [
          r.masks!.spec!.apmask,
          r.masks!.spec!.aqmask,
        ]),
    },
    {
      name: 'create U1',
      rest: async () => rest(await api.call('POST', MD, { body: { uuid: U1, spec: { adapters: [5], domains: [4] }, owner: 'o1' } }), mdevRest),
      grpc: async () =>
        grpcOf(await unary(mdevs.CreateMdev.bind(mdevs), { host: 'local', uuid: U1, spec: { adapters: [5], domains: [4] }, owner: 'o1' }), (r) =>
          mdevGrpc(r.mdev!),
        ),
    },
    {
      name: 'create U1 again, same spec (idempotent)',
      rest: async () => rest(await api.call('POST', MD, { body: { uuid: U1, spec: { adapters: [5], domains: [4] }, owner: 'o1' } }), mdevRest),
      grpc: async () =>
        grpcOf(await unary(mdevs.CreateMdev.bind(mdevs), { host: 'local', uuid: U1, spec: { adapters: [5], domains: [4] }, owner: 'o1' }), (r) =>
          mdevGrpc(r.mdev!),
        ),
    },
    {
      name: 'create U1 with another spec',
      rest: async () => rest(await api.call('POST', MD, { body: { uuid: U1, spec: { adapters: [6], domains: [4] } } })),
      grpc: async () => grpcOf(await unary(mdevs.CreateMdev.bind(mdevs), { host: 'local', uuid: U1, spec: { adapters: [6], domains: [4] } })),
    },
    {
      name: 'create U2 on an APQN the host keeps',
      rest: async () => rest(await api.call('POST', MD, { body: { uuid: U2, spec: { adapters: [6, 7], domains: [1] } } })),
      grpc: async () => grpcOf(await unary(mdevs.CreateMdev.bind(mdevs), { host: 'local', uuid: U2, spec: { adapters: [6, 7], domains: [1] } })),
    },
    {
      name: 'create U2 with two violations',
      rest: async () => rest(await api.call('POST', MD, { body: { uuid: U2, spec: { adapters: [5, 7], domains: [1, 4] } } })),
      grpc: async () => grpcOf(await unary(mdevs.CreateMdev.bind(mdevs), { host: 'local', uuid: U2, spec: { adapters: [5, 7], domains: [1, 4] } })),
    },
    {
      name: 'create with an adapter beyond the maximum',
      rest: async () => rest(await api.call('POST', MD, { body: { uuid: U2, spec: { adapters: [300], domains: [4] } } })),
      grpc: async () => grpcOf(await unary(mdevs.CreateMdev.bind(mdevs), { host: 'local', uuid: U2, spec: { adapters: [300], domains: [4] } })),
    },
    {
      name: 'create with a malformed uuid',
      rest: async () => rest(await api.call('POST', MD, { body: { uuid: 'nope', spec: {} } })),
      grpc: async () => grpcOf(await unary(mdevs.CreateMdev.bind(mdevs), { host: 'local', uuid: 'nope', spec: {} })),
    },
    {
      name: 'get an unknown device',
      rest: async () => rest(await api.call('GET', `${MD}/${U3}`)),
      grpc: async () => grpcOf(await unary(mdevs.GetMdev.bind(mdevs), { host: 'local', uuid: U3 })),
    },
    {
      name: 'update with a stale version',
      rest: async () =>
        rest(
          await api.call('PATCH', `${MD}/${U1}`, {
            raw: JSON.stringify({ spec: { domains: [4, 5] } }),
            headers: { 'content-type': 'application/merge-patch+json', 'if-match': '"stale"' },
          }),
        ),
      grpc: async () =>
        grpcOf(
          await unary(mdevs.UpdateMdev.bind(mdevs), {
            host: 'local',
            uuid: U1,
            spec: { domains: [4, 5] },
            update_mask: { paths: ['spec.domains'] },
            resource_version: 'stale',
          }),
        ),
    },
    {
      name: 'update domains with the current version',
      rest: async () =>
        rest(
          await api.call('PATCH', `${MD}/${U1}`, {
            raw: JSON.stringify({ spec: { domains: [4, 5] } }),
            headers: { 'content-type': 'application/merge-patch+json', 'if-match': await etag(U1) },
          }),
          mdevRest,
        ),
      grpc: async () =>
        grpcOf(
          await unary(mdevs.UpdateMdev.bind(mdevs), {
            host: 'local',
            uuid: U1,
            spec: { domains: [4, 5] },
            update_mask: { paths: ['spec.domains'] },
            resource_version: await rv(U1),
          }),
          (r) => mdevGrpc(r.mdev!),
        ),
    },
    {
      name: 'a mask change that would take 05.0005 from U1 (B-24)',
      rest: async () => rest(await api.call('PUT', '/v1/hosts/local/masks', { body: { apmask: '+5' } })),
      grpc: async () => grpcOf(await unary(hosts.SetMasks.bind(hosts), { host: 'local', apmask: '+5' })),
    },
    {
      name: 'plan a single device (violations in the plan)',
      rest: async () =>
        rest(await api.call('POST', '/v1/hosts/local/plan', { body: { uuid: U3, spec: { adapters: [7], domains: [1] } } }), (b) =>
          violations(b.summary.violations.first),
        ),
      grpc: async () =>
        grpcOf(await unary(desired.Plan.bind(desired), { host: 'local', mdev: { uuid: U3, spec: { adapters: [7], domains: [1] } } }), (r) =>
          violations(r.plan!.summary!.violations),
        ),
    },
    {
      name: 'apply a desired document',
      rest: async () =>
        rest(
          await api.call('PUT', '/v1/hosts/local/desired', {
            body: { masks: { apmask: '-7' }, mdevs: [{ uuid: U3, spec: { adapters: [7], domains: [1] } }], owner: 'fleet' },
          }),
          (b) => b.mdevs.map((m: Json) => [m.uuid, m.action]),
        ),
      grpc: async () =>
        grpcOf(
          await unary(desired.Apply.bind(desired), {
            host: 'local',
            desired: { masks: { apmask: '-7' }, mdevs: [{ uuid: U3, spec: { adapters: [7], domains: [1] } }], owner: 'fleet' },
          }),
          (r) => r.mdevs.map((m) => [m.uuid, m.action]),
        ),
    },
    {
      name: 'delete U3',
      rest: async () => rest(await api.call('DELETE', `${MD}/${U3}`), mdevRest),
      grpc: async () => grpcOf(await unary(mdevs.DeleteMdev.bind(mdevs), { host: 'local', uuid: U3 }), (r) => mdevGrpc(r.mdev!)),
    },
    {
      name: 'list devices',
      rest: async () => rest(await api.call('GET', MD), (b) => b.items.map(mdevRest)),
      grpc: async () => grpcOf(await unary(mdevs.ListMdevs.bind(mdevs), { host: 'local' }), (r) => r.items.map(mdevGrpc)),
    },
    {
      name: 'read a sysfs path that does not exist',
      rest: async () => rest(await api.call('GET', '/v1/hosts/local/emulator/sysfs?path=/sys/bus/ap/nope')),
      grpc: async () => grpcOf(await unary(emulator.ReadSysfs.bind(emulator), { host: 'local', path: '/sys/bus/ap/nope' })),
    },
    {
      name: 'an unknown host',
      rest: async () => rest(await api.call('GET', '/v1/hosts/nope/masks')),
      grpc: async () => grpcOf(await unary(hosts.GetMasks.bind(hosts), { host: 'nope' })),
    },
  ]

  const codes: string[] = []
  for (const s of steps) {
    const [r, gr] = [await s.rest(), await s.grpc()]
    t.same(gr, r, `${s.name}: REST ${r.code} = gRPC ${gr.code}`)
    codes.push(r.code)
  }
  // The table covers the success path and every error class of docs/api.md (REST) that a request can cause.
  for (const c of ['OK', 'ALREADY_EXISTS', 'APQN_RESERVED', 'OUT_OF_RANGE', 'INVALID_ARGUMENT', 'NOT_FOUND', 'CONFLICT', 'BUSY'])
    t.ok(codes.includes(c), `the table exercises ${c}`)
})
