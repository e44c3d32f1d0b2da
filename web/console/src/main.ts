/**
 * The apmatrix web console (docs/console.md): one host's APQN grid, its matrix devices and events, live from
 * the event stream, and plan-then-apply through the plan and desired-state routes. It shows only what the API
 * answers; every rule (ownership, filtering, admission) is the server's.
 */
import { ApiError, call, followEvents, get, getAll, getToken, setToken, type StreamState } from './api.js'
import type { Adapter, ApEvent, BusMdev, Domains, FullPlan, Host, Masks, Mdev, Problem, Queue, Violation } from './api-types.js'
import { Grid, MARK_COLORS, type Overlay } from './grid.js'
import { buildView, type Cell, cellColor, KIND_COLORS, key, observedMasks, parseIds, type Snapshot, type View } from './model.js'

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T

type Child = Node | string | null | undefined | false
function el(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v)
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c)
  return e
}

const state = {
  host: '',
  snap: null as Snapshot | null,
  view: null as View | null,
  selected: null as string | null,
  events: [] as ApEvent[],
  streamState: 'connecting' as StreamState,
  plan: null as null | { what: 'device' | 'masks'; body: unknown; exists: boolean },
}

const grid = new Grid($<HTMLCanvasElement>('grid'))

/** Test and benchmark hook: reads the rendered model (never changes it). */
const hook = {
  ready: false,
  queuesLoaded: false,
  /** performance.now() of the first complete draw (owners known), and of the draw with every queue read. */
  firstDrawAt: 0,
  queuesDrawnAt: 0,
  /** Count of model rebuilds after events. */
  updates: 0,
  /** Main-thread time of the latest model rebuilds and draws, ms (the benchmark reads them). */
  rebuildMs: [] as number[],
  lastSeq: () => stream?.lastSeq() ?? -1,
  streamState: () => state.streamState,
  draws: () => grid.draws,
  cell(apid: number, apqi: number) {
    const c = state.view?.cells.get(key(apid, apqi))
    if (!c || !state.view) return null
    const o = grid.overlay
    return {
      apqn: c.apqn,
      kind: c.kind,
      device: c.device,
      color: cellColor(state.view, c),
      marks: c.marks,
      violations: o?.violations.get(c.apqn) ?? [],
      claimed: o?.claimed.has(c.apqn) ?? false,
    }
  },
  center: (apid: number, apqi: number) => grid.center(apid, apqi),
  point: (apid: number, apqi: number, where: Parameters<Grid['point']>[2]) => grid.point(apid, apqi, where),
  cellSize: () => grid.cell,
  /** Seqs of the events received, in arrival order. */
  eventSeqs: () => state.events.map((e) => e.seq),
  /** The events received (seq, kind, name, message), in arrival order. */
  events: () => state.events.map((e) => ({ seq: e.seq, kind: e.kind, name: e.name, message: e.message })),
  marks: MARK_COLORS,
}
;(window as unknown as { __console: typeof hook }).__console = hook

let stream: ReturnType<typeof followEvents> | undefined

function showError(msg: string | null): void {
  const e = $('error')
  e.hidden = msg === null
  e.textContent = msg ?? ''
}

function describeError(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 401) return 'The server wants a token: enter it in the Token field.'
    if (e.status === 403) return `Not allowed: ${e.message}`
    return `${e.problem.code ?? e.status}: ${e.message}`
  }
  return String((e as Error).message ?? e)
}

const H = () => `/v1/hosts/${encodeURIComponent(state.host)}`

/** Roles that read every matrix device; a caller with a tenant name and none of them sees its own only. */
const READ_ALL_MDEVS = ['viewer', 'operator', 'host-admin', 'admin']

/** Whether the caller sees only its own devices (`GET /v1/auth/whoami`; an older server without it: no). */
async function limitedCaller(): Promise<boolean> {
  try {
    const me = await get<{ roles: string[]; tenant: string | null }>('/v1/auth/whoami')
    return me.tenant !== null && !me.roles.some((r) => READ_ALL_MDEVS.includes(r))
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return false
    throw e
  }
}

/** A read the caller may be denied (403): null then. */
async function ifAllowed<T>(p: Promise<T>): Promise<T | null> {
  try {
    return await p
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return null
    throw e
  }
}

