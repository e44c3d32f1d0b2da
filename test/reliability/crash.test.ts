/**
 * Crash safety (issue 3 §6, docs/api.md (Errors)): the emulated host runs in its own process (`apmatrix emulator
 * serve`, real-time clock), so its "kernel" state survives the service; the service (`apmatrix serve`) is a
 * child process that is SIGKILLed at named points inside reconcile (APMATRIX_CRASH_AT) and at seeded random
 * times while a client writes through REST. After each restart and convergence:
 * - every acknowledged write (each 2xx the client got before the kill) is stored;
 * - the bus equals the desired state (masks, each device's matrix and control domains, stopped = absent);
 * - no orphan matrix device (only stored, started devices and the foreign one this test made) and no duplicate;
 * - the journal has no step left `planned`.
 * The random schedule is seeded: set APMATRIX_CRASH_SEED to replay a run (the seed is printed).
 */
import t, { type Test } from 'tap'
import { connectEmulator, type RemoteEmulator } from '../../src/emulator-remote/client.js'
import { createStore } from '../../src/store/store.js'
import { requireOrSkip } from '../helpers/required.js'
import { freshDatabase, postgresMissing, type TestDatabase } from '../store/pg-helper.js'
import { crossProduct, isReady, restClient, until, type RestCall } from '../scenario/rest-client.js'
import { crashHookLine, startEmulatorProcess, startServiceProcess, type ServiceProcess } from './cli-process.js'

const HOST = '/v1/hosts/local'
const MATRIX = '/sys/devices/vfio_ap/matrix'
const TYPE = `${MATRIX}/mdev_supported_types/vfio_ap-passthrough`
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** A device apmatrix did not create (made by "root" on the bus): it must survive every reconcile. */
const FOREIGN = 'f0f0f0f0-0000-4000-8000-00000000000f'
/** apmask with bits 5, 6 and 7 cleared: adapters 5-7 belong to vfio_ap. */
const APMASK = `0xf8${'f'.repeat(62)}`
const FULL = `0x${'f'.repeat(64)}`

const NAMED = 'after the named crash points'
const SEED = Number(process.env.APMATRIX_CRASH_SEED ?? Date.now() % 2_147_483_647)

/** mulberry32: a small seeded PRNG, so a failing schedule can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface Spec {
  adapters: number[]
  domains: number[]
  controlDomains: number[]
  state: 'started' | 'stopped'
}

/** Each device draws from its own APQNs, so no write conflicts with another (the foreign device has 07.00ff). */
const SLOTS: Array<{ uuid: string; adapter: number; domains: number[] }> = [
  { uuid: 'c0000000-0000-4000-8000-000000000000', adapter: 5, domains: [0x04, 0x47] },
  { uuid: 'c0000000-0000-4000-8000-000000000001', adapter: 5, domains: [0xab, 0xff] },
  { uuid: 'c0000000-0000-4000-8000-000000000002', adapter: 6, domains: [0x04, 0x47] },
  { uuid: 'c0000000-0000-4000-8000-000000000003', adapter: 6, domains: [0xab, 0xff] },
  { uuid: 'c0000000-0000-4000-8000-000000000004', adapter: 7, domains: [0x04, 0x47] },
  { uuid: 'c0000000-0000-4000-8000-000000000005', adapter: 7, domains: [0xab] },
]
const CONTROL = [0x04, 0x47, 0xab, 0xff]

/** What the acknowledged writes say about one device: present with a spec, absent, or unknown (its write was cut off). */
type Expect = { present: true; spec: Spec } | { present: false } | 'unknown'

/** The client's view: the outcome of every write it sent. */
class Model {
  readonly devices = new Map<string, Expect>()
  /** Devices with an acknowledged delete not yet seen gone: left alone (a new create would race the removal). */
  readonly deleting = new Set<string>()
  acked = 0
  cut = 0
  readonly log: string[] = []
}

function pick<T>(rnd: () => number, xs: T[]): T {
  return xs[Math.floor(rnd() * xs.length)]!
}

