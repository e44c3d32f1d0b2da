/**
 * The bus port over sysfs paths (docs/api.md). Drives any {@link SysfsAccess}: the in-process emulator,
 * a remote emulator, or a real /sys.
 */
import { createYielder, DEFAULT_TURN_BUDGET_MS } from '../async/yielder.js'
import { SysfsError } from '../domain/errors.js'
import { formatApid, formatApqn, parseApqnName, parseCardName, qid } from '../domain/ids.js'
import { Mask, parseAbsoluteMask } from '../domain/mask.js'
import { parseMatrix } from '../domain/matrix.js'
import {
  BusError,
  type BusChange,
  type BusFence,
  type BusPort,
  type MatrixConfig,
  type ObservedAdapter,
  type ObservedHost,
  type ObservedHostFacts,
  type ObservedMdev,
  type ObservedQueue,
  type ObservedQueueRef,
  type ObservedTopology,
  type QueueDriver,
  type QueuePage,
  type QueuePageQuery,
  type SysfsAccess,
} from './port.js'

const AP = '/sys/bus/ap'
const DEVICES = `${AP}/devices`
const MATRIX = '/sys/devices/vfio_ap/matrix'
const MDEV_TYPE = `${MATRIX}/mdev_supported_types/vfio_ap-passthrough`

/** O-7: function word bits, high-order first. */
const FUNCTION_BITS: Array<[number, string]> = [
  [0x8000_0000, 'APSC'],
  [0x4000_0000, 'MEX4K'],
  [0x2000_0000, 'CRT4K'],
  [0x1000_0000, 'COPRO'],
  [0x0800_0000, 'ACCEL'],
  [0x0400_0000, 'EP11'],
  [0x0200_0000, 'APXA'],
  [0x0100_0000, 'SLCF'],
]

/** Decodes `ap_functions` (`0x%08X`, O-9) into mode and function names. */
export function decodeFunctions(text: string): { mode: ObservedAdapter['mode']; functions: string[] } {
  const word = Number.parseInt(text.trim(), 16) >>> 0
  const functions = FUNCTION_BITS.filter(([bit]) => (word & bit) !== 0).map(([, name]) => name)
  // O-7: a card works in exactly one mode.
  const mode = word & 0x1000_0000 ? 'cca' : word & 0x0800_0000 ? 'accel' : word & 0x0400_0000 ? 'ep11' : 'unknown'
  return { mode, functions }
}

/** O-7: `CEXnC|A|P` from the compatibility type (10 = CEX4) and the mode. */
export function typeName(hwtype: number, mode: ObservedAdapter['mode']): string {
  const suffix = mode === 'cca' ? 'C' : mode === 'accel' ? 'A' : mode === 'ep11' ? 'P' : '?'
  return hwtype >= 10 ? `CEX${hwtype - 6}${suffix}` : `type${hwtype}`
}

function maskIds(text: string): number[] {
  const p = parseAbsoluteMask(text.trim())
  return p.ok ? p.mask.ids() : []
}

function num(text: string): number {
  return Number.parseInt(text.trim(), 10)
}

function bool01(text: string): boolean {
  return text.trim() === '1'
}

/** Implements {@link BusPort} over sysfs. Stateless: every call reads what it needs. */
export class SysfsBus implements BusPort {
  /** Defined only when the access has an AP configuration lock (a real /sys, an agent): see BusPort.exclusive. */
  readonly exclusive?: <T>(fn: (locked: SysfsBus) => Promise<T>) => Promise<T>

  constructor(private readonly fs: SysfsAccess) {
    const exclusive = fs.exclusive?.bind(fs)
    if (exclusive) this.exclusive = (fn) => exclusive((locked) => fn(new SysfsBus(locked)))
  }

  /** True when the access carries fences to a host that checks them (remote emulator, agent). */
  get checksFence(): boolean {
    return this.fs.withFence !== undefined
  }

  /** The same bus with every write fenced; unfenced when the access cannot carry a fence (in-process emulator). */
  withFence(fence: BusFence): SysfsBus {
    return this.fs.withFence ? new SysfsBus(this.fs.withFence(fence)) : this
  }

  /** The host's change reports (uevents, polls); a no-op subscription when the access has none. */
  watch(listener: (change: BusChange) => void): () => void {
    return this.fs.watch ? this.fs.watch(listener) : () => undefined
  }

