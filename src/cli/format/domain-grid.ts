/**
 * The adapters x domains grid of `apmatrix inventory --domains`: the AP configuration of one host as a
 * picture, in the habit of `lszcrypt -d` (hex domain numbers across, 16 per block, one short cell per
 * domain, a legend below). lszcrypt -d shows only the domain masks of the machine; this grid shows, for
 * every APQN, who owns it and how it is:
 *
 * - the owner (first character): the host's default drivers (inside apmask x aqmask, B-21), one matrix
 *   device (a letter per device, listed in the legend), free for vfio_ap (outside the masks, assigned to
 *   no device), or not configured (the host has no such queue);
 * - a mark (second character): in a guest, filtered from the guest (in the device's `matrix` but not in its
 *   `guestMatrix`, V-20), unbound (no driver), checkstopped / offline / deconfigured.
 *
 * Pure: built from the API's answers (adapters, queues, domains, masks, matrix devices, host features),
 * so the same picture can be checked cell by cell against them.
 */
import type { Adapter, DomainsView, Masks, Mdev, Queue } from '../client/api-types.js'
import { formatRanges } from './ids.js'
import { statusCell } from './conditions.js'

/** Who owns an APQN. `device` comes with the device's letter. */
export type CellOwner = 'host' | 'free' | 'device' | 'none'

/** The state mark of an APQN, most important first when several apply (see {@link cellMark}). */
export type CellMark = 'down' | 'filtered' | 'unbound' | 'guest' | null

/** One APQN of the grid. */
export interface GridCell {
  owner: CellOwner
  /** The owning device's uuid when `owner` is `device`. */
  device: string | null
  mark: CellMark
}

/** Owner characters. Devices use {@link DEVICE_SYMBOLS}. */
export const OWNER_CHAR: Record<Exclude<CellOwner, 'device'>, string> = { host: '#', free: '-', none: '.' }
/** Mark characters; no mark is a blank. */
export const MARK_CHAR: Record<Exclude<CellMark, null>, string> = { down: '!', filtered: '~', unbound: '?', guest: '*' }
/** One symbol per matrix device, in uuid order; devices beyond these share {@link OVERFLOW_SYMBOL}. */
export const DEVICE_SYMBOLS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
/** The symbol of the 63rd and later devices (the legend still lists each with its uuid). */
export const OVERFLOW_SYMBOL = '@'
/** Domain columns per block, as lszcrypt -d prints 16 domains per row. */
export const BLOCK = 16

/** What the grid is drawn from: the API's answers for one host. */
export interface GridInput {
  host: string
  adapters: readonly Adapter[]
  queues: readonly Queue[]
  domains: DomainsView
  masks: Masks
  mdevs: readonly Mdev[]
  /** Host features (GET /v1/hosts/{h}): `guest_matrix` says whether `guestMatrix` is reported (V-20). */
  features: readonly string[]
}

/** A device of the legend: its symbol and what the API says of it; `mdev` is null for a device apmatrix does not manage. */
export interface GridDevice {
  uuid: string
  symbol: string
  mdev: Mdev | null
}

/** The grid: rows (adapter ids), columns (domain ids), the devices and every cell. */
export interface DomainGrid {
  host: string
  apids: number[]
  apqis: number[]
  devices: GridDevice[]
  /** True when the observed masks were not readable and the desired ones were used. */
  masksFromSpec: boolean
  cell(apid: number, apqi: number): GridCell
  /** The symbol of a device uuid ({@link OVERFLOW_SYMBOL} past the 62nd). */
  symbol(uuid: string): string
}

const key = (apid: number, apqi: number) => apid * 256 + apqi

/**
 * The mark of a queue, most important first: down (deconfigured, checkstopped or offline, the queue or its
 * card), filtered (the device's matrix has it, its guest matrix does not, V-20: only when the host reports
 * guest matrices), unbound (no driver), in a guest (in the guest matrix of a device a guest has open).
 */