function subset(rnd: () => number, xs: number[], nonEmpty: boolean): number[] {
  const out = xs.filter(() => rnd() < 0.5)
  if (nonEmpty && out.length === 0) out.push(pick(rnd, xs))
  return out.sort((a, b) => a - b)
}

function randomSpec(rnd: () => number, slot: (typeof SLOTS)[number]): Spec {
  return {
    adapters: [slot.adapter],
    domains: subset(rnd, slot.domains, true),
    controlDomains: subset(rnd, CONTROL, false),
    state: rnd() < 0.8 ? 'started' : 'stopped',
  }
}

/**
 * Sends random writes (create, merge-patch, delete) until `count` were sent or the service dies (a
 * connection error). Every answer updates the model: 2xx is acknowledged, a refused write changes
 * nothing, a cut-off one leaves that device unknown. Unexpected refusals are test failures.
 */
async function workload(t: Test, call: RestCall, model: Model, rnd: () => number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const eligible = SLOTS.filter((x) => model.devices.get(x.uuid) !== 'unknown' && !model.deleting.has(x.uuid))
    if (!eligible.length) return
    const slot = pick(rnd, eligible)
    const cur = model.devices.get(slot.uuid)
    if (cur === 'unknown') return
    let method: string
    let path = `${HOST}/mdevs`
    let body: string
    let headers: Record<string, string> = { 'content-type': 'application/json' }
    let next: Expect
    if (!cur?.present) {
      const spec = randomSpec(rnd, slot)
      method = 'POST'
      body = JSON.stringify({ uuid: slot.uuid, spec })
      next = { present: true, spec }
    } else if (rnd() < 0.75) {
      const spec = randomSpec(rnd, slot)
      method = 'PATCH'
      path += `/${slot.uuid}`
      body = JSON.stringify({ spec: { domains: spec.domains, controlDomains: spec.controlDomains, state: spec.state } })
      headers = { 'content-type': 'application/merge-patch+json' }
      next = { present: true, spec: { ...spec, adapters: cur.spec.adapters } }
    } else {
      method = 'DELETE'
      path += `/${slot.uuid}${rnd() < 0.3 ? '?force=true' : ''}`
      body = ''
      next = { present: false }
    }
    let res
    try {
      res = await call(method, path, body ? { raw: body, headers } : {})
    } catch (e) {
      // The service died with this write in flight: it may or may not be stored.
      model.devices.set(slot.uuid, 'unknown')
      model.cut++
      model.log.push(`${method} ${slot.uuid}: cut (${(e as Error).message})`)
      return
    }
    model.log.push(`${method} ${slot.uuid}: ${res.status}`)
    if (res.status >= 200 && res.status < 300) {
      model.acked++
      model.devices.set(slot.uuid, next)
      if (method === 'DELETE') model.deleting.add(slot.uuid)
    } else {
      t.fail(`unexpected answer to ${method} ${path}: ${res.status} ${res.text.slice(0, 300)} (seed ${SEED})`)
      return
    }
    await new Promise((r) => setTimeout(r, Math.floor(rnd() * 20)))
  }
}

/**
 * After a restart: a write that was cut off is now whatever the store holds (a write is stored whole or
 * not at all), and a device whose delete was acknowledged may be gone by now.
 */
async function resolve(call: RestCall, model: Model): Promise<void> {
  for (const [uuid, e] of model.devices) {
    if (e !== 'unknown' && !model.deleting.has(uuid)) continue
    const r = await call('GET', `${HOST}/mdevs/${uuid}`)
    if (r.status === 404) {
      model.devices.set(uuid, { present: false })
      model.deleting.delete(uuid)
    } else if (r.status === 200) {
      if (r.body.metadata.deletionRequestedAt) {
        model.devices.set(uuid, { present: false })
        model.deleting.add(uuid)
      } else model.devices.set(uuid, { present: true, spec: r.body.spec })
    } else throw new Error(`GET ${uuid}: ${r.status} ${r.text}`)
  }
}

