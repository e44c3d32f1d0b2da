/**
 * Hosts and agents that go away (issue 11 §3): an `apmatrix agent` and a remote emulator (`apmatrix emulator
 * serve`) killed (SIGKILL), paused (SIGSTOP/SIGCONT) and cut off (a TCP proxy of this test severs every
 * connection) in the middle of a plan, between two writes of one matrix device; slow writes (1 s each) and
 * random EIO/EBUSY through the emulator's fault injection (docs/emulator-sysfs.md "Fault injection").
 *
 * The service runs in this process (src/main.ts startService, SQLite), reaching the host through a proxy whose
 * target can change (a restarted process listens on a new port). The emulator's own gRPC face is reached
 * directly: it is the ground truth (the bus as the kernel shows it, its write log, its boot).
 *
 * What must hold, in every scenario:
 * - the service says the host cannot be reached: a `HostUnreachable` event, and devices that were Ready turn
 *   to `Ready=Unknown` (reason `HostUnreachable`);
 * - no device is ever reported Ready while the bus does not show its matrix: a sampler compares every GET with
 *   the emulator's view, read after the GET, whenever the emulator's boot is the one `GET /v1/hosts/local`
 *   reports (it reports the live boot: this also holds right after a reboot, through the control or behind
 *   the service's back, which the service must not cover with a stale Ready);
 * - when the host returns the plan resumes and converges (`HostReachable`, every device Ready, the bus equal to
 *   the desired state); a host that comes back rebooted (a restarted emulator: new boot, empty bus; or the
 *   Reboot control) is restored.
 * The figures are printed with t.comment (and appended to $APMATRIX_FIGURES_FILE when set); they are
 * measurements, not assertions. Faults injected: the process fault plus the slow writes it interrupted, or the
 * writes delayed / failed by injection. Writes failed: write-log entries with an errno. Time to Unreachable:
 * from the fault to the stored HostUnreachable. Time to converge: from the host's return (kill, pause, cut),
 * from the request (slow writes, random errors) or from the reboot, until every device is Ready and the bus
 * shows it.
 */
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import t, { type Test } from 'tap'
import { loadConfig } from '../../src/config.js'
import { type RemoteEmulator, connectEmulator } from '../../src/emulator-remote/client.js'
import { type RunningService, createLogger, startService } from '../../src/main.js'
import type { EventRecord } from '../../src/store/event-repo.js'
import { scratchDir, startMounted } from '../emulator/fuse/mounted-emulator.js'
import { type RestCall, condition, crossProduct, isReady, restClient, until } from '../scenario/rest-client.js'
import { agentArgs } from '../scenario/scenario-fixture.js'
import { freshDatabase } from '../store/pg-helper.js'
import { type CliProcess, readyLine, spawnCli } from './cli-process.js'

const HOST = '/v1/hosts/local'
const MATRIX = '/sys/devices/vfio_ap/matrix'
/** A device already Ready before the fault (it must turn Unknown, never stay Ready unseen). */
const U0 = 'a0000000-0000-4000-8000-000000000000'
/** The device whose plan the fault interrupts. */
const U1 = 'a1111111-1111-4111-8111-111111111111'
const SPEC0 = { adapters: [7], domains: [0xab] }
const SPEC1 = { adapters: [5, 6], domains: [4, 0x47] }
/** Adapters 5 and 6 leave the host drivers (rule 3: assigned APQNs must be outside apmask × aqmask); 7 is free for U0. */
const APMASK = '-5,-6,-7'

// ---- a proxy whose target can move ------------------------------------------------------------------

interface Proxy {
  address: string
  /** Where new connections go. */
  target: string
  /** Drops every connection and refuses new ones (a cable pulled) until restore(). */
  cut(): void
  restore(): void
}

