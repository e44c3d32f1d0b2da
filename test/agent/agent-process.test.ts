/**
 * `apmatrix agent` as a real process (bin/apmatrix.mjs from dist/, built by `npm test`'s pretest) over a
 * sysfs tree on disk that an admin prepared by hand (chzdev took adapter 5 from the host drivers, a foreign
 * matrix device holds 05.0004), managed by the whole service in this process as `lpar1@127.0.0.1:PORT`:
 * driver `agent`; emulator routes answer 409 / FAILED_PRECONDITION; first contact writes nothing (the
 * agent's write log stays empty) until a desired state is given; while another process holds the
 * s390-tools lock the service makes no write, and it proceeds once the lock is released; every write is
 * fenced with the service's lease. Point the agent at the emulator's FUSE mount to get kernel semantics.
 */
import fs from 'node:fs'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { run } from '../../src/cli/main.js'
import { loadConfig } from '../../src/config.js'
import { createHost } from '../../src/emulator/host.js'
import { connectHostBus } from '../../src/hostbus/client.js'
import { createLogger, startService } from '../../src/main.js'
import type { ReconcileOutcome } from '../../src/reconciler/reconciler.js'
import { loadApiProto } from '../../src/transport/grpc/proto.js'
import { holdLockInOtherProcess } from '../bus/lock-holder.js'
import { materializeSysfs, tempDir } from '../bus/sysfs-tree.js'
import { readyLine, spawnCli } from '../reliability/cli-process.js'
import { restClient, until } from '../scenario/rest-client.js'
import { freshDatabase } from '../store/pg-helper.js'

const FOREIGN = 'f0000000-0000-4000-8000-00000000000f'
const TYPE_DIR = '/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough'
const READY = /^apmatrix agent listening on (\S+) \(sysfs (\S+), machine (\S+), bootId (\S+)\)$/
const FULL = `0x${'f'.repeat(64)}`
const FB = `0xfb${'f'.repeat(62)}`
const F9 = `0xf9${'f'.repeat(62)}`