async function loadBase(): Promise<Snapshot> {
  const limited = await limitedCaller()
  const [host, adapters, domains, masks, bus, mdevs] = await Promise.all([
    get<Host>(H()),
    get<{ items: Adapter[] }>(`${H()}/adapters`),
    get<Domains>(`${H()}/domains`),
    // A tenant may not read the masks (docs/security.md): its grid does not tell host from free.
    limited ? Promise.resolve(null) : ifAllowed(get<Masks>(`${H()}/masks`)),
    get<{ items: BusMdev[] }>(`${H()}/bus-mdevs`),
    getAll<Mdev>(`${H()}/mdevs`),
  ])
  return {
    limited,
    host,
    adapters: adapters.items,
    domains,
    masks,
    busMdevs: bus.items,
    mdevs,
    queues: state.snap?.queues ?? new Map(),
    queuesLoaded: state.snap?.queuesLoaded ?? false,
    queuesVersion: state.snap?.queuesVersion ?? 0,
  }
}

/**
 * The queues of some adapters (one page each: an adapter has at most 256 queues), `parallel` requests at a
 * time. A browser opens about 6 connections per server and the event stream holds one: the background read
 * of every queue uses 2, so the reads a live update needs are not queued behind it.
 */
async function loadQueues(apids: number[], parallel = 3): Promise<Queue[]> {
  const out: Queue[] = []
  let next = 0
  const worker = async () => {
    while (next < apids.length) {
      const apid = apids[next++]!
      out.push(...(await getAll<Queue>(`${H()}/queues?adapter=${apid}`)))
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, apids.length) }, worker))
  return out
}

function fitCell(v: View): number {
  const sel = $<HTMLSelectElement>('zoom').value
  if (sel !== 'fit') return Number(sel)
  const box = $('gridscroll')
  const w = (box.clientWidth - grid.origin - 4) / Math.max(1, v.cols.length)
  const h = (box.clientHeight - grid.origin - 4) / Math.max(1, v.rows.length)
  return Math.max(2, Math.min(40, Math.floor(Math.min(w, h))))
}

function rebuild(): void {
  if (!state.snap) return
  const t0 = performance.now()
  const v = buildView(state.snap, $<HTMLInputElement>('allids').checked, state.view)
  state.view = v
  grid.view = v
  grid.cell = fitCell(v)
  if (grid.cursor && (grid.cursor.r >= v.rows.length || grid.cursor.c >= v.cols.length)) grid.cursor = null
  grid.draw()
  renderHostLine()
  renderLegend()
  renderDevices()
  renderDeviceDetail()
  hook.rebuildMs.push(performance.now() - t0)
  if (hook.rebuildMs.length > 1000) hook.rebuildMs.splice(0, 500)
}

function renderHostLine(): void {
  const s = state.snap!
  const v = state.view!
  const m = observedMasks(s)
  $('hostline').textContent =
    `${s.host.name} (${s.host.driver}${s.host.profile ? `, profile ${s.host.profile}` : ''}): ${v.rows.length} adapters x ${v.cols.length} domains; ` +
    (m
      ? `apmask ${m.apmaskIds.length} ids, aqmask ${m.aqmaskIds.length} ids${s.masks?.status ? '' : ' (desired; bus unreadable)'}`
      : 'masks not readable by you (host and free shown as free)') +
    (s.limited ? '; your devices only' : '') +
    (s.queuesLoaded ? '' : '; reading queues…')
}

function swatch(color: string): HTMLElement {
  const sw = el('span', { class: 'sw', 'aria-hidden': 'true' })
  sw.style.background = color
  return sw
}

function renderLegend(): void {
  const v = state.view!
  const ul = $('legend')
  const items: HTMLElement[] = [
    el('li', {}, swatch(KIND_COLORS.host), `host default drivers (${v.counts.host})`),
    el('li', {}, swatch(KIND_COLORS.free), `free for vfio_ap (${v.counts.free})`),
    el('li', {}, swatch(KIND_COLORS.unconfigured), `not configured (${v.counts.unconfigured})`),
    ...(v.counts.hidden ? [el('li', {}, swatch(KIND_COLORS.hidden), `in use by a device not visible to you (${v.counts.hidden})`)] : []),
    el('li', {}, swatch('#ffffff'), `in devices: ${v.counts.device}`),
    el('li', {}, swatch(MARK_COLORS.guest), 'square top left: in a guest'),
    el('li', {}, swatch(MARK_COLORS.filtered), 'corner top right: filtered from the guest'),
    el('li', {}, swatch(MARK_COLORS.unbound), 'corner bottom left: unbound'),
    el('li', {}, swatch(MARK_COLORS.down), 'corner bottom right: checkstopped/offline'),
    el('li', {}, swatch(MARK_COLORS.inflight), 'bar bottom: requests in flight'),
    el('li', {}, swatch(MARK_COLORS.claimed), 'blue ring: plan claims it'),
    el('li', {}, swatch(MARK_COLORS.drained), 'bar top: plan drains it'),
    el('li', {}, swatch(MARK_COLORS.violation), 'red ring: plan violation'),
  ]
  ul.replaceChildren(...items)
}

