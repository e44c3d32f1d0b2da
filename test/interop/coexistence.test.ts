/**
 * apmatrix next to the s390 tools on one host (issue 7 §5): the emulated LPAR is the FUSE mount of
 * `apmatrix emulator serve --mount`, apmatrix drives it with the `sysfs` driver, and Debian's mdevctl
 * drives the same mount in a private mount namespace. A matrix device mdevctl started is reported as
 * unmanaged and its APQNs count in admission; while another process holds the s390-tools AP configuration
 * lock (as ap-check does around an mdevctl command, chzdev around a mask change) apmatrix makes no bus
 * write and proceeds once it is released; a stale lock (its pid gone) is removed and does not block.
 * Every write that reaches the emulated kernel through the mount is in the emulator's write log.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { createLogger, startService } from '../../src/main.js'
import { holdLockInOtherProcess } from '../bus/lock-holder.js'
import { scratchDir, startMounted } from '../emulator/fuse/mounted-emulator.js'
import { fuseMissing, requireOrSkip, which } from '../helpers/required-tools.js'
import { isReady, restClient, until } from '../scenario/rest-client.js'
import { freshDatabase } from '../store/pg-helper.js'

const FOREIGN = 'f0f0f0f0-0000-4000-8000-000000000001'
const A = 'aaaaaaaa-0000-4000-8000-00000000000a'
const B = 'bbbbbbbb-0000-4000-8000-00000000000b'
const C = 'cccccccc-0000-4000-8000-00000000000c'
const HOST = '/v1/hosts/lpar1'

function missing(): string | undefined {
  return (
    fuseMissing({ namespaces: true }) ?? (which('mdevctl') ? undefined : "mdevctl not found: install Debian package 'mdevctl' (apt-get install -y mdevctl)")
  )
}

requireOrSkip(t, 'apmatrix and mdevctl on one emulated LPAR, under the s390-tools lock', missing(), async (t) => {
  const scratch = scratchDir(t)
  const m = await startMounted(t, { dir: path.join(scratch, 'sys'), clock: 'realtime', tickMs: 10 })
  const etc = path.join(scratch, 'mdevctl.d')
  fs.mkdirSync(path.join(etc, 'scripts.d/callouts'), { recursive: true })
  fs.mkdirSync(path.join(etc, 'scripts.d/notifiers'), { recursive: true })
  const mdevctl = (...args: string[]) => {
    const r = spawnSync(
      'unshare',
      ['-m', 'sh', '-c', 'mount --bind "$1" /sys && mount --bind "$2" /etc/mdevctl.d && shift 2 && exec mdevctl "$@"', 'sh', m.dir, etc, ...args],
      { encoding: 'utf8', timeout: 20_000 },
    )
    if (r.error) throw r.error
    return r
  }

  // The LPAR as its admin left it: adapters 5 and 6 set aside (chzdev), and a device started with mdevctl.
  await m.client.write('/sys/bus/ap/apmask', '-5,-6\n')
  const def = path.join(scratch, 'foreign.json')
  fs.writeFileSync(def, JSON.stringify({ mdev_type: 'vfio_ap-passthrough', start: 'manual', attrs: [{ assign_adapter: '5' }, { assign_domain: '4' }] }))
  const started = mdevctl('start', '--uuid', FOREIGN, '--parent', 'matrix', '--jsonfile', def)
  t.equal(started.status, 0, `mdevctl start: ${started.stderr}`)
  t.equal(await m.client.read(`/sys/devices/vfio_ap/matrix/${FOREIGN}/matrix`), '05.0004\n', 'mdevctl built the foreign device')
  const handMade = (await m.client.writeLog(0)).lastSeq

  const lockPath = path.join(scratch, 's390apconfig.lock')
  const db = await freshDatabase(t, 'sqlite')
  const cfg = loadConfig(
    {},
    {
      DATABASE_URL: db.url,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_LOG_LEVEL: 'silent',
      APMATRIX_HOSTS: `lpar1=sysfs:${m.dir}`,
      APMATRIX_SYSFS_WATCH: 'poll',
      APMATRIX_SYSFS_POLL_MS: '100',
      APMATRIX_SYSFS_LOCK_PATH: lockPath,
      APMATRIX_LOCK_WAIT_MS: '200',
      APMATRIX_RESYNC_MS: '500',
    },
  )
  const svc = await startService(cfg, createLogger('silent'))
  t.teardown(() => svc.close())
  const call = restClient(svc.httpUrl)
  /** Writes that reached the emulated kernel after the hand-made ones. */
  const writesSince = async (seq: number) => (await m.client.writeLog(seq)).entries

  await t.test('first contact: the foreign device is unmanaged, nothing is written', async (t) => {
    const host = (await call('GET', HOST)).body
    t.equal(host.driver, 'sysfs')
    const bus = await until('the foreign device in the bus inventory', async () => {
      const r = await call('GET', `${HOST}/bus-mdevs`)
      return r.body.items?.find((x: { uuid: string }) => x.uuid === FOREIGN)
    })
    t.equal(bus.managed, false, 'reported as unmanaged')
    t.same(bus.matrix, ['05.0004'])
    // Two resync periods: still no write.
    await new Promise((r) => setTimeout(r, 1200))
    t.same(await writesSince(handMade), [], 'apmatrix wrote nothing to a host it only met')
  })

  await t.test("the foreign device's APQNs count in admission", async (t) => {
    const r = await call('POST', `${HOST}/mdevs`, { body: { uuid: A, spec: { adapters: [5, 6], domains: [4] } } })
    t.equal(r.status, 409, r.text)
    t.equal(r.body.code, 'APQN_IN_USE')
    t.same(
      r.body.violations.map((v: { apqn: string; owner: string }) => [v.apqn, v.owner]),
      [['05.0004', FOREIGN]],
    )
  })

  await t.test('while another process holds the lock, no bus write; once released, the device converges', async (t) => {
    const holder = await holdLockInOtherProcess(t, lockPath)
    const before = (await m.client.writeLog(0)).lastSeq
    const r = await call('POST', `${HOST}/mdevs`, { body: { uuid: B, spec: { adapters: [6], domains: [4] } } })
    t.equal(r.status, 201, r.text)
    const waited = await until('a ReconcileFailed event naming the lock holder', async () => {
      const e = await svc.store.events.list({ host: 'lpar1', limit: 1000 })
      return e.find((x) => x.type === 'ReconcileFailed' && x.message.includes(String(holder.pid)))
    })
    t.match(waited.message, /AP configuration lock .*held by pid/, 'the pass says who holds the lock')
    await new Promise((r) => setTimeout(r, 700))
    t.same(await writesSince(before), [], 'nothing written while the lock is held')
    t.notOk(isReady((await call('GET', `${HOST}/mdevs/${B}`)).body), 'not Ready while it cannot be built')
    await holder.release()
    const ready = await until('B Ready after the release', async () => {
      const m = (await call('GET', `${HOST}/mdevs/${B}`)).body
      return isReady(m) ? m : undefined
    })
    t.same(ready.status.matrix, ['06.0004'])
    t.ok(
      (await writesSince(before)).some((w) => w.path.endsWith('/create') && w.value.startsWith(B)),
      'then it created the device',
    )
    t.notOk(fs.existsSync(lockPath), 'apmatrix released the lock after its pass')
  })

  await t.test('a stale lock (its pid is gone) is removed and does not block', async (t) => {
    const gone = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim()
    fs.writeFileSync(lockPath, `${gone}\n`)
    const r = await call('POST', `${HOST}/mdevs`, { body: { uuid: C, spec: { adapters: [6], domains: [0xab] } } })
    t.equal(r.status, 201, r.text)
    await until('C Ready despite the stale lock', async () => isReady((await call('GET', `${HOST}/mdevs/${C}`)).body))
    t.notOk(fs.existsSync(lockPath), 'the stale lock is gone')
  })

  await t.test('mdevctl still sees and stops its own device; apmatrix leaves it alone', async (t) => {
    const list = mdevctl('list', '--dumpjson')
    t.equal(list.status, 0, list.stderr)
    const parsed = JSON.parse(list.stdout) as Array<Record<string, Array<Record<string, unknown>>>>
    const uuids = parsed.flatMap((p) =>
      Object.values(p)
        .flat()
        .flatMap((d) => Object.keys(d)),
    )
    t.same(uuids.sort(), [B, C, FOREIGN].sort(), 'mdevctl lists every device on the bus, ours and its own')
    const stop = mdevctl('stop', '--uuid', FOREIGN)
    t.equal(stop.status, 0, stop.stderr)
    await until(
      'the foreign device gone from the inventory',
      async () => !(await call('GET', `${HOST}/bus-mdevs`)).body.items.some((x: { uuid: string }) => x.uuid === FOREIGN),
    )
    t.ok(isReady((await call('GET', `${HOST}/mdevs/${B}`)).body), 'our devices are untouched')
  })
})
