/**
 * The drain policy through the APIs (docs/api.md (Reconcile) "Drain policy"), on SQLite and PostgreSQL over
 * real sockets: `spec.drain` on REST (create, merge patch, bounds, unknown fields) and gRPC (CreateMdev,
 * UpdateMdev `spec.drain`), a change of the policy alone plans no bus operation, and the dry-run plan says
 * which queues drain under which policy. Demo profile: adapters 0,1,2,5,6,7; domains 1,2,4,5,0x0a,0x47.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { forEachDatabase, freshDatabase } from '../store/pg-helper.js'
import { U1, U2 } from '../service/service-fixture.js'
import { apiFixture } from './http/http-fixture.js'
import { grpcFixture, ok, unary } from './grpc/grpc-fixture.js'

const MDEVS = '/v1/hosts/local/mdevs'
const MP = { 'content-type': 'application/merge-patch+json' }

forEachDatabase(t, async (t, db) => {
  t.test('REST: spec.drain stored and shown, bounded, unknown fields refused, nothing half-stored', async (t) => {
    const { call } = await apiFixture(t, await freshDatabase(t, db.provider))
    t.equal((await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-5' } })).status, 200)
    const spec = { adapters: [5], domains: [4], drain: { timeoutSeconds: 120, onTimeout: 'wait' } }
    // No reconciler runs here: the bus still gives adapter 5 to the host, so the plan drains its queues.
    const plan = await call('POST', `${MDEVS}?dryRun=true`, { body: { uuid: U1, spec } })
    t.equal(plan.status, 200, plan.text)
    t.same(
      plan.body.plan.summary.drainPolicy,
      { timeoutSeconds: 120, onTimeout: 'wait', devices: [U1], deviceCount: 1, defaultApplies: true },
      'its own policy for 05.0004, the default for the other queues of adapter 5; wait beats flush, 120 s beats 30 s',
    )

    const created = await call('POST', MDEVS, { body: { uuid: U1, spec } })
    t.equal(created.status, 201, created.text)
    t.same(created.body.spec.drain, { timeoutSeconds: 120, onTimeout: 'wait' })
    t.same((await call('GET', `${MDEVS}/${U1}`)).body.spec.drain, { timeoutSeconds: 120, onTimeout: 'wait' })

    for (const [drain, field] of [
      [{ timeoutSeconds: 3601 }, 'timeoutSeconds'],
      [{ timeoutSeconds: -1 }, 'timeoutSeconds'],
      [{ timeoutSeconds: 1.5 }, 'timeoutSeconds'],
      [{ onTimeout: 'drop' }, 'onTimeout'],
      [{ retries: 3 }, 'retries'],
      ['wait', 'drain'],
    ] as const) {
      const r = await call('POST', MDEVS, { body: { uuid: U2, spec: { adapters: [6], domains: [4], drain } } })
      t.equal(r.status, 400, `${JSON.stringify(drain)}: ${r.text}`)
      t.equal(r.body.code, 'INVALID_ARGUMENT')
      t.match(r.text, field)
    }
    t.equal((await call('GET', `${MDEVS}/${U2}`)).status, 404, 'nothing stored')

    const gen = created.body.metadata.generation
    const patched = await call('PATCH', `${MDEVS}/${U1}`, { body: { spec: { drain: { onTimeout: 'flush' } } }, headers: MP })
    t.equal(patched.status, 200, patched.text)
    t.same(patched.body.spec.drain, { onTimeout: 'flush' }, 'a patch replaces the whole policy')
    t.equal(patched.body.metadata.generation, gen + 1, 'a spec change')
    const dry = await call('PATCH', `${MDEVS}/${U1}?dryRun=true&view=full`, { body: { spec: { drain: { timeoutSeconds: 5 } } }, headers: MP })
    t.equal(dry.status, 200, dry.text)
    const same = await call('PATCH', `${MDEVS}/${U1}?dryRun=true&view=full`, { body: { labels: { a: 'b' } }, headers: MP })
    t.same(dry.body.plan.operations, same.body.plan.operations, 'changing only the drain policy plans the same bus operations as no spec change')
    t.equal(dry.body.plan.summary.drainPolicy.timeoutSeconds, 30, 'the plan shows the new policy (5 s), the default (30 s) being stricter')
    const cleared = await call('PATCH', `${MDEVS}/${U1}`, { body: { spec: { drain: null } }, headers: MP })
    t.equal(cleared.status, 200, cleared.text)
    t.equal(cleared.body.spec.drain, null, 'null: back to the service default')
    const put = await call('PUT', `${MDEVS}/${U1}`, { body: { spec: cleared.body.spec } })
    t.equal(put.status, 200, `a spec as read (drain null) is accepted back: ${put.text}`)
  })

  t.test('REST: the dry-run plan names the queues that drain and the strictest policy', async (t) => {
    const { call } = await apiFixture(t, await freshDatabase(t, db.provider))
    const doc = {
      masks: { apmask: '-5,-6' },
      mdevs: [
        { uuid: U1, spec: { adapters: [5], domains: [4], drain: { timeoutSeconds: 60, onTimeout: 'flush' } } },
        { uuid: U2, spec: { adapters: [6], domains: [4], drain: { timeoutSeconds: 10, onTimeout: 'wait' } } },
      ],
    }
    const plan = await call('POST', '/v1/hosts/local/plan', { body: doc })
    t.equal(plan.status, 200, plan.text)
    const s = plan.body.summary
    t.equal(s.drainedQueues.count, 12, 'every host queue of adapters 5 and 6 drains')
    t.same(s.drainPolicy, {
      timeoutSeconds: 60,
      onTimeout: 'wait',
      devices: [U1, U2].sort(),
      deviceCount: 2,
      defaultApplies: true,
    })
    const masksOnly = await call('PUT', '/v1/hosts/local/masks?dryRun=true', { body: { apmask: '-7' } })
    t.same(
      masksOnly.body.plan.summary.drainPolicy,
      { timeoutSeconds: 30, onTimeout: 'flush', devices: [], deviceCount: 0, defaultApplies: true },
      'the default',
    )
  })

  t.test('gRPC: spec.drain on CreateMdev, UpdateMdev (spec.drain), GetMdev; bad values INVALID_ARGUMENT', async (t) => {
    const fx = await grpcFixture(t, await freshDatabase(t, db.provider))
    const { hosts, mdevs } = fx.clients
    await ok(t, hosts.SetMasks.bind(hosts), { host: 'local', apmask: '-5,-6' })
    const created = await ok(t, mdevs.CreateMdev.bind(mdevs), {
      host: 'local',
      uuid: U1,
      spec: { adapters: [5], domains: [4], drain: { timeout_seconds: { value: 0 }, on_timeout: 'wait' } },
    })
    t.match(created.mdev?.spec?.drain, { timeout_seconds: { value: 0 }, on_timeout: 'wait' }, 'an explicit 0 is kept')
    const updated = await ok(t, mdevs.UpdateMdev.bind(mdevs), {
      host: 'local',
      uuid: U1,
      spec: { drain: { timeout_seconds: { value: 45 } } },
      update_mask: { paths: ['spec.drain'] },
    })
    t.match(updated.mdev?.spec, { adapters: [5], domains: [4], drain: { timeout_seconds: { value: 45 }, on_timeout: '' } })
    const cleared = await ok(t, mdevs.UpdateMdev.bind(mdevs), { host: 'local', uuid: U1, spec: {}, update_mask: { paths: ['spec.drain'] } })
    t.equal(cleared.mdev?.spec?.drain ?? null, null, 'absent: the service default')
    const bad = await unary(mdevs.CreateMdev.bind(mdevs), {
      host: 'local',
      uuid: U2,
      spec: { adapters: [6], domains: [4], drain: { timeout_seconds: { value: 4000 } } },
    })
    t.equal(bad.err?.code, grpc.status.INVALID_ARGUMENT)
    const got = await unary(mdevs.GetMdev.bind(mdevs), { host: 'local', uuid: U2 })
    t.equal(got.err?.code, grpc.status.NOT_FOUND, 'nothing stored')
  })
})
