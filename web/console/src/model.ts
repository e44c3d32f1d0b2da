/**
 * The console's picture of one host, built only from the API's answers (docs/console.md): who owns each
 * APQN and which marks it carries. No matrix rule is decided here: owners come from the queues' `owner`
 * and the bus devices' `matrix`, the host's share from the observed masks, filtering from `guestMatrix`.
 */
import type { Adapter, BusMdev, Domains, Host, Masks, Mdev, Queue } from './api-types.js'

/** Who an APQN belongs to. */
/**
 * Who owns an APQN as the caller may see it. `hidden`: held by a matrix device the caller may not read (a
 * tenant sees another tenant's or an unowned device's APQNs as in use, never as a device: docs/console.md).
 */
export type OwnerKind = 'host' | 'device' | 'free' | 'unconfigured' | 'hidden'

/** Marks drawn on a cell besides its owner colour. */
export interface Marks {
  /** Guest that gets the APQN (in the device's guestMatrix while a guest has it open). */
  guest: string | null
  /** Why the APQN is in the device's matrix but not in its guestMatrix (V-20), or null. */
  filtered: string | null
  /** The queue is bound to no driver. */
  unbound: boolean
  /** `checkstopped`, `offline` or `config off` (queue or adapter), or null. */
  down: string | null
  /** Requests queued or pending on the queue. */
  inflight: number
}

/** One APQN of the grid. */
export interface Cell {
  apid: number
  apqi: number
  apqn: string
  kind: OwnerKind
  /** uuid of the owning matrix device when kind is `device`. */
  device: string | null
  queue: Queue | null
  marks: Marks
}

/** A matrix device as the console shows it: the stored object and/or the bus device. */
export interface Device {
  uuid: string
  color: string
  /** The stored object; null for a foreign device (on the bus only). */
  mdev: Mdev | null
  bus: BusMdev | null
}

/** Everything the API said about one host. */
export interface Snapshot {
  host: Host
  adapters: Adapter[]
  domains: Domains
  /** The host masks; null when the caller may not read them (a tenant): its free and host cells read `free`. */
  masks: Masks | null
  busMdevs: BusMdev[]
  mdevs: Mdev[]
  /**
   * The caller sees only its own matrix devices (a tenant, `GET /v1/auth/whoami`): a bus device that is not
   * in `mdevs` is another owner's, drawn `hidden` and not listed.
   */
  limited: boolean
  /** Queues by APQN; `queuesLoaded` false until every adapter's page arrived. */
  queues: Map<string, Queue>
  queuesLoaded: boolean
  /** Bumped by every change of `queues` (the map is kept across snapshots and changed in place). */
  queuesVersion: number
}

/** Colours of the owner kinds (legend and canvas). */
export const KIND_COLORS: Record<Exclude<OwnerKind, 'device'>, string> = {
  host: '#5d7290',
  free: '#9fd89a',
  unconfigured: '#e2e2e2',
  hidden: '#7a7a7a',
}

// Distinct, colour-blind aware hues first (Okabe-Ito and Tableau), then golden-angle hues.
const PALETTE = ['#e69f00', '#56b4e9', '#cc79a7', '#0072b2', '#d55e00', '#f0e442', '#9467bd', '#8c564b', '#17becf', '#bcbd22', '#e377c2', '#7f3c8d']

/** Colour of the i-th device (devices sorted by uuid). */
export function deviceColor(i: number): string {
  if (i < PALETTE.length) return PALETTE[i]!
  const hue = Math.round((i * 137.508) % 360)
  return hslToHex(hue, 62, 52)
}

function hslToHex(h: number, s: number, l: number): string {
  const a = (s / 100) * Math.min(l / 100, 1 - l / 100)
  const f = (n: number) => {
    const k = (n + h / 30) % 12
    const c = l / 100 - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))
    return Math.round(c * 255)
      .toString(16)
      .padStart(2, '0')
  }
  return `#${f(0)}${f(8)}${f(4)}`
}

/** `aa.dddd` as the kernel prints it. */
export function apqnOf(apid: number, apqi: number): string {
  return `${apid.toString(16).padStart(2, '0')}.${apqi.toString(16).padStart(4, '0')}`
}

/** Key of a cell in {@link View.cells}. */
export function key(apid: number, apqi: number): number {
  return apid * 65536 + apqi
}

