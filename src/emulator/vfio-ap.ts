import { SysfsError } from '../domain/errors.js'
import { clip } from '../domain/text.js'
import { formatApid, formatApqi, formatApqn, kstrtoul, parseApqnName } from '../domain/ids.js'
import { Mask, parseAbsoluteMask } from '../domain/mask.js'
import type { ApBus } from './bus.js'
import type { KernelContext } from './context.js'
import type { ApDriverHooks } from './driver-hooks.js'
import { compatType } from './hw-type.js'
import type { HostCfg } from './machine.js'
import { type ApQueue, zapq } from './queue.js'

/** V-3: 256 instances of vfio_ap-passthrough. */
export const MAX_MDEVS = 256
/** devpath of the matrix device (V-1). */
export const MATRIX_DEVPATH = '/devices/vfio_ap/matrix'

/** The three APCB masks of a matrix or a guest view. */
export interface Apcb {
  apm: Mask
  aqm: Mask
  adm: Mask
}

/** One mediated matrix device (V-4..V-27). */
export class Mdev {
  apm = Mask.empty()
  aqm = Mask.empty()
  adm = Mask.empty()
  /** V-20: the shadow APCB (`guest_matrix`). */
  shadow: Apcb = { apm: Mask.empty(), aqm: Mask.empty(), adm: Mask.empty() }
  /** V-30/V-32: vfio_ap-bound queues linked to this mdev. */
  readonly linked = new Set<ApQueue>()
  /** V-25: the KVM guest that has the device open. */
  guest: string | null = null
  /** V-35..V-37: a host-config addition intersects this matrix; filtering waits for scan-complete. */
  pendingAdds = false
  /** V-29: device requests relayed so far. */
  requests = 0
  /**
   * Per APID: linked queues whose APQI is in hostcfg and whose last reset did not fail. V-20 keeps an
   * adapter exactly when this equals the number of guest domains, so filtering is O(adapters).
   */
  readonly passable = new Uint16Array(256)
  constructor(
    readonly uuid: string,
    readonly apmMax: number,
    readonly aqmMax: number,
  ) {}

  get devpath(): string {
    return `${MATRIX_DEVPATH}/${this.uuid}`
  }
}

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

function sameApcb(a: Apcb, b: Apcb): boolean {
  return a.apm.equals(b.apm) && a.aqm.equals(b.aqm) && a.adm.equals(b.adm)
}

/** V-19: the `matrix` / `guest_matrix` text for an APM and AQM. */
export function matrixText(apm: Mask, aqm: Mask): string {
  const as = apm.ids()
  const qs = aqm.ids()
  if (as.length > 0 && qs.length > 0) {
    const lines: string[] = []
    for (const a of as) {
      const p = `${formatApid(a)}.`
      for (const q of qs) lines.push(`${p + formatApqi(q)}\n`)
    }
    return lines.join('')
  }
  if (as.length > 0) return as.map((a) => `${formatApid(a)}.\n`).join('')
  return qs.map((q) => `.${formatApqi(q)}\n`).join('')
}

/**
 * The vfio_ap driver (docs/kernel-model.md §3): the matrix device, mdevs, the APQN -> mdev index, guests,
 * filtering (shadow APCB) and the AP bus callbacks (in_use, on_config_changed, on_scan_complete).
 */
export class VfioAp implements ApDriverHooks {
  readonly mdevs = new Map<string, Mdev>()
  /** Every assigned APQN (qid, O-4) -> the mdev holding it; exclusivity (V-10) keeps it a function. */
  private readonly owner = new Map<number, Mdev>()
  private readonly guests = new Map<string, Mdev>()
  /** V-30/V-32: the mdev each vfio_ap-bound queue is linked to (kept here: the bus knows no driver's state). */
  private readonly linkOf = new WeakMap<ApQueue, Mdev>()
  /** V-1/V-35: vfio_ap's own copy of hostcfg. */
  hostcfg: HostCfg

  constructor(
    private readonly ctx: KernelContext,
    private readonly bus: ApBus,
  ) {
    this.hostcfg = ctx.machine.readQci()
  }

  // ---- create / remove (V-4, V-29) ----