/** Differences between the bus and the desired state the service reports (empty when converged). */
async function busMismatches(call: RestCall, emu: RemoteEmulator): Promise<string[]> {
  const out: string[] = []
  const list = await call('GET', `${HOST}/mdevs?limit=500`)
  if (list.status !== 200) return [`GET mdevs: ${list.status}`]
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const items: any[] = list.body.items
  const masks = (await call('GET', `${HOST}/masks`)).body
  for (const [name, want] of [
    ['apmask', masks.spec.apmask],
    ['aqmask', masks.spec.aqmask],
  ]) {
    const have = (await emu.read(`/sys/bus/ap/${name}`)).trim()
    if (have !== want) out.push(`${name}: bus ${have}, desired ${want}`)
  }
  const onBus = (await emu.list(MATRIX)).filter((e) => UUID_RE.test(e))
  const started = new Set<string>()
  for (const m of items) {
    const uuid = m.metadata.uuid as string
    if (m.metadata.deletionRequestedAt) {
      out.push(`${uuid}: deletion still pending`)
      continue
    }
    if (!isReady(m))
      out.push(
        `${uuid}: not Ready for generation ${m.metadata.generation}: ${JSON.stringify(m.status.conditions?.find((c: { type: string }) => c.type === 'Ready'))}`,
      )
    if (m.spec.state === 'stopped') {
      if (onBus.includes(uuid)) out.push(`${uuid}: stopped but on the bus`)
      continue
    }
    started.add(uuid)
    if (!onBus.includes(uuid)) {
      out.push(`${uuid}: started but not on the bus`)
      continue
    }
    const matrix = (await emu.read(`${MATRIX}/${uuid}/matrix`)).split('\n').filter(Boolean)
    const want = crossProduct(m.spec.adapters, m.spec.domains)
    if (JSON.stringify(matrix) !== JSON.stringify(want)) out.push(`${uuid}: matrix ${matrix.join(' ')} != ${want.join(' ')}`)
    const cds = (await emu.read(`${MATRIX}/${uuid}/control_domains`))
      .split('\n')
      .filter(Boolean)
      .map((x) => parseInt(x, 16))
    if (JSON.stringify(cds) !== JSON.stringify(m.spec.controlDomains))
      out.push(`${uuid}: control domains ${cds.join(',')} != ${m.spec.controlDomains.join(',')}`)
  }
  for (const uuid of onBus) if (!started.has(uuid) && uuid !== FOREIGN) out.push(`${uuid}: orphan on the bus (no stored started spec names it)`)
  return out
}