async function movableProxy(t: Test, target: string): Promise<Proxy> {
  const sockets = new Set<net.Socket>()
  let down = false
  const proxy = { target } as Proxy
  const srv = net.createServer((client) => {
    if (down) return void client.destroy()
    const i = proxy.target.lastIndexOf(':')
    const up = net.connect(Number(proxy.target.slice(i + 1)), proxy.target.slice(0, i))
    for (const s of [client, up]) {
      sockets.add(s)
      s.on('error', () => undefined)
      s.on('close', () => {
        sockets.delete(s)
        client.destroy()
        up.destroy()
      })
    }
    client.pipe(up)
    up.pipe(client)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    srv.close()
  })
  proxy.address = `127.0.0.1:${(srv.address() as net.AddressInfo).port}`
  proxy.cut = () => {
    down = true
    for (const s of sockets) s.destroy()
  }
  proxy.restore = () => {
    down = false
  }
  return proxy
}

// ---- the host behind the proxy ------------------------------------------------------------------------

/** The host under test: how to stop, freeze and bring back the process the service talks to. */
interface Backend {
  kind: 'agent' | 'remote-emulator'
  proxy: Proxy
  /** The emulator's own face (ground truth); replaced when the emulator is restarted. */
  emu(): RemoteEmulator
  /** The process the service reaches (the agent, or the emulator). */
  served(): CliProcess
  /** Starts that process again (new port; the proxy follows). For the emulator: a fresh boot, an empty bus. */
  restart(): Promise<void>
}

const EMULATOR_READY = /^apmatrix emulator listening on (\S+) /
const AGENT_READY = /^apmatrix agent listening on (\S+) /

async function startEmulatorBackend(t: Test): Promise<Backend> {
  const start = async () => {
    const p = spawnCli(t, ['emulator', 'serve', '--addr', '127.0.0.1:0', '--profile', 'spec-fixture', '--clock', 'realtime', '--tick-ms', '10'])
    const m = await readyLine(p, EMULATOR_READY, 'the emulator ready line')
    if (!m) throw new Error(`the emulator did not start: ${p.stderr.join('\n')}`)
    const client = connectEmulator(m[1]!, { timeoutMs: 2000 })
    t.teardown(() => client.close())
    return { p, addr: m[1]!, client }
  }
  let cur = await start()
  const proxy = await movableProxy(t, cur.addr)
  return {
    kind: 'remote-emulator',
    proxy,
    emu: () => cur.client,
    served: () => cur.p,
    async restart() {
      cur = await start()
      proxy.target = cur.addr
    },
  }
}

async function startAgentBackend(t: Test): Promise<Backend> {
  const scratch = scratchDir(t)
  const bootIdFile = path.join(scratch, 'boot_id')
  const m = await startMounted(t, { clock: 'realtime', tickMs: 10, bootIdFile })
  const lock = path.join(scratch, 's390apconfig.lock')
  const start = async () => {
    const p = spawnCli(t, agentArgs(m.dir, lock, bootIdFile))
    const r = await readyLine(p, AGENT_READY, 'the agent ready line')
    if (!r) throw new Error(`the agent did not start: ${p.stderr.join('\n')}`)
    return { p, addr: r[1]! }
  }
  let cur = await start()
  const proxy = await movableProxy(t, cur.addr)
  return {
    kind: 'agent',
    proxy,
    emu: () => m.client,
    served: () => cur.p,
    async restart() {
      cur = await start()
      proxy.target = cur.addr
    },
  }
}

// ---- the service and what it says ------------------------------------------------------------------------

interface Rig {
  be: Backend
  svc: RunningService
  call: RestCall
  events(...types: string[]): Promise<EventRecord[]>
  sampler: Sampler
}

async function startRig(t: Test, be: Backend): Promise<Rig> {
  const db = await freshDatabase(t, 'sqlite')
  const cfg = loadConfig(
    {},
    {
      DATABASE_URL: db.url,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_HOSTS: `local@${be.proxy.address}`,
      APMATRIX_LOG_LEVEL: 'silent',
      APMATRIX_RESYNC_MS: '1000',
      APMATRIX_LOCK_WAIT_MS: '1000',
      APMATRIX_DRAIN_TIMEOUT_MS: '1000',
    },
  )
  const svc = await startService(cfg, createLogger(cfg.logLevel))
  t.teardown(() => svc.close())
  const call = restClient(svc.httpUrl)
  const events = async (...types: string[]) => {
    const all: EventRecord[] = []
    for (;;) {
      const page = await svc.store.events.list({ host: 'local', limit: 1000, since: all.at(-1)?.seq ?? 0 })
      all.push(...page)
      if (page.length < 1000) break
    }
    return types.length ? all.filter((e) => types.includes(e.type)) : all
  }
  const sampler = startSampler(t, call, be)
  return { be, svc, call, events, sampler }
}