  private async tryRead(path: string): Promise<string | null> {
    try {
      return await this.fs.read(path)
    } catch (e) {
      if (e instanceof SysfsError) return null
      throw e
    }
  }

  private async tryList(path: string): Promise<string[]> {
    try {
      return await this.fs.list(path)
    } catch (e) {
      if (e instanceof SysfsError) return []
      throw e
    }
  }

  private async write(path: string, value: string): Promise<void> {
    try {
      await this.fs.write(path, value)
    } catch (e) {
      if (e instanceof SysfsError) throw new BusError(e.errno, path, `${path}: ${e.message}`)
      throw e
    }
  }

  /** Which driver each device is bound to, from the drivers' directories (one listing per driver). */
  private async boundDevices(): Promise<Map<string, QueueDriver | 'cex4card'>> {
    const out = new Map<string, QueueDriver | 'cex4card'>()
    const turn = createYielder()
    for (const d of ['cex4card', 'cex4queue', 'vfio_ap'] as const) {
      const names = await this.tryList(`${AP}/drivers/${d}`)
      await turn()
      for (const name of names) {
        if (name === 'bind' || name === 'unbind' || name === 'uevent' || name === 'module') continue
        out.set(name, d)
      }
    }
    return out
  }

  async observeHostFacts(): Promise<ObservedHostFacts> {
    return (await this.hostFacts()).facts
  }

  /** The host facts, and the matrix features text (observeTopology needs it to read guest matrices). */
  private async hostFacts(): Promise<{ facts: ObservedHostFacts; matrixFeatures: string | null }> {
    const [busFeatures, matrixFeatures, maxA, maxD, apmask, aqmask, apm, aqm, adm, bindings, matrixDir] = await Promise.all([
      this.tryRead(`${AP}/features`),
      this.tryRead(`${MATRIX}/features`),
      this.fs.read(`${AP}/ap_max_adapter_id`),
      this.fs.read(`${AP}/ap_max_domain_id`),
      this.fs.read(`${AP}/apmask`),
      this.fs.read(`${AP}/aqmask`),
      this.tryRead(`${AP}/ap_adapter_mask`),
      this.tryRead(`${AP}/ap_usage_domain_mask`),
      this.tryRead(`${AP}/ap_control_domain_mask`),
      this.fs.read(`${AP}/bindings`),
      this.tryList(MATRIX),
    ])
    const bm = /^(\d+)\/(\d+)/.exec(bindings.trim())
    const features = [
      ...(busFeatures ?? '')
        .trim()
        .split(/\s+/)
        .filter((f) => f && f !== '-'),
      ...(matrixFeatures ?? '').trim().split(/\s+/).filter(Boolean),
    ]
    return {
      matrixFeatures,
      facts: {
        features,
        maxAdapterId: num(maxA),
        maxDomainId: num(maxD),
        apmask: apmask.trim(),
        aqmask: aqmask.trim(),
        config: {
          adapters: apm ? maskIds(apm) : [],
          domains: aqm ? maskIds(aqm) : [],
          controlDomains: adm?.startsWith('0x') ? maskIds(adm) : [],
        },
        bindings: { bound: bm ? num(bm[1]!) : 0, total: bm ? num(bm[2]!) : 0, complete: bindings.includes('(complete)') },
        vfioApLoaded: matrixDir.length > 0,
      },
    }
  }

  async observeTopology(): Promise<ObservedTopology> {
    const { facts, matrixFeatures } = await this.hostFacts()
    const turn = createYielder()
    const bound = await this.boundDevices()
    await turn()
    const names = await this.fs.list(DEVICES)
    await turn()
    const mdevs = facts.vfioApLoaded ? await this.observeMdevs(matrixFeatures !== null && /guest_matrix/.test(matrixFeatures)) : []
    // V-3: available_instances counts down with every device created, whoever created it.
    const available = facts.vfioApLoaded ? await this.tryRead(`${MDEV_TYPE}/available_instances`) : null
    const mdevCapacity = available !== null && /^\d+\s*$/.test(available) ? num(available) + mdevs.length : null
    // In APQN order without a sort (65,536 queues): each queue has its slot, qid = apid << 8 | apqi (O-4).
    const slots: Array<ObservedQueueRef | undefined> = new Array(1 << 16)
    const tight = createYielder(DEFAULT_TURN_BUDGET_MS, 256)
    for (const name of names) {
      const p = tight()
      if (p) await p
      const q = parseApqnName(name)
      if (q) slots[qid(q.apid, q.apqi)] = { apqn: name, apid: q.apid, apqi: q.apqi, driver: (bound.get(name) as QueueDriver | undefined) ?? 'none' }
    }
    await turn()
    const queues = slots.filter((q) => q !== undefined)
    return { ...facts, queues, mdevs, mdevCapacity }
  }

