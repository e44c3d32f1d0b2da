/**
 * FUSE benchmark (`npm run bench -- fuse`, issue 7 §6): what driving a host through plain file I/O costs,
 * measured on the emulator's FUSE view (`apmatrix emulator serve --mount`) beside the in-process emulator
 * in the same run.
 *  1. single attribute writes per second: assign_adapter/unassign_adapter alternating on one matrix device,
 *     one awaited write at a time, (a) through the `sysfs` driver's access over the mount (open, one
 *     write(2), close: what a reconcile step does on an LPAR) and (b) into the in-process emulator core
 *     through the same SysfsAccess interface; the ratio is the figure that travels between machines.
 *  2. bring-up of the `full` profile (256 adapters x 256 domains) through one `PUT desired` (apmask 0x, 256
 *     devices of one adapter x 256 domains), until every device is Ready: the service with host `local` as
 *     an in-process emulator, then as the `sysfs` driver over the mount of an emulator process.
 * Needs root and FUSE (fuse-native, /dev/fuse, fusermount3); without them the suite says why and stops.
 * Environment: APMATRIX_BENCH_FUSE_CAP_S (default 120, so that `npm run bench` stays within minutes; the
 * bring-up over the mount takes longer than that on a loaded 2-core machine): the longest a bring-up may take
 * before it is cut. Closing the service after a cut waits at most CLOSE_CAP_MS for the reconcile pass in flight.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { NodeSysfsAccess } from '../src/bus/node-sysfs-access.js'
import type { SysfsAccess } from '../src/bus/port.js'
import { loadConfig } from '../src/config.js'
import { createHost } from '../src/emulator/host.js'
import { FuseUnavailableError, loadFuseBinding } from '../src/emulator/fuse/fuse-binding.js'
import { lazyUnmount, mountAt } from '../src/emulator/fuse/mountpoint.js'
import { checkFuseDevice } from '../src/emulator/fuse/sysfs-mount.js'
import { startService } from '../src/main.js'
import { projectRoot } from '../src/paths.js'
import { printTable } from './http-load-helpers.js'
import { callJson, expectStatus, isReady, sampleRss, waitUntil } from './service-helpers.js'
import type { BenchSuite } from './suite.js'

const MATRIX = '/sys/devices/vfio_ap/matrix'
const CREATE = `${MATRIX}/mdev_supported_types/vfio_ap-passthrough/create`
const DEV = '00000000-0000-4000-8000-00000000f05e'
const WARMUP_OPS = 200
const MIN_OPS = 2000
const MIN_MS = 2000
const FULL = 256
/** The longest wait for the service to close after a bring-up. */
const CLOSE_CAP_MS = 60_000

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US')
const fmtS = (ms: number | undefined) => (ms === undefined ? 'cut at the cap' : `${(ms / 1000).toFixed(1)} s`)

/** Why the FUSE view cannot be measured here, or undefined. */
function fuseMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root'
  try {
    loadFuseBinding()
    checkFuseDevice()
  } catch (e) {
    if (e instanceof FuseUnavailableError) return e.message
    throw e
  }
  return undefined
}

/** `apmatrix emulator serve --mount` as a child; resolves once it is mounted. */
async function startMountedEmulator(profile: string, dir: string): Promise<{ proc: ChildProcess; stop(): Promise<void> }> {
  const proc = spawn(
    process.execPath,
    [path.join(projectRoot, 'bin/apmatrix.mjs'), 'emulator', 'serve', '--addr', '127.0.0.1:0', '--profile', profile, '--mount', dir],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let out = ''
  let err = ''
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const exited = new Promise<void>((r) => proc.once('exit', () => r()))
  const end = Date.now() + 120_000
  while (!/listening on/.test(out)) {
    if (proc.exitCode !== null || Date.now() > end) throw new Error(`emulator serve --mount did not come up: ${err}`)
    await sleep(50)
  }
  return {
    proc,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM')
      await Promise.race([exited, sleep(10_000)])
      if (mountAt(dir)) await lazyUnmount(dir)
    },
  }
}

/** Awaited writes/s of the assign/unassign toggle through `fs`. */
async function writeRate(fs: SysfsAccess): Promise<{ ops: number; ms: number }> {
  const op = (i: number) => fs.write(`${MATRIX}/${DEV}/${i % 2 === 0 ? 'assign_adapter' : 'unassign_adapter'}`, '5')
  for (let i = 0; i < WARMUP_OPS; i++) await op(i)
  let ops = 0
  const t0 = performance.now()
  while (ops < MIN_OPS || performance.now() - t0 < MIN_MS) await op(WARMUP_OPS + ops++)
  return { ops, ms: performance.now() - t0 }
}