function condBadges(m: Mdev | null): HTMLElement[] {
  const out: HTMLElement[] = []
  for (const c of m?.status.conditions ?? []) {
    if (c.status !== 'True') continue
    if (c.type === 'Progressing') continue
    const cls = c.type === 'Ready' ? 'ok' : c.type === 'InUseByGuest' ? 'info' : 'bad'
    out.push(el('span', { class: `badge ${cls}`, title: `${c.reason}: ${c.message}` }, c.type))
  }
  const ready = m?.status.conditions?.find((c) => c.type === 'Ready')
  if (ready && ready.status !== 'True') out.unshift(el('span', { class: 'badge bad', title: ready.message }, `Not ready: ${ready.reason}`))
  return out
}

function renderDevices(): void {
  const v = state.view!
  const box = $('devices')
  if (v.devices.length === 0) {
    box.replaceChildren(el('p', {}, 'No matrix devices on this host.'))
    return
  }
  const rows = v.devices.map((d) => {
    const labels = Object.entries(d.mdev?.metadata.labels ?? {})
      .map(([k, val]) => `${k}=${val}`)
      .join(', ')
    const btn = el('button', { type: 'button', 'data-uuid': d.uuid, 'aria-pressed': String(state.selected === d.uuid) }, d.uuid.slice(0, 8))
    btn.addEventListener('click', () => selectDevice(state.selected === d.uuid ? null : d.uuid))
    return el(
      'tr',
      { 'aria-selected': String(state.selected === d.uuid), 'data-uuid': d.uuid },
      el('td', {}, swatch(d.color), btn),
      el('td', {}, ...(d.mdev ? condBadges(d.mdev) : [el('span', { class: 'badge info' }, 'foreign')])),
      el('td', {}, labels || '—'),
      el('td', {}, d.mdev?.metadata.owner ?? '—'),
      el('td', {}, d.bus?.guest ?? d.mdev?.status.guest ?? '—'),
    )
  })
  box.replaceChildren(
    el(
      'table',
      {},
      el('caption', { class: 'sr-only' }, 'Matrix devices'),
      el('thead', {}, el('tr', {}, el('th', {}, 'device'), el('th', {}, 'conditions'), el('th', {}, 'labels'), el('th', {}, 'owner'), el('th', {}, 'guest'))),
      el('tbody', {}, ...rows),
    ),
  )
}

function renderDeviceDetail(): void {
  const box = $('devdetail')
  const d = state.selected ? state.view?.deviceByUuid.get(state.selected) : undefined
  if (!d) {
    box.replaceChildren()
    $('evfilter').textContent = ''
    renderEvents()
    return
  }
  const m = d.mdev
  const s = m?.status
  const dl = el(
    'dl',
    {},
    el('dt', {}, 'uuid'),
    el('dd', {}, d.uuid),
    el('dt', {}, 'spec'),
    el('dd', {}, m ? `adapters ${ids(m.spec.adapters)}; domains ${ids(m.spec.domains)}; ${m.spec.state}` : 'foreign (not stored)'),
    el('dt', {}, 'control domains'),
    el('dd', {}, ids(s?.controlDomains ?? d.bus?.controlDomains ?? m?.spec.controlDomains ?? [])),
    el('dt', {}, 'matrix'),
    el('dd', {}, `${(d.bus?.matrix ?? s?.matrix ?? []).length} APQNs, ${(d.bus?.guestMatrix ?? s?.guestMatrix ?? []).length} in guestMatrix`),
    el('dt', {}, 'guest'),
    el('dd', {}, d.bus?.guest ?? s?.guest ?? '—'),
    ...(s?.conditions ?? []).flatMap((c) => [el('dt', {}, c.type), el('dd', {}, `${c.status} ${c.reason}${c.message ? `: ${c.message}` : ''}`)]),
  )
  box.replaceChildren(dl)
  $('evfilter').textContent = `(device ${d.uuid.slice(0, 8)})`
  renderEvents()
}

function ids(list: number[]): string {
  return list.length ? list.map((i) => `0x${i.toString(16)}`).join(',') : '—'
}