/** The grid of one host: rows, columns, cells and devices. */
export interface View {
  /** Everything in the snapshot the cells are made of, as one string (see {@link buildView}). */
  cellInputs: string
  rows: number[]
  cols: number[]
  cells: Map<number, Cell>
  devices: Device[]
  deviceByUuid: Map<string, Device>
  counts: Record<OwnerKind, number>
}

/** Why the guest does not get an APQN of `d`: its conditions' words, or a plain fallback. */
function filterReason(d: Device): string {
  const conds = d.mdev?.status.conditions ?? []
  const af = conds.find((c) => c.type === 'AdapterFiltered' && c.status === 'True')
  if (af) return `${af.reason}: ${af.message}`
  const dg = conds.find((c) => c.type === 'Degraded' && c.status === 'True')
  if (dg) return `${dg.reason}: ${dg.message}`
  return 'in matrix but not in guestMatrix'
}

/** The host masks as the bus has them (the desired ones when the bus could not be read); null when not readable by the caller. */
export function observedMasks(s: Snapshot): { apmaskIds: number[]; aqmaskIds: number[] } | null {
  return s.masks ? (s.masks.status ?? s.masks.spec) : null
}

/**
 * Builds the grid from a snapshot. `full` lists every id up to the host maxima; otherwise (compact) only the
 * adapters and usage domains the host has plus ids some device holds. Reuses what `prev` has of it: when
 * nothing the cells are made of changed (a label, a condition that marks nothing), its cells as they are;
 * otherwise each cell whose owner, queue object and marks are unchanged. A redraw then repaints only the
 * cells that are new objects (Grid.draw), and a live update on a large host costs little.
 */
