/**
 * The kernel model's properties (docs/kernel-model.md §7) as random operation sequences and the checks
 * after each step, shared by the runs on the emulator itself (properties.test.ts) and through its FUSE
 * mount and its remote sysfs face (test/reliability/fuse-properties.test.ts): sysfs writes in valid and invalid
 * syntaxes, mdev life cycle, bind/unbind, queue resets, requests, guests, hardware events and time, on
 * the `spec-fixture` profile. The checks only read (`read`, `list`, `readlink`), so any face of the
 * sysfs tree can be checked with them.
 */
import path from 'node:path'
import fc from 'fast-check'
import { SysfsError } from '../../src/domain/errors.js'
import { formatApqn, formatCard, parseApqnName } from '../../src/domain/ids.js'
import { Mask, parseAbsoluteMask } from '../../src/domain/mask.js'
import { parseMatrix } from '../../src/domain/matrix.js'
import type { EmulatedHostApi, HardwareAction } from '../../src/emulator/api.js'

/** What the checks read of a sysfs tree; reads of a missing node throw a SysfsError ENOENT. */
export type SysfsView = Pick<EmulatedHostApi, 'read' | 'list' | 'readlink'>

export const BUS = '/sys/bus/ap'
export const DEVICES = `${BUS}/devices`
export const DRIVERS = `${BUS}/drivers`
export const MATRIX = '/sys/devices/vfio_ap/matrix'
export const TYPE_DIR = `${MATRIX}/mdev_supported_types/vfio_ap-passthrough`
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

// Small pools so that sequences collide often. Besides the fixture's adapters 5..7 and domains
// 4, 0x47, 0xab, 0xff they hold ids outside hostcfg (8, 0x20, 0x10, 0) and out of range (256).
export const UUIDS = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222', '33333333-3333-4333-8333-333333333333']
const ADAPTERS = [5, 6, 7, 8, 0x20, 255, 256]
const DOMAINS = [4, 0x47, 0xab, 0xff, 0x10, 0, 256]
const MASK_IDS = [5, 6, 7, 8, 0x20, 4, 0x47, 0xab, 0xff, 0x10]
const QUEUES = [5, 6, 7, 0x20].flatMap((a) => [4, 0x47, 0xab, 0xff, 0x10].map((d) => formatApqn(a, d)))
const CARDS = [5, 6, 7, 0x20].map(formatCard)

/**
 * One step of a sequence. `flushes`: queues whose counters must read 0 after the step succeeded (B-16);
 * `prime`: that many host requests are put on those queues first, so the flush has work to drop.
 */
export type Op =
  | { op: 'write'; path: string; value: string; flushes?: string[]; prime?: number }
  | { op: 'guestOpen'; uuid: string; guest: string }
  | { op: 'guestClose'; uuid: string }
  | { op: 'requests'; apqn: string; count: number }
  | { op: 'hardware'; action: HardwareAction }
  | { op: 'advance'; ms: number }
  | { op: 'scan' }

// ---- generators ----

const uuidArb = fc.constantFrom(...UUIDS)
/** An id written the ways V-6 accepts (decimal, 0x, octal) and the ways it refuses. */
function idText(pool: number[]): fc.Arbitrary<string> {
  const id = fc.constantFrom(...pool)
  return fc.oneof(
    { weight: 6, arbitrary: id.map((n) => `${n}\n`) },
    { weight: 2, arbitrary: id.map((n) => `0x${n.toString(16)}\n`) },
    { weight: 1, arbitrary: id.map((n) => (n === 0 ? '0\n' : `0${n.toString(8)}\n`)) },
    { weight: 1, arbitrary: fc.constantFrom('08\n', '-1\n', '\n', ' 5\n', '5\n\n', '0x\n', '99999999999999999999999\n') },
  )
}
const maskTerm = fc
  .tuple(fc.constantFrom('+', '-'), fc.constantFrom(...MASK_IDS), fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }))
  .map(([s, a, len]) => (len === undefined ? `${s}${a}` : `${s}${a}-${a + len}`))