export function cellMark(q: Queue, card: Adapter | undefined, dev: DeviceMatrix | null, guestMatrix: boolean): CellMark {
  if (!q.config || q.chkstop || q.online === false || (card && (!card.config || card.chkstop || card.online === false))) return 'down'
  if (dev && guestMatrix && dev.active && dev.matrix.has(q.apqn) && !dev.guestMatrix.has(q.apqn)) return 'filtered'
  if (q.driver === 'none') return 'unbound'
  if (dev?.guest && dev.guestMatrix.has(q.apqn)) return 'guest'
  return null
}

/** What {@link cellMark} needs of a device's status, with the APQN lists as sets (a matrix may hold 65,536). */
export interface DeviceMatrix {
  active: boolean
  guest: string | null
  matrix: ReadonlySet<string>
  guestMatrix: ReadonlySet<string>
}

/** The {@link DeviceMatrix} of a device as the API reports it. */
export function deviceMatrix(m: Mdev): DeviceMatrix {
  const st = m.status
  return { active: st.active === true, guest: st.guest ?? null, matrix: new Set(st.matrix ?? []), guestMatrix: new Set(st.guestMatrix ?? []) }
}

/**
 * Builds the grid. Rows: every adapter the host has, plus any adapter a device names; columns: every domain
 * the host configures (usage or control), plus any domain a device names or a queue has. A queue assigned to a
 * device (its `owner`) is the device's; otherwise the host's when inside the observed apmask x aqmask, else free.
 * An APQN without a queue is not configured; when an active device's matrix holds it (V-13) and its guest
 * matrix does not, it carries the filtered mark.
 */
export function buildDomainGrid(input: GridInput): DomainGrid {
  const byUuid = new Map(input.mdevs.map((m) => [m.metadata.uuid, m]))
  const matrices = new Map(input.mdevs.map((m) => [m.metadata.uuid, deviceMatrix(m)]))
  const uuids = new Set<string>(input.mdevs.map((m) => m.metadata.uuid))
  for (const q of input.queues) if (q.owner) uuids.add(q.owner)
  const devices = [...uuids].sort().map((uuid, i) => ({ uuid, symbol: DEVICE_SYMBOLS[i] ?? OVERFLOW_SYMBOL, mdev: byUuid.get(uuid) ?? null }))
  const apidSet = new Set(input.adapters.map((a) => a.apid))
  const apqiSet = new Set([...input.domains.usageDomains, ...input.domains.controlDomains])
  for (const q of input.queues) {
    apidSet.add(q.apid)
    apqiSet.add(q.apqi)
  }
  for (const m of input.mdevs) {
    for (const a of m.spec.adapters) apidSet.add(a)
    for (const d of m.spec.domains) apqiSet.add(d)
  }
  const masks = input.masks.status ?? input.masks.spec
  const ap = new Set(masks.apmaskIds)
  const aq = new Set(masks.aqmaskIds)
  const cards = new Map(input.adapters.map((a) => [a.apid, a]))
  const guestMatrix = input.features.includes('guest_matrix')
  const cells = new Map<number, GridCell>()
  for (const q of input.queues) {
    const dev = q.owner ? (matrices.get(q.owner) ?? null) : null
    const mark = cellMark(q, cards.get(q.apid), dev, guestMatrix)
    if (q.owner) cells.set(key(q.apid, q.apqi), { owner: 'device', device: q.owner, mark })
    else cells.set(key(q.apid, q.apqi), { owner: ap.has(q.apid) && aq.has(q.apqi) ? 'host' : 'free', device: null, mark })
  }
  // V-13: a device's matrix may name APQNs the host does not have; the guest never gets them (V-20).
  for (const dev of matrices.values()) {
    if (!guestMatrix || !dev.active) continue
    for (const apqn of dev.matrix) {
      const [apid, apqi] = apqn.split('.').map((x) => Number.parseInt(x, 16)) as [number, number]
      if (cells.has(key(apid, apqi)) || dev.guestMatrix.has(apqn)) continue
      cells.set(key(apid, apqi), { owner: 'none', device: null, mark: 'filtered' })
      apidSet.add(apid)
      apqiSet.add(apqi)
    }
  }
  const symbols = new Map(devices.map((d) => [d.uuid, d.symbol]))
  const none: GridCell = { owner: 'none', device: null, mark: null }
  return {
    host: input.host,
    apids: [...apidSet].sort((a, b) => a - b),
    apqis: [...apqiSet].sort((a, b) => a - b),
    devices,
    masksFromSpec: input.masks.status === null,
    cell: (apid, apqi) => cells.get(key(apid, apqi)) ?? none,
    symbol: (uuid) => symbols.get(uuid) ?? OVERFLOW_SYMBOL,
  }
}