/** Starts a clean service, waits until it converged, and checks every invariant; resolves to that running service. */
async function verify(t: Test, phase: string, db: TestDatabase, emuAddr: string, emu: RemoteEmulator, model: Model): Promise<ServiceProcess> {
  const _started = Date.now()
  const svc = await startServiceProcess(t, { databaseUrl: db.url, emulatorAddr: emuAddr })
  if (!svc.url) throw new Error(`${phase}: the clean service did not start: ${svc.p.stderr.join('\n')}`)
  const call = restClient(svc.url)
  let last: string[] = []
  await until(`${phase}: the bus to equal the desired state (seed ${SEED})`, async () => (last = await busMismatches(call, emu)).length === 0, {
    timeoutMs: 30_000,
    everyMs: 100,
    describe: () => last,
  })
  t.pass(`${phase}: converged: the bus equals the desired state, no orphan`)

  // Every acknowledged write is there.
  const bad: string[] = []
  for (const [uuid, e] of model.devices) {
    if (e === 'unknown') continue
    const r = await call('GET', `${HOST}/mdevs/${uuid}`)
    if (!e.present) {
      if (r.status !== 404) bad.push(`${uuid}: acknowledged delete, but GET says ${r.status}`)
      continue
    }
    if (r.status !== 200) {
      bad.push(`${uuid}: acknowledged write lost: GET ${r.status}`)
      continue
    }
    // The writes never set a drain policy: the view says null (the service default) for it.
    const expected = { ...e.spec, drain: null }
    if (JSON.stringify(r.body.spec) !== JSON.stringify(expected))
      bad.push(`${uuid}: spec ${JSON.stringify(r.body.spec)} != acknowledged ${JSON.stringify(expected)}`)
  }
  t.same(bad, [], `${phase}: every acknowledged write is stored (${model.acked} acknowledged, ${model.cut} cut off; seed ${SEED})`)
  const masks = (await call('GET', `${HOST}/masks`)).body
  t.equal(masks.spec.apmask, APMASK, `${phase}: the acknowledged mask write is stored`)

  // No duplicate: one bus device per stored started spec, plus the foreign one, which is untouched.
  const items = (await call('GET', `${HOST}/mdevs?limit=500`)).body.items as Array<{ metadata: { uuid: string }; spec: Spec }>
  const uuids = items.map((m) => m.metadata.uuid)
  t.equal(new Set(uuids).size, uuids.length, `${phase}: no duplicate record`)
  const onBus = (await emu.list(MATRIX)).filter((e) => UUID_RE.test(e))
  t.same(
    onBus.sort(),
    [...items.filter((m) => m.spec.state === 'started').map((m) => m.metadata.uuid), FOREIGN].sort(),
    `${phase}: the bus holds exactly the started devices and the foreign one`,
  )
  t.equal(await emu.read(`${MATRIX}/${FOREIGN}/matrix`), '07.00ff\n', `${phase}: the foreign device is untouched`)

  await resolve(call, model)
  t.same([...model.deleting], [], `${phase}: no deletion left pending`)

  // After convergence no pass has work, so nothing new is journaled while this reads.
  await checkJournal(t, phase, db, phase === NAMED)
  return svc
}

async function checkJournal(t: Test, phase: string, db: TestDatabase, expectResumed = false): Promise<void> {
  const store = await createStore(db.url)
  try {
    const open = await store.journal.listOpen('local')
    t.same(
      open.map((e) => e.operation),
      [],
      `${phase}: no journal step left planned`,
    )
    if (expectResumed) {
      // A kill before a bus write leaves the step `planned`; the next replica closes it and says so.
      const resumed = (await store.events.list({ host: 'local', limit: 1000 })).filter((e) => e.type === 'ReconcileResumed')
      t.ok(resumed.length > 0, `${phase}: a ReconcileResumed event records the abandoned steps`)
    }
  } finally {
    await store.close()
  }
}

/**
 * Runs a service with `crashAt` (or `running`, a service already up, killed by the test after
 * `killAfterMs`) while the workload writes, until it is dead.
 */
async function crashRound(
  t: Test,
  o: {
    phase: string
    db: TestDatabase
    emuAddr: string
    model: Model
    rnd: () => number
    crashAt?: string
    running?: ServiceProcess
    killAfterMs?: number
    writes: number
  },
): Promise<void> {
  const started = Date.now()
  const svc: ServiceProcess = o.running ?? (await startServiceProcess(t, { databaseUrl: o.db.url, emulatorAddr: o.emuAddr, crashAt: o.crashAt }))
  let timer: NodeJS.Timeout | undefined
  if (svc.url) {
    const call = restClient(svc.url)
    if (o.killAfterMs !== undefined) timer = setTimeout(() => svc.p.proc.kill('SIGKILL'), o.killAfterMs)
    else await resolve(call, o.model).catch(() => undefined) // the crash point may already have killed it
    await workload(t, call, o.model, o.rnd, o.writes)
  }
  // A named point may come after the last write (the reconcile runs behind the answers): wait for it, bounded.
  const exit = await Promise.race([svc.p.exited, new Promise<null>((r) => setTimeout(() => r(null), 8_000))])
  clearTimeout(timer)
  if (exit === null) {
    svc.p.proc.kill('SIGKILL')
    await svc.p.exited
  }
  const hook = crashHookLine(svc.p)
  const diag = { exitCode: svc.p.proc.exitCode, stderr: svc.p.stderr.slice(-15), seed: SEED }
  if (o.crashAt)
    t.match(hook, `SIGKILL at ${o.crashAt.split(':')[0]} #${o.crashAt.split(':')[1]}`, `${o.phase}: the process killed itself at ${o.crashAt}`, diag)
  t.equal(svc.p.proc.signalCode, 'SIGKILL', `${o.phase}: the service died of SIGKILL (${svc.url ? 'after' : 'before'} its ready line)`, diag)
  t.comment(`${o.phase} (${Date.now() - started} ms): ${o.model.log.splice(0).join('; ') || 'no write answered'}`)
}