  /** V-4: `create`. */
  create(value: string): Mdev {
    if (!(value.length === 36 || (value.length === 37 && value.endsWith('\n')))) throw new SysfsError('EINVAL', 'create: a UUID has 36 characters')
    const s = value.slice(0, 36)
    if (!UUID_RE.test(s)) throw new SysfsError('EINVAL', `create: '${s}' is not a UUID`)
    const uuid = s.toLowerCase()
    if (this.mdevs.has(uuid)) throw new SysfsError('EEXIST', `mdev ${uuid} exists`)
    if (this.mdevs.size >= MAX_MDEVS) throw new SysfsError(this.ctx.kb.createOverLimit, 'no instances left')
    const m = new Mdev(uuid, this.ctx.machine.maxAdapterId(), this.ctx.machine.maxDomainId())
    this.mdevs.set(uuid, m)
    this.ctx.events.emit({ kind: 'uevent', action: 'add', devpath: m.devpath, env: { MDEV_TYPE: 'vfio_ap-passthrough' } })
    return m
  }

  /** V-29: `<uuid>/remove`. */
  remove(m: Mdev, value: string): void {
    const v = kstrtoul(value)
    if (!v.ok) throw new SysfsError('EINVAL', 'remove: not a number')
    if (v.value === 0n) return
    if (m.guest) {
      if (this.ctx.kb.removeInUse === 'EBUSY') throw new SysfsError('EBUSY', `mdev ${m.uuid} is in use by a guest`)
      // V-29 (b): the simulated QEMU honours the device request at once and closes the device.
      m.requests++
      this.ctx.events.log('info', `Relaying device request to user (#${m.requests})`)
      this.detach(m)
    }
    for (const q of m.linked) this.resetQueue(q)
    this.unindex(m, m.apm, m.aqm)
    this.mdevs.delete(m.uuid)
    this.ctx.events.emit({ kind: 'uevent', action: 'remove', devpath: m.devpath, env: { MDEV_TYPE: 'vfio_ap-passthrough' } })
  }

  // ---- assign / unassign (V-6, V-10..V-17) ----

  private parseId(value: string, max: number): number {
    const r = kstrtoul(value)
    if (!r.ok) throw new SysfsError(r.errno, `'${clip(value, 64)}' is not a number`)
    if (r.value > BigInt(max)) throw new SysfsError('ENODEV', `${r.value} is above the maximum ${max}`)
    return Number(r.value)
  }

  /** X-3 legacy: no assign or unassign while a guest uses the mdev. Checked before parsing, as 5.x did. */
  private legacyGuestCheck(m: Mdev): void {
    if (this.ctx.kb.legacyAssign && m.guest) throw new SysfsError('EBUSY', `mdev ${m.uuid} is in use by a guest`)
  }

  /** X-3 legacy: every resulting APQN must be bound to vfio_ap (with an empty other dimension: some queue of the id). */
  private legacyBoundCheck(apids: number[], apqis: number[], dim: 'ap' | 'aq', id: number): void {
    if (!this.ctx.kb.legacyAssign) return
    const other = dim === 'ap' ? apqis : apids
    if (other.length === 0) {
      if (dim === 'ap') {
        for (const q of this.bus.cards.get(id)?.queues.values() ?? []) if (q.driver === 'vfio_ap') return
      } else {
        for (const c of this.bus.cards.values()) if (c.queues.get(id)?.driver === 'vfio_ap') return
      }
      throw new SysfsError('EADDRNOTAVAIL', `no queue of ${id} is bound to vfio_ap`)
    }
    for (const a of apids)
      for (const d of apqis) {
        if (this.bus.queues.get((a << 8) | d)?.driver !== 'vfio_ap') throw new SysfsError('EADDRNOTAVAIL', `${formatApqn(a, d)} is not bound to vfio_ap`)
      }
  }

  /**
   * V-10/V-12/V-13: the reservation and exclusivity checks over a cross product; logs E-4 per conflicting
   * APQN. X-3 legacy kernels replace the mask reservation by the bound check (legacyBoundCheck).
   */
  private checkProduct(m: Mdev, apm: Mask, aqm: Mask): void {
    // V-10 reservation: some APQN of apm x aqm lies in apmask x aqmask.
    if (!this.ctx.kb.legacyAssign && !apm.and(this.bus.apmask).isEmpty() && !aqm.and(this.bus.aqmask).isEmpty()) {
      throw new SysfsError('EADDRNOTAVAIL', 'APQNs are reserved for the default drivers')
    }
    const conflicts = this.sharing(apm, aqm, m)
    if (conflicts.length > 0) {
      this.logSharing(conflicts)
      throw new SysfsError('EADDRINUSE', 'APQNs are assigned to another mediated device')
    }
  }

