/**
 * A host that cannot be reached (docs/api.md (Reconcile)): the pass stores `HostUnreachable` and turns the
 * devices' `Ready` to `Unknown` (reason HostUnreachable) instead of leaving the last `Ready=True` standing
 * while nobody knows what the bus shows; when the host answers again the statuses come from the bus and
 * `HostReachable` ends the episode. Regression test of issue 11 §3 (before: the pass only logged a warning,
 * the devices stayed Ready and nothing said the host was gone). The long versions (agent and emulator
 * processes killed, paused, cut off) are in test/reliability/host-faults.test.ts.
 */
import t, { type Test } from 'tap'
import { loadConfig } from '../../src/config.js'
import { createLogger, type RunningService, startService } from '../../src/main.js'
import type { ReconcileOutcome } from '../../src/reconciler/reconciler.js'
import { startRemote, tcpProxy } from '../emulator-remote/helpers.js'
import { condition, isReady, restClient, until } from '../scenario/rest-client.js'
import { freshDatabase } from '../store/pg-helper.js'

const U = 'b0000000-0000-4000-8000-000000000000'

/** `apmatrix serve` in process on SQLite, its one host `local` the remote emulator at `address`, resync 300 ms. */
async function serviceFor(t: Test, address: string): Promise<RunningService> {
  const db = await freshDatabase(t, 'sqlite')
  const cfg = loadConfig(
    {},
    {
      DATABASE_URL: db.url,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_HOSTS: `local@${address}`,
      APMATRIX_LOG_LEVEL: 'silent',
      APMATRIX_RESYNC_MS: '300',
    },
  )
  const svc = await startService(cfg, createLogger(cfg.logLevel))
  t.teardown(() => svc.close())
  return svc
}

t.test('cut off: Ready turns Unknown with HostUnreachable; back: Ready again and HostReachable', async (t) => {
  const { server } = await startRemote(t, { clock: 'realtime', tickMs: 10 })
  const proxy = await tcpProxy(t, server.address)
  const svc = await serviceFor(t, proxy.address)
  const outcomes: ReconcileOutcome[] = []
  svc.reconciler.onOutcome((o) => void outcomes.push(o))
  const call = restClient(svc.httpUrl)
  const events = async (type: string) => (await svc.store.events.list({ host: 'local', limit: 1000 })).filter((e) => e.type === type)

  t.equal((await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-7' } })).status, 200)
  t.equal((await call('POST', '/v1/hosts/local/mdevs', { body: { uuid: U, spec: { adapters: [7], domains: [0xab] } } })).status, 201)
  await until('the device Ready', async () => isReady((await call('GET', `/v1/hosts/local/mdevs/${U}`)).body))

  proxy.cut()
  const m = await until('Ready=Unknown', async () => {
    const body = (await call('GET', `/v1/hosts/local/mdevs/${U}`)).body
    return condition(body, 'Ready')?.status === 'Unknown' ? body : undefined
  })
  t.match(condition(m, 'Ready'), { status: 'Unknown', reason: 'HostUnreachable', message: /host local cannot be reached \(UNAVAILABLE\)/ })
  t.match(condition(m, 'Progressing'), { status: 'False', reason: 'Converged' }, 'the other conditions keep what was last seen')
  t.match(await until('HostUnreachable', async () => (await events('HostUnreachable'))[0]), { kind: 'host', name: 'local', data: { status: 'UNAVAILABLE' } })
  t.ok(
    outcomes.some((o) => o.unreachable === 'UNAVAILABLE'),
    'the pass outcome says why',
  )
  // More failed passes while still cut off store no more events (one per episode).
  await until('two more unreachable passes', async () => outcomes.filter((o) => o.unreachable).length >= 3)
  t.equal((await events('HostUnreachable')).length, 1, 'one HostUnreachable per episode')

  proxy.restore()
  await until('Ready again', async () => isReady((await call('GET', `/v1/hosts/local/mdevs/${U}`)).body))
  t.match(await until('HostReachable', async () => (await events('HostReachable'))[0]), { kind: 'host', name: 'local' })
})

t.test('rebooted through the emulator control: Ready turns Unknown (HostRebooted) until the bus is restored', async (t) => {
  const db = await freshDatabase(t, 'sqlite')
  const cfg = loadConfig(
    {},
    {
      DATABASE_URL: db.url,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_PROFILE: 'spec-fixture',
      APMATRIX_LOG_LEVEL: 'silent',
      APMATRIX_RESYNC_MS: '300',
    },
  )
  const svc = await startService(cfg, createLogger(cfg.logLevel))
  t.teardown(() => svc.close())
  const call = restClient(svc.httpUrl)
  const get = async () => (await call('GET', `/v1/hosts/local/mdevs/${U}`)).body
  t.equal((await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-7' } })).status, 200)
  t.equal((await call('POST', '/v1/hosts/local/mdevs', { body: { uuid: U, spec: { adapters: [7], domains: [0xab] } } })).status, 201)
  await until('the device Ready', async () => isReady(await get()))
  // Slow matrix writes keep the restoring pass from finishing before the GET below.
  const slow = { rules: [{ path: '/sys/devices/vfio_ap/matrix', rate: 1, kind: 'delay', delayMs: 3000 }], seed: 1 }
  t.equal((await call('PUT', '/v1/hosts/local/emulator/faults', { body: slow })).status, 200)
  const r = await call('POST', '/v1/hosts/local/emulator/reboot')
  t.equal(r.status, 200)
  const m = await get()
  t.match(condition(m, 'Ready'), { status: 'Unknown', reason: 'HostRebooted' }, 'not Ready next to the new boot id')
  t.equal((await call('GET', '/v1/hosts/local')).body.bootId, r.body.bootId)
  await call('DELETE', '/v1/hosts/local/emulator/faults')
  await until('Ready again on the new boot', async () => isReady(await get()), { timeoutMs: 30_000 })
  t.match(await call('GET', `/v1/hosts/local/emulator/sysfs?path=/sys/devices/vfio_ap/matrix/${U}/matrix`), { status: 200, body: /^07\.00ab/ })
})

t.test('rebooted behind the service (a remote emulator): once the pass sees the new boot, Ready is Unknown (HostRebooted) until restored', async (t) => {
  const { server, client } = await startRemote(t, { clock: 'realtime', tickMs: 10 })
  const svc = await serviceFor(t, server.address)
  const call = restClient(svc.httpUrl)
  const get = async () => (await call('GET', `/v1/hosts/local/mdevs/${U}`)).body
  t.equal((await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-7' } })).status, 200)
  t.equal((await call('POST', '/v1/hosts/local/mdevs', { body: { uuid: U, spec: { adapters: [7], domains: [0xab] } } })).status, 201)
  await until('the device Ready', async () => isReady(await get()))
  // Slow writes: the pass that restores the device takes seconds after it has seen the new boot.
  await client.setFaults({ rules: [{ path: '/sys', rate: 1, kind: 'delay', delayMs: 2000 }], seed: 1 })
  const { bootId } = await client.reboot()
  // GET host shows the live boot id at once; the reconciler takes note of it (the stored one) when its pass
  // starts, and from then on no device may claim Ready from the old boot's bus.
  await until('the reconciler to take note of the new boot', async () => (await svc.store.hosts.get('local'))?.bootId === bootId, { everyMs: 10 })
  t.match(condition(await get(), 'Ready'), { status: 'Unknown', reason: 'HostRebooted' }, 'no Ready from the old boot once the new one is noted')
  await client.setFaults({ rules: [] })
  await until('Ready again on the new boot', async () => isReady(await get()), { timeoutMs: 30_000 })
})
