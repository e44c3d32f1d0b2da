import { SysfsError } from '../domain/errors.js'
import { parseApqnName, parseCardName } from '../domain/ids.js'
import { Mask, parseMaskWrite } from '../domain/mask.js'
import type { KernelContext } from './context.js'
import { type HostCfg, RC_CHECKSTOP, RC_DECONFIGURED, RC_NORMAL, modeOf } from './machine.js'
import { stripNewline } from './parse.js'
import { ApCard, ApQueue, type DriverName, flushQueue, initQueue, startReset, zapq } from './queue.js'
import type { ApDriverHooks } from './driver-hooks.js'
import { compatType } from './hw-type.js'

/** O-6: raw types the current AP bus supports (CEX4..CEX8). */

/** The AP root device's devpath (B-44 root uevents). */
export const AP_ROOT = '/devices/ap'

/**
 * The AP bus (docs/kernel-model.md §2): the device tree of cards and queues, the masks, driver binding and the scan.
 * All state changes go through here so the counters behind `bindings` stay exact.
 */
export class ApBus {
  apmask = Mask.full()
  aqmask = Mask.full()
  readonly cards = new Map<number, ApCard>()
  /** Queue devices keyed by qid (O-4). */
  readonly queues = new Map<number, ApQueue>()
  /** Number of queue devices bound to a driver: `bindings` reads it instead of recounting. */
  boundQueues = 0
  /** Number of queues with a driver_override (B-28). */
  overrides = 0
  scans = 0
  bindingsCompleteSent = false
  completeCount = 0
  defaultDomain = -1
  configTime = 30
  pollThread = false
  pollTimeout = 250000
  nextScanAt = 0
  /** Device changes made by scans (registrations, removals, state transitions). */
  private changes = 0
  /** The last device walk changed nothing, at machine version `walkedVersion`. */
  private quiet = false
  private walkedVersion = -1
  /** The previous QCI copy (B-2 step 1). */
  private lastQci: HostCfg
  /** The vfio_ap driver once loaded: the bus calls its hooks and knows nothing else of it. */
  vfio: ApDriverHooks | null = null

  constructor(private readonly ctx: KernelContext) {
    this.lastQci = ctx.machine.readQci()
  }

  // ---- ownership and driver matching (B-10..B-13) ----

  /** B-11: devres, the APQN belongs to the default drivers by the masks. */
  maskOwned(apid: number, apqi: number): boolean {
    return this.apmask.has(apid) && this.aqmask.has(apqi)
  }

  /** B-11/B-12: the probe gate of `drv` for queue `q`. */
  private gate(q: ApQueue, drv: DriverName): boolean {
    if (this.ctx.kb.driverOverride && q.driverOverride !== '') return q.driverOverride === drv
    return this.maskOwned(q.apid, q.apqi) === (drv === 'cex4queue')
  }

  /** Probe of one queue by one driver (B-11..B-13, V-30). Returns undefined or the errno. */
  private probeQueue(q: ApQueue, drv: 'cex4queue' | 'vfio_ap'): 'ENODEV' | undefined {
    if (drv === 'vfio_ap' && !this.vfio) return 'ENODEV'
    if (!this.gate(q, drv)) return 'ENODEV'
    q.driver = drv
    this.boundQueues++
    // [inferred] a queue left UNINITIATED by an earlier remove (B-14 step 3) is initialised again when a
    // driver binds it, so it is usable after a mask round trip (T-61).
    if (q.devState === 'UNINITIATED' && q.config && !q.chkstop) initQueue(this.ctx, q)
    if (drv === 'cex4queue') {
      q.online = true
      if (q.devState === 'OPERATING' && !q.resetInProgress()) q.irq = 'enabled'
    }
    this.ctx.events.emit({ kind: 'uevent', action: 'bind', devpath: q.devpath, env: { DRIVER: drv } })
    if (drv === 'vfio_ap') this.vfio!.probeQueue(q)
    this.checkBindingsComplete()
    return undefined
  }

  /** Driver core matching at registration and reprobe: the first driver whose probe succeeds binds. */
  private autoProbeQueue(q: ApQueue): void {
    if (this.probeQueue(q, 'cex4queue') === undefined) return
    this.probeQueue(q, 'vfio_ap')
  }