/** One PUT desired of the full host, then polls until every device is Ready (or the cap). */
async function fullBringUp(env: Record<string, string>, capMs: number): Promise<{ putMs: number; readyMs?: number; rssPeak: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-bench-fuse-'))
  const cfg = loadConfig(
    {},
    {
      DATABASE_URL: `file:${path.join(dir, 'bench.db')}`,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_LOG_LEVEL: 'silent',
      ...env,
    },
  )
  const rss = sampleRss()
  const svc = await startService(cfg)
  try {
    const domains = Array.from({ length: FULL }, (_, d) => d)
    const doc = {
      owner: 'bench',
      masks: { apmask: '0x' },
      mdevs: Array.from({ length: FULL }, (_, a) => ({
        uuid: `00000000-0000-4000-8000-${(0xf000 + a).toString(16).padStart(12, '0')}`,
        spec: { adapters: [a], domains },
      })),
    }
    const t0 = performance.now()
    const put = await callJson(svc.httpUrl, 'PUT', '/v1/hosts/local/desired', doc, capMs)
    expectStatus('PUT desired', put, 200)
    const putMs = performance.now() - t0
    const w = await waitUntil(svc, async () => (await svc.store.mdevs.listAll('local')).filter(isReady).length === FULL, { timeoutMs: capMs, pollMs: 500 })
    return { putMs, ...(w.ok ? { readyMs: performance.timeOrigin + w.at - (performance.timeOrigin + t0) } : {}), rssPeak: rss.stop() }
  } finally {
    // A pass cut at the cap may run on for minutes; closing waits for it, so the wait is bounded.
    const closed = await Promise.race([svc.close().then(() => true), new Promise<false>((res) => setTimeout(() => res(false), CLOSE_CAP_MS).unref())])
    if (!closed) console.log(`(service close had not finished after ${CLOSE_CAP_MS / 1000} s: a reconcile pass was still running; left behind)`)
    // Unlinking the database of a service still closing is harmless on Linux (its open files stay valid).
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

async function run(): Promise<void> {
  const why = fuseMissing()
  if (why) {
    console.log(`skipped: the FUSE view cannot be mounted here (${why})`)
    return
  }
  const capMs = Number(process.env.APMATRIX_BENCH_FUSE_CAP_S ?? '120') * 1000
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-bench-mnt-'))
  try {
    // 1. single attribute writes
    const core = createHost({ profile: 'spec-fixture' })
    core.write('/sys/bus/ap/apmask', '-5\n')
    core.write(CREATE, `${DEV}\n`)
    const inProcess: SysfsAccess = {
      read: async (p) => core.read(p),
      write: async (p, v) => core.write(p, v),
      list: async (p) => core.list(p),
      readlink: async (p) => core.readlink(p),
    }
    const local = await writeRate(inProcess)

    const dir = path.join(scratch, 'sys')
    const emu = await startMountedEmulator('spec-fixture', dir)
    let mounted: { ops: number; ms: number }
    try {
      const access = new NodeSysfsAccess({ root: dir, lock: null })
      await access.write('/sys/bus/ap/apmask', '-5\n')
      await access.write(CREATE, DEV)
      mounted = await writeRate(access)
      await access.close()
    } finally {
      await emu.stop()
    }
    const rLocal = (local.ops / local.ms) * 1000
    const rMount = (mounted.ops / mounted.ms) * 1000
    console.log('\n1. single attribute writes (assign_adapter/unassign_adapter on one device, one awaited write at a time)')
    printTable([
      ['target', 'writes', 'writes/s', 'us/write', 'ratio'],
      ['in-process emulator core (baseline)', fmtInt(local.ops), fmtInt(rLocal), ((1000 / rLocal) * 1000).toFixed(1), '1'],
      ['sysfs driver access over the FUSE mount', fmtInt(mounted.ops), fmtInt(rMount), ((1000 / rMount) * 1000).toFixed(1), `${(rMount / rLocal).toFixed(4)}x`],
    ])

    // 2. full bring-up
    const inProc = await fullBringUp({ APMATRIX_PROFILE: 'full' }, capMs)
    const fullDir = path.join(scratch, 'full')
    const fullEmu = await startMountedEmulator('full', fullDir)
    let viaMount: Awaited<ReturnType<typeof fullBringUp>>
    try {
      viaMount = await fullBringUp(
        { APMATRIX_HOSTS: `local=sysfs:${fullDir}`, APMATRIX_SYSFS_WATCH: 'poll', APMATRIX_SYSFS_LOCK_PATH: path.join(scratch, 'ap.lock') },
        capMs,
      )
    } finally {
      await fullEmu.stop()
    }
    console.log(
      `\n2. full profile (${FULL} x ${FULL}) through one PUT desired: ${FULL} devices of 1 adapter x ${FULL} domains, until all Ready (cap ${capMs / 1000} s)`,
    )
    const ratio = inProc.readyMs && viaMount.readyMs ? `${(viaMount.readyMs / inProc.readyMs).toFixed(2)}x the time` : 'n/a'
    printTable([
      ['host local', 'PUT answered', 'all Ready', 'peak rss of this process', 'vs in-process'],
      ['in-process emulator (baseline)', fmtS(inProc.putMs), fmtS(inProc.readyMs), `${(inProc.rssPeak / 2 ** 20).toFixed(0)} MiB`, '1'],
      ['sysfs driver over the FUSE mount', fmtS(viaMount.putMs), fmtS(viaMount.readyMs), `${(viaMount.rssPeak / 2 ** 20).toFixed(0)} MiB`, ratio],
    ])
  } finally {
    if (!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${scratch}`)) fs.rmSync(scratch, { recursive: true, force: true })
  }
}

export const fuseSuite: BenchSuite = {
  name: 'fuse',
  description: 'the FUSE view: attribute writes/s and the full bring-up on the sysfs driver, each beside the in-process emulator',
  run,
}
