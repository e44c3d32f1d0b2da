/**
 * Injected write faults through the service's emulator routes (docs/api.md, docs/emulator-sysfs.md "Fault
 * injection"): REST `GET/PUT/DELETE /v1/hosts/{host}/emulator/faults` and gRPC `EmulatorService`
 * `SetFaults`/`GetFaults`/`ClearFaults` on the in-process emulator; the reconciler's own writes meet them.
 */
import t from 'tap'
import { forEachDatabase } from '../store/pg-helper.js'
import { grpcFixture, unary } from './grpc/grpc-fixture.js'
import { apiFixture } from './http/http-fixture.js'

const APMASK = '/sys/bus/ap/apmask'

forEachDatabase(t, async (t, db) => {
  t.test('REST: set, read, use and clear; bad rules are 400 and leave the rules in force', async (t) => {
    const { call } = await apiFixture(t, db)
    const url = '/v1/hosts/local/emulator/faults'
    t.match(await call('GET', url), { status: 200, body: { rules: [], writes: 0, failed: 0, delayed: 0 } })
    const set = await call('PUT', url, { body: { rules: [{ path: APMASK, rate: 1, kind: 'eio' }], seed: 9 } })
    t.match(set, { status: 200, body: { seed: 9, rules: [{ path: APMASK, rate: 1, kind: 'eio', matched: 0, injected: 0 }] } })
    const w = await call('POST', '/v1/hosts/local/emulator/sysfs', { body: { path: APMASK, value: '-5\n' } })
    t.match(w, { status: 503, body: { code: 'UNAVAILABLE', errno: 'EIO' } }, 'a root write meets the fault: EIO')
    t.match((await call('GET', url)).body, { writes: 1, failed: 1, rules: [{ matched: 1, injected: 1 }] })

    for (const body of [
      { rules: [{ path: APMASK, rate: 1.5, kind: 'eio' }] },
      { rules: [{ path: APMASK, rate: 1, kind: 'enoent' }] },
      { rules: [{ path: APMASK, rate: 1, kind: 'delay' }] },
      { rules: [{ path: 'bus/ap/apmask', rate: 1, kind: 'eio' }] },
      { rules: [{ path: '/sys/[x', rate: 1, kind: 'eio' }] },
      { rules: [{ path: APMASK, rate: 1, kind: 'eio', extra: 1 }] },
      { rules: [], seed: -1 },
      { rules: 'x' },
    ]) {
      const r = await call('PUT', url, { body })
      t.match(r, { status: 400, body: { code: 'INVALID_ARGUMENT' } }, `400 for ${JSON.stringify(body)}`)
    }
    t.match((await call('GET', url)).body, { rules: [{ path: APMASK, kind: 'eio' }] }, 'still in force')

    t.match(await call('DELETE', url), { status: 200, body: { rules: [] } })
    t.equal((await call('POST', '/v1/hosts/local/emulator/sysfs', { body: { path: APMASK, value: '-5\n' } })).status, 204)
    t.match(await call('GET', '/v1/hosts/nope/emulator/faults'), { status: 404 })
  })

  t.test('gRPC: SetFaults, GetFaults, ClearFaults; INVALID_ARGUMENT for a bad rule', async (t) => {
    const fx = await grpcFixture(t, db)
    const e = fx.clients.emulator
    const set = await unary(e.SetFaults.bind(e), { host: 'local', rules: [{ path: APMASK, rate: 0.5, kind: 'ebusy', delay_ms: 0 }], seed: { value: 3 } })
    t.equal(set.err, undefined)
    t.match(set.res, { seed: 3, rules: [{ path: APMASK, rate: 0.5, kind: 'ebusy', matched: '0', injected: '0' }], writes: '0' })
    const bad = await unary(e.SetFaults.bind(e), { host: 'local', rules: [{ path: APMASK, rate: 1, kind: 'delay', delay_ms: 0 }] })
    t.equal(bad.err?.code, 3, 'INVALID_ARGUMENT: a delay rule needs delayMs')
    t.match(bad.err?.details, /rules\[0\]\.delayMs/)
    const got = await unary(e.GetFaults.bind(e), { host: 'local' })
    t.match(got.res, { seed: 3, rules: [{ kind: 'ebusy' }] })
    const cleared = await unary(e.ClearFaults.bind(e), { host: 'local' })
    t.same(cleared.res?.rules, [])
  })
})