async function mdev(call: RestCall, uuid: string) {
  const r = await call('GET', `${HOST}/mdevs/${uuid}`)
  return r.status === 200 ? r.body : null
}

/** The matrix the emulator's bus shows for a device (sorted APQNs), or null when the device is not on the bus. */
async function busMatrix(emu: RemoteEmulator, uuid: string): Promise<string[] | null> {
  try {
    const text = await emu.read(`${MATRIX}/${uuid}/matrix`)
    return text.split('\n').filter(Boolean).sort()
  } catch (e) {
    if ((e as { errno?: string }).errno === 'ENOENT') return null
    throw e
  }
}

/**
 * Compares, every 100 ms, what the service says of each device with the bus: a device reported Ready
 * (started, this generation) whose matrix the bus does not show is a false claim. The emulator is read after
 * the GET, and the sample counts only when the emulator's boot is the one the service reports for the host.
 */
interface Sampler {
  samples: number
  compared: number
  readyNotOnBus: Array<{ uuid: string; at: number; status: unknown; bus: string[] | null }>
  unknownSeen: number
  degradedErrnos: Set<string>
  stop(): Promise<void>
}

function startSampler(t: Test, call: RestCall, be: Backend): Sampler {
  let stopped = false
  const s: Sampler = {
    samples: 0,
    compared: 0,
    readyNotOnBus: [],
    unknownSeen: 0,
    degradedErrnos: new Set(),
    stop: async () => {
      stopped = true
      await loop
    },
  }
  const one = async () => {
    const host = (await call('GET', HOST)).body
    const list = (await call('GET', `${HOST}/mdevs`)).body?.items ?? []
    s.samples++
    const emu = be.emu()
    for (const m of list) {
      const ready = condition(m, 'Ready')
      if (ready?.status === 'Unknown') s.unknownSeen++
      const degraded = condition(m, 'Degraded')
      if (degraded?.status === 'True' && degraded.reason === 'ReconcileFailed') s.degradedErrnos.add(degraded.message.split(':')[0]!)
      if (!isReady(m) || m.spec.state !== 'started') continue
      let bus: string[] | null
      let boot: string
      try {
        bus = await busMatrix(emu, m.metadata.uuid)
        boot = (await emu.hostInfo()).bootId
      } catch {
        continue // the emulator itself is frozen or gone: nothing to compare with
      }
      if (boot !== host.bootId) continue
      s.compared++
      const want = crossProduct(m.spec.adapters, m.spec.domains)
      if (!bus || want.some((q) => !bus.includes(q))) s.readyNotOnBus.push({ uuid: m.metadata.uuid, at: Date.now(), status: m.status, bus })
    }
  }
  const loop = (async () => {
    while (!stopped) {
      await one().catch(() => undefined)
      await new Promise((r) => setTimeout(r, 100))
    }
  })()
  t.teardown(() => s.stop())
  return s
}

// ---- steps ---------------------------------------------------------------------------------------------

async function setFaults(be: Backend, rules: unknown[], seed = 11) {
  return be.emu().setFaults({ rules: rules as never, seed })
}

/** Masks set and U0 Ready (converged before any fault). */
async function baseline(t: Test, rig: Rig): Promise<void> {
  const { call } = rig
  const r = await call('PUT', `${HOST}/masks`, { body: { apmask: APMASK } })
  t.equal(r.status, 200, `masks accepted: ${r.text.slice(0, 200)}`)
  const c = await call('POST', `${HOST}/mdevs`, { body: { uuid: U0, spec: SPEC0 } })
  t.equal(c.status, 201, `U0 created: ${c.text.slice(0, 200)}`)
  await until('U0 Ready', async () => isReady(await mdev(call, U0)), { timeoutMs: 60_000 })
}