  /** B-14: the remove sequence of a bound queue (flush, SHUTDOWN, driver remove, ZAPQ, UNINITIATED). */
  removeQueueDriver(q: ApQueue): void {
    const drv = q.driver
    if (!drv) return
    flushQueue(this.ctx, q)
    q.devState = 'SHUTDOWN'
    q.resetUntil = 0
    if (drv === 'cex4queue') q.online = false
    else this.vfio?.removeQueue(q)
    zapq(this.ctx, q)
    q.devState = 'UNINITIATED'
    q.driver = null
    this.boundQueues--
    this.ctx.events.emit({ kind: 'uevent', action: 'unbind', devpath: q.devpath, env: {} })
  }

  /** O-7: cex4card refuses a card without a mode bit. */
  private probeCard(c: ApCard): 'ENODEV' | undefined {
    if (modeOf(c.functions) === undefined) return 'ENODEV'
    c.driver = 'cex4card'
    c.online = true
    this.ctx.events.emit({ kind: 'uevent', action: 'bind', devpath: c.devpath, env: { DRIVER: 'cex4card' } })
    return undefined
  }

  private removeCardDriver(c: ApCard): void {
    if (!c.driver) return
    c.driver = null
    c.online = false
    this.ctx.events.emit({ kind: 'uevent', action: 'unbind', devpath: c.devpath, env: {} })
  }

  // ---- device registration (B-3, B-4, B-14, B-15) ----

  private registerCard(c: ApCard): void {
    this.changes++
    this.cards.set(c.apid, c)
    const mode = modeOf(c.functions)
    const env: Record<string, string> = {
      DEV_TYPE: c.hwtype.toString(16).toUpperCase().padStart(4, '0'),
      MODALIAS: `ap:t${c.hwtype.toString(16).toUpperCase().padStart(2, '0')}`,
    }
    if (mode) env.MODE = mode
    this.ctx.events.emit({ kind: 'uevent', action: 'add', devpath: c.devpath, env })
    this.probeCard(c)
  }

  private registerQueue(q: ApQueue): void {
    this.changes++
    this.queues.set(q.qid, q)
    q.card.queues.set(q.apqi, q)
    const mode = modeOf(q.card.functions)
    this.ctx.events.emit({ kind: 'uevent', action: 'add', devpath: q.devpath, env: mode ? { MODE: mode } : {} })
    this.autoProbeQueue(q)
    if (q.devState === 'UNINITIATED' && q.config && !q.chkstop) initQueue(this.ctx, q)
  }

  private unregisterQueue(q: ApQueue): void {
    this.changes++
    this.removeQueueDriver(q)
    this.ctx.busy.delete(q)
    this.queues.delete(q.qid)
    q.card.queues.delete(q.apqi)
    if (q.driverOverride !== '') this.overrides--
    this.ctx.events.emit({ kind: 'uevent', action: 'remove', devpath: q.devpath, env: {} })
  }

  /** B-3 step 1 / B-15: queues first, then the card. */
  private unregisterCard(c: ApCard): void {
    this.changes++
    for (const q of [...c.queues.values()]) this.unregisterQueue(q)
    this.removeCardDriver(c)
    this.cards.delete(c.apid)
    this.ctx.events.emit({ kind: 'uevent', action: 'remove', devpath: c.devpath, env: {} })
  }

  // ---- the scan (B-1..B-5, B-35, B-36) ----

  /** B-2: one bus scan. */
  scan(): void {
    const m = this.ctx.machine
    const cur = m.readQci()
    const old = this.lastQci
    const changed = !cur.apm.equals(old.apm) || !cur.aqm.equals(old.aqm) || !cur.adm.equals(old.adm)
    if (changed) {
      this.vfio?.onConfigChanged(cur, old)
      if (!cur.apm.minus(old.apm).isEmpty() || !cur.aqm.minus(old.aqm).isEmpty()) this.bindingsCompleteSent = false
    }
    this.lastQci = cur
    this.selectDefaultDomain()
    // A walk over an unchanged machine right after a walk that changed nothing cannot change anything
    // either (B-4 transitions follow TAPQ changes), so periodic scans of an idle machine skip it.
    if (!this.quiet || m.version !== this.walkedVersion) {
      const before = this.changes
      this.walkedVersion = m.version
      const maxA = m.maxAdapterId()
      for (let apid = 0; apid <= 255; apid++) {
        if (apid > maxA || !cur.apm.has(apid)) {
          const c = this.cards.get(apid)
          if (c) this.unregisterCard(c)
          continue
        }
        this.adapterStep(apid)
      }
      this.quiet = this.changes === before
    }
    if (changed) this.vfio?.onScanComplete()
    this.scans++
    if (this.scans === 1) this.ctx.events.emit({ kind: 'uevent', action: 'change', devpath: AP_ROOT, env: { INITSCAN: 'done' } })
    this.checkBindingsComplete()
    this.nextScanAt = this.ctx.now() + this.configTime * 1000
  }