  async observeQueues(q: QueuePageQuery): Promise<QueuePage> {
    if (!(Number.isInteger(q.limit) && q.limit > 0)) throw new RangeError(`observeQueues: limit must be a positive integer, got ${q.limit}`)
    const turn = createYielder()
    const names = await this.fs.list(DEVICES)
    const { facts, matrixFeatures } = await this.hostFacts()
    // Who holds each APQN: every item says it, and the owner filter needs it. The devices are few (V-3).
    const mdevs = facts.vfioApLoaded ? await this.observeMdevs(matrixFeatures !== null && /guest_matrix/.test(matrixFeatures)) : []
    const owner = new Map<string, string>()
    for (const m of mdevs) for (const apqn of m.matrix) owner.set(apqn, m.uuid)
    // Only a driver filter needs every queue's binding; a page of items reads its own (one link each).
    const bound = q.driver !== undefined ? await this.boundDevices() : undefined
    const refs: Array<{ apqn: string; apid: number; apqi: number }> = []
    const tight = createYielder(DEFAULT_TURN_BUDGET_MS, 256)
    for (const name of names) {
      const p = tight()
      if (p) await p
      if (q.after !== undefined && name <= q.after) continue
      const id = parseApqnName(name)
      if (!id) continue
      if ((q.adapter !== undefined && id.apid !== q.adapter) || (q.domain !== undefined && id.apqi !== q.domain)) continue
      if (q.owner !== undefined && (owner.get(name) ?? null) !== q.owner) continue
      if (bound && ((bound.get(name) as QueueDriver | undefined) ?? 'none') !== q.driver) continue
      refs.push({ apqn: name, ...id })
    }
    await turn()
    refs.sort((a, b) => a.apid - b.apid || a.apqi - b.apqi)
    const page = refs.slice(0, q.limit)
    const items: ObservedQueue[] = []
    for (const r of page) {
      await turn()
      const driver = bound ? ((bound.get(r.apqn) as QueueDriver | undefined) ?? 'none') : await this.queueDriver(r.apqn)
      items.push(await this.observeQueue(r.apid, r.apqi, driver, owner))
    }
    return refs.length > q.limit ? { items, next: page[page.length - 1]!.apqn } : { items }
  }

  /** The driver a queue is bound to, from its `driver` link (none without one). */
  private async queueDriver(apqn: string): Promise<QueueDriver> {
    let target: string
    try {
      target = await this.fs.readlink(`${DEVICES}/${apqn}/driver`)
    } catch (e) {
      if (e instanceof SysfsError) return 'none'
      throw e
    }
    const name = target.slice(target.lastIndexOf('/') + 1)
    return name === 'cex4queue' || name === 'vfio_ap' ? name : 'none'
  }

  async observe(): Promise<ObservedHost> {
    const topo = await this.observeTopology()
    const owner = new Map<string, string>()
    for (const m of topo.mdevs) for (const apqn of m.matrix) owner.set(apqn, m.uuid)
    const adapters = await this.observeAdapters()
    const turn = createYielder()
    const queues: ObservedQueue[] = []
    for (const q of topo.queues) {
      await turn()
      queues.push(await this.observeQueue(q.apid, q.apqi, q.driver, owner))
    }
    return { ...topo, adapters, queues }
  }

  async observeAdapters(): Promise<ObservedAdapter[]> {
    const bound = await this.boundDevices()
    const turn = createYielder()
    const adapters: ObservedAdapter[] = []
    for (const name of await this.fs.list(DEVICES)) {
      await turn()
      const apid = parseCardName(name)
      if (apid !== undefined) adapters.push(await this.observeCard(apid, bound.get(name)))
    }
    return adapters.sort((a, b) => a.apid - b.apid)
  }