/** Starts U1's plan with 1 s per matrix write and resolves once its first write (create) is on the bus and the next one is under way. */
async function startPlanAndWaitBetweenWrites(rig: Rig): Promise<number> {
  const { be, call } = rig
  await setFaults(be, [{ path: MATRIX, rate: 1, kind: 'delay', delayMs: 1000 }])
  const since = (await be.emu().writeLog()).lastSeq
  const c = await call('POST', `${HOST}/mdevs`, { body: { uuid: U1, spec: SPEC1 } })
  if (c.status !== 201) throw new Error(`U1: ${c.status} ${c.text}`)
  await until(
    "U1's create on the bus (its assignments still to come)",
    async () => (await be.emu().writeLog(since)).entries.some((e) => e.path.endsWith('/create') && e.value.trim() === U1 && !e.errno),
    { timeoutMs: 30_000, everyMs: 20 },
  )
  return Date.now()
}

interface Figures {
  scenario: string
  faults: number
  writesFailed: number
  toUnreachableMs: number | null
  toConvergeMs: number | null
  readyNotOnBus: number
}
const figures: Figures[] = []

/** Every device Ready and the bus showing exactly the desired matrices. */
async function converged(t: Test, rig: Rig, uuids: string[], timeoutMs = 90_000): Promise<void> {
  const { call, be } = rig
  await until(
    `${uuids.join(', ')} Ready and on the bus`,
    async () => {
      for (const u of uuids) {
        const m = await mdev(call, u)
        if (!isReady(m)) return false
        const bus = await busMatrix(be.emu(), u)
        if (JSON.stringify(bus) !== JSON.stringify(crossProduct(m.spec.adapters, m.spec.domains))) return false
      }
      return true
    },
    { timeoutMs, everyMs: 100, describe: async () => Promise.all(uuids.map(async (u) => ({ u, m: (await mdev(call, u))?.status?.conditions }))) },
  )
  t.pass(`${uuids.length} devices Ready and on the bus`)
}

async function writesFailedSince(be: Backend, since: number): Promise<number> {
  return (await be.emu().writeLog(since)).entries.filter((e) => e.errno).length
}

/** Waits for the service to declare the host unreachable: the event, and U0's Ready turned Unknown. */
async function waitUnreachable(t: Test, rig: Rig, from: number): Promise<number> {
  const ev = await until('a HostUnreachable event', async () => (await rig.events('HostUnreachable')).find((e) => e.time.getTime() >= from - 1000), {
    timeoutMs: 60_000,
    everyMs: 50,
  })
  const took = Date.now() - from
  t.match(ev, { kind: 'host', name: 'local', type: 'HostUnreachable' }, 'the host is reported unreachable')
  const u0 = await until('U0 Ready=Unknown', async () => {
    const m = await mdev(rig.call, U0)
    return condition(m, 'Ready')?.status === 'Unknown' ? m : undefined
  })
  t.match(condition(u0, 'Ready'), { status: 'Unknown', reason: 'HostUnreachable' }, 'a device Ready before is no longer claimed Ready')
  return took
}

async function finish(t: Test, rig: Rig, f: Omit<Figures, 'readyNotOnBus'>): Promise<void> {
  await rig.sampler.stop()
  t.ok(rig.sampler.compared > 0, `the sampler compared ${rig.sampler.compared} Ready claims with the bus (${rig.sampler.samples} samples)`)
  t.same(rig.sampler.readyNotOnBus, [], 'no device was reported Ready while the bus did not show its matrix')
  figures.push({ ...f, readyNotOnBus: rig.sampler.readyNotOnBus.length })
}

// ---- scenarios -----------------------------------------------------------------------------------------

type Fault = 'kill' | 'pause' | 'cut'

