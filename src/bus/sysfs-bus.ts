/**
 * The bus port over sysfs paths (docs/api.md). Drives any {@link SysfsAccess}: the in-process emulator,
 * a remote emulator, or a real /sys.
 */
import { SysfsError } from '../domain/errors.js'
import { formatApid, formatApqn, parseApqnName, parseCardName } from '../domain/ids.js'
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
  type ObservedMdev,
  type ObservedQueue,
  type ObservedQueueRef,
  type ObservedTopology,
  type QueueDriver,
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

/**
 * Lets other work (HTTP requests, timers) run every `n` iterations of a long bus loop: an in-process
 * emulator answers synchronously, so a loop over 65,536 queues would otherwise hold the event loop.
 */
async function yieldEvery(i: number, n = 512): Promise<void> {
  if (i % n === n - 1) await new Promise<void>((resolve) => setImmediate(resolve))
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
    for (const d of ['cex4card', 'cex4queue', 'vfio_ap'] as const) {
      for (const name of await this.tryList(`${AP}/drivers/${d}`)) {
        if (name === 'bind' || name === 'unbind' || name === 'uevent' || name === 'module') continue
        out.set(name, d)
      }
    }
    return out
  }

  async observeTopology(): Promise<ObservedTopology> {
    const [busFeatures, matrixFeatures, maxA, maxD, apmask, aqmask, apm, aqm, adm, bindings] = await Promise.all([
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
    ])
    const vfioApLoaded = (await this.tryList(MATRIX)).length > 0
    const bound = await this.boundDevices()
    const names = await this.fs.list(DEVICES)
    const mdevs = vfioApLoaded ? await this.observeMdevs(matrixFeatures !== null && /guest_matrix/.test(matrixFeatures)) : []
    // V-3: available_instances counts down with every device created, whoever created it.
    const available = vfioApLoaded ? await this.tryRead(`${MDEV_TYPE}/available_instances`) : null
    const mdevCapacity = available !== null && /^\d+\s*$/.test(available) ? num(available) + mdevs.length : null
    const queues: ObservedQueueRef[] = []
    for (const name of names) {
      const q = parseApqnName(name)
      if (q) queues.push({ apqn: name, apid: q.apid, apqi: q.apqi, driver: (bound.get(name) as QueueDriver | undefined) ?? 'none' })
    }
    queues.sort((a, b) => a.apid - b.apid || a.apqi - b.apqi)
    const bm = /^(\d+)\/(\d+)/.exec(bindings.trim())
    const features = [
      ...(busFeatures ?? '')
        .trim()
        .split(/\s+/)
        .filter((f) => f && f !== '-'),
      ...(matrixFeatures ?? '').trim().split(/\s+/).filter(Boolean),
    ]
    return {
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
      queues,
      mdevs,
      bindings: { bound: bm ? num(bm[1]!) : 0, total: bm ? num(bm[2]!) : 0, complete: bindings.includes('(complete)') },
      vfioApLoaded,
      mdevCapacity,
    }
  }

  async observe(): Promise<ObservedHost> {
    const topo = await this.observeTopology()
    const owner = new Map<string, string>()
    for (const m of topo.mdevs) for (const apqn of m.matrix) owner.set(apqn, m.uuid)
    const bound = await this.boundDevices()
    const adapters: ObservedAdapter[] = []
    for (const name of await this.fs.list(DEVICES)) {
      const apid = parseCardName(name)
      if (apid !== undefined) adapters.push(await this.observeCard(apid, bound.get(name)))
    }
    adapters.sort((a, b) => a.apid - b.apid)
    const queues: ObservedQueue[] = []
    for (const [i, q] of topo.queues.entries()) {
      queues.push(await this.observeQueue(q.apid, q.apqi, q.driver, owner))
      await yieldEvery(i)
    }
    return { ...topo, adapters, queues }
  }

  private async observeCard(apid: number, driver: string | undefined): Promise<ObservedAdapter> {
    const dir = `${DEVICES}/card${formatApid(apid)}`
    const [hwtype, raw, fns, config, chkstop, online] = await Promise.all([
      this.fs.read(`${dir}/hwtype`),
      this.tryRead(`${dir}/raw_hwtype`),
      this.fs.read(`${dir}/ap_functions`),
      this.fs.read(`${dir}/config`),
      this.tryRead(`${dir}/chkstop`),
      this.tryRead(`${dir}/online`),
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
    for (const [i, uuid] of uuids.entries()) {
      await yieldEvery(i, 16)
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
    for (const [attr, ids] of steps) for (const id of ids) await this.write(`${dir}/${attr}`, `0x${id.toString(16)}\n`)
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
    let i = 0
    for (const [card, list] of byCard) {
      const dir = `/sys/devices/ap/card${card}`
      if (list.length > 1) {
        const [crq, cpq] = await Promise.all([this.tryRead(`${dir}/requestq_count`), this.tryRead(`${dir}/pendingq_count`)])
        if (crq !== null && cpq !== null && num(crq) + num(cpq) === 0) {
          for (const apqn of list) out.set(apqn, 0)
          continue
        }
      }
      for (const apqn of list) {
        await yieldEvery(i++)
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
