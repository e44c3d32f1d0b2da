/**
 * Crash safety of the safe hand-over (docs/api.md (Reconcile) step 4, §8): the service is SIGKILLed while it drains
 * busy host queues that a desired state moves to a matrix device. The emulated host runs in its own process
 * (`apmatrix emulator serve`, real-time clock), so the queues keep working through the outage. The restarted
 * service must finish the hand-over without flushing a single request (B-16): it drains again before the
 * mask moves the queues, and reports 0 lost.
 */
import t from 'tap'
import { connectEmulator } from '../../src/emulator-remote/client.js'
import { createStore } from '../../src/store/store.js'
import { freshDatabase } from '../store/pg-helper.js'
import { isReady, restClient, until } from '../scenario/rest-client.js'
import { startEmulatorProcess, startServiceProcess } from './cli-process.js'

const HOST = '/v1/hosts/local'
const DEV = 'd0000000-0000-4000-8000-00000000000d'
const BUSY = ['05.0004', '05.0047']
/** 8 requests in flight per queue, 5 ms each (spec-fixture): about 10 s of work per queue. */
const WORK = 16_000
/** Added after the kill: about 20 s of work per queue from the moment the restart begins. */
const TOP_UP = 32_000
const TOTAL = WORK + TOP_UP
const FULL = `0x${'f'.repeat(64)}`
const ENV = { APMATRIX_DRAIN_TIMEOUT_MS: '120000' }

t.test('a kill in the middle of a drain loses no request: the restart drains again before the mask moves the queues', async (t) => {
  const db = await freshDatabase(t, 'sqlite')
  const { addr } = await startEmulatorProcess(t)
  const emu = connectEmulator(addr)
  t.teardown(() => emu.close())

  const first = await startServiceProcess(t, { databaseUrl: db.url, emulatorAddr: addr, env: ENV })
  if (!first.url) throw new Error(`the service did not start: ${first.p.stderr.join('\n')}`)
  for (const apqn of BUSY) t.equal(await emu.submitRequests(apqn, WORK), WORK, `${apqn}: work accepted`)
  const put = await restClient(first.url)('PUT', `${HOST}/desired`, {
    body: { masks: { apmask: '-5' }, mdevs: [{ uuid: DEV, spec: { adapters: [5], domains: [4, 0x47], controlDomains: [4] } }] },
  })
  t.equal(put.status, 200, `PUT desired acknowledged${put.status === 200 ? '' : `: ${put.text}`}`)
  t.same(put.body.plan.summary.drainedQueues, { count: 4, ranges: ['05.0004', '05.0047', '05.00ab', '05.00ff'], moreRanges: 0 })

  // Kill while the drain waits: the idle queues are already offline, the busy ones still work.
  await until('the idle queues of adapter 5 to go offline (the drain is running)', async () => (await emu.read('/sys/bus/ap/devices/05.00ab/online')) === '0\n')
  first.p.proc.kill('SIGKILL')
  await first.p.exited
  const atKill = await Promise.all(BUSY.map((q) => emu.requestStats(q)))
  t.equal((await emu.read('/sys/bus/ap/apmask')).trim(), FULL, 'killed before the mask moved anything')
  for (const [i, s] of atKill.entries())
    t.ok(s.completed < WORK && s.flushed === 0, `${BUSY[i]}: killed with work left (${s.completed}/${WORK} done, none flushed)`)

  // The queues keep working while the service is down, and a restart on a loaded machine can take longer than
  // the work left: top them up now, so the restarted service certainly finds them busy and must drain again.
  for (const apqn of BUSY) t.equal(await emu.submitRequests(apqn, TOP_UP), TOP_UP, `${apqn}: more work accepted before the restart`)
  const second = await startServiceProcess(t, { databaseUrl: db.url, emulatorAddr: addr, env: ENV })
  if (!second.url) throw new Error(`the service did not restart: ${second.p.stderr.join('\n')}`)
  const atRestart = await Promise.all(BUSY.map((q) => emu.requestStats(q)))
  t.ok(
    atRestart.some((s) => s.completed < TOTAL),
    `work is still queued when the restarted service takes over (${atRestart.map((s) => s.completed).join(', ')} of ${TOTAL} done)`,
  )

  const call = restClient(second.url)
  let last: unknown
  const dev = await until(
    `${DEV} Ready after the restart`,
    async () => {
      const r = await call('GET', `${HOST}/mdevs/${DEV}`)
      last = r.body
      return r.status === 200 && isReady(r.body) ? r.body : undefined
    },
    { timeoutMs: 120_000, everyMs: 200, describe: () => last },
  )
  t.same(dev.status.matrix, ['05.0004', '05.0047'])
  t.equal(dev.status.lostRequests, 0, 'status: no request lost')
  for (const apqn of BUSY)
    t.same(await emu.requestStats(apqn), { submitted: TOTAL, completed: TOTAL, flushed: 0, rejected: 0 }, `${apqn}: every request completed, none flushed`)
  t.equal((await emu.read('/sys/bus/ap/apmask')).trim(), `0xfb${'f'.repeat(62)}`, 'adapter 5 left the host')

  second.p.proc.kill('SIGTERM')
  t.same(
    await Promise.race([second.p.exited, new Promise((r) => setTimeout(() => r('still running after 15 s'), 15_000))]),
    { code: 0, signal: null },
    'graceful stop',
  )
  const store = await createStore(db.url)
  t.teardown(() => store.close())
  t.same(
    (await store.journal.listOpen('local')).map((e) => e.operation),
    [],
    'no journal step left planned',
  )
  const events = await store.events.list({ host: 'local', limit: 1000 })
  t.ok(
    events.some((e) => e.type === 'ReconcileResumed'),
    'the interrupted reconcile is recorded as resumed',
  )
  t.notOk(
    events.some((e) => e.type === 'QueueFlushed'),
    'no QueueFlushed event',
  )
})
