import net from 'node:net'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import t, { type Test } from 'tap'
import { ApmatrixError, SysfsError } from '../../src/domain/errors.js'
import { createHost } from '../../src/emulator/host.js'
import { RemoteHostError, connectEmulator } from '../../src/emulator-remote/client.js'
import { RemoteEmulatedHost } from '../../src/hosts/remote-emulated-host.js'
import { projectRoot } from '../../src/paths.js'
import { BUS, M1, type Outcome, TYPE_DIR, freePort, outcome, startRemote, waitFor } from './helpers.js'

const MDEV = `/sys/devices/vfio_ap/matrix/${M1}`

t.test('B-1/B-21 read, write, list, readlink round trips return the kernel texts exactly', async (t) => {
  const { client } = await startRemote(t)
  t.equal(await client.read(`${BUS}/bindings`), '12/12 (complete)\n')
  t.equal(await client.read(`${BUS}/apmask`), `0x${'f'.repeat(64)}\n`)
  t.equal(await client.read(`${BUS}/devices/card05/type`), 'CEX8C\n')
  t.same(
    (await client.list(`${BUS}/devices`)).filter((d) => d.startsWith('card')),
    ['card05', 'card06', 'card07'],
  )
  t.equal(await client.readlink('/sys/devices/ap/card05/05.0004/driver'), '../../../../bus/ap/drivers/cex4queue')
  await client.write(`${BUS}/apmask`, '-5,-6\n')
  t.equal(await client.read(`${BUS}/apmask`), `0x${'f9'}${'f'.repeat(62)}\n`)
  t.equal(await client.readlink(`${BUS}/devices/05.0004/driver`), '../../../../bus/ap/drivers/vfio_ap')
  t.equal(await client.read(`${BUS}/devices/06.00ab/status`), 'unassigned\n')
  t.equal(await client.exists(`${BUS}/devices/05.0004`), true)
  t.equal(await client.exists(`${BUS}/devices/09.0004`), false)
  t.equal(await client.read(`${BUS}/devices/07.00ff/online`), '1\n')
  t.equal(await client.read(`${BUS}/devices/07.00ff/reset`), 'Reset in progress.\n', 'manual clock: still at boot time 0')
  await client.advance(10)
  t.equal(await client.read(`${BUS}/devices/07.00ff/reset`), 'No Reset Timer set.\n')
})

t.test('kernel errors arrive as the same SysfsError a local host throws (errno and message)', async (t) => {
  const { client } = await startRemote(t)
  const local = createHost({ profile: 'spec-fixture' })
  const bad = await outcome(() => client.write(`${BUS}/apmask`, '0X41\n'))
  t.match(bad, { ok: false, error: 'SysfsError', errno: 'EINVAL' }, 'B-21: bad mask syntax')
  t.same(bad, await outcome(() => local.write(`${BUS}/apmask`, '0X41\n')))
  const missing = await outcome(() => client.read(`${BUS}/devices/09.0004/online`))
  t.match(missing, { ok: false, errno: 'ENOENT' })
  t.same(missing, await outcome(() => local.read(`${BUS}/devices/09.0004/online`)))
  t.match(await outcome(() => client.readlink(`${BUS}/apmask`)), { ok: false, errno: 'EINVAL' }, 'not a link')
  const err = await client.list('/sys/nope').catch((e: unknown) => e)
  t.ok(err instanceof SysfsError, 'instanceof SysfsError on the client side')

  // T-12: the in_use veto (B-24).
  for (const h of [client, local]) {
    await h.write(`${TYPE_DIR}/create`, `${M1}\n`)
    await h.write(`${BUS}/apmask`, '-5\n')
    await h.write(`${MDEV}/assign_adapter`, '5\n')
    await h.write(`${MDEV}/assign_domain`, '4\n')
  }
  t.equal(await client.read(`${MDEV}/matrix`), '05.0004\n')
  const veto = await outcome(() => client.write(`${BUS}/apmask`, '+5\n'))
  t.match(veto, { ok: false, errno: 'EBUSY' }, 'T-12: EBUSY')
  t.same(veto, await outcome(() => local.write(`${BUS}/apmask`, '+5\n')))
})