  /** V-10: `assign_adapter`. */
  assignAdapter(m: Mdev, value: string): void {
    this.legacyGuestCheck(m)
    const a = this.parseId(value, m.apmMax)
    if (m.apm.has(a)) return // V-10 step 3 / T-25: no validation, no side effects
    const newApm = Mask.of([a])
    this.legacyBoundCheck([a], m.aqm.ids(), 'ap', a)
    this.checkProduct(m, newApm, m.aqm)
    m.apm = m.apm.with(a)
    this.index(m, newApm, m.aqm)
    this.refilter(m)
  }

  /** V-11: `assign_domain`. */
  assignDomain(m: Mdev, value: string): void {
    this.legacyGuestCheck(m)
    const d = this.parseId(value, m.aqmMax)
    if (m.aqm.has(d)) return
    const newAqm = Mask.of([d])
    this.legacyBoundCheck(m.apm.ids(), [d], 'aq', d)
    this.checkProduct(m, m.apm, newAqm)
    m.aqm = m.aqm.with(d)
    this.index(m, m.apm, newAqm)
    this.refilter(m)
  }

  /** V-15: `unassign_adapter`. */
  unassignAdapter(m: Mdev, value: string): void {
    this.legacyGuestCheck(m)
    const a = this.parseId(value, m.apmMax)
    if (!m.apm.has(a)) return
    m.apm = m.apm.with(a, false)
    this.unindex(m, Mask.of([a]), m.aqm)
    const old = m.shadow
    if (old.apm.has(a)) {
      this.setShadow(m, { ...old, apm: old.apm.with(a, false) })
      for (const d of old.aqm.ids()) this.resetApqn(a, d)
    }
  }

  /** V-15: `unassign_domain`: the domain leaves the guest on every adapter. */
  unassignDomain(m: Mdev, value: string): void {
    this.legacyGuestCheck(m)
    const d = this.parseId(value, m.aqmMax)
    if (!m.aqm.has(d)) return
    m.aqm = m.aqm.with(d, false)
    this.unindex(m, m.apm, Mask.of([d]))
    const old = m.shadow
    if (old.aqm.has(d)) {
      this.setShadow(m, { ...old, aqm: old.aqm.with(d, false) })
      for (const a of old.apm.ids()) this.resetApqn(a, d)
    }
  }

  /** V-16: `assign_control_domain`: no reservation or sharing check. */
  assignControlDomain(m: Mdev, value: string): void {
    this.legacyGuestCheck(m)
    const c = this.parseId(value, m.aqmMax)
    if (m.adm.has(c)) return
    m.adm = m.adm.with(c)
    this.setShadow(m, { ...m.shadow, adm: m.adm.and(this.hostcfg.adm) })
  }

  /** V-17: `unassign_control_domain`. */
  unassignControlDomain(m: Mdev, value: string): void {
    this.legacyGuestCheck(m)
    const c = this.parseId(value, m.aqmMax)
    if (!m.adm.has(c)) return
    m.adm = m.adm.with(c, false)
    this.setShadow(m, { ...m.shadow, adm: m.shadow.adm.with(c, false) })
  }

  // ---- ap_config (V-22, V-23) ----

  /** V-22: `ap_config` read. */
  apConfigText(m: Mdev): string {
    return `${m.apm.toString()},${m.aqm.toString()},${m.adm.toString()}\n`
  }

  /** V-23: `ap_config` write, all or nothing. */
  writeApConfig(m: Mdev, value: string): void {
    let rest: string | null = value.slice(0, 201)
    const masks: Mask[] = []
    for (let i = 0; i < 3; i++) {
      // strsep(&rest, ",\n"): a missing token is EINVAL, an empty one is the zero mask.
      if (rest === null) throw new SysfsError('EINVAL', 'ap_config: three comma-separated masks expected')
      const idx: number = rest.search(/[,\n]/)
      const tok: string = idx < 0 ? rest : rest.slice(0, idx)
      rest = idx < 0 ? null : rest.slice(idx + 1)
      const r = parseAbsoluteMask(tok)
      if (!r.ok) throw new SysfsError('EINVAL', `ap_config: ${r.reason}`)
      masks.push(r.mask)
    }
    const [apm, aqm, adm] = masks as [Mask, Mask, Mask]
    if (apm.ids().some((a) => a > m.apmMax) || aqm.ids().some((d) => d > m.aqmMax) || adm.ids().some((d) => d > m.aqmMax)) {
      throw new SysfsError('ENODEV', 'ap_config: id above the maximum')
    }
    this.checkProduct(m, apm, aqm)
    const oldShadow = m.shadow
    const removedA = m.apm.minus(apm)
    const removedQ = m.aqm.minus(aqm)
    this.unindex(m, m.apm, m.aqm)
    m.apm = apm
    m.aqm = aqm
    m.adm = adm
    this.index(m, apm, aqm)
    // 1. hot unplug of what was removed, with resets of the queues that were in the guest.
    const unplugged = { apm: oldShadow.apm.minus(removedA), aqm: oldShadow.aqm.minus(removedQ), adm: oldShadow.adm.and(adm) }
    this.setShadow(m, unplugged)
    for (const a of oldShadow.apm.ids()) {
      for (const d of oldShadow.aqm.ids()) if (removedA.has(a) || removedQ.has(d)) this.resetApqn(a, d)
    }
    // 2-4. link, re-filter, push, reset filtered adapters.
    this.refilter(m)
  }