export function buildView(s: Snapshot, full: boolean, prev: View | null = null): View {
  const uuids = new Set<string>()
  for (const m of s.mdevs) uuids.add(m.metadata.uuid)
  // A limited caller's bus devices are its own stored ones only; the others' APQNs are `hidden`.
  const mine = new Set(uuids)
  const visible = (uuid: string) => !s.limited || mine.has(uuid)
  for (const b of s.busMdevs) if (visible(b.uuid)) uuids.add(b.uuid)
  const sorted = [...uuids].sort()
  const mdevBy = new Map(s.mdevs.map((m) => [m.metadata.uuid, m]))
  const busBy = new Map(s.busMdevs.map((b) => [b.uuid, b]))
  const devices: Device[] = sorted.map((uuid, i) => ({ uuid, color: deviceColor(i), mdev: mdevBy.get(uuid) ?? null, bus: busBy.get(uuid) ?? null }))
  const deviceByUuid = new Map(devices.map((d) => [d.uuid, d]))
  // Only the fields the cells read: a mask's observedAt, say, changes at every read of the bus.
  const masks = observedMasks(s)
  const cellInputs = JSON.stringify([
    full,
    s.limited,
    s.host.maxAdapterId,
    s.host.maxDomainId,
    s.adapters.map((a) => [a.apid, a.config, a.chkstop, a.online]),
    s.domains.usageDomains,
    masks && [masks.apmaskIds, masks.aqmaskIds],
    s.busMdevs.map((b) => [b.uuid, b.matrix, b.guestMatrix, b.guest]),
    sorted,
    devices.map((d) => (d.bus ? filterReason(d) : '')),
    s.queuesLoaded,
    s.queuesVersion,
  ])
  if (prev && prev.cellInputs === cellInputs) return { ...prev, devices, deviceByUuid }

  // Owners on the bus: the bus devices' matrices (foreign ones included).
  const busOwner = new Map<string, string>()
  const guestSet = new Map<string, Set<string>>()
  for (const b of s.busMdevs) {
    for (const a of b.matrix) busOwner.set(a, b.uuid)
    guestSet.set(b.uuid, new Set(b.guestMatrix))
  }
  const rowSet = new Set<number>(s.adapters.map((a) => a.apid))
  const colSet = new Set<number>(s.domains.usageDomains)
  for (const a of busOwner.keys()) {
    const [ap, aq] = a.split('.')
    rowSet.add(Number.parseInt(ap!, 16))
    colSet.add(Number.parseInt(aq!, 16))
  }
  if (full) {
    for (let i = 0; i <= s.host.maxAdapterId; i++) rowSet.add(i)
    for (let i = 0; i <= s.host.maxDomainId; i++) colSet.add(i)
  }
  const rows = [...rowSet].sort((a, b) => a - b)
  const cols = [...colSet].sort((a, b) => a - b)
  const observed = observedMasks(s)
  const apm = new Set(observed?.apmaskIds ?? [])
  const aqm = new Set(observed?.aqmaskIds ?? [])
  const adapterBy = new Map(s.adapters.map((a) => [a.apid, a]))
  const usage = new Set(s.domains.usageDomains)
  const counts: Record<OwnerKind, number> = { host: 0, device: 0, free: 0, unconfigured: 0, hidden: 0 }
  const cells = new Map<number, Cell>()
  for (const apid of rows) {
    const adapter = adapterBy.get(apid)
    for (const apqi of cols) {
      const k = key(apid, apqi)
      const old = prev?.cells.get(k)
      const apqn = old?.apqn ?? apqnOf(apid, apqi)
      const queue = s.queues.get(apqn) ?? null
      const holder = queue?.owner ?? busOwner.get(apqn) ?? null
      const device = holder !== null && visible(holder) ? holder : null
      // Configured: the queue exists (once the queues are read), else the adapter and usage domain exist.
      const configured = queue ? queue.config && (adapter?.config ?? true) : !s.queuesLoaded && adapter !== undefined && adapter.config && usage.has(apqi)
      let kind: OwnerKind
      if (device) kind = 'device'
      else if (holder) kind = 'hidden'
      else if (!configured) kind = 'unconfigured'
      else if (apm.has(apid) && aqm.has(apqi)) kind = 'host'
      else kind = 'free'
      counts[kind]++
      const marks: Marks = { guest: null, filtered: null, unbound: false, down: null, inflight: 0 }
      if (device) {
        const d = deviceByUuid.get(device)
        const bus = d?.bus
        if (bus) {
          const inGuest = guestSet.get(device)?.has(apqn) ?? false
          if (inGuest && bus.guest) marks.guest = bus.guest
          if (bus.matrix.includes(apqn) && !inGuest && d) marks.filtered = filterReason(d)
        }
      }
      if (queue) {
        marks.unbound = queue.driver === 'none'
        marks.inflight = queue.requestqCount + queue.pendingqCount
        if (queue.chkstop || adapter?.chkstop) marks.down = 'checkstopped'
        else if (queue.online === false || adapter?.online === false) marks.down = 'offline'
      }
      if (!marks.down && adapter && !adapter.config && device) marks.down = 'config off'
      const same = old !== undefined && old.kind === kind && old.device === device && old.queue === queue && sameMarks(old.marks, marks)
      cells.set(k, same ? old : { apid, apqi, apqn, kind, device, queue, marks })
    }
  }
  return { cellInputs, rows, cols, cells, devices, deviceByUuid, counts }
}

function sameMarks(a: Marks, b: Marks): boolean {
  return a.guest === b.guest && a.filtered === b.filtered && a.unbound === b.unbound && a.down === b.down && a.inflight === b.inflight
}

/** The colour a cell is filled with. */
export function cellColor(v: View, c: Cell): string {
  if (c.kind === 'device') return v.deviceByUuid.get(c.device!)?.color ?? '#000000'
  return KIND_COLORS[c.kind]
}

/**
 * Parses an id list typed by a person: decimal or 0x hex ids and ranges (`5,6`, `0x47`, `1-4`,
 * `0x00-0x0f`). Throws with a message naming the bad term. Syntax only: the server judges the ids.
 */
export function parseIds(text: string): number[] {
  const out = new Set<number>()
  const t = text.trim()
  if (t === '') return []
  for (const raw of t.split(/[\s,]+/)) {
    if (raw === '') continue
    const m = /^(0x[0-9a-f]+|\d+)(?:-(0x[0-9a-f]+|\d+))?$/i.exec(raw)
    if (!m) throw new Error(`not an id or range: ${raw}`)
    const a = Number(m[1])
    const b = m[2] === undefined ? a : Number(m[2])
    if (b < a || b - a > 4096) throw new Error(`bad range: ${raw}`)
    for (let i = a; i <= b; i++) out.add(i)
  }
  return [...out].sort((x, y) => x - y)
}
