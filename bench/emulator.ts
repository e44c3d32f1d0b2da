/**
 * Emulator benchmark (`npm run bench -- emulator`): bring-up time and memory of the `full` profile
 * (256 adapters x 256 domains = 65,536 queues), mask writes that move every queue (B-25/B-32: the
 * revise step visits all queue devices), and the per-op cost of assign/unassign and `guest_matrix`
 * reads. The same ops run on `spec-fixture` in the same process: the full/fixture ratio shows
 * whether a single mdev op grows with the size of the machine (it should not).
 */
import { createHost } from '../src/emulator/host.js'
import type { EmulatedHostApi } from '../src/emulator/api.js'
import type { BenchSuite } from './suite.js'

const MATRIX = '/sys/devices/vfio_ap/matrix'
const CREATE = `${MATRIX}/mdev_supported_types/vfio_ap-passthrough/create`
const APMASK = '/sys/bus/ap/apmask'
const ALL_ONES = `0x${'f'.repeat(64)}\n`
/** Untimed ops before each rate measurement (even, so an alternating op sequence keeps its phase). */
const WARMUP_OPS = 500
/** Minimum ops and wall time of one rate measurement. */
const MIN_OPS = 2000
const MIN_MS = 1000
const MASK_ROUNDS = 3

const UUID_TOGGLE = '00000000-0000-4000-8000-000000000001'
const UUID_SMALL = '00000000-0000-4000-8000-000000000002'
const UUID_BIG = '00000000-0000-4000-8000-000000000003'

interface Rate {
  ops: number
  ms: number
}

/**
 * Runs `op(i)` WARMUP_OPS times untimed (so JIT warm-up does not favour whichever profile runs
 * second), then in batches until at least MIN_OPS ops and MIN_MS ms have passed.
 */
function measureRate(op: (i: number) => void): Rate {
  for (let i = 0; i < WARMUP_OPS; i++) op(i)
  let ops = 0
  let batch = 100
  const t0 = performance.now()
  for (;;) {
    for (let k = 0; k < batch; k++) op(WARMUP_OPS + ops + k)
    ops += batch
    const ms = performance.now() - t0
    if (ops >= MIN_OPS && ms >= MIN_MS) return { ops, ms }
    if (ms < MIN_MS / 4) batch *= 2
  }
}