  /** The mdev a queue is linked to, or null. */
  private mdevOf(q: ApQueue): Mdev | null {
    return this.linkOf.get(q) ?? null
  }

  // ---- text attributes ----

  /** V-31: the vfio_ap `status` of a bound queue. */
  status(q: ApQueue): string {
    const m = this.mdevOf(q)
    if (!m) return 'unassigned\n'
    // V-31: "in use" whenever the linked mdev has a guest, even if filtering keeps the APQN out of its view (T-33).
    return m.guest ? 'in use\n' : 'assigned\n'
  }

  /**
   * V-19 `guest_matrix`. [inferred from T-30] a guest view with no complete APQN (one dimension empty)
   * reads empty, although V-19 would print the `05.` / `.0004` forms for `matrix`.
   */
  guestMatrixText(m: Mdev): string {
    return m.shadow.apm.isEmpty() || m.shadow.aqm.isEmpty() ? '' : matrixText(m.shadow.apm, m.shadow.aqm)
  }

  /** V-18 */
  controlDomainsText(m: Mdev): string {
    return m.adm
      .ids()
      .map((d) => `${formatApqi(d)}\n`)
      .join('')
  }

  // ---- linking and the index (V-30, V-32) ----

  /** Records the APQNs of apm x aqm as held by m and links their vfio_ap-bound queues. O(|apm| x |aqm|). */
  private index(m: Mdev, apm: Mask, aqm: Mask): void {
    const qs = aqm.ids()
    for (const a of apm.ids()) {
      for (const d of qs) {
        const qid = (a << 8) | d
        this.owner.set(qid, m)
        const q = this.bus.queues.get(qid)
        if (q && q.driver === 'vfio_ap' && this.mdevOf(q) !== m) this.link(q, m)
      }
    }
  }

  private unindex(m: Mdev, apm: Mask, aqm: Mask): void {
    const qs = aqm.ids()
    for (const a of apm.ids()) {
      for (const d of qs) {
        const qid = (a << 8) | d
        if (this.owner.get(qid) === m) this.owner.delete(qid)
        const q = this.bus.queues.get(qid)
        if (q && this.mdevOf(q) === m) this.unlink(q)
      }
    }
  }

  /** V-20: the queue may be passed through (its domain is in hostcfg, its last reset did not fail). */
  private passable(q: ApQueue): boolean {
    return q.lastResetRc === 0 && this.hostcfg.aqm.has(q.apqi)
  }

  private link(q: ApQueue, m: Mdev): void {
    if (this.linkOf.has(q)) this.unlink(q)
    this.linkOf.set(q, m)
    m.linked.add(q)
    if (this.passable(q)) m.passable[q.apid]!++
  }

  private unlink(q: ApQueue): void {
    const m = this.mdevOf(q)
    if (!m) return
    if (this.passable(q)) m.passable[q.apid]!--
    m.linked.delete(q)
    this.linkOf.delete(q)
  }

  /** Recounts `passable` of every mdev (after hostcfg changed). O(linked queues). */
  private recountPassable(): void {
    for (const m of this.mdevs.values()) {
      m.passable.fill(0)
      for (const q of m.linked) if (this.passable(q)) m.passable[q.apid]!++
    }
  }

  // ---- filtering, guest view, resets (V-20, V-26, V-39) ----

  /** Sets the shadow APCB; pushes it to an attached guest when it changed (V-26). */
  private setShadow(m: Mdev, s: Apcb): boolean {
    if (sameApcb(m.shadow, s)) return false
    m.shadow = s
    // kernels without hot plug never change a running guest's APCB after attach.
    if (m.guest && this.ctx.kb.hotplug) this.pushApcb(m, s)
    return true
  }

