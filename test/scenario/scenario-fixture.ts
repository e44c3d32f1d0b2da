/**
 * The whole service in this process, as `apmatrix serve` wires it (src/main.ts startService): a fresh
 * database, REST on 127.0.0.1 with an ephemeral port, the real reconciler, and one host `local` behind
 * one of the backends (the in-process emulator by default; see {@link ScenarioBackend}). Requests go
 * over a real socket. Closed at t's teardown.
 */
import type { Test } from 'tap'
import { loadConfig } from '../../src/config.js'
import { createLogger, startService, type RunningService } from '../../src/main.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { connectEmulator } from '../../src/emulator-remote/client.js'
import type { EventRecord } from '../../src/store/event-repo.js'
import { freshDatabase, type TestDatabase } from '../store/pg-helper.js'
import path from 'node:path'
import { UNKNOWN_GUEST } from '../../src/bus/sysfs-guests.js'
import { readyLine, spawnCli, startEmulatorProcess } from '../reliability/cli-process.js'
import { scratchDir, startMounted } from '../emulator/fuse/mounted-emulator.js'
import { isReady, restClient, until, type RestCall } from './rest-client.js'
import { emulatorControls, localStats, restControls, type HostControls } from './host-controls.js'

/**
 * How host `local` is driven: `in-process` (an emulator inside the service), `remote-emulator` (an
 * `apmatrix emulator serve` child over gRPC), `sysfs` (the `sysfs` driver over that child's FUSE mount,
 * plain file I/O as on an LPAR) or `agent` (an `apmatrix agent` child serving that mount).
 */
export type ScenarioBackend = 'in-process' | 'remote-emulator' | 'sysfs' | 'agent'

/** The guest name the service can know: sysfs shows a device in use, not by whom (src/bus/sysfs-guests.ts). */
export function seenGuest(backend: ScenarioBackend, guest: string): string {
  return backend === 'sysfs' || backend === 'agent' ? UNKNOWN_GUEST : guest
}

export const HOST = '/v1/hosts/local'
export const MATRIX = '/sys/devices/vfio_ap/matrix'

export interface Scenario {
  svc: RunningService
  call: RestCall
  backend: ScenarioBackend
  /** Root and the hypervisor on the host, behind the service's back. */
  host: HostControls
  /** GET of one device; the object, or null on 404. */
  mdev(uuid: string): Promise<any> // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Polls one device until `pred` holds; resolves to the object. */
  waitMdev(uuid: string, what: string, pred: (m: any) => boolean, timeoutMs?: number): Promise<any> // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Polls until the device is Ready for its current generation. */
  waitReady(uuid: string): Promise<any> // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Polls until GET answers 404 (the reconciler removed it and dropped the record). */
  waitGone(uuid: string): Promise<void>
  /** A sysfs attribute as root reads it on the host: the text, or null when it does not exist. */
  sysfs(path: string): Promise<string | null>
  /** Stored events of host `local`, optionally of some types. */
  events(...types: string[]): Promise<EventRecord[]>
  /**
   * Polls until an event of `type` matching `pred` is stored; resolves to it. A pass appends its events
   * after it wrote status, so a test that saw the status must still wait for the events.
   */
  waitEvent(type: string, pred?: (e: EventRecord) => boolean): Promise<EventRecord>
}