function selectDevice(uuid: string | null): void {
  state.selected = uuid
  grid.highlight = uuid
  grid.draw()
  renderDevices()
  renderDeviceDetail()
  const d = uuid ? state.view?.deviceByUuid.get(uuid) : undefined
  if (d?.mdev) {
    $<HTMLInputElement>('p-uuid').value = d.uuid
    $<HTMLInputElement>('p-adapters').value = d.mdev.spec.adapters.join(',')
    $<HTMLInputElement>('p-domains').value = d.mdev.spec.domains.join(',')
    $<HTMLInputElement>('p-control').value = d.mdev.spec.controlDomains.join(',')
  }
}

function renderEvents(): void {
  const list = state.selected ? state.events.filter((e) => e.name === state.selected) : state.events
  $('events').replaceChildren(
    ...list
      .slice(-100)
      .reverse()
      .map((e) => el('li', { 'data-seq': String(e.seq) }, `#${e.seq} ${e.time.slice(11, 19)} ${e.type} ${e.name ? e.name.slice(0, 13) : ''} ${e.message}`)),
  )
}

function describeCell(c: Cell): HTMLElement {
  const v = state.view!
  const q = c.queue
  const d = c.device ? v.deviceByUuid.get(c.device) : undefined
  const owner =
    c.kind === 'device'
      ? `matrix device ${c.device}${d?.mdev ? '' : ' (foreign)'}`
      : c.kind === 'host'
        ? 'host default drivers'
        : c.kind === 'free'
          ? 'free for vfio_ap'
          : c.kind === 'hidden'
            ? 'in use by a matrix device not visible to you'
            : 'not configured'
  const conds: string[] = []
  if (c.marks.guest) conds.push(`in guest ${c.marks.guest}`)
  if (c.marks.filtered) conds.push(`filtered from the guest (${c.marks.filtered})`)
  if (c.marks.unbound) conds.push('unbound')
  if (c.marks.down) conds.push(c.marks.down)
  if (c.marks.inflight) conds.push(`${c.marks.inflight} requests in flight`)
  const adapter = state.snap?.adapters.find((a) => a.apid === c.apid)
  const viol = grid.overlay?.violations.get(c.apqn) ?? []
  return el(
    'dl',
    {},
    el('dt', {}, 'APQN'),
    el('dd', {}, c.apqn),
    el('dt', {}, 'owner'),
    el('dd', {}, owner),
    el('dt', {}, 'conditions'),
    el('dd', {}, conds.join('; ') || 'none'),
    el('dt', {}, 'adapter'),
    el('dd', {}, adapter ? `${adapter.type} ${adapter.mode} (hwtype ${adapter.hwtype}), ${adapter.functions.join(' ')}` : '—'),
    el('dt', {}, 'queue'),
    el(
      'dd',
      {},
      q
        ? `driver ${q.driver}${q.vfioStatus ? ` (${q.vfioStatus})` : ''}, config ${q.config ? 1 : 0}, chkstop ${q.chkstop ? 1 : 0}, online ${q.online === null ? '—' : q.online ? 1 : 0}`
        : state.snap?.queuesLoaded
          ? 'no queue device'
          : 'reading…',
    ),
    el('dt', {}, 'counters'),
    el('dd', {}, q ? `requestq ${q.requestqCount}, pendingq ${q.pendingqCount}, requests ${q.requestCount ?? '—'}` : '—'),
    ...(viol.length ? [el('dt', {}, 'plan'), el('dd', { class: 'viol' }, viol.join(' | '))] : []),
  )
}

function showCell(r: number, c: number): void {
  const cell = grid.cellAt(r, c)
  if (cell) $('cellinfo').replaceChildren(describeCell(cell))
}

// ---- live updates -------------------------------------------------------------------------------------

const dirty = { all: false, base: false, adapters: new Set<number>() }
let refreshing: Promise<void> | null = null
let refreshTimer: ReturnType<typeof setTimeout> | undefined

function scheduleRefresh(): void {
  if (refreshTimer) return
  refreshTimer = setTimeout(() => {
    refreshTimer = undefined
    void runRefresh()
  }, 30)
}