  /** B-3: the adapter step for one APID in the configuration. */
  private adapterStep(apid: number): void {
    const m = this.ctx.machine
    const maxD = m.maxDomainId()
    let found: ReturnType<typeof m.tapq> | undefined
    for (const apqi of m.aqm.ids()) {
      if (apqi > maxD) break
      const t = m.tapq(apid, apqi)
      if (t.info) {
        found = t
        break
      }
    }
    let card = this.cards.get(apid)
    if (!found || found.info!.rawType === 0) {
      if (card) this.unregisterCard(card)
      return
    }
    const info = found.info!
    const decfg = found.rc === RC_DECONFIGURED
    const chkstop = found.rc === RC_CHECKSTOP
    if (card && (card.rawType !== info.rawType || card.functions !== info.functions)) {
      // O-8: identity changed (e.g. a mode change): unplug, then plug.
      this.unregisterCard(card)
      card = undefined
    }
    if (card) {
      if (card.chkstop !== chkstop || card.depth !== info.depth) this.changes++
      card.chkstop = chkstop
      card.depth = info.depth
      if (card.config === decfg) {
        this.changes++
        card.config = !decfg
        this.ctx.events.emit({ kind: 'uevent', action: 'change', devpath: card.devpath, env: { CONFIG: decfg ? '0' : '1' } })
      }
    } else {
      const hwtype = compatType(info.rawType, m.qci?.qact ?? false)
      if (hwtype === undefined) return
      card = new ApCard(apid, info.rawType, hwtype, info.functions, info.depth, !decfg, chkstop)
      this.registerCard(card)
    }
    this.domainStep(card)
  }

  /** B-4: the domain step for one card. */
  private domainStep(card: ApCard): void {
    const m = this.ctx.machine
    const maxD = m.maxDomainId()
    for (let apqi = 0; apqi <= 255; apqi++) {
      const q = card.queues.get(apqi)
      if (apqi > maxD || !m.aqm.has(apqi)) {
        if (q) this.unregisterQueue(q)
        continue
      }
      const t = m.tapq(card.apid, apqi)
      if (!t.info) {
        if (q) this.unregisterQueue(q)
        continue
      }
      const decfg = t.rc === RC_DECONFIGURED
      const chk = t.rc === RC_CHECKSTOP
      if (!q) {
        this.registerQueue(new ApQueue(card.apid, apqi, card, !decfg, chk))
        continue
      }
      this.queueTransition(q, decfg, chk)
    }
  }

  /** B-4: at most one state transition of an existing queue per scan, checkstop first. */
  private queueTransition(q: ApQueue, decfg: boolean, chk: boolean): void {
    const initiated = q.devState !== 'UNINITIATED'
    // [inferred] a queue that never initialised (e.g. deconfigured at boot) but is bound is initialised
    // when it becomes usable; the kernel only re-initialises queues past UNINITIATED.
    const mayInit = initiated || q.driver !== null
    const before = this.changes
    this.changes++
    if (chk && !q.chkstop) {
      q.chkstop = true
      if (initiated) {
        q.devState = 'ERROR'
        q.lastErrRc = RC_CHECKSTOP
      }
      flushQueue(this.ctx, q)
    } else if (!chk && q.chkstop) {
      q.chkstop = false
      if (mayInit && q.config) initQueue(this.ctx, q)
    } else if (decfg && q.config) {
      q.config = false
      if (initiated) {
        q.devState = 'ERROR'
        q.lastErrRc = RC_DECONFIGURED
      }
      this.ctx.events.emit({ kind: 'uevent', action: 'change', devpath: q.devpath, env: { CONFIG: '0' } })
      flushQueue(this.ctx, q)
    } else if (!decfg && !q.config) {
      q.config = true
      if (mayInit && !q.chkstop) initQueue(this.ctx, q)
      this.ctx.events.emit({ kind: 'uevent', action: 'change', devpath: q.devpath, env: { CONFIG: '1' } })
    } else if (!decfg && !chk && q.devState === 'ERROR') {
      // B-4: the periodic scan heals a configured queue in ERROR.
      flushQueue(this.ctx, q)
      initQueue(this.ctx, q)
    } else {
      this.changes = before
    }
  }

