/**
 * The agent's host-bus service in this process (src/agent/agent-server.ts) over a sysfs tree on disk:
 * what it serves, fencing exactly as the emulator does it, lock sessions against a real other holder
 * of the s390-tools lock, the session limits, and change events from its poll.
 */
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { startAgentServer, type AgentServerOptions } from '../../src/agent/agent-server.js'
import { ConfigLockBusyError } from '../../src/bus/port.js'
import { SysfsError } from '../../src/domain/errors.js'
import { createHost } from '../../src/emulator/host.js'
import { startEmulatorServer } from '../../src/emulator-remote/server.js'
import { connectHostBus, type HostBusClient } from '../../src/hostbus/client.js'
import type { HostBusEvent } from '../../src/hostbus/codec.js'
import { holdLockInOtherProcess } from '../bus/lock-holder.js'
import { materializeSysfs, tempDir } from '../bus/sysfs-tree.js'
import { outcome, waitFor } from '../emulator-remote/helpers.js'

const APMASK = '/sys/bus/ap/apmask'
const mask = (hex: string) => `0x${hex.padEnd(64, 'f')}\n`

async function startAgent(t: Test, o: Partial<AgentServerOptions> = {}): Promise<{ root: string; lockPath: string; client: HostBusClient; address: string }> {
  const root = tempDir(t)
  materializeSysfs(createHost({ profile: 'spec-fixture' }), root)
  const lockPath = path.join(tempDir(t), 's390apconfig.lock')
  const server = await startAgentServer({ addr: '127.0.0.1:0', sysfsRoot: root, lockPath, watch: 'poll', pollMs: 50, lockWaitMs: 200, ...o })
  const client = connectHostBus(server.address, { timeoutMs: 3000, lockWaitMs: 300 })
  t.teardown(async () => {
    client.close()
    await server.close()
  })
  return { root, lockPath, client, address: server.address }
}

t.test('Info: driver agent, only the host-bus service, the lock and the root it serves', async (t) => {
  const { client, root, lockPath } = await startAgent(t)
  const i = await client.info()
  t.match(i, { driver: 'agent', profile: '', services: ['apmatrix.hostbus.v1.HostBus'], configLock: lockPath, sysfsRoot: root, kernel: '' })
  t.match(i.machineId, /^sysfs-[0-9a-f]{16}$/, 'a mount (not /sys): the machine id is derived from host and root')
  t.match(i.bootId, /^static-[0-9a-f]{16}$/, 'no boot id file: the documented stable fallback')
  t.equal(await client.read(APMASK), mask('f'))
  t.same((await client.list('/sys/bus/ap/devices')).length, 15, '3 cards and 12 queues')
  t.equal(await client.readlink('/sys/bus/ap/devices/05.0004'), '../../../devices/ap/card05/05.0004')
  t.equal(await client.exists('/sys/bus/ap/devices/05.0004'), true)
  t.equal(await client.exists('/sys/kernel'), false, 'outside the served subtrees: does not exist for a client')
})

t.test('a configured boot-id file is the boot id', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(path.join(dir, 'boot_id'), '0f1e2d3c-0000-4000-8000-000000000001\n')
  const { client } = await startAgent(t, { bootIdFile: path.join(dir, 'boot_id') })
  t.equal((await client.info()).bootId, '0f1e2d3c-0000-4000-8000-000000000001')
})