const maskValue = fc.oneof(
  { weight: 6, arbitrary: fc.array(maskTerm, { minLength: 1, maxLength: 4 }).map((ts) => `${ts.join(',')}\n`) },
  { weight: 2, arbitrary: fc.subarray(MASK_IDS).map((ids) => `${Mask.of(ids).toString()}\n`) },
  { weight: 1, arbitrary: fc.constantFrom('0x\n', '\n', 'x', '0x41\n', `0x${'f'.repeat(64)}\n`, '0x80\n') },
  {
    weight: 2,
    arbitrary: fc.constantFrom('0X41\n', '+1,+300\n', '+1, +2\n', '-5-3\n', '+08\n', `0x${'f'.repeat(65)}\n`, '\n\n', '+5 \n'),
  },
)
const maskHex = (ids: number[]): string => Mask.of(ids).toString()
const apConfigValue = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.subarray([5, 6, 7, 8, 0x20]), fc.subarray([4, 0x47, 0xab, 0xff, 0x10]), fc.subarray([4, 0x47, 0x10]))
      .map(([a, d, c]) => `${maskHex(a)},${maskHex(d)},${maskHex(c)}\n`),
  },
  { weight: 1, arbitrary: fc.constantFrom(',,\n', '0x04,0x08,0x08\n', '0x04,0x08\n', '0x04,0x08', 'zz,,\n', '0X04,,\n', '+5,,\n') },
)

function mdevWrite(attr: string, value: fc.Arbitrary<string>): fc.Arbitrary<Op> {
  return fc.tuple(uuidArb, value).map(([u, v]): Op => ({ op: 'write', path: `${MATRIX}/${u}/${attr}`, value: v }))
}

const queueArb = fc.constantFrom(...QUEUES)
/** Queues the prelude leaves with zcrypt (T-15), where host requests are accepted (B-17): flushes then have work to drop. */
const hostQueueArb = fc.constantFrom('07.00ab', '07.00ff')
const cardArb = fc.constantFrom(...CARDS)
const adapterOfCard = (card: string): string[] => QUEUES.filter((q) => q.startsWith(`${card.slice(4)}.`))