/** Where the host lives, the settings that make the service manage it, and how a test reaches it. */
async function startBackend(
  t: Test,
  backend: ScenarioBackend,
): Promise<{ env: Record<string, string>; controls: (svc: RunningService, call: RestCall) => HostControls }> {
  if (backend === 'in-process') {
    return {
      env: { APMATRIX_PROFILE: 'spec-fixture' },
      controls: (svc, call) => {
        const local = svc.hosts[0]
        if (!(local instanceof LocalEmulatedHost)) throw new Error('expected the in-process emulated host local')
        return restControls(call, HOST, localStats(local))
      },
    }
  }
  if (backend === 'remote-emulator') {
    const { addr } = await startEmulatorProcess(t)
    const emu = connectEmulator(addr)
    t.teardown(() => emu.close())
    return { env: { APMATRIX_EMULATOR_ADDR: addr }, controls: (_svc, call) => restControls(call, HOST, (apqn) => emu.requestStats(apqn)) }
  }
  // The emulated LPAR as a filesystem; root and the hypervisor reach it through its own gRPC face.
  const scratch = scratchDir(t)
  // The emulator keeps its boot id in a file, as a kernel does in /proc: the service tells a reboot by it.
  const bootIdFile = path.join(scratch, 'boot_id')
  const m = await startMounted(t, { clock: 'realtime', tickMs: 10, bootIdFile })
  const lock = path.join(scratch, 's390apconfig.lock')
  const controls = () => emulatorControls(m.client)
  if (backend === 'sysfs') {
    return {
      env: {
        APMATRIX_HOSTS: `local=sysfs:${m.dir}`,
        APMATRIX_SYSFS_WATCH: 'poll',
        APMATRIX_SYSFS_POLL_MS: '100',
        APMATRIX_SYSFS_LOCK_PATH: lock,
        APMATRIX_SYSFS_BOOT_ID_FILE: bootIdFile,
      },
      controls,
    }
  }
  const agent = spawnCli(t, agentArgs(m.dir, lock, bootIdFile))
  const ready = await readyLine(agent, /^apmatrix agent listening on (\S+) /, 'the agent ready line')
  if (!ready) throw new Error(`the agent did not start: ${agent.stderr.join('\n')}`)
  return { env: { APMATRIX_HOSTS: `local@${ready[1]}` }, controls }
}

/**
 * Starts the service on a fresh empty database of `db`'s provider (each scenario starts from nothing)
 * with host `local` behind `backend`; `env` overrides settings (e.g. APMATRIX_DRAIN_TIMEOUT_MS).
 */
export async function startScenario(t: Test, db: TestDatabase, env: Record<string, string> = {}, backend: ScenarioBackend = 'in-process'): Promise<Scenario> {
  const fresh = await freshDatabase(t, db.provider)
  const be = await startBackend(t, backend)
  const cfg = loadConfig(
    {},
    {
      DATABASE_URL: fresh.url,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_LOG_LEVEL: 'silent',
      APMATRIX_RESYNC_MS: '1000',
      ...be.env,
      ...env,
    },
  )
  const svc = await startService(cfg, createLogger(cfg.logLevel))
  t.teardown(() => svc.close())
  const call = restClient(svc.httpUrl)
  const host = be.controls(svc, call)

  const mdev = async (uuid: string) => {
    const r = await call('GET', `${HOST}/mdevs/${uuid}`)
    if (r.status === 404) return null
    if (r.status !== 200) throw new Error(`GET mdev ${uuid}: ${r.status} ${r.text}`)
    return r.body
  }
  const waitMdev: Scenario['waitMdev'] = async (uuid, what, pred, timeoutMs = 20_000) => {
    let last: unknown
    return until(
      `${uuid}: ${what}`,
      async () => {
        last = await mdev(uuid)
        return last !== null && pred(last) ? last : undefined
      },
      { timeoutMs, describe: () => last },
    )
  }
  const events: Scenario['events'] = async (...types) => {
    const all = await svc.store.events.list({ host: 'local', limit: 1000 })
    return types.length ? all.filter((e) => types.includes(e.type)) : all
  }
  return {
    svc,
    call,
    backend,
    host,
    mdev,
    waitMdev,
    waitReady: (uuid) => waitMdev(uuid, 'Ready=True with observedGeneration == generation', isReady),
    waitGone: async (uuid) => {
      let last: unknown
      await until(`${uuid} to be gone (GET 404)`, async () => (last = await mdev(uuid)) === null, { describe: () => last })
    },
    sysfs: (path) => host.read(path),
    events,
    waitEvent: (type, pred = () => true) =>
      until(`a ${type} event`, async () => (await events(type)).find(pred), { describe: async () => (await events()).map((e) => `${e.type}:${e.name}`) }),
  }
}

/** The agent's command line in the tests: `sysfsRoot` plays /sys, polled every 100 ms, with its lock and boot id files. */
export function agentArgs(sysfsRoot: string, lockPath: string, bootIdFile: string): string[] {
  return [
    'agent',
    '--sysfs-root',
    sysfsRoot,
    '--addr',
    '127.0.0.1:0',
    '--watch',
    'poll',
    '--poll-ms',
    '100',
    '--lock-path',
    lockPath,
    '--boot-id-file',
    bootIdFile,
  ]
}