async function crashSuite(t: Test, provider: TestDatabase['provider'], points: string[], randomRounds: number): Promise<void> {
  t.comment(`crash seed ${SEED} (replay with APMATRIX_CRASH_SEED=${SEED})`)
  const db = await freshDatabase(t, provider)
  const { addr } = await startEmulatorProcess(t)
  const emu = connectEmulator(addr)
  t.teardown(() => emu.close())
  const model = new Model()
  const rnd = prng(SEED)

  // Set-up with a clean service: adapters 5-7 go to vfio_ap (an acknowledged write), then root makes a device
  // of its own on the bus (V-10 allows it: 07.00ff is outside apmask x aqmask).
  {
    const svc = await startServiceProcess(t, { databaseUrl: db.url, emulatorAddr: addr })
    if (!svc.url) throw new Error(`the service did not start: ${svc.p.stderr.join('\n')}`)
    const r = await restClient(svc.url)('PUT', `${HOST}/masks`, { body: { apmask: '-5,-6,-7' } })
    t.equal(r.status, 200, `PUT masks: ${r.status === 200 ? 'ok' : r.text}`)
    await until('the masks on the bus', async () => (await emu.read('/sys/bus/ap/apmask')).trim() === APMASK)
    t.equal((await emu.read('/sys/bus/ap/aqmask')).trim(), FULL)
    await emu.write(`${TYPE}/create`, `${FOREIGN}\n`)
    await emu.write(`${MATRIX}/${FOREIGN}/assign_adapter`, '7\n')
    await emu.write(`${MATRIX}/${FOREIGN}/assign_domain`, '0xff\n')
    svc.p.proc.kill('SIGKILL')
    await svc.p.exited
  }

  // Named points, one restart after the other: each restart first finishes what the killed one left.
  for (const crashAt of points) await crashRound(t, { phase: crashAt, db, emuAddr: addr, model, rnd, crashAt, writes: 20 })
  let svc = await verify(t, NAMED, db, addr, emu, model)

  // Random kills of a running, converged service while it takes writes and reconciles them.
  for (let i = 1; i <= randomRounds; i++) {
    const killAfterMs = Math.floor(rnd() * 400)
    const phase = `random kill ${i} at ${killAfterMs} ms`
    await crashRound(t, { phase, db, emuAddr: addr, model, rnd, running: svc, killAfterMs, writes: 40 })
    svc = await verify(t, phase, db, addr, emu, model)
  }
  svc.p.proc.kill('SIGTERM')
  const stopped = await Promise.race([svc.p.exited, new Promise<string>((r) => setTimeout(() => r('still running after 15 s'), 15_000))])
  t.same(stopped, { code: 0, signal: null }, 'the last service stops gracefully (SIGTERM)')
  await checkJournal(t, 'after the graceful stop', db)
}

// Each restart costs a service start (seconds on a loaded 2-core machine): PostgreSQL gets the points SQLite does not.
t.test('sqlite', async (t) => crashSuite(t, 'sqlite', ['beforeBusWrite:1', 'afterBusWrite:2', 'beforeStatusWrite:1', 'beforeBusWrite:3'], 2))
requireOrSkip(
  t,
  'postgres',
  postgresMissing(),
  async (t) => crashSuite(t, 'postgres', ['beforeBusWrite:2', 'afterBusWrite:1', 'beforeStatusWrite:1'], 1),
  'postgres',
)