  /** B-36: pick the lowest configured, aqmask-owned domain some configured apmask-owned adapter answers with 00. */
  private selectDefaultDomain(): void {
    if (this.defaultDomain >= 0) return
    const m = this.ctx.machine
    const maxD = m.maxDomainId()
    const maxA = m.maxAdapterId()
    const adapters = m.apm
      .and(this.apmask)
      .ids()
      .filter((a) => a <= maxA)
    for (const apqi of m.aqm.and(this.aqmask).ids()) {
      if (apqi > maxD) break
      for (const apid of adapters) {
        if (m.tapq(apid, apqi).rc === RC_NORMAL) {
          this.defaultDomain = apqi
          return
        }
      }
    }
  }

  /** B-35: after the first scan, a root uevent once every queue device is bound. */
  private checkBindingsComplete(): void {
    if (this.scans < 1 || this.bindingsCompleteSent || this.boundQueues !== this.queues.size) return
    this.bindingsCompleteSent = true
    this.ctx.events.emit({
      kind: 'uevent',
      action: 'change',
      devpath: AP_ROOT,
      env: { BINDINGS: 'complete', COMPLETECOUNT: String(++this.completeCount) },
    })
  }

  /** B-34 `bindings`. */
  bindingsText(): string {
    const n = this.boundQueues
    const total = this.queues.size
    return this.scans >= 1 && n === total ? `${n}/${total} (complete)\n` : `${n}/${total}\n`
  }

  // ---- masks (B-20..B-28) ----

  /** B-21..B-25: a write to apmask (`ap`) or aqmask (`aq`). */
  writeMask(which: 'ap' | 'aq', value: string): void {
    const cur = which === 'ap' ? this.apmask : this.aqmask
    const r = parseMaskWrite(value, cur)
    if (!r.ok) throw new SysfsError('EINVAL', `${which}mask: ${r.reason}`)
    // B-28/X-6 [unverified]: a mask write while driver_override is in use is refused; EINVAL chosen to
    // mirror the reverse case (driver_override write while masks are in use).
    if (this.ctx.kb.driverOverride && this.overrides > 0) throw new SysfsError('EINVAL', `${which}mask: driver_override in use`)
    if (r.mask.equals(cur)) return // B-23
    const added = r.mask.minus(cur)
    if (!added.isEmpty() && this.vfio) {
      const busy = which === 'ap' ? this.vfio.inUse(added, this.aqmask) : this.vfio.inUse(this.apmask, added)
      if (busy) throw new SysfsError('EBUSY', `${which}mask: APQNs are assigned to a mediated device`)
    }
    if (which === 'ap') this.apmask = r.mask
    else this.aqmask = r.mask
    this.revise()
    this.ctx.events.emit({
      kind: 'uevent',
      action: 'change',
      devpath: AP_ROOT,
      env: which === 'ap' ? { APMASK: r.mask.toString() } : { AQMASK: r.mask.toString() },
    })
  }

  /** B-25/B-26: reprobe every queue whose ownership disagrees with its driver; probe unbound ones. */
  private revise(): void {
    for (const q of [...this.queues.values()]) {
      if (q.driver) {
        const owned = this.ctx.kb.driverOverride && q.driverOverride !== '' ? q.driverOverride === 'cex4queue' : this.maskOwned(q.apid, q.apqi)
        if (owned === (q.driver === 'cex4queue')) continue
        this.removeQueueDriver(q)
        this.autoProbeQueue(q)
      } else {
        // B-26 deviation: the kernel reads the flags of a NULL driver here; the emulator probes instead.
        this.ctx.events.log('warn', `ap: emulator: revise found unbound queue ${q.name}; probing it (B-26 deviation)`)
        this.autoProbeQueue(q)
      }
    }
  }

  // ---- driver core bind/unbind (B-30, B-31) ----

  private findDevice(name: string): ApCard | ApQueue | undefined {
    const a = parseApqnName(name)
    if (a) return this.queues.get((a.apid << 8) | a.apqi)
    const c = parseCardName(name)
    return c === undefined ? undefined : this.cards.get(c)
  }