t.test('only the AP parts of sysfs are served; a write that a symlink leads out of them is refused', async (t) => {
  const { client, root } = await startAgent(t)
  fs.mkdirSync(path.join(root, 'kernel'))
  fs.writeFileSync(path.join(root, 'kernel/secret'), 'x\n')
  fs.writeFileSync(path.join(root, 'power_state'), 'on\n')
  for (const p of ['/sys/kernel/secret', '/sys/power_state', '/sys', '/etc/passwd', '/sys/bus/../kernel/secret']) {
    t.match(await outcome(() => client.read(p)), { ok: false, error: 'SysfsError', errno: 'EACCES' }, `read ${p}`)
    t.match(await outcome(() => client.write(p, '1\n')), { ok: false, errno: 'EACCES' }, `write ${p}`)
  }
  fs.symlinkSync('../../kernel/secret', path.join(root, 'bus/ap/escape'))
  t.match(await outcome(() => client.write('/sys/bus/ap/escape', 'y\n')), { ok: false, errno: 'EACCES', message: /resolves to \/sys\/kernel\/secret/ })
  t.equal(fs.readFileSync(path.join(root, 'kernel/secret'), 'utf8'), 'x\n', 'untouched')
  t.equal(await client.read('/sys/bus/ap/escape'), 'x\n', 'reading through the link is harmless and allowed (sysfs is full of links)')
  t.match(await outcome(() => client.write('/sys/bus/ap/no_such_attr', '1\n')), { ok: false, errno: 'ENOENT' }, 'a write never creates a file')
  t.match(await outcome(() => client.write('/sys/bus/ap', '1\n')), { ok: false, errno: 'EISDIR' })
  await client.write(APMASK, mask('fb'))
  t.equal(fs.readFileSync(path.join(root, 'bus/ap/apmask'), 'utf8'), mask('fb'), 'a served attribute is written')
})

t.test('fencing: the agent refuses a stale token exactly as the emulator does', async (t) => {
  const { client: agent } = await startAgent(t)
  const emulatorServer = await startEmulatorServer({ addr: '127.0.0.1:0', profile: 'spec-fixture', clock: 'manual' })
  const emulator = connectHostBus(emulatorServer.address, { timeoutMs: 3000 })
  t.teardown(async () => {
    emulator.close()
    await emulatorServer.close()
  })
  const run = async (c: HostBusClient) => [
    await outcome(() => c.withFence({ host: 'lpar1', holder: 'A', token: 2 }).write(APMASK, mask('fb'))),
    await outcome(() => c.withFence({ host: 'lpar1', holder: 'B', token: 1 }).write(APMASK, mask('f9'))),
    await outcome(() => c.withFence({ host: 'lpar1', holder: 'B', token: 2 }).write(APMASK, mask('f9'))),
    await outcome(() => c.withFence({ host: 'lpar1', holder: 'B', token: 3 }).write(APMASK, mask('f9'))),
    await outcome(() => c.withFence({ host: 'lpar1', holder: 'A', token: 2 }).exclusive((locked) => locked.write(APMASK, mask('fb')))),
    await outcome(() => c.write(APMASK, mask('fd'))),
  ]
  const onAgent = await run(agent)
  t.same(onAgent, await run(emulator), 'the same answers, errors and messages, write for write')
  t.match(onAgent, [
    { ok: true },
    { ok: false, error: 'SysfsError', errno: 'EACCES', message: 'fenced write refused: host lpar1 token 1 of B is stale (token 2 of A already wrote)' },
    { ok: false, errno: 'EACCES' },
    { ok: true },
    { ok: false, errno: 'EACCES' },
    { ok: true },
  ])
  const log = await agent.writeLog()
  t.same(
    log.entries.map((e) => [e.fence ? `${e.fence.holder}/${e.fence.token}` : '-', e.errno ?? 'ok', e.fenceRefused]),
    [
      ['A/2', 'ok', false],
      ['B/1', 'EACCES', true],
      ['B/2', 'EACCES', true],
      ['B/3', 'ok', false],
      ['A/2', 'EACCES', true],
      ['-', 'ok', false],
    ],
    'the write log, as the emulator keeps it',
  )
  t.same(Object.fromEntries(log.highestToken), { lpar1: 3 })
})

