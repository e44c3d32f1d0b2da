/**
 * A steady emulated workload reached through every face: REST (`PUT .../emulator/workload`), gRPC
 * (`EmulatorService.SetWorkload`) and the remote emulator protocol. Virtual time is driven by the test.
 */
import t from 'tap'
import { forEachDatabase } from '../store/pg-helper.js'
import { apiFixture } from './http/http-fixture.js'
import { grpcFixture, unary } from './grpc/grpc-fixture.js'
import { startRemote } from '../emulator-remote/helpers.js'

forEachDatabase(t, async (t, db) => {
  t.test('REST: a workload runs on a queue while time advances; bad input is a 4xx', async (t) => {
    const { call, host } = await apiFixture(t, db)
    const put = (body: unknown) => call('PUT', '/v1/hosts/local/emulator/workload', { body })
    t.equal((await put({ apqn: '00.0004', perSecond: 200 })).status, 204)
    host.host.advance(1000)
    const s = host.host.requestStats('00.0004')
    t.equal(s.submitted, 200, 'one request every 5 ms for one second')
    t.equal((await put({ apqn: '00.0004', perSecond: 0 })).status, 204, '0 stops it')
    host.host.advance(1000)
    t.equal(host.host.requestStats('00.0004').submitted, 200, 'stopped')
    t.match(await put({ apqn: '09.0004', perSecond: 5 }), { status: 404, body: { code: 'NOT_FOUND', errno: 'ENOENT' } })
    t.match(await put({ apqn: '00.0004', perSecond: -1 }), { status: 400, body: { code: 'INVALID_ARGUMENT' } })
    t.match(await put({ apqn: '00.0004', perSecond: 5, extra: 1 }), { status: 400, body: { code: 'INVALID_ARGUMENT' } })
  })

  t.test('gRPC: SetWorkload', async (t) => {
    const fx = await grpcFixture(t, db)
    const r = await unary(fx.clients.emulator.SetWorkload.bind(fx.clients.emulator), { host: 'local', apqn: '00.0004', per_second: 100 })
    t.equal(r.err, undefined, 'accepted')
    fx.host.host.advance(1000)
    t.equal(fx.host.host.requestStats('00.0004').submitted, 100)
    const bad = await unary(fx.clients.emulator.SetWorkload.bind(fx.clients.emulator), { host: 'local', apqn: '09.0004', per_second: 1 })
    t.equal(bad.err?.code, 5, 'NOT_FOUND for a queue that does not exist')
  })
})

t.test('remote emulator: SetWorkload over the wire', async (t) => {
  const { client } = await startRemote(t)
  await client.setWorkload('05.0004', 50)
  await client.advance(1000)
  t.equal((await client.requestStats('05.0004')).submitted, 50)
  await t.rejects(client.setWorkload('09.0004', 1), { name: 'SysfsError', errno: 'ENOENT' }, 'an unknown queue: ENOENT, as locally')
})