  private pushApcb(m: Mdev, s: Apcb): void {
    this.ctx.events.emit({ kind: 'apcb', uuid: m.uuid, guest: m.guest!, apm: s.apm.toString(), aqm: s.aqm.toString(), adm: s.adm.toString() })
  }

  /**
   * V-20: recompute the guest view of m: an adapter stays only if every APQN with the guest's domains
   * has a vfio_ap-bound queue linked to m whose last reset did not fail (linked queues are always
   * bound to vfio_ap and inside m's matrix, so the `passable` count decides). Resets the queues of
   * adapters that were in the guest and are now filtered out (2024 fix).
   */
  private refilter(m: Mdev): void {
    const host = this.hostcfg
    const apm = m.apm.and(host.apm)
    const aqm = m.aqm.and(host.aqm)
    const adm = m.adm.and(host.adm)
    const need = aqm.count()
    const gapm = Mask.of(apm.ids().filter((a) => m.passable[a] === need))
    const qs = aqm.ids()
    const dropped = m.shadow.apm.and(apm).minus(gapm)
    this.setShadow(m, { apm: gapm, aqm, adm })
    for (const a of dropped.ids()) for (const d of qs) this.resetApqn(a, d)
  }

  /** V-39: vfio_ap's ZAPQ of a queue it holds; records the response code. */
  private resetQueue(q: ApQueue): void {
    const m = this.mdevOf(q)
    const before = m !== null && this.passable(q)
    q.lastResetRc = zapq(this.ctx, q)
    if (m && before !== this.passable(q)) m.passable[q.apid]! += before ? -1 : 1
  }

  /** Resets the vfio_ap-bound queue of an APQN, if one exists and the APQN is in hostcfg (V-20, V-33). */
  private resetApqn(apid: number, apqi: number): void {
    if (!this.hostcfg.apm.has(apid) || !this.hostcfg.aqm.has(apqi)) return
    const q = this.bus.queues.get((apid << 8) | apqi)
    if (q && q.driver === 'vfio_ap') this.resetQueue(q)
  }

  // ---- AP bus callbacks (V-30, V-33, V-35..V-37, V-41) ----

  /** V-30: a queue was bound to vfio_ap. */
  probeQueue(q: ApQueue): void {
    q.lastResetRc = 0
    q.nib = 0
    const m = this.owner.get(q.qid)
    if (!m) return
    this.link(q, m)
    if (!m.pendingAdds) this.refilter(m)
  }

  /** V-33: a queue leaves vfio_ap (cannot fail). */
  removeQueue(q: ApQueue): void {
    const m = this.mdevOf(q)
    if (m) {
      this.unlink(q)
      const old = m.shadow
      if (old.apm.has(q.apid) && old.aqm.has(q.apqi)) {
        // V-33: the guest loses the whole adapter; reset the adapter's other queues that were in the guest.
        this.setShadow(m, { ...old, apm: old.apm.with(q.apid, false) })
        for (const d of old.aqm.ids()) if (d !== q.apqi) this.resetApqn(q.apid, d)
      }
    }
    // V-33 step 3: the queue's own reset is skipped when the APQN left hostcfg (2024 fix).
    if (this.hostcfg.apm.has(q.apid) && this.hostcfg.aqm.has(q.apqi)) this.resetQueue(q)
    q.nib = 0
  }

  /**
   * V-10/V-41 (vfio_ap_mdev_verify_no_sharing): the APQNs of apm x aqm held by the first mdev other than
   * `self` that holds any of them; empty when none does. O(number of mdevs) mask operations.
   */
  private sharing(apm: Mask, aqm: Mask, self?: Mdev): { apid: number; apqi: number; uuid: string }[] {
    for (const o of this.mdevs.values()) {
      if (o === self) continue
      const as = o.apm.and(apm)
      if (as.isEmpty()) continue
      const qs = o.aqm.and(aqm)
      if (qs.isEmpty()) continue
      const out: { apid: number; apqi: number; uuid: string }[] = []
      for (const a of as.ids()) for (const d of qs.ids()) out.push({ apid: a, apqi: d, uuid: o.uuid })
      return out
    }
    return []
  }

  /** E-4: one line per conflicting APQN. */
  private logSharing(conflicts: { apid: number; apqi: number; uuid: string }[]): void {
    for (const c of conflicts) this.ctx.events.log('warn', `Userspace may not re-assign queue ${formatApqn(c.apid, c.apqi)} already assigned to ${c.uuid}`)
  }