function timeOnce(fn: () => void): number {
  const t0 = performance.now()
  fn()
  return performance.now() - t0
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

interface ProfileFigures {
  bringUpMs: number
  queues: number
  memory?: { rssMiB: number; maxRssMiB: number; heapUsedMiB: number }
  maskOffMs: number
  maskOnMs: number
  scanMs: number
  toggle: Rate
  toggleShape: string
  smallRead: Rate
  smallShape: string
  smallLines: number
  bigRead?: Rate
  bigShape?: string
  bigLines?: number
}

const mib = (bytes: number): number => bytes / (1024 * 1024)

function createMdev(host: EmulatedHostApi, uuid: string, adapters: number[], domains: number[]): void {
  host.write(CREATE, `${uuid}\n`)
  for (const a of adapters) host.write(`${MATRIX}/${uuid}/assign_adapter`, `${a}\n`)
  for (const d of domains) host.write(`${MATRIX}/${uuid}/assign_domain`, `${d}\n`)
}

function guestMatrixLines(host: EmulatedHostApi, uuid: string): number {
  return host
    .read(`${MATRIX}/${uuid}/guest_matrix`)
    .split('\n')
    .filter((l) => l !== '').length
}

function benchProfile(profile: string, withMemory: boolean): ProfileFigures {
  let host!: EmulatedHostApi
  const bringUpMs = timeOnce(() => {
    host = createHost({ profile })
  })
  let memory: ProfileFigures['memory']
  if (withMemory) {
    const m = process.memoryUsage()
    memory = { rssMiB: mib(m.rss), maxRssMiB: process.resourceUsage().maxRSS / 1024, heapUsedMiB: mib(m.heapUsed) }
  }
  const queues = host.list('/sys/bus/ap/devices').filter((n) => n.includes('.')).length

  // B-21 [SUBTLE]: `0x` alone clears the mask, moving every queue to vfio_ap; all ones moves them back.
  const off: number[] = []
  const on: number[] = []
  for (let r = 0; r < MASK_ROUNDS; r++) {
    off.push(timeOnce(() => host.write(APMASK, '0x\n')))
    on.push(timeOnce(() => host.write(APMASK, ALL_ONES)))
  }
  const scanMs = timeOnce(() => host.scan())
  host.write(APMASK, '0x\n')

  const adapters = [...new Set(host.profile.adapters.map((a) => a.apid))].sort((a, b) => a - b)
  const domains = [...host.profile.domains].sort((a, b) => a - b)
  const d4 = domains.slice(0, 4)

  // Alternating assign/unassign of one adapter on an mdev that already holds 4 domains (V-9..V-13).
  const toggleApid = adapters[0]!
  createMdev(host, UUID_TOGGLE, [], d4)
  const assign = `${MATRIX}/${UUID_TOGGLE}/assign_adapter`
  const unassign = `${MATRIX}/${UUID_TOGGLE}/unassign_adapter`
  const arg = `${toggleApid}\n`
  const toggle = measureRate((i) => host.write(i % 2 === 0 ? assign : unassign, arg))

  // The same small mdev shape on both profiles, so the read rates compare.
  const small = adapters.slice(1, 3)
  createMdev(host, UUID_SMALL, small, d4)
  const smallPath = `${MATRIX}/${UUID_SMALL}/guest_matrix`
  const smallRead = measureRate(() => host.read(smallPath))

  const figures: ProfileFigures = {
    bringUpMs,
    queues,
    memory,
    maskOffMs: median(off),
    maskOnMs: median(on),
    scanMs,
    toggle,
    toggleShape: `${d4.length} domains`,
    smallRead,
    smallShape: `${small.length}x${d4.length}`,
    smallLines: guestMatrixLines(host, UUID_SMALL),
  }
  // 16 x 16 on machines that have room for it next to the two mdevs above (APQNs must not overlap: V-11).
  const bigAdapters = adapters.slice(3, 19)
  const bigDomains = domains.slice(0, 16)
  if (bigAdapters.length === 16 && bigDomains.length === 16) {
    createMdev(host, UUID_BIG, bigAdapters, bigDomains)
    const bigPath = `${MATRIX}/${UUID_BIG}/guest_matrix`
    figures.bigRead = measureRate(() => host.read(bigPath))
    figures.bigShape = '16x16'
    figures.bigLines = guestMatrixLines(host, UUID_BIG)
  }
  return figures
}

const perSec = (r: Rate): number => (r.ops / r.ms) * 1000
const usPerOp = (r: Rate): number => (r.ms * 1000) / r.ops

function fmtRate(r: Rate | undefined): string {
  return r ? `${Math.round(perSec(r)).toLocaleString('en-US')}/s (${usPerOp(r).toFixed(1)} µs)` : 'n/a'
}

function fmtMs(ms: number): string {
  return ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(2)} ms`
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  for (const [i, r] of rows.entries()) {
    console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   '))
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('   '))
  }
}

/** The `emulator` suite. */
export const emulatorSuite: BenchSuite = {
  name: 'emulator',
  description: 'emulator core on the full profile (65,536 queues) against spec-fixture',
  async run() {
    // full first, so the memory figures describe the full host and nothing else.
    const full = benchProfile('full', true)
    const fix = benchProfile('spec-fixture', false)
    const ratio = (a: Rate, b: Rate): string => `${(usPerOp(a) / usPerOp(b)).toFixed(2)}x`
    printTable([
      ['measurement', 'full', 'spec-fixture', 'full/fixture per op'],
      ['queue devices', String(full.queues), String(fix.queues), ''],
      ['bring-up (createHost)', fmtMs(full.bringUpMs), fmtMs(fix.bringUpMs), ''],
      [`apmask <- 0x (every queue -> vfio_ap), median of ${MASK_ROUNDS}`, fmtMs(full.maskOffMs), fmtMs(fix.maskOffMs), ''],
      [`apmask <- 0xff..ff (every queue -> cex4queue), median of ${MASK_ROUNDS}`, fmtMs(full.maskOnMs), fmtMs(fix.maskOnMs), ''],
      ['bus scan, nothing changed', fmtMs(full.scanMs), fmtMs(fix.scanMs), ''],
      [`assign/unassign adapter (mdev with ${full.toggleShape})`, fmtRate(full.toggle), fmtRate(fix.toggle), ratio(full.toggle, fix.toggle)],
      [
        `guest_matrix read (${full.smallShape} mdev, ${full.smallLines}/${fix.smallLines} lines)`,
        fmtRate(full.smallRead),
        fmtRate(fix.smallRead),
        ratio(full.smallRead, fix.smallRead),
      ],
      [`guest_matrix read (${full.bigShape ?? '16x16'} mdev, ${full.bigLines ?? 0} lines)`, fmtRate(full.bigRead), fmtRate(fix.bigRead), ''],
    ])
    const q = full.queues || 1
    console.log(`\nper queue on full: apmask 0x ${((full.maskOffMs * 1000) / q).toFixed(2)} µs, apmask all ones ${((full.maskOnMs * 1000) / q).toFixed(2)} µs`)
    if (full.memory) {
      const m = full.memory
      console.log(
        `memory after full bring-up: rss ${m.rssMiB.toFixed(0)} MiB, peak rss ${m.maxRssMiB.toFixed(0)} MiB, heap used ${m.heapUsedMiB.toFixed(0)} MiB`,
      )
    }
    console.log(
      `rates: ${WARMUP_OPS} warm-up ops, then at least ${MIN_OPS} ops and ${MIN_MS} ms each; node ${process.version}, ${process.platform}/${process.arch}`,
    )
  },
}