t.test('lock sessions: a pass waits for another holder of the s390-tools lock, writes under one hold, and the hold ends with the pass', async (t) => {
  const { client, lockPath, root } = await startAgent(t)
  let inside = ''
  await client.exclusive(async (locked) => {
    inside = fs.readFileSync(lockPath, 'utf8')
    await locked.write(APMASK, mask('fb'))
    await locked.write('/sys/bus/ap/aqmask', mask('fb'))
  })
  t.match(inside, /^\d+\n$/, 'the agent process held the lock during the section (its pid and a newline)')
  await waitFor('release after the section', () => !fs.existsSync(lockPath))

  const holder = await holdLockInOtherProcess(t, lockPath)
  let ran = false
  const busy = await client.exclusive(async () => void (ran = true)).catch((e: unknown) => e)
  t.ok(busy instanceof ConfigLockBusyError, 'ConfigLockBusyError through gRPC')
  t.match(busy, { errno: 'EBUSY', holderPid: String(holder.pid), path: lockPath })
  t.equal(ran, false, 'the pass never started')
  const single = await client.write(APMASK, mask('f1')).catch((e: unknown) => e)
  t.ok(single instanceof ConfigLockBusyError, 'a write outside a session waits for the lock too, then gives up (EBUSY)')
  t.equal(fs.readFileSync(path.join(root, 'bus/ap/apmask'), 'utf8'), mask('fb'), 'nothing was written while the other process held the lock')
  const waiting = client.exclusive((locked) => locked.write(APMASK, mask('f3')))
  await new Promise((r) => setTimeout(r, 50))
  await holder.release()
  await waiting
  t.equal(fs.readFileSync(path.join(root, 'bus/ap/apmask'), 'utf8'), mask('f3'), 'the pass proceeded once the other process released the lock')
})

t.test('lock sessions end: a write naming an ended session never reaches sysfs (ECANCELED); the server caps the hold', async (t) => {
  const { client, root, lockPath } = await startAgent(t, { lockMaxHoldMs: 200 })
  let saved: ((p: string, v: string) => Promise<void>) | undefined
  await client.exclusive(async (locked) => {
    saved = (p, v) => locked.write(p, v)
  })
  t.match(await outcome(() => saved!(APMASK, mask('00'))), { ok: false, errno: 'ECANCELED', message: /has ended/ }, 'a view kept past its section cannot write')
  const err = await client
    .exclusive(async (locked) => {
      await new Promise((r) => setTimeout(r, 400))
      await locked.write(APMASK, mask('00'))
    })
    .catch((e: unknown) => e)
  t.match(err, { name: 'SysfsError', errno: 'ECANCELED' }, 'held past the limit: the agent released the lock, the late write is refused')
  t.equal(fs.readFileSync(path.join(root, 'bus/ap/apmask'), 'utf8'), mask('f'), 'neither write was made')
  await waitFor('the lock released by the agent', () => !fs.existsSync(lockPath))
  const log = await client.writeLog()
  t.same(
    log.entries.map((e) => e.errno),
    ['ECANCELED'],
    "the host's refusal of the late write is in the write log (the first never left the client)",
  )
})

t.test('changes: the poll reports a changed attribute as a `changed` event, and watch() as a poll change', async (t) => {
  const { client, root } = await startAgent(t)
  const events: HostBusEvent[] = []
  const sub = client.events(0, (e) => void events.push(e))
  t.teardown(() => sub.close())
  const changes: string[] = []
  const stop = client.watch((c) => void changes.push(`${c.source}: ${c.summary}`))
  t.teardown(stop)
  await new Promise((r) => setTimeout(r, 200))
  fs.writeFileSync(path.join(root, 'bus/ap/bindings'), '11/12\n')
  await waitFor('a changed event', () => events.some((e) => e.kind === 'changed'))
  t.match(
    events.find((e) => e.kind === 'changed'),
    { kind: 'changed', source: 'poll', summary: 'changed: bindings' },
  )
  await waitFor('the watch', () => changes.length > 0)
  t.same(changes[0], 'poll: changed: bindings')
  t.equal(sub.epoch.split('/')[0], (await client.info()).bootId, 'the epoch names the boot and this agent process')
})

t.test('a root without an AP bus is refused at start', async (t) => {
  const err = await startAgentServer({ addr: '127.0.0.1:0', sysfsRoot: tempDir(t), lockPath: null, watch: 'poll', pollMs: 100 }).catch((e: unknown) => e)
  t.match(err, { message: /is not a sysfs with an AP bus \(no .*\/bus\/ap\/apmask: ENOENT\)/ })
  t.notOk(err instanceof SysfsError)
})