t.test('V-25/V-27/B-17/B-43 controls behave as on a local host', async (t) => {
  const { client } = await startRemote(t)
  const local = createHost({ profile: 'spec-fixture' })
  const run = async (h: typeof client | typeof local) => {
    const out: Record<string, Outcome> = {}
    const step = async (name: string, fn: () => unknown) => void (out[name] = await outcome(fn))
    await h.write(`${TYPE_DIR}/create`, `${M1}\n`)
    await h.write(`${BUS}/apmask`, '-5\n')
    await h.write(`${MDEV}/assign_adapter`, '5\n')
    await h.write(`${MDEV}/assign_domain`, '4\n')
    await step('open vm1', () => h.guestOpen(M1, 'vm1'))
    await step('open vm2', () => h.guestOpen(M1, 'vm2'))
    await step('guests', () => h.guests())
    await step('aqic', () => h.guestAqic(M1, '05.0004', 0x1000))
    await step('close', () => h.guestClose(M1))
    await step('close again', () => h.guestClose(M1))
    await step('submit', () => h.submitRequests('06.0004', 3))
    await step('stats before', () => h.requestStats('06.0004'))
    await step('advance', () => h.advance(100))
    await step('stats after', () => h.requestStats('06.0004'))
    await step('stats unknown', () => h.requestStats('09.0004'))
    await step('config-off', () => h.hardware({ action: 'config-off', apid: 6 }))
    await step('card06 config', () => h.read(`${BUS}/devices/card06/config`))
    await step('add-adapter quietly', () => h.hardware({ action: 'add-adapter', apid: 9, type: 'CEX7A', notify: false }))
    await step('card09 before scan', () => h.exists(`${BUS}/devices/card09`))
    await step('scan', () => h.scan())
    await step('card09 type', () => h.read(`${BUS}/devices/card09/type`))
    await step('config-on unknown adapter', () => h.hardware({ action: 'config-on', apid: 0x42 }))
    await step('unknown action', () => h.hardware({ action: 'explode' } as never))
    await step('advance -1', () => h.advance(-1))
    await step('now', () => h.now())
    return out
  }
  const remote = await run(client)
  t.same(remote, await run(local), 'every value and every error is the same')
  t.match(remote['open vm2'], { errno: 'EBUSY' }, 'V-25: mdev already open')
  t.same(remote.guests, { ok: true, value: [{ uuid: M1, guest: 'vm1' }] }, 'guests: the hypervisor view')
  t.match(remote['close again'], { errno: 'ENODEV' }, 'V-27: close when not open')
  t.same(remote['stats after'], { ok: true, value: { submitted: 3, completed: 3, flushed: 0, rejected: 0 } })
  t.same(remote['card09 before scan'], { ok: true, value: false }, 'B-43: notify false, no scan yet')
  t.same(remote['card09 type'], { ok: true, value: 'CEX7A\n' }, 'B-43: the added adapter appears after the scan')
  t.match(remote['config-on unknown adapter'], { ok: false, error: 'ApmatrixError', code: 'NOT_FOUND' })
  t.match(remote['unknown action'], { ok: false, error: 'ApmatrixError', code: 'INVALID_ARGUMENT' })
  t.same(remote.now, { ok: true, value: 100 })
})