const hardwareArb: fc.Arbitrary<HardwareAction> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('config-off', 'config-on', 'checkstop', 'checkstop-clear' as const),
      fc.constantFrom(5, 6, 7),
      fc.option(fc.constantFrom(4, 0x47), { nil: undefined }),
      fc.boolean(),
    )
    .map(([action, apid, apqi, notify]) => ({ action, apid, ...(apqi === undefined ? {} : { apqi }), notify }) as HardwareAction),
  fc
    .tuple(fc.constantFrom(0x20, 8), fc.constantFrom(14, 9), fc.boolean())
    .map(([apid, rawType, notify]): HardwareAction => ({ action: 'add-adapter', apid, rawType, mode: 'cca', notify })),
  fc.tuple(fc.constantFrom(5, 0x20), fc.boolean()).map(([apid, notify]): HardwareAction => ({ action: 'remove-adapter', apid, notify })),
  fc
    .tuple(fc.constantFrom('add-domain', 'remove-domain' as const), fc.constantFrom(0x10, 0x47), fc.boolean(), fc.boolean())
    .map(([action, apqi, control, notify]): HardwareAction => ({ action, apqi, control, notify })),
  fc
    .tuple(fc.constantFrom(5, 7), fc.constantFrom('cca', 'ep11', 'accel' as const), fc.boolean())
    .map(([apid, mode, notify]): HardwareAction => ({ action: 'set-mode', apid, mode, notify })),
)

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(fc.constantFrom('apmask', 'aqmask'), maskValue).map(([m, v]): Op => ({ op: 'write', path: `${BUS}/${m}`, value: v })) },
  {
    weight: 3,
    arbitrary: fc
      .constantFrom(...UUIDS, 'not-a-uuid', UUIDS[0]!.slice(1), UUIDS[1]!.toUpperCase())
      .map((u): Op => ({ op: 'write', path: `${TYPE_DIR}/create`, value: `${u}\n` })),
  },
  { weight: 2, arbitrary: mdevWrite('remove', fc.constantFrom('1\n', '1\n', '0\n', 'x\n')) },
  { weight: 5, arbitrary: mdevWrite('assign_adapter', idText(ADAPTERS)) },
  { weight: 5, arbitrary: mdevWrite('assign_domain', idText(DOMAINS)) },
  { weight: 2, arbitrary: mdevWrite('assign_control_domain', idText(DOMAINS)) },
  { weight: 2, arbitrary: mdevWrite('unassign_adapter', idText(ADAPTERS)) },
  { weight: 2, arbitrary: mdevWrite('unassign_domain', idText(DOMAINS)) },
  { weight: 1, arbitrary: mdevWrite('unassign_control_domain', idText(DOMAINS)) },
  { weight: 3, arbitrary: mdevWrite('ap_config', apConfigValue) },
  {
    weight: 3,
    arbitrary: fc.tuple(fc.constantFrom('cex4queue', 'vfio_ap', 'cex4card'), fc.constantFrom('bind', 'unbind'), fc.oneof(queueArb, cardArb)).map(
      ([drv, verb, dev]): Op => ({
        op: 'write',
        path: `${DRIVERS}/${drv}/${verb}`,
        value: `${dev}\n`,
        ...(verb === 'unbind' && !dev.startsWith('card') ? { flushes: [dev] } : {}),
      }),
    ),
  },
  { weight: 2, arbitrary: queueArb.map((q): Op => ({ op: 'write', path: `${DEVICES}/${q}/reset`, value: '1\n', flushes: [q] })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(queueArb, fc.constantFrom('0\n', '1\n', '2\n'))
      .map(([q, v]): Op => ({ op: 'write', path: `${DEVICES}/${q}/online`, value: v, ...(v === '0\n' ? { flushes: [q] } : {}) })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(cardArb, fc.constantFrom('online', 'config'), fc.constantFrom('0\n', '1\n', '2\n')).map(
      ([c, attr, v]): Op => ({
        op: 'write',
        path: `${DEVICES}/${c}/${attr}`,
        value: v,
        ...(attr === 'online' && v === '0\n' ? { flushes: adapterOfCard(c) } : {}),
      }),
    ),
  },
  { weight: 1, arbitrary: fc.constant<Op>({ op: 'write', path: `${BUS}/scans`, value: '1\n' }) },
  { weight: 2, arbitrary: fc.tuple(queueArb, fc.integer({ min: 1, max: 5 })).map(([apqn, count]): Op => ({ op: 'requests', apqn, count })) },
  { weight: 4, arbitrary: fc.tuple(hostQueueArb, fc.integer({ min: 1, max: 5 })).map(([apqn, count]): Op => ({ op: 'requests', apqn, count })) },
  {
    weight: 2,
    arbitrary: fc.tuple(hostQueueArb, fc.constantFrom('reset', 'online', 'unbind'), fc.integer({ min: 0, max: 4 })).map(
      ([q, what, prime]): Op => ({
        op: 'write',
        path: what === 'unbind' ? `${DRIVERS}/cex4queue/unbind` : `${DEVICES}/${q}/${what}`,
        value: what === 'unbind' ? `${q}\n` : what === 'online' ? '0\n' : '1\n',
        flushes: [q],
        prime,
      }),
    ),
  },
  { weight: 3, arbitrary: fc.tuple(uuidArb, fc.constantFrom('g1', 'g1', 'g2', '')).map(([uuid, guest]): Op => ({ op: 'guestOpen', uuid, guest })) },
  { weight: 1, arbitrary: uuidArb.map((uuid): Op => ({ op: 'guestClose', uuid })) },
  { weight: 2, arbitrary: hardwareArb.map((action): Op => ({ op: 'hardware', action })) },
  { weight: 2, arbitrary: fc.constantFrom(1, 3, 50, 31_000).map((ms): Op => ({ op: 'advance', ms })) },
  { weight: 1, arbitrary: fc.constant<Op>({ op: 'scan' }) },
)

/** A prelude that gives vfio_ap some queues and two mdevs, one holding 05.0004 (T-15, T-18), so sequences reach deep states. */
export const PRELUDE: Op[] = [
  { op: 'write', path: `${BUS}/apmask`, value: '-5,-6\n' },
  { op: 'write', path: `${BUS}/aqmask`, value: '-4,-0x47\n' },
  { op: 'write', path: `${TYPE_DIR}/create`, value: `${UUIDS[0]}\n` },
  { op: 'write', path: `${TYPE_DIR}/create`, value: `${UUIDS[1]}\n` },
  { op: 'write', path: `${MATRIX}/${UUIDS[0]}/assign_adapter`, value: '5\n' },
  { op: 'write', path: `${MATRIX}/${UUIDS[0]}/assign_domain`, value: '4\n' },
  { op: 'requests', apqn: '07.00ab', count: 3 },
]

// ---- observation ----

export function readOrNull(host: SysfsView, p: string): string | null {
  try {
    return host.read(p)
  } catch (e) {
    if (e instanceof SysfsError && e.errno === 'ENOENT') return null
    throw e
  }
}

function driverOf(host: SysfsView, dev: string): string | null {
  try {
    return path.posix.basename(host.readlink(`${DEVICES}/${dev}/driver`))
  } catch (e) {
    if (e instanceof SysfsError && e.errno === 'ENOENT') return null
    throw e
  }
}

function maskOf(host: SysfsView, name: 'apmask' | 'aqmask'): Mask {
  const text = host.read(`${BUS}/${name}`)
  const r = parseAbsoluteMask(text)
  if (!r.ok || !/^0x[0-9a-f]{64}\n$/.test(text)) throw new Error(`${name} reads ${JSON.stringify(text)} (B-20 format)`)
  return r.mask
}

const queueNames = (host: SysfsView): string[] => host.list(DEVICES).filter((n) => parseApqnName(n) !== undefined)
const mdevNames = (host: SysfsView): string[] => host.list(MATRIX).filter((n) => UUID_RE.test(n))

/** Everything a failed operation must leave unchanged (B-22, V-10, V-23: all or nothing). */
export function snapshot(host: SysfsView): Record<string, string | null> {
  const s: Record<string, string | null> = {
    apmask: host.read(`${BUS}/apmask`),
    aqmask: host.read(`${BUS}/aqmask`),
    devices: host.list(DEVICES).join(' '),
    mdevs: mdevNames(host).join(' '),
  }
  for (const name of host.list(DEVICES)) {
    s[`${name}/driver`] = driverOf(host, name)
    s[`${name}/online`] = readOrNull(host, `${DEVICES}/${name}/online`)
    s[`${name}/config`] = readOrNull(host, `${DEVICES}/${name}/config`)
    if (!name.startsWith('card')) s[`${name}/status`] = readOrNull(host, `${DEVICES}/${name}/status`)
  }
  for (const u of mdevNames(host)) {
    for (const attr of ['matrix', 'guest_matrix', 'control_domains', 'ap_config']) s[`${u}/${attr}`] = readOrNull(host, `${MATRIX}/${u}/${attr}`)
  }
  return s
}

/** The kernel invariants that hold after any operation; returns what is broken. */
export function invariantViolations(host: SysfsView): string[] {
  const problems: string[] = []
  const apmask = maskOf(host, 'apmask')
  const aqmask = maskOf(host, 'aqmask')

  // V-10/V-32: an APQN is assigned to at most one mdev.
  const owner = new Map<string, string>()
  const assigned = new Map<string, ReturnType<typeof parseMatrix>>()
  for (const u of mdevNames(host)) {
    const m = parseMatrix(host.read(`${MATRIX}/${u}/matrix`))
    assigned.set(u, m)
    for (const { apid, apqi } of m.apqns) {
      const q = formatApqn(apid, apqi)
      const other = owner.get(q)
      if (other !== undefined) problems.push(`APQN ${q} is assigned to both ${other} and ${u}`)
      else owner.set(q, u)
    }
  }

  // B-11: the masks decide the driver of every bound queue; V-31: vfio_ap status follows the assignment.
  const drivers = new Map<string, string | null>()
  for (const q of queueNames(host)) {
    const { apid, apqi } = parseApqnName(q)!
    const drv = driverOf(host, q)
    drivers.set(q, drv)
    const hostOwned = apmask.has(apid) && aqmask.has(apqi)
    if (drv === 'cex4queue' && !hostOwned) problems.push(`${q} is bound to cex4queue but lies outside apmask x aqmask`)
    if (drv === 'vfio_ap' && hostOwned) problems.push(`${q} is bound to vfio_ap but lies inside apmask x aqmask`)
    if (drv !== null && drv !== 'cex4queue' && drv !== 'vfio_ap') problems.push(`${q} is bound to ${drv}`)
    if (drv === 'vfio_ap') {
      const status = readOrNull(host, `${DEVICES}/${q}/status`)
      const expectUnassigned = !owner.has(q)
      if (status === null) problems.push(`${q} is bound to vfio_ap without a status attribute`)
      else if ((status === 'unassigned\n') !== expectUnassigned) {
        problems.push(`${q} status ${JSON.stringify(status)} but ${expectUnassigned ? 'no mdev' : owner.get(q)} holds it`)
      }
    }
  }

  // B-34: `bindings` counts queue devices only, and says complete only when all of them are bound.
  const bindings = /^(\d+)\/(\d+)( \(complete\))?\n$/.exec(host.read(`${BUS}/bindings`))
  const boundCount = [...drivers.values()].filter((d) => d !== null).length
  if (!bindings) problems.push(`bindings reads ${JSON.stringify(host.read(`${BUS}/bindings`))}`)
  else if (Number(bindings[1]) !== boundCount || Number(bindings[2]) !== drivers.size || (bindings[3] !== undefined && boundCount !== drivers.size)) {
    problems.push(`bindings reads ${JSON.stringify(bindings[0])} with ${boundCount} of ${drivers.size} queue devices bound`)
  }

  for (const [u, m] of assigned) {
    // V-18: one %04lx line per control domain, ascending; V-22: ap_config shows the assigned matrix.
    const cd = host.read(`${MATRIX}/${u}/control_domains`)
    const cds =
      cd === ''
        ? []
        : cd
            .slice(0, -1)
            .split('\n')
            .map((l) => (/^[0-9a-f]{4}$/.test(l) ? parseInt(l, 16) : NaN))
    if (!cd.endsWith('\n') && cd !== '') problems.push(`${u} control_domains ${JSON.stringify(cd)} lacks the final newline`)
    if (cds.some((x, i) => Number.isNaN(x) || (i > 0 && x <= cds[i - 1]!)))
      problems.push(`${u} control_domains ${JSON.stringify(cd)} is not ascending %04lx lines`)
    const apConfig = readOrNull(host, `${MATRIX}/${u}/ap_config`)
    const expected = `${Mask.of(m.adapters).toString()},${Mask.of(m.domains).toString()},${Mask.of(cds.filter((x) => !Number.isNaN(x))).toString()}\n`
    if (apConfig !== null && apConfig !== expected)
      problems.push(`${u} ap_config ${JSON.stringify(apConfig)} is not the assigned matrix ${JSON.stringify(expected)}`)
  }

  // V-20: the guest view is a sub-matrix of the assigned one, made of queues bound to vfio_ap.
  for (const [u, m] of assigned) {
    const text = readOrNull(host, `${MATRIX}/${u}/guest_matrix`)
    if (text === null) continue // legacy kernels have no guest_matrix (V-19, X-3)
    const g = parseMatrix(text)
    for (const a of g.adapters) if (!m.adapters.includes(a)) problems.push(`${u} guest_matrix has adapter ${a} that is not assigned`)
    for (const d of g.domains) if (!m.domains.includes(d)) problems.push(`${u} guest_matrix has domain ${d} that is not assigned`)
    for (const { apid, apqi } of g.apqns) {
      const q = formatApqn(apid, apqi)
      if (drivers.get(q) !== 'vfio_ap') problems.push(`${u} guest_matrix has ${q}, which is not a queue bound to vfio_ap`)
    }
  }
  return problems
}

/** Mutating steps are checked for all-or-nothing failure (a snapshot before and after). */
export const isMutating = (op: Op): boolean => op.op !== 'advance' && op.op !== 'scan'

export const show = (op: Op): string => JSON.stringify(op)

/**
 * The checks after step `where` (`op`): a step that failed (`failed`, its errno) changed nothing
 * compared with `before` (B-22, V-10, V-23: all or nothing); a flush that succeeded left the flushed
 * queues empty (B-16); the invariants hold. Throws an Error that says what broke.
 */
export function checkStep(
  host: SysfsView,
  op: Op,
  where: string,
  before: Record<string, string | null> | undefined,
  failed: { errno: string } | undefined,
): void {
  if (failed && before) {
    const after = snapshot(host)
    const changed = Object.keys({ ...before, ...after }).filter((k) => before[k] !== after[k])
    if (changed.length) {
      throw new Error(
        `${where} failed with ${failed.errno} but changed ${changed.map((k) => `${k}: ${JSON.stringify(before[k])} -> ${JSON.stringify(after[k])}`).join(', ')}`,
      )
    }
  }
  if (!failed && op.op === 'write') {
    for (const q of op.flushes ?? []) {
      const rq = readOrNull(host, `${DEVICES}/${q}/requestq_count`)
      const pq = readOrNull(host, `${DEVICES}/${q}/pendingq_count`)
      if ((rq !== null && rq !== '0\n') || (pq !== null && pq !== '0\n')) {
        throw new Error(`${where}: B-16 flush left ${q} with requestq_count ${JSON.stringify(rq)}, pendingq_count ${JSON.stringify(pq)}`)
      }
    }
  }
  const problems = invariantViolations(host)
  if (problems.length) throw new Error(`${where}${failed ? ` (failed ${failed.errno})` : ''}: ${problems.join('; ')}`)
}
