import { randomUUID } from 'node:crypto'
import { ApmatrixError, SysfsError } from '../domain/errors.js'
import { parseApqnName } from '../domain/ids.js'
import { Mask, parseMaskWrite } from '../domain/mask.js'
import type { EmulatedHostApi, EmulatorEvent, HardwareAction, HardwareProfile, KernelProfileName, RequestStats, SysfsStat } from './api.js'
import { ApBus } from './bus.js'
import type { KernelContext } from './context.js'
import { EventLog } from './events.js'
import { applyHardwareAction } from './hardware.js'
import { type KernelBehaviour, kernelProfile } from './kernel-profiles.js'
import { Machine } from './machine.js'
import { loadProfile, validateProfile } from './profiles.js'
import { type ApQueue, nextQueueEvent, processQueue, submitToQueue } from './queue.js'
import { Sysfs } from './sysfs.js'
import { VfioAp } from './vfio-ap.js'

/** Options of {@link createHost}. */
export interface CreateHostOptions {
  /** A HardwareProfile, the name of a builtin profile, or a path to a JSON profile file. */
  profile: HardwareProfile | string
  /** Default `current-6.x`. */
  kernel?: KernelProfileName
  /** Emit a `request` event per completed or flushed request. */
  traceRequests?: boolean
}

/**
 * Boots an emulated host (docs/kernel-model.md X-7): builds the machine, applies the boot parameters (B-20, B-36),
 * loads cex4card, cex4queue and vfio_ap (unless `modules.vfio_ap === false`) and runs the first bus scan
 * synchronously. Throws ApmatrixError INVALID_ARGUMENT / NOT_FOUND for a bad profile or kernel name.
 */
export function createHost(opts: CreateHostOptions): EmulatedHostApi {
  return new EmulatedHost(opts)
}

class EmulatedHost implements EmulatedHostApi {
  readonly kernel: KernelProfileName
  readonly profile: HardwareProfile
  readonly bootId = randomUUID()
  private time = 0
  private readonly ctx: KernelContext<ApQueue>
  private readonly bus: ApBus
  private readonly vfio: VfioAp | null
  private readonly sysfs: Sysfs
  private readonly log: EventLog

  constructor(opts: CreateHostOptions) {
    this.profile = typeof opts.profile === 'string' ? loadProfile(opts.profile) : validateProfile(opts.profile)
    const kb: KernelBehaviour | undefined = kernelProfile(opts.kernel ?? 'current-6.x')
    if (!kb) throw new ApmatrixError('INVALID_ARGUMENT', `kernel: unknown profile '${String(opts.kernel)}' (current-6.x, legacy-5.x, 6.19-override)`)
    this.kernel = kb.name
    const machine = new Machine(this.profile)
    this.log = new EventLog(() => this.time)
    this.ctx = { machine, events: this.log, kb, traceRequests: opts.traceRequests ?? false, now: () => this.time, busy: new Set<ApQueue>() }
    this.bus = new ApBus(this.ctx)
    this.applyBootParams()
    this.vfio = this.profile.modules?.vfio_ap === false ? null : new VfioAp(this.ctx, this.bus)
    this.bus.vfio = this.vfio
    this.sysfs = new Sysfs(this.ctx, this.bus, this.vfio)
    this.bus.scan()
  }

  /** B-20: `ap.apmask=` / `ap.aqmask=` start from all zeros; a bad string leaves zeros and a warning. B-36: `ap.domain=`. */
  private applyBootParams(): void {
    const boot = this.profile.boot
    if (!boot) return
    for (const k of ['apmask', 'aqmask'] as const) {
      const s = boot[k]
      if (s === undefined) continue
      const r = parseMaskWrite(s, Mask.empty())
      const mask = r.ok ? r.mask : Mask.empty()
      if (!r.ok) this.log.log('warn', `ap: Invalid ap.${k}= parameter '${s}': ${r.reason}`)
      if (k === 'apmask') this.bus.apmask = mask
      else this.bus.aqmask = mask
    }
    if (boot.domain !== undefined && boot.domain <= this.ctx.machine.maxDomainId()) this.bus.defaultDomain = boot.domain
  }

  read(path: string): string {
    return this.sysfs.read(path)
  }

  write(path: string, value: string): void {
    this.sysfs.write(path, value)
  }

  list(path: string): string[] {
    return this.sysfs.list(path)
  }

  exists(path: string): boolean {
    return this.sysfs.exists(path)
  }