t.test('an agent process managed by the service as lpar1@host:port', async (t) => {
  // The LPAR as an admin left it: chzdev -d apmask 5 (a mask change), and a device started by hand.
  const emu = createHost({ profile: 'spec-fixture' })
  emu.write('/sys/bus/ap/apmask', '-5\n')
  emu.write(`${TYPE_DIR}/create`, `${FOREIGN}\n`)
  emu.write(`/sys/devices/vfio_ap/matrix/${FOREIGN}/assign_adapter`, '5\n')
  emu.write(`/sys/devices/vfio_ap/matrix/${FOREIGN}/assign_domain`, '4\n')
  const root = tempDir(t)
  materializeSysfs(emu, root)
  const lockPath = path.join(tempDir(t), 's390apconfig.lock')

  const agent = spawnCli(t, ['agent', '--sysfs-root', root, '--addr', '127.0.0.1:0', '--poll-ms', '100', '--watch', 'poll', '--lock-path', lockPath])
  const m = await readyLine(agent, READY, 'the agent ready line')
  t.ok(m, 'ready line on stdout', { stderr: agent.stderr })
  if (!m) return
  const [, addr, servedRoot, machineId, bootId] = m as unknown as string[]
  t.equal(servedRoot, root)
  t.match(addr, /^127\.0\.0\.1:[1-9]\d*$/)
  t.ok(
    agent.stderr.some((l) => /agent serving .*watch poll/.test(l)),
    'a log line on stderr like the emulator serve command',
    { stderr: agent.stderr },
  )
  const bus = connectHostBus(addr!, { timeoutMs: 3000 })
  t.teardown(() => bus.close())

  const db = await freshDatabase(t, 'sqlite')
  const cfg = loadConfig(
    {},
    {
      DATABASE_URL: db.url,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_HOSTS: `lpar1@${addr}`,
      APMATRIX_LOG_LEVEL: 'silent',
      APMATRIX_RESYNC_MS: '200',
      APMATRIX_LOCK_WAIT_MS: '300',
      APMATRIX_DRAIN_TIMEOUT_MS: '1000',
    },
  )
  const svc = await startService(cfg, createLogger(cfg.logLevel))
  t.teardown(() => svc.close())
  const outcomes: ReconcileOutcome[] = []
  svc.reconciler.onOutcome((o) => void outcomes.push(o))
  const call = restClient(svc.httpUrl)

  t.test('identity: driver agent, no profile, the identity the agent reports', async (t) => {
    const h = (await call('GET', '/v1/hosts/lpar1')).body
    t.match(h, { name: 'lpar1', driver: 'agent', profile: null, machineId, bootId })
  })

  t.test('first contact: the observed masks are adopted, the foreign device stays, nothing is written', async (t) => {
    await until('three passes over lpar1', async () => outcomes.filter((o) => o.host === 'lpar1').length >= 3 || undefined, { timeoutMs: 15_000 })
    t.ok(
      outcomes.every((o) => o.skipped === 'observe-only'),
      'every pass only observed',
    )
    t.same((await bus.writeLog()).entries, [], "the agent's write log is empty: not a single write")
    const masks = (await call('GET', '/v1/hosts/lpar1/masks')).body
    t.match(masks, { metadata: { generation: 0 }, spec: { apmask: FB, aqmask: FULL }, status: { apmask: FB } }, 'desired = observed, generation 0 (adopted)')
    const adopted = (await svc.store.events.list({ host: 'lpar1' })).filter((e) => e.type === 'MasksAdopted')
    t.equal(adopted.length, 1, 'one MasksAdopted event')
    t.match(adopted[0]!.message, /first contact with lpar1: .*adopted as the desired ones; 1 matrix device on the bus left as it is/)
    const foreign = (await call('GET', '/v1/hosts/lpar1/bus-mdevs')).body.items
    t.match(foreign, [{ uuid: FOREIGN, managed: false }], 'the foreign device is visible and unmanaged')
  })

  t.test('emulator routes and RPCs: 409 / FAILED_PRECONDITION "host lpar1 is not emulated", never a 500', async (t) => {
    const calls: Array<[string, string, unknown?]> = [
      ['GET', '/v1/hosts/lpar1/emulator/sysfs?path=/sys/bus/ap/apmask'],
      ['POST', '/v1/hosts/lpar1/emulator/sysfs', { path: '/sys/bus/ap/apmask', value: '+5\n' }],
      ['POST', '/v1/hosts/lpar1/emulator/hardware', { action: 'config-off', apid: 5 }],
      ['GET', '/v1/hosts/lpar1/emulator/guests'],
      ['POST', '/v1/hosts/lpar1/emulator/guests', { uuid: FOREIGN, guest: 'vm1' }],
      ['DELETE', '/v1/hosts/lpar1/emulator/guests/vm1'],
      ['POST', '/v1/hosts/lpar1/emulator/requests', { apqn: '05.0004', count: 1 }],
      ['PUT', '/v1/hosts/lpar1/emulator/workload', { apqn: '05.0004', perSecond: 1 }],
      ['POST', '/v1/hosts/lpar1/emulator/reboot'],
    ]
    for (const [method, p, body] of calls) {
      const r = await call(method, p, body === undefined ? {} : { body })
      t.equal(r.status, 409, `${method} ${p}`)
      t.match(r.headers.get('content-type'), /application\/problem\+json/)
      t.match(r.body, { status: 409, code: 'FAILED_PRECONDITION', detail: /^host lpar1 is not emulated/ })
    }
    const { v1 } = loadApiProto()
    const emulator = new v1.EmulatorService(svc.grpcAddr, grpc.credentials.createInsecure())
    t.teardown(() => emulator.close())
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      (emulator as unknown as { ReadSysfs: (r: object, cb: (e: grpc.ServiceError | null) => void) => void }).ReadSysfs(
        { host: 'lpar1', path: '/sys/bus/ap/apmask' },
        (e) => resolve(e),
      ),
    )
    t.equal(err?.code, grpc.status.FAILED_PRECONDITION)
    t.match(err?.details, /host lpar1 is not emulated/)
    t.equal(err?.metadata.get('code')[0], 'FAILED_PRECONDITION')
    t.same((await bus.writeLog()).entries, [], 'still nothing written')
  })

  t.test('a desired state waits while another process holds the s390-tools lock, then is applied under the lock, fenced', async (t) => {
    const holder = await holdLockInOtherProcess(t, lockPath)
    const put = await call('PUT', '/v1/hosts/lpar1/masks', { body: { apmask: '-6' } })
    t.equal(put.status, 200, put.text)
    t.match(put.body.spec, { apmask: F9 })
    const blocked = await until('a pass that found the lock held', async () => outcomes.find((o) => o.host === 'lpar1' && o.lockBusy), { timeoutMs: 10_000 })
    t.match(blocked.lockBusy, { lockPath, holderPid: String(holder.pid) })
    await new Promise((r) => setTimeout(r, 700))
    t.same((await bus.writeLog()).entries, [], 'no write while the other process holds the lock')
    const failed = (await svc.store.events.list({ host: 'lpar1' })).filter((e) => e.type === 'ReconcileFailed')
    t.equal(failed.length, 1, 'one event for the whole wait, not one per retry')
    t.match(failed[0]!.message, new RegExp(`waiting for the AP configuration lock .* held by pid ${holder.pid}`))

    await holder.release()
    await until('apmask written to the tree', async () => fs.readFileSync(path.join(root, 'bus/ap/apmask'), 'utf8') === `${F9}\n` || undefined, {
      timeoutMs: 15_000,
    })
    const log = await bus.writeLog()
    t.ok(log.entries.length >= 1, `${log.entries.length} writes`)
    t.ok(
      log.entries.every((e) => e.fence?.host === 'lpar1' && e.fence.holder === svc.reconciler.holder && !e.fenceRefused),
      'every write carries the lease of this service',
    )
    t.ok(
      log.entries.some((e) => e.path === '/sys/bus/ap/apmask' && e.value === `${F9}\n`),
      'the mask write, one write(2) of the kernel syntax',
    )
    // The pass releases the lock when it ends, which is after its last write became visible.
    t.ok(await until('the lock released after the pass', async () => !fs.existsSync(lockPath), { timeoutMs: 10_000 }), 'the lock was released after the pass')
    const masks = await until('masks converged', async () => {
      const r = (await call('GET', '/v1/hosts/lpar1/masks')).body
      return r.status?.apmask === F9 ? r : undefined
    })
    t.equal(masks.metadata.generation, 1, 'given by a caller now')
  })
})