t.test('Info and Reboot: a reboot loses kernel state and changes the bootId', async (t) => {
  const { client, server } = await startRemote(t)
  const before = await client.info()
  t.match(before, { profile: 'spec-fixture', kernel: 'current-6.x', now: 0, clock: 'manual' })
  t.match(before.bootId, /^[0-9a-f-]{36}$/)
  t.equal(before.bootId, server.info().bootId)
  await client.write(`${BUS}/apmask`, '-5\n')
  await client.write(`${TYPE_DIR}/create`, `${M1}\n`)
  await client.advance(250)
  const after = await client.reboot()
  t.not(after.bootId, before.bootId)
  t.equal(after.now, 0)
  t.same(await client.info(), after)
  t.equal(await client.read(`${BUS}/apmask`), `0x${'f'.repeat(64)}\n`, 'masks back to their boot value')
  t.equal(await client.exists(MDEV), false, 'the matrix device is gone')
  t.equal(await client.read(`${BUS}/bindings`), '12/12 (complete)\n')
})

t.test('kernel option and clocks: manual time moves only with Advance, realtime follows the wall clock', async (t) => {
  const manual = await startRemote(t, { kernel: 'legacy-5.x' })
  t.equal((await manual.client.info()).kernel, 'legacy-5.x')
  await new Promise((r) => setTimeout(r, 60))
  t.equal(await manual.client.now(), 0)
  await manual.client.advance(40)
  t.equal(await manual.client.now(), 40)

  const rt = await startRemote(t, { clock: 'realtime', tickMs: 10 })
  const t0 = await rt.client.now()
  await new Promise((r) => setTimeout(r, 150))
  const t1 = await rt.client.now()
  t.ok(t1 - t0 >= 50, `virtual time advanced with wall time (${t0} -> ${t1})`)
  t.equal((await rt.client.reboot()).clock, 'realtime')
  await new Promise((r) => setTimeout(r, 100))
  t.ok((await rt.client.now()) > 0, 'the new host has a running clock too')
})

/** A client of a standard gRPC service from the proto its npm package ships (file under node_modules, dotted service name). */
function standardClient(t: Test, file: string, service: string, address: string): Record<string, (...args: unknown[]) => unknown> {
  const def = protoLoader.loadSync(path.join(projectRoot, 'node_modules', file), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true })
  type Tree = Record<string, unknown>
  const Ctor = service
    .split('.')
    .reduce((o: Tree, k) => o[k] as Tree, grpc.loadPackageDefinition(def) as unknown as Tree) as unknown as grpc.ServiceClientConstructor
  const c = new Ctor(address, grpc.credentials.createInsecure())
  t.teardown(() => c.close())
  return c as unknown as Record<string, (...args: unknown[]) => unknown>
}

t.test('grpc.health.v1 reports the host-bus and emulator-control services SERVING', async (t) => {
  const { server } = await startRemote(t)
  const hc = standardClient(t, 'grpc-health-check/proto/health/v1/health.proto', 'grpc.health.v1.Health', server.address)
  const check = (service: string) =>
    new Promise<unknown>((resolve, reject) => hc.Check!.call(hc, { service }, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r))))
  t.same(await check('apmatrix.hostbus.v1.HostBus'), { status: 'SERVING' })
  t.same(await check('apmatrix.emulator.v1.EmulatorControl'), { status: 'SERVING' })
  t.same(await check(''), { status: 'SERVING' })
})

t.test('server reflection (v1) lists the host-bus and emulator-control services', async (t) => {
  const { server } = await startRemote(t)
  const rc = standardClient(t, '@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto', 'grpc.reflection.v1.ServerReflection', server.address)
  const call = rc.ServerReflectionInfo!.call(rc) as grpc.ClientDuplexStream<object, { list_services_response?: { service: { name: string }[] } }>
  const reply = new Promise<{ list_services_response?: { service: { name: string }[] } }>((resolve, reject) => {
    call.on('data', resolve)
    call.on('error', reject)
  })
  call.write({ list_services: '' })
  const names = (await reply).list_services_response?.service.map((s) => s.name) ?? []
  call.end()
  t.ok(names.includes('apmatrix.hostbus.v1.HostBus') && names.includes('apmatrix.emulator.v1.EmulatorControl'), `listed: ${names.join(', ')}`)
})