  private async observeCard(apid: number, driver: string | undefined): Promise<ObservedAdapter> {
    const dir = `${DEVICES}/card${formatApid(apid)}`
    const [hwtype, raw, fns, config, chkstop, online, depth] = await Promise.all([
      this.fs.read(`${dir}/hwtype`),
      this.tryRead(`${dir}/raw_hwtype`),
      this.fs.read(`${dir}/ap_functions`),
      this.fs.read(`${dir}/config`),
      this.tryRead(`${dir}/chkstop`),
      this.tryRead(`${dir}/online`),
      this.tryRead(`${dir}/depth`),
    ])
    const { mode, functions } = decodeFunctions(fns)
    const hw = num(hwtype)
    return {
      apid,
      hwtype: hw,
      rawHwtype: raw === null ? hw : num(raw),
      type: typeName(hw, mode),
      mode,
      functions,
      config: bool01(config),
      chkstop: chkstop !== null && bool01(chkstop),
      online: online === null ? null : bool01(online),
      driver: driver ?? 'none',
      depth: depth === null ? null : num(depth),
    }
  }

  private async observeQueue(apid: number, apqi: number, driver: QueueDriver, owner: Map<string, string>): Promise<ObservedQueue> {
    const apqn = formatApqn(apid, apqi)
    const dir = `${DEVICES}/${apqn}`
    const [config, chkstop, online, status, rq, pq, rc] = await Promise.all([
      this.fs.read(`${dir}/config`),
      this.tryRead(`${dir}/chkstop`),
      driver === 'cex4queue' ? this.tryRead(`${dir}/online`) : Promise.resolve(null),
      driver === 'vfio_ap' ? this.tryRead(`${dir}/status`) : Promise.resolve(null),
      this.fs.read(`${dir}/requestq_count`),
      this.fs.read(`${dir}/pendingq_count`),
      this.fs.read(`${dir}/request_count`),
    ])
    const st = status?.trim()
    return {
      apqn,
      apid,
      apqi,
      driver,
      vfioStatus: st === 'unassigned' || st === 'assigned' || st === 'in use' ? st : null,
      config: bool01(config),
      chkstop: chkstop !== null && bool01(chkstop),
      online: online === null ? null : bool01(online),
      requestqCount: num(rq),
      pendingqCount: num(pq),
      requestCount: rc.trim() === '-' ? null : num(rc),
      owner: owner.get(apqn) ?? null,
    }
  }

  private async observeMdevs(hasGuestMatrix: boolean): Promise<ObservedMdev[]> {
    const uuids = await this.tryList(`${MDEV_TYPE}/devices`)
    const out: ObservedMdev[] = []
    const turn = createYielder()
    for (const uuid of uuids) {
      await turn()
      const dir = `${MATRIX}/${uuid}`
      const [matrix, guest, cds] = await Promise.all([
        this.tryRead(`${dir}/matrix`),
        hasGuestMatrix ? this.tryRead(`${dir}/guest_matrix`) : Promise.resolve(''),
        this.tryRead(`${dir}/control_domains`),
      ])
      if (matrix === null) continue // removed between the listing and the read
      const m = parseMatrix(matrix)
      out.push({
        uuid,
        adapters: m.adapters,
        domains: m.domains,
        // V-18: one `%04lx` line per control domain.
        controlDomains: (cds ?? '')
          .split('\n')
          .filter(Boolean)
          .map((l) => Number.parseInt(l, 16)),
        matrix: m.apqns.map((q) => formatApqn(q.apid, q.apqi)),
        guestMatrix: parseMatrix(guest ?? '').apqns.map((q) => formatApqn(q.apid, q.apqi)),
      })
    }
    return out.sort((a, b) => (a.uuid < b.uuid ? -1 : 1))
  }

  async setMasks(masks: { apmask?: string; aqmask?: string }): Promise<void> {
    if (masks.apmask !== undefined) await this.write(`${AP}/apmask`, `${masks.apmask}\n`)
    if (masks.aqmask !== undefined) await this.write(`${AP}/aqmask`, `${masks.aqmask}\n`)
  }

  async createMdev(uuid: string): Promise<void> {
    try {
      await this.write(`${MDEV_TYPE}/create`, `${uuid}\n`)
    } catch (e) {
      if (!(e instanceof BusError && e.errno === 'EEXIST')) throw e
    }
  }