function memIo(): { io: Parameters<typeof run>[1] & object; stdout: () => string; stderr: () => string } {
  const o = new PassThrough()
  const e = new PassThrough()
  let so = ''
  let se = ''
  o.on('data', (d) => (so += d))
  e.on('data', (d) => (se += d))
  return { io: { stdin: new PassThrough(), stdout: o, stderr: e, env: {} }, stdout: () => so, stderr: () => se }
}

t.test('bad agent options exit 2 naming the option; an unusable root exits 1; --help exits 0', async (t) => {
  const cases: Array<[string[], number, RegExp]> = [
    [['agent', '--addr', 'nowhere'], 2, /--addr \/ APMATRIX_AGENT_ADDR: 'nowhere' is not HOST:PORT/],
    [['agent', '--watch', 'inotify'], 2, /--watch \/ APMATRIX_AGENT_WATCH: 'inotify' is not one of auto, udev, poll/],
    [['agent', '--poll-ms', '5'], 2, /--poll-ms \/ APMATRIX_AGENT_POLL_MS/],
    [['agent', '--sysfs-root', 'sys'], 2, /--sysfs-root .*not an absolute directory path/],
    [['agent', '--lock-path', 'lock'], 2, /--lock-path .*'lock' is not an absolute file path or 'none'/],
    [['agent', '--tls-cert', '/etc/x.pem'], 2, /--tls-key \/ APMATRIX_AGENT_TLS_KEY, --tls-ca \/ APMATRIX_AGENT_TLS_CA: required with --tls-cert/],
    [['agent', '--addr', '0.0.0.0:0'], 2, /refusing to listen on 0\.0\.0\.0 without TLS/],
    [['agent', '--bogus'], 2, /Unknown option '--bogus'/],
    [
      ['agent', '--sysfs-root', '/nonexistent-apmatrix-root', '--addr', '127.0.0.1:0'],
      1,
      /agent: cannot start on 127\.0\.0\.1:0: \/nonexistent-apmatrix-root is not a sysfs with an AP bus/,
    ],
  ]
  for (const [argv, code, re] of cases) {
    const m = memIo()
    t.equal(await run(argv, m.io), code, argv.join(' '))
    t.match(m.stderr(), re)
    t.equal(m.stdout(), '')
  }
  const env = memIo()
  env.io.env = { APMATRIX_AGENT_WATCH: 'sometimes' }
  t.equal(await run(['agent'], env.io), 2, 'the environment variable is checked too')
  t.match(env.stderr(), /APMATRIX_AGENT_WATCH: 'sometimes'/)
  const h = memIo()
  t.equal(await run(['agent', '--help'], h.io), 0)
  t.match(h.stdout(), /^Usage: apmatrix agent/)
  t.match(h.stdout(), /--tls-cert +APMATRIX_AGENT_TLS_CERT/)
  t.match(h.stdout(), /--insecure-no-tls +APMATRIX_AGENT_INSECURE_NO_TLS/)
})