  /** V-41/B-24: in_use(apm, aqm); logs E-4 per conflicting APQN and returns true when any mdev holds one. */
  inUse(apm: Mask, aqm: Mask): boolean {
    const conflicts = this.sharing(apm, aqm)
    this.logSharing(conflicts)
    return conflicts.length > 0
  }

  /** V-35: called by the scan before devices are touched. */
  onConfigChanged(cur: HostCfg, old: HostCfg): void {
    const removed = { apm: old.apm.minus(cur.apm), aqm: old.aqm.minus(cur.aqm), adm: old.adm.minus(cur.adm) }
    const qact = this.ctx.machine.qci?.qact ?? false
    // V-35: added adapters below CEX4 or of unknown type are dropped.
    const addedA = Mask.of(
      cur.apm
        .minus(old.apm)
        .ids()
        .filter((a) => {
          const hw = this.ctx.machine.adapters.get(a)
          return hw !== undefined && compatType(hw.rawType, qact) !== undefined
        }),
    )
    const addedQ = cur.aqm.minus(old.aqm)
    const addedC = cur.adm.minus(old.adm)
    for (const m of this.mdevs.values()) {
      const s = m.shadow
      this.setShadow(m, { apm: s.apm.minus(removed.apm), aqm: s.aqm.minus(removed.aqm), adm: s.adm.minus(removed.adm) })
      if (!addedA.and(m.apm).isEmpty() || !addedQ.and(m.aqm).isEmpty() || !addedC.and(m.adm).isEmpty()) m.pendingAdds = true
    }
    this.hostcfg = cur
    this.recountPassable()
  }

  /** V-37: re-filter the mdevs with pending additions (hot plug). */
  onScanComplete(): void {
    for (const m of this.mdevs.values()) {
      if (!m.pendingAdds) continue
      m.pendingAdds = false
      this.refilter(m)
    }
  }

  // ---- guests (V-25, V-27, V-40) ----

  /** V-25: a guest opens the mdev. */
  open(uuid: string, guest: string): void {
    if (!guest) throw new SysfsError('EINVAL', 'no KVM')
    const m = this.mdevs.get(uuid.toLowerCase())
    if (!m) throw new SysfsError('ENODEV', `no mdev ${uuid}`)
    if (m.guest) throw new SysfsError('EBUSY', `mdev ${m.uuid} is already open`)
    if (this.guests.has(guest)) throw new SysfsError('EPERM', `guest ${guest} already has a vfio-ap device`)
    m.guest = guest
    this.guests.set(guest, m)
    // V-25: the guest gets the (filtered) shadow; X-3 legacy kernels passed the assigned matrix as is.
    this.pushApcb(m, this.ctx.kb.hotplug ? m.shadow : { apm: m.apm, aqm: m.aqm, adm: m.adm })
  }

  /** V-27: the guest closes the mdev. */
  close(uuid: string): void {
    const m = this.mdevs.get(uuid.toLowerCase())
    if (!m?.guest) throw new SysfsError('ENODEV', `mdev ${uuid} is not open`)
    this.detach(m)
  }

  /** V-27: clear the guest APCB, reset every linked queue, forget the guest. */
  private detach(m: Mdev): void {
    const zero = Mask.empty()
    this.pushApcb(m, { apm: zero, aqm: zero, adm: zero })
    for (const q of m.linked) this.resetQueue(q)
    this.guests.delete(m.guest!)
    m.guest = null
  }

  /** V-40: guest PQAP(AQIC) enable; returns the AP response code. */
  aqic(uuid: string, apqn: string, nib: number): number {
    const m = this.mdevs.get(uuid.toLowerCase())
    if (!m) throw new SysfsError('ENODEV', `no mdev ${uuid}`)
    if (!m.guest) return 0x01
    const a = parseApqnName(apqn)
    if (!a) throw new SysfsError('EINVAL', `'${clip(apqn, 64)}' is not an APQN`)
    const q = this.bus.queues.get((a.apid << 8) | a.apqi)
    if (!q || this.mdevOf(q) !== m) return 0x01
    if (nib === 0) return 0x06 // V-40: the NIB address cannot be pinned
    const rc = this.ctx.machine.tapq(a.apid, a.apqi).rc
    if (rc !== 0) return rc
    q.nib = nib
    q.irq = 'enabled'
    return 0x00
  }
}