  async removeMdev(uuid: string): Promise<void> {
    try {
      await this.write(`${MATRIX}/${uuid}/remove`, '1\n')
    } catch (e) {
      if (!(e instanceof BusError && (e.errno === 'ENODEV' || e.errno === 'ENOENT'))) throw e
    }
  }

  async configureMdev(uuid: string, target: MatrixConfig, current: MatrixConfig): Promise<'ap_config' | 'assign'> {
    const dir = `${MATRIX}/${uuid}`
    const apConfig = await this.tryRead(`${dir}/ap_config`)
    if (apConfig !== null) {
      // V-23: one atomic replace-all write; all or nothing.
      const value = [target.adapters, target.domains, target.controlDomains].map((ids) => Mask.of(ids).toString()).join(',')
      await this.write(`${dir}/ap_config`, `${value}\n`)
      return 'ap_config'
    }
    // docs/api.md (Reconcile) step 5: unassign before assign, so APQNs can move between devices.
    const diff = (a: number[], b: number[]) => a.filter((x) => !b.includes(x))
    const steps: Array<[string, number[]]> = [
      ['unassign_control_domain', diff(current.controlDomains, target.controlDomains)],
      ['unassign_domain', diff(current.domains, target.domains)],
      ['unassign_adapter', diff(current.adapters, target.adapters)],
      ['assign_adapter', diff(target.adapters, current.adapters)],
      ['assign_domain', diff(target.domains, current.domains)],
      ['assign_control_domain', diff(target.controlDomains, current.controlDomains)],
    ]
    const turn = createYielder()
    for (const [attr, ids] of steps) {
      for (const id of ids) {
        await turn()
        await this.write(`${dir}/${attr}`, `0x${id.toString(16)}\n`)
      }
    }
    return 'assign'
  }

  async resetQueue(apqn: string): Promise<void> {
    await this.write(`${DEVICES}/${apqn}/reset`, '1\n')
  }

  async setQueueOnline(apqn: string, online: boolean): Promise<void> {
    await this.write(`${DEVICES}/${apqn}/online`, online ? '1\n' : '0\n')
  }

  async bindQueue(apqn: string, driver: 'cex4queue' | 'vfio_ap'): Promise<void> {
    await this.write(`${AP}/drivers/${driver}/bind`, `${apqn}\n`)
  }

  async unbindQueue(apqn: string, driver: 'cex4queue' | 'vfio_ap'): Promise<void> {
    await this.write(`${AP}/drivers/${driver}/unbind`, `${apqn}\n`)
  }

  /**
   * O-12: a card's `requestq_count` and `pendingq_count` are the sums over its queues, so the queues of an
   * idle card are 0 without reading each of them (two reads per card instead of two per queue: a whole
   * adapter of 256 domains leaving the host costs 2 reads, not 512). Queue attributes are read at their
   * device path (`/sys/devices/ap/cardXX/XX.YYYY`), which needs no bus link resolved on the way.
   */
  async queueLoad(apqns: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>()
    const byCard = new Map<string, string[]>()
    for (const apqn of apqns) {
      const card = apqn.slice(0, apqn.indexOf('.'))
      let list = byCard.get(card)
      if (!list) byCard.set(card, (list = []))
      list.push(apqn)
    }
    const turn = createYielder()
    for (const [card, list] of byCard) {
      await turn()
      const dir = `/sys/devices/ap/card${card}`
      if (list.length > 1) {
        const [crq, cpq] = await Promise.all([this.tryRead(`${dir}/requestq_count`), this.tryRead(`${dir}/pendingq_count`)])
        if (crq !== null && cpq !== null && num(crq) + num(cpq) === 0) {
          for (const apqn of list) out.set(apqn, 0)
          continue
        }
      }
      for (const apqn of list) {
        await turn()
        const [rq, pq] = await Promise.all([this.tryRead(`${dir}/${apqn}/requestq_count`), this.tryRead(`${dir}/${apqn}/pendingq_count`)])
        if (rq !== null && pq !== null) out.set(apqn, num(rq) + num(pq))
      }
    }
    return out
  }

  async rescan(): Promise<void> {
    await this.write(`${AP}/scans`, '1\n')
  }
}