async function processFault(t: Test, kind: Backend['kind'], fault: Fault): Promise<void> {
  const be = kind === 'agent' ? await startAgentBackend(t) : await startEmulatorBackend(t)
  const rig = await startRig(t, be)
  await baseline(t, rig)
  const logFrom = (await be.emu().writeLog()).lastSeq
  const at = await startPlanAndWaitBetweenWrites(rig)
  const victim = be.served()
  if (fault === 'kill') victim.proc.kill('SIGKILL')
  else if (fault === 'pause') victim.proc.kill('SIGSTOP')
  else be.proxy.cut()
  t.teardown(() => {
    if (!victim.dead) victim.proc.kill('SIGCONT')
  })
  const toUnreachable = await waitUnreachable(t, rig, at)
  // The emulator's state of the device right now: a half-made plan at most (create done, some assignments).
  const half = await busMatrix(be.emu(), U1).catch(() => 'unreadable')
  t.comment(`${kind} ${fault}: U1 on the bus while the host was away: ${JSON.stringify(half)}`)
  // Slow writes injected so far (a frozen or dead emulator does not answer: then they are not counted).
  const delayed = await Promise.race([
    be
      .emu()
      .faults()
      .then((f) => f.delayed)
      .catch(() => 0),
    new Promise<number>((r) => setTimeout(() => r(0), 3000)),
  ])
  // Writes go at full speed again once the host is back (the slow-write window served its purpose).
  if (!(kind === 'remote-emulator' && fault !== 'cut')) await be.emu().setFaults({ rules: [] })
  // The host is back once the restarted process listens (its start-up is not the service's to count).
  if (fault === 'kill') await be.restart()
  else if (fault === 'pause') victim.proc.kill('SIGCONT')
  else be.proxy.restore()
  const back = Date.now()
  if (kind === 'remote-emulator' && fault === 'pause') await be.emu().setFaults({ rules: [] })
  await converged(t, rig, [U0, U1])
  const toConverge = Date.now() - back
  if (kind === 'remote-emulator' && fault === 'kill') {
    // A fresh emulator: a new boot with nothing on its bus, restored to the desired state.
    const booted = await rig.events('HostBooted')
    t.ok(booted.length >= 1, 'the restarted emulator was seen as a new boot (HostBooted)')
    t.match(await be.emu().read('/sys/bus/ap/apmask'), /^0xf8/, 'the desired masks were written again on the new boot')
  }
  await until('a HostReachable event', async () => (await rig.events('HostReachable')).length > 0)
  t.pass('the host was reported reachable again')
  await finish(t, rig, {
    scenario: `${kind} ${fault}`,
    faults: 1 + delayed,
    writesFailed: await writesFailedSince(be, logFrom).catch(() => -1),
    toUnreachableMs: toUnreachable,
    toConvergeMs: toConverge,
  })
}

t.test('agent killed (SIGKILL) between two writes of one matrix device', (t) => processFault(t, 'agent', 'kill'))
t.test('agent paused (SIGSTOP, then SIGCONT) between two writes', (t) => processFault(t, 'agent', 'pause'))
t.test('agent cut off (connections severed) between two writes', (t) => processFault(t, 'agent', 'cut'))
t.test('remote emulator killed mid-plan and started again (new boot, empty bus): restored', (t) => processFault(t, 'remote-emulator', 'kill'))
t.test('remote emulator paused mid-plan (SIGSTOP, then SIGCONT)', (t) => processFault(t, 'remote-emulator', 'pause'))
t.test('remote emulator cut off mid-plan (connections severed)', (t) => processFault(t, 'remote-emulator', 'cut'))

t.test('slow writes (1 s each): the plan completes, nothing is claimed before it is on the bus', async (t) => {
  const be = await startEmulatorBackend(t)
  const rig = await startRig(t, be)
  await baseline(t, rig)
  const from = (await be.emu().writeLog()).lastSeq
  await setFaults(be, [{ path: '/sys', rate: 1, kind: 'delay', delayMs: 1000 }])
  const began = Date.now()
  const c = await rig.call('POST', `${HOST}/mdevs`, { body: { uuid: U1, spec: SPEC1 } })
  t.equal(c.status, 201)
  await converged(t, rig, [U0, U1])
  const took = Date.now() - began
  const st = await be.emu().faults()
  t.ok(st.delayed >= 2, `every write of the plan was slow: create and ap_config (${st.delayed} delayed)`)
  await be.emu().setFaults({ rules: [] })
  await finish(t, rig, {
    scenario: 'slow writes 1 s',
    faults: st.delayed,
    writesFailed: await writesFailedSince(be, from),
    toUnreachableMs: null,
    toConvergeMs: took,
  })
})