  readlink(path: string): string {
    return this.sysfs.readlink(path)
  }

  stat(path: string): SysfsStat {
    return this.sysfs.stat(path)
  }

  private needVfio(): VfioAp {
    if (!this.vfio) throw new SysfsError('ENODEV', 'vfio_ap is not loaded')
    return this.vfio
  }

  guestOpen(uuid: string, guest: string): void {
    this.needVfio().open(uuid, guest)
  }

  guestClose(uuid: string): void {
    this.needVfio().close(uuid)
  }

  guests(): Array<{ uuid: string; guest: string }> {
    if (!this.vfio) return []
    const out: Array<{ uuid: string; guest: string }> = []
    for (const m of this.vfio.mdevs.values()) if (m.guest !== null) out.push({ uuid: m.uuid, guest: m.guest })
    return out.sort((a, b) => (a.uuid < b.uuid ? -1 : 1))
  }

  guestAqic(uuid: string, apqn: string, nib: number): number {
    return this.needVfio().aqic(uuid, apqn, nib)
  }

  private queue(apqn: string): ApQueue {
    const a = parseApqnName(apqn.toLowerCase())
    const q = a ? this.bus.queues.get((a.apid << 8) | a.apqi) : undefined
    if (!q) throw new SysfsError('ENOENT', `no queue device ${apqn}`)
    return q
  }

  submitRequests(apqn: string, count: number): number {
    const q = this.queue(apqn)
    if (!Number.isInteger(count) || count < 1) throw new SysfsError('EINVAL', `count: expected a positive integer, got ${count}`)
    const n = submitToQueue(this.ctx, q, count)
    if (n === 0) throw new SysfsError('ENODEV', `${q.name} is not usable by the host (B-17)`)
    return n
  }

  private readonly workloads = new Map<ApQueue, { everyMs: number; nextAt: number }>()

  setWorkload(apqn: string, perSecond: number): void {
    const q = this.queue(apqn)
    if (!Number.isFinite(perSecond) || perSecond < 0 || perSecond > 1_000_000)
      throw new SysfsError('EINVAL', `workload: ${perSecond} is not a rate in 0..1000000 per second`)
    if (perSecond === 0) this.workloads.delete(q)
    else this.workloads.set(q, { everyMs: 1000 / perSecond, nextAt: this.time + 1000 / perSecond })
  }

  /** Earliest virtual time a workload request arrives. */
  private nextArrival(): number {
    let t = Infinity
    for (const w of this.workloads.values()) t = Math.min(t, w.nextAt)
    return t
  }

  /** Delivers the workload arrivals due at time t (a queue that was removed keeps refusing). */
  private arrive(t: number): void {
    for (const [q, w] of this.workloads) {
      while (w.nextAt <= t) {
        submitToQueue(this.ctx, q, 1)
        w.nextAt += w.everyMs
      }
    }
  }

  requestStats(apqn: string): RequestStats {
    return { ...this.queue(apqn).stats }
  }

  hardware(action: HardwareAction): void {
    applyHardwareAction(this.ctx.machine, action)
    if (action.notify !== false) this.bus.scan() // B-43
  }

  scan(): void {
    this.bus.scan()
  }

  /** Virtual time: queue work up to each periodic scan, then the scan (B-1), until `ms` have passed. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new SysfsError('EINVAL', `advance: ${ms} is not a non-negative number of ms`)
    const target = this.time + ms
    for (;;) {
      const scanAt = this.bus.nextScanAt
      const arrivalAt = this.nextArrival()
      const t = Math.min(target, scanAt, arrivalAt)
      this.runQueues(t)
      this.time = t
      if (arrivalAt <= t) this.arrive(t)
      if (scanAt <= t && scanAt <= target) this.bus.scan()
      if (t >= target && scanAt > target) break
    }
  }

  /** Moves every busy queue to time t (queues are independent, so one pass per queue is enough). */
  private runQueues(t: number): void {
    for (const q of [...this.ctx.busy]) {
      if (nextQueueEvent(q) <= t || q.resetUntil > 0) processQueue(this.ctx, q, t)
    }
  }

  now(): number {
    return this.time
  }

  events(sinceSeq?: number): EmulatorEvent[] {
    return this.log.since(sinceSeq)
  }

  subscribe(listener: (e: EmulatorEvent) => void): () => void {
    return this.log.subscribe(listener)
  }
}