async function runRefresh(): Promise<void> {
  if (refreshing) {
    await refreshing
    if (dirty.all || dirty.base || dirty.adapters.size) scheduleRefresh()
    return
  }
  let all = dirty.all
  const base = dirty.base || all
  const adapters = new Set(dirty.adapters)
  dirty.all = false
  dirty.base = false
  dirty.adapters.clear()
  let done!: () => void
  refreshing = new Promise<void>((r) => (done = r))
  try {
    if (base) {
      const before = state.snap
      state.snap = await loadBase()
      if (before && !all) {
        // Queues of the adapters whose devices changed: their owner and driver moved.
        const oldBus = new Map(before.busMdevs.map((b) => [b.uuid, b.matrix.join()]))
        for (const b of state.snap.busMdevs) if (oldBus.get(b.uuid) !== b.matrix.join()) for (const a of b.adapters) adapters.add(a)
        for (const b of before.busMdevs) if (!state.snap.busMdevs.some((x) => x.uuid === b.uuid)) for (const a of b.adapters) adapters.add(a)
        // A mask change moves the queues of its adapters between drivers; a domain's queues are on every adapter.
        const [m0, m1] = [observedMasks(before), observedMasks(state.snap)]
        if (m0 && m1) {
          for (const a of symmetricDifference(m0.apmaskIds, m1.apmaskIds)) adapters.add(a)
          if (symmetricDifference(m0.aqmaskIds, m1.aqmaskIds).length) all = true
        }
      }
    }
    rebuild()
    if (!hook.ready) hook.firstDrawAt = performance.now()
    hook.ready = true
    hook.updates++
    if (all) readAllQueues()
    else if (adapters.size) await refreshQueues([...adapters], false)
    showError(null)
  } catch (e) {
    showError(describeError(e))
  } finally {
    refreshing = null
    done()
  }
  if (dirty.all || dirty.base || dirty.adapters.size) scheduleRefresh()
}

function symmetricDifference(a: number[], b: number[]): number[] {
  const sa = new Set(a)
  const sb = new Set(b)
  return [...a.filter((x) => !sb.has(x)), ...b.filter((x) => !sa.has(x))]
}

let allRead: Promise<void> | null = null
let allAgain = false

/**
 * Reads every adapter's queues in the background (the first time, after a reconnect, a host event or a
 * domain mask change), so live updates of a few adapters are not held up on a large host. One such read at
 * a time: asked again while one runs, it reads once more when that one ends.
 */
function readAllQueues(): void {
  if (allRead) {
    allAgain = true
    return
  }
  allRead = refreshQueues(
    state.snap!.adapters.map((a) => a.apid),
    true,
  )
    .catch((e) => showError(describeError(e)))
    .finally(() => {
      allRead = null
      if (!allAgain) return
      allAgain = false
      readAllQueues()
    })
}

/** The newest read of each adapter's queues (a counter), so an older read never overwrites a newer one. */
const queueRead = new Map<number, number>()
let reads = 0

/** Reads the queues of `apids` and redraws; `all` marks the read of every adapter. */
async function refreshQueues(apids: number[], all: boolean): Promise<void> {
  const mine = ++reads
  for (const a of apids) queueRead.set(a, mine)
  const qs = await loadQueues(apids, all ? 2 : 3)
  const snap = state.snap
  if (!snap) return
  const current = new Set(apids.filter((a) => queueRead.get(a) === mine))
  for (const [k, q] of snap.queues) if (current.has(q.apid)) snap.queues.delete(k)
  for (const q of qs) if (current.has(q.apid)) snap.queues.set(q.apqn, q)
  snap.queuesVersion++
  if (all) snap.queuesLoaded = true
  rebuild()
  hook.updates++
  if (all && !hook.queuesLoaded) hook.queuesDrawnAt = performance.now()
  if (all) hook.queuesLoaded = true
}

function onEvent(e: ApEvent): void {
  state.events.push(e)
  if (state.events.length > 2000) state.events.splice(0, state.events.length - 1000)
  if (!state.selected || e.name === state.selected) renderEvents()
  if (e.kind === 'host') {
    dirty.all = true
  } else if (e.kind === 'queue') {
    const apid = Number.parseInt(e.name.split('.')[0] ?? '', 16)
    if (Number.isInteger(apid)) dirty.adapters.add(apid)
    dirty.base = true
  } else {
    dirty.base = true
  }
  scheduleRefresh()
}

function setStream(s: StreamState, detail: string): void {
  state.streamState = s
  const b = $('stream')
  b.dataset.state = s
  b.textContent = s === 'live' ? 'live' : s === 'lost' ? 'connection lost, retrying' : 'connecting'
  b.title = detail
}

// ---- plan, then apply ---------------------------------------------------------------------------------

function what(): 'device' | 'masks' {
  return ($<HTMLFormElement>('planform').elements.namedItem('what') as RadioNodeList).value as 'device' | 'masks'
}