/** The two characters of a cell: owner symbol, then mark (a blank when none). */
export function cellText(grid: DomainGrid, c: GridCell): string {
  const owner = c.owner === 'device' ? grid.symbol(c.device ?? '') : OWNER_CHAR[c.owner]
  return owner + (c.mark ? MARK_CHAR[c.mark] : ' ')
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0')

/**
 * The grid as text: one block per 16 domains (0x00-0x0f, 0x10-0x1f, ...) that holds a domain of the grid, each a
 * header of hex domain ids and one row per adapter (hex apid, one two-character cell per domain), then a `U/C/B`
 * row (usage, control or both in the host configuration, like lszcrypt -d). Blocks without any such domain are
 * left out. Then the legend: symbols, marks, and every device with its uuid, state, status, guest and control
 * domains.
 */
export function renderDomainGrid(grid: DomainGrid, domains: DomainsView): string {
  const usage = new Set(domains.usageDomains)
  const control = new Set(domains.controlDomains)
  const blocks = [...new Set(grid.apqis.map((d) => Math.floor(d / BLOCK)))].sort((a, b) => a - b)
  let out = `Host ${grid.host}: ${grid.apids.length} adapter(s) x ${grid.apqis.length} domain(s)\n`
  if (grid.apids.length === 0 || grid.apqis.length === 0) out += '(no adapters or no domains configured)\n'
  for (const b of grid.apids.length ? blocks : []) {
    const cols = Array.from({ length: BLOCK }, (_, i) => b * BLOCK + i)
    out += `\nCARD  ${cols.map(hex2).join(' ')}\n`
    for (const apid of grid.apids) {
      const cells = cols.map((d) => cellText(grid, grid.cell(apid, d)))
      out += `${`${hex2(apid)}    ${cells.join(' ')}`.trimEnd()}\n`
    }
    const ucb = cols.map((d) => (usage.has(d) && control.has(d) ? 'B ' : usage.has(d) ? 'U ' : control.has(d) ? 'C ' : '. '))
    out += `${`U/C/B ${ucb.join(' ')}`.trimEnd()}\n`
  }
  out += '------------------------------------------------------\n'
  out += `Owner (first character of a cell):
  ${OWNER_CHAR.host}  the host's default drivers (inside apmask x aqmask)
  ${OWNER_CHAR.free}  free for vfio_ap (outside the masks, no matrix device)
  ${OWNER_CHAR.none}  not configured (the host has no such queue)
  A  a matrix device (A-Z, a-z, 0-9, then ${OVERFLOW_SYMBOL}; see Devices)
Mark (second character):
  ${MARK_CHAR.guest}  in a guest
  ${MARK_CHAR.filtered}  filtered from the guest (in the device's matrix, not in its guest matrix)
  ${MARK_CHAR.unbound}  unbound (no driver)
  ${MARK_CHAR.down}  checkstopped, offline or deconfigured (the queue or its card)
U/C/B: usage, control or both domains in the host configuration; . neither
`
  if (grid.masksFromSpec) out += 'Note: the bus masks could not be read; host/free follow the desired masks.\n'
  if (grid.devices.length === 0) return `${out}No matrix devices.\n`
  out += 'Devices:\n'
  for (const d of grid.devices) {
    if (!d.mdev) {
      out += `  ${d.symbol}  ${d.uuid}  (on the bus, not managed by apmatrix)\n`
      continue
    }
    const st = d.mdev.status
    out += `  ${d.symbol}  ${d.uuid}  ${d.mdev.spec.state}  ${statusCell(d.mdev)}  guest ${st.guest ?? '-'}  control ${formatRanges(st.controlDomains ?? d.mdev.spec.controlDomains)}\n`
  }
  return out
}