t.test('a server that is down gives RemoteHostError UNAVAILABLE, not a SysfsError', async (t) => {
  const port = await freePort()
  const client = connectEmulator(`127.0.0.1:${port}`, { timeoutMs: 2000 })
  t.teardown(() => client.close())
  const err = await client.read(`${BUS}/apmask`).catch((e: unknown) => e)
  t.ok(err instanceof RemoteHostError)
  t.notOk(err instanceof SysfsError)
  t.match(err, { code: 'UNAVAILABLE', status: 'UNAVAILABLE', message: /is not reachable/ })
  t.ok(err instanceof ApmatrixError, 'part of the one error hierarchy')
  await t.rejects(client.waitForReady(200), { code: 'UNAVAILABLE' })
})

t.test('a server that never answers hits the call deadline', async (t) => {
  const sockets: net.Socket[] = []
  const mute = net.createServer((s) => void sockets.push(s))
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    mute.close()
  })
  const client = connectEmulator(`127.0.0.1:${(mute.address() as net.AddressInfo).port}`, { timeoutMs: 300 })
  t.teardown(() => client.close())
  const started = Date.now()
  const err = await client.now().catch((e: unknown) => e)
  t.match(err, { name: 'RemoteHostError', code: 'UNAVAILABLE', status: 'DEADLINE_EXCEEDED' })
  t.ok(Date.now() - started < 2000, 'the deadline is the configured one')
})

t.test('close() ends the server even with a live event stream', async (t) => {
  const { server, client } = await startRemote(t)
  const seen: number[] = []
  client.events(0, (e) => void seen.push(e.seq))
  await waitFor('boot events', () => seen.length > 0)
  await server.close()
  await server.close()
  await t.rejects(client.read(`${BUS}/apmask`), { code: 'UNAVAILABLE' })
})

t.test('untrusted input is bounded: long paths and values, huge advances, oversized messages', async (t) => {
  const { client } = await startRemote(t)
  t.match(await outcome(() => client.write(`${BUS}/apmask`, '-5,'.repeat(25_000))), { ok: false, errno: 'EINVAL', message: /value longer than 65536 bytes/ })
  t.match(await outcome(() => client.read(`/sys/${'a/'.repeat(3000)}`)), { ok: false, errno: 'EINVAL', message: /path longer than 4096/ })
  t.match(await outcome(() => client.advance(3_600_001)), { ok: false, errno: 'EINVAL' })
  t.equal(await client.now(), 0, 'the refused advance did not move time')
  const huge = await client.write(`${BUS}/apmask`, 'x'.repeat(300_000)).catch((e: unknown) => e)
  t.match(huge, { name: 'RemoteHostError', status: 'RESOURCE_EXHAUSTED' })
  t.equal(await client.read(`${BUS}/apmask`), `0x${'f'.repeat(64)}\n`, 'the server still answers')
})

t.test('a remote emulated host: no AP configuration lock section (fenced or not), and its watch reports kernel uevents', async (t) => {
  const { server } = await startRemote(t)
  const host = await RemoteEmulatedHost.connect('e', server.address, 3000)
  t.teardown(() => host.close())
  t.equal(host.bus.exclusive, undefined, 'nothing but apmatrix configures an emulator: no lock to take')
  t.equal(host.bus.withFence({ host: 'e', holder: 'A', token: 1 }).exclusive, undefined, 'fenced views have none either')
  t.match(await host.info(), { name: 'e', driver: 'remote-emulator', profile: 'spec-fixture', kernel: 'current-6.x' })
  const seen: string[] = []
  const stop = host.bus.watch((c) => void seen.push(`${c.source} ${c.summary}`))
  t.teardown(stop)
  await host.write(`${BUS}/apmask`, '-5\n')
  await waitFor('the bind uevent of 05.0004', () => seen.some((s) => /^uevent bind .*05\.0004$/.test(s)))
  t.pass(`${seen.length} changes reported`)
})