  /** B-30: `drivers/<drv>/bind`. */
  bind(drv: DriverName, value: string): void {
    const dev = this.findDevice(stripNewline(value))
    const isCardDrv = drv === 'cex4card'
    if (!dev || dev instanceof ApCard !== isCardDrv) throw new SysfsError('ENODEV', `${drv}: no such device or driver does not match`)
    if (dev.driver) throw new SysfsError(this.ctx.kb.bindAlreadyBound, `${dev.name} is already bound to ${dev.driver}`)
    const err = dev instanceof ApCard ? this.probeCard(dev) : this.probeQueue(dev, drv as 'cex4queue' | 'vfio_ap')
    if (err) throw new SysfsError(err, `${drv}: probe of ${dev.name} refused`)
  }

  /** B-31: `drivers/<drv>/unbind`. Never refused for a device bound to this driver. */
  unbind(drv: DriverName, value: string): void {
    const dev = this.findDevice(stripNewline(value))
    if (!dev || dev.driver !== drv) throw new SysfsError('ENODEV', `${drv}: device not bound to this driver`)
    if (dev instanceof ApCard) this.removeCardDriver(dev)
    else this.removeQueueDriver(dev)
  }

  // ---- card and queue attribute writes (B-40..B-42, O-13, B-33) ----

  /** B-40: card `config` write. */
  writeCardConfig(c: ApCard, on: boolean): void {
    const hw = this.ctx.machine.adapters.get(c.apid)
    if (!hw) throw new SysfsError('EIO', 'SCLP: adapter not in the hardware table')
    hw.config = on
    this.ctx.machine.version++
    c.config = on
    this.ctx.events.emit({ kind: 'uevent', action: 'change', devpath: c.devpath, env: { CONFIG: on ? '1' : '0' } })
  }

  /** B-41: card `online` write (zcrypt). */
  writeCardOnline(c: ApCard, on: boolean): void {
    if (on && (!c.config || c.chkstop)) throw new SysfsError('ENODEV', `${c.name} is deconfigured or checkstopped`)
    c.online = on
    this.ctx.events.emit({ kind: 'uevent', action: 'change', devpath: c.devpath, env: { ONLINE: on ? '1' : '0' } })
    for (const q of c.queues.values()) {
      if (q.driver !== 'cex4queue') continue
      q.online = on
      if (!on) flushQueue(this.ctx, q)
      this.ctx.events.emit({ kind: 'uevent', action: 'change', devpath: q.devpath, env: { ONLINE: on ? '1' : '0' } })
    }
  }

  /** B-42: queue `online` write (zcrypt). */
  writeQueueOnline(q: ApQueue, on: boolean): void {
    if (on && (!q.config || !q.card.config || q.chkstop || q.card.chkstop)) throw new SysfsError('ENODEV', `${q.name} is deconfigured or checkstopped`)
    if (on && !q.card.online) throw new SysfsError('EINVAL', `${q.card.name} is offline`)
    q.online = on
    if (!on) flushQueue(this.ctx, q)
    this.ctx.events.emit({ kind: 'uevent', action: 'change', devpath: q.devpath, env: { ONLINE: on ? '1' : '0' } })
  }

  /** O-13: queue `reset` write: flush and restart the reset; never fails. */
  writeQueueReset(q: ApQueue): void {
    startReset(this.ctx, q)
  }

  /** B-28/B-33: queue `driver_override` write (v6.19+). */
  writeDriverOverride(q: ApQueue, value: string): void {
    if (!this.apmask.isFull() || !this.aqmask.isFull()) throw new SysfsError('EINVAL', 'driver_override: apmask/aqmask in use')
    const v = stripNewline(value)
    if (v.length > 1024) throw new SysfsError('EINVAL', 'driver_override: too long')
    if ((q.driverOverride === '') !== (v === '')) this.overrides += v === '' ? -1 : 1
    q.driverOverride = v
  }

  /** B-34 `ap_domain` write. */
  setDefaultDomain(d: number): void {
    if (d < 0 || d > this.ctx.machine.maxDomainId() || !this.aqmask.has(d)) throw new SysfsError('EINVAL', `ap_domain: ${d} not usable`)
    this.defaultDomain = d
  }

  /** B-34 `config_time` write: re-arms the timer. */
  setConfigTime(s: number): void {
    if (s < 5 || s > 120) throw new SysfsError('EINVAL', 'config_time: 5..120')
    this.configTime = s
    this.nextScanAt = this.ctx.now() + s * 1000
  }

  /** Cards and queues by name (for sysfs routing). */
  device(name: string): ApCard | ApQueue | undefined {
    return this.findDevice(name)
  }
}