t.test('random EIO and EBUSY on writes: Degraded with the errno meanwhile, converged in the end', async (t) => {
  const be = await startEmulatorBackend(t)
  const rig = await startRig(t, be)
  await baseline(t, rig)
  const from = (await be.emu().writeLog()).lastSeq
  const set = await rig.call('PUT', `${HOST}/emulator/faults`, {
    body: {
      rules: [
        { path: MATRIX, rate: 0.4, kind: 'eio' },
        { path: `${MATRIX}/*/assign_*`, rate: 0.3, kind: 'ebusy' },
      ],
      seed: 20261207,
    },
  })
  t.equal(set.status, 200, `faults set through the service's emulator route: ${set.text.slice(0, 200)}`)
  const uuids = [U1, 'a2222222-2222-4222-8222-222222222222', 'a3333333-3333-4333-8333-333333333333']
  const specs = [SPEC1, { adapters: [5], domains: [0xab] }, { adapters: [6], domains: [0xff] }]
  const began = Date.now()
  for (let i = 0; i < uuids.length; i++) {
    const c = await rig.call('POST', `${HOST}/mdevs`, { body: { uuid: uuids[i], spec: specs[i] } })
    t.equal(c.status, 201)
  }
  await until('an injected failure reported as Degraded', async () => rig.sampler.degradedErrnos.size > 0 || undefined, { timeoutMs: 60_000 })
  await converged(t, rig, [U0, ...uuids], 120_000)
  const took = Date.now() - began
  const st = (await rig.call('GET', `${HOST}/emulator/faults`)).body
  t.ok(st.failed > 0, `writes failed by injection: ${st.failed} of ${st.writes}`)
  t.ok(
    [...rig.sampler.degradedErrnos].every((e) => e === 'EIO' || e === 'EBUSY'),
    `Degraded named the injected errno: ${[...rig.sampler.degradedErrnos].join(', ')}`,
  )
  const failedEvents = await rig.events('ReconcileFailed')
  t.ok(failedEvents.length > 0, `${failedEvents.length} ReconcileFailed events`)
  const cleared = await rig.call('DELETE', `${HOST}/emulator/faults`)
  t.same(cleared.body.rules, [], 'faults cleared')
  await finish(t, rig, {
    scenario: 'random EIO 40% / EBUSY 30%',
    faults: st.failed,
    writesFailed: await writesFailedSince(be, from),
    toUnreachableMs: null,
    toConvergeMs: took,
  })
})

t.test('a host rebooted through the emulator control is restored to the desired state', async (t) => {
  const be = await startEmulatorBackend(t)
  const rig = await startRig(t, be)
  await baseline(t, rig)
  await rig.call('POST', `${HOST}/mdevs`, { body: { uuid: U1, spec: SPEC1 } })
  await converged(t, rig, [U0, U1])
  const bootBefore = (await rig.call('GET', HOST)).body.bootId
  const began = Date.now()
  const r = await rig.call('POST', `${HOST}/emulator/reboot`)
  t.equal(r.status, 200)
  t.not(r.body.bootId, bootBefore, 'a new boot')
  await converged(t, rig, [U0, U1])
  const took = Date.now() - began
  t.ok((await rig.events('HostBooted')).length >= 1, 'HostBooted')
  await finish(t, rig, { scenario: 'emulator reboot (control)', faults: 1, writesFailed: 0, toUnreachableMs: null, toConvergeMs: took })
})

t.teardown(() => {
  const ms = (n: number | null) => (n === null ? '-' : `${(n / 1000).toFixed(1)} s`)
  const head = ['scenario', 'faults injected', 'writes failed', 'time to Unreachable', 'time to converge', 'Ready while not on bus']
  const cells = figures.map((f) => [f.scenario, String(f.faults), String(f.writesFailed), ms(f.toUnreachableMs), ms(f.toConvergeMs), String(f.readyNotOnBus)])
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: string[]) => `| ${c.map((x, i) => (i === 0 ? x.padEnd(width[i]!) : x.padStart(width[i]!))).join(' | ')} |`
  const table = [line(head), `|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n')
  t.comment(`host faults:\n${table}`)
  if (process.env.APMATRIX_FIGURES_FILE) fs.appendFileSync(process.env.APMATRIX_FIGURES_FILE, `${table}\n`)
})