function newUuid(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID()
  const b = crypto.getRandomValues(new Uint8Array(16))
  b[6] = (b[6]! & 0x0f) | 0x40
  b[8] = (b[8]! & 0x3f) | 0x80
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

function overlayFrom(violations: Violation[], claimed: FullPlan['claimedApqns'] = [], drained: string[] = []): Overlay {
  const o: Overlay = { claimed: new Map(), drained: new Set(drained), violations: new Map(), rows: new Set(), cols: new Set() }
  for (const c of claimed) o.claimed.set(c.apqn.toLowerCase(), c.currentOwner)
  for (const v of violations) {
    const text = `${v.rule}: ${v.message}${v.fix ? ` (fix: ${v.fix})` : ''}`
    if (v.apqn) {
      const a = v.apqn.toLowerCase()
      o.violations.set(a, [...(o.violations.get(a) ?? []), text])
    } else if (v.id !== undefined && v.field) {
      if (/apmask|adapters/.test(v.field)) o.rows.add(v.id)
      else if (/aqmask|domains/i.test(v.field)) o.cols.add(v.id)
    }
  }
  return o
}

function focusApqn(apqn: string): void {
  const [a, d] = apqn.split('.')
  const v = state.view
  if (!v) return
  const r = v.rows.indexOf(Number.parseInt(a!, 16))
  const c = v.cols.indexOf(Number.parseInt(d!, 16))
  if (r < 0 || c < 0) return
  grid.cursor = { r, c }
  grid.draw()
  showCell(r, c)
  $('grid').focus()
}

function renderPlanResult(title: string, violations: Violation[], plan: FullPlan | null, problem: Problem | null): void {
  const out = $('planout')
  const parts: HTMLElement[] = [el('p', {}, el('strong', {}, title))]
  if (problem)
    parts.push(el('p', { class: 'viol' }, `${problem.code ?? problem.status}${problem.errno ? ` (${problem.errno})` : ''}: ${problem.detail ?? problem.title}`))
  if (plan) {
    const byOwner = new Map<string, number>()
    for (const c of plan.claimedApqns) byOwner.set(c.currentOwner ?? 'free', (byOwner.get(c.currentOwner ?? 'free') ?? 0) + 1)
    parts.push(
      el(
        'p',
        {},
        `${plan.operations.length} operations (${[...new Set(plan.operations.map((o) => o.kind))].join(', ') || 'none'}); claims ${plan.claimedApqns.length} APQNs` +
          (byOwner.size ? ` (${[...byOwner].map(([o, n]) => `${n} from ${o === 'host' || o === 'free' ? o : o.slice(0, 8)}`).join(', ')})` : '') +
          `; drains ${plan.drainedQueues.length} host queues; ${plan.filteredAdapters.length} adapters filtered; ${plan.deferred.length} deferred`,
      ),
    )
  }
  if (violations.length) {
    const ul = el('ul', { class: 'viol' })
    for (const v of violations.slice(0, 200)) {
      const li = el('li', {}, `${v.rule}${v.apqn ? ` ${v.apqn}` : ''}: ${v.message}${v.fix ? ` — fix: ${v.fix}` : ''} `)
      if (v.apqn) {
        const b = el('button', { type: 'button', class: 'link' }, 'show')
        b.addEventListener('click', () => focusApqn(v.apqn!.toLowerCase()))
        li.append(b)
      }
      ul.append(li)
    }
    parts.push(ul)
  }
  out.replaceChildren(...parts)
}

async function doPlan(): Promise<void> {
  const apply = $<HTMLButtonElement>('p-apply')
  apply.disabled = true
  state.plan = null
  try {
    if (what() === 'device') {
      const uuidBox = $<HTMLInputElement>('p-uuid')
      if (!uuidBox.value.trim()) uuidBox.value = newUuid()
      const uuid = uuidBox.value.trim().toLowerCase()
      const spec = {
        adapters: parseIds($<HTMLInputElement>('p-adapters').value),
        domains: parseIds($<HTMLInputElement>('p-domains').value),
        controlDomains: parseIds($<HTMLInputElement>('p-control').value),
      }
      const exists = state.snap?.mdevs.find((m) => m.metadata.uuid === uuid)
      const body = exists ? { uuid, spec: { ...spec, state: exists.spec.state }, labels: exists.metadata.labels, owner: exists.metadata.owner } : { uuid, spec }
      const plan = (await call<FullPlan>('POST', `${H()}/plan?view=full`, body)).body
      grid.overlay = overlayFrom(plan.violations, plan.claimedApqns, plan.drainedQueues)
      grid.draw()
      renderPlanResult(
        plan.violations.length ? `Plan for ${uuid.slice(0, 8)}: ${plan.violations.length} violations` : `Plan for ${uuid.slice(0, 8)}: admissible`,
        plan.violations,
        plan,
        null,
      )
      state.plan = { what: 'device', body, exists: exists !== undefined }
      apply.disabled = plan.violations.length > 0
    } else {
      const body: Record<string, string> = {}
      const ap = $<HTMLInputElement>('p-apmask').value.trim()
      const aq = $<HTMLInputElement>('p-aqmask').value.trim()
      if (ap) body.apmask = ap
      if (aq) body.aqmask = aq
      try {
        const r = (await call<{ dryRun: true; plan: FullPlan }>('PUT', `${H()}/masks?dryRun=true&view=full`, body)).body
        grid.overlay = overlayFrom(r.plan.violations, r.plan.claimedApqns, r.plan.drainedQueues)
        grid.draw()
        renderPlanResult('Mask change: admissible', r.plan.violations, r.plan, null)
        state.plan = { what: 'masks', body, exists: true }
        apply.disabled = false
      } catch (e) {
        if (!(e instanceof ApiError)) throw e
        showRefusal('Mask change refused', e)
      }
    }
  } catch (e) {
    if (e instanceof ApiError) showRefusal('Plan refused', e)
    else renderPlanResult(`Cannot plan: ${(e as Error).message}`, [], null, null)
  }
}

function showRefusal(title: string, e: ApiError): void {
  const v = e.problem.violations ?? []
  grid.overlay = overlayFrom(v)
  grid.draw()
  renderPlanResult(title, v, null, e.problem)
}

async function doApply(): Promise<void> {
  const p = state.plan
  if (!p) return
  $<HTMLButtonElement>('p-apply').disabled = true
  try {
    if (p.what === 'device') {
      const b = p.body as { uuid: string; spec: unknown; labels?: unknown; owner?: unknown }
      if (p.exists) {
        const { uuid, ...rest } = b
        await call('PUT', `${H()}/mdevs/${uuid}`, rest)
      } else await call('POST', `${H()}/mdevs`, b)
      renderPlanResult(`Applied: device ${b.uuid.slice(0, 8)} stored; the reconciler brings it to the bus.`, [], null, null)
      selectDevice(b.uuid)
    } else {
      const masks = await call<Masks>('GET', `${H()}/masks`)
      await call('PUT', `${H()}/masks`, p.body, masks.etag ? { 'if-match': masks.etag } : {})
      renderPlanResult('Applied: masks stored; the reconciler writes them to the bus.', [], null, null)
    }
    grid.overlay = null
    grid.draw()
    state.plan = null
  } catch (e) {
    if (e instanceof ApiError) showRefusal('Apply refused', e)
    else renderPlanResult(`Apply failed: ${(e as Error).message}`, [], null, null)
  }
}

// ---- input ---------------------------------------------------------------------------------------------

function wire(): void {
  const canvas = $<HTMLCanvasElement>('grid')
  let drag: { r: number; c: number } | null = null
  const pos = (ev: MouseEvent) => {
    const b = canvas.getBoundingClientRect()
    return grid.hit(ev.clientX - b.left, ev.clientY - b.top)
  }
  let hoverRaf = 0
  canvas.addEventListener('mousemove', (ev) => {
    const h = pos(ev)
    if (drag && h) {
      grid.selection = { r0: drag.r, c0: drag.c, r1: h.r, c1: h.c }
      grid.draw()
    }
    if (!h || hoverRaf) return
    hoverRaf = requestAnimationFrame(() => {
      hoverRaf = 0
      showCell(h.r, h.c)
    })
  })
  canvas.addEventListener('mousedown', (ev) => {
    const h = pos(ev)
    if (!h) return
    drag = h
    grid.cursor = h
    grid.selection = null
    grid.draw()
    showCell(h.r, h.c)
  })
  window.addEventListener('mouseup', () => {
    if (!drag) return
    drag = null
    if (grid.selection) selectionToForm()
  })
  canvas.addEventListener('keydown', (ev) => {
    const v = state.view
    if (!v) return
    const cur = grid.cursor ?? { r: 0, c: 0 }
    const step = ev.key.startsWith('Page') ? 16 : 1
    let { r, c } = cur
    if (ev.key === 'ArrowUp' || ev.key === 'PageUp') r -= step
    else if (ev.key === 'ArrowDown' || ev.key === 'PageDown') r += step
    else if (ev.key === 'ArrowLeft') c -= 1
    else if (ev.key === 'ArrowRight') c += 1
    else if (ev.key === 'Home') c = 0
    else if (ev.key === 'End') c = v.cols.length - 1
    else if (ev.key === 'Enter' || ev.key === ' ') {
      const cell = grid.cellAt(r, c)
      if (cell?.device) selectDevice(cell.device)
      showCell(r, c)
      ev.preventDefault()
      return
    } else if (ev.key === 'Escape') {
      grid.selection = null
      grid.draw()
      return
    } else return
    ev.preventDefault()
    r = Math.max(0, Math.min(v.rows.length - 1, r))
    c = Math.max(0, Math.min(v.cols.length - 1, c))
    if (ev.shiftKey) {
      const s = grid.selection ?? { r0: cur.r, c0: cur.c, r1: cur.r, c1: cur.c }
      grid.selection = { ...s, r1: r, c1: c }
      selectionToForm()
    }
    grid.cursor = { r, c }
    grid.draw()
    showCell(r, c)
  })
  canvas.addEventListener('click', (ev) => {
    const h = pos(ev)
    if (!h) return
    const cell = grid.cellAt(h.r, h.c)
    if (cell?.device && !grid.selection) selectDevice(cell.device)
  })
  $('zoom').addEventListener('change', rebuild)
  $('allids').addEventListener('change', rebuild)
  window.addEventListener('resize', () => {
    if ($<HTMLSelectElement>('zoom').value === 'fit') rebuild()
  })
  $('host').addEventListener('change', () => {
    const h = $<HTMLSelectElement>('host').value
    const u = new URL(location.href)
    u.searchParams.set('host', h)
    location.href = u.toString()
  })
  $('tokenform').addEventListener('submit', (ev) => {
    ev.preventDefault()
    setToken($<HTMLInputElement>('token').value)
    location.reload()
  })
  $<HTMLInputElement>('token').value = getToken()
  $('planform').addEventListener('submit', (ev) => {
    ev.preventDefault()
    void doPlan()
  })
  $('planform').addEventListener('change', (ev) => {
    if ((ev.target as HTMLInputElement).name !== 'what') return
    $('devicefields').hidden = what() !== 'device'
    $('maskfields').hidden = what() !== 'masks'
    $<HTMLButtonElement>('p-apply').disabled = true
  })
  $('p-apply').addEventListener('click', () => void doApply())
  $('p-clear').addEventListener('click', () => {
    grid.overlay = null
    grid.selection = null
    state.plan = null
    $<HTMLButtonElement>('p-apply').disabled = true
    $('planout').replaceChildren()
    grid.draw()
  })
}

/** Puts the selected rectangle's adapters and domains in the device form (a new device). */
function selectionToForm(): void {
  const v = state.view
  const s = grid.selection
  if (!v || !s) return
  const rows = v.rows.slice(Math.min(s.r0, s.r1), Math.max(s.r0, s.r1) + 1)
  const cols = v.cols.slice(Math.min(s.c0, s.c1), Math.max(s.c0, s.c1) + 1)
  $<HTMLInputElement>('p-adapters').value = rows.join(',')
  $<HTMLInputElement>('p-domains').value = cols.join(',')
  $<HTMLInputElement>('p-control').value = ''
  const uuid = $<HTMLInputElement>('p-uuid')
  if (!uuid.value || state.view?.deviceByUuid.has(uuid.value)) uuid.value = newUuid()
}

async function start(): Promise<void> {
  wire()
  try {
    const hosts = (await get<{ items: Host[] }>('/v1/hosts')).items
    if (hosts.length === 0) throw new Error('the server manages no host')
    const wanted = new URL(location.href).searchParams.get('host')
    state.host = hosts.some((h) => h.name === wanted) ? wanted! : hosts[0]!.name
    $('host').replaceChildren(...hosts.map((h) => el('option', h.name === state.host ? { value: h.name, selected: '' } : { value: h.name }, h.name)))
  } catch (e) {
    showError(describeError(e))
    return
  }
  // The stream opens first: whatever changes while the snapshot is read arrives as an event after it. Every
  // (re)open reads everything again: cheap next to missing a change made while the stream was down.
  stream = followEvents({
    host: state.host,
    onEvent,
    onState: setStream,
    onOpen: () => {
      dirty.all = true
      scheduleRefresh()
    },
  })
}

void start()
