import { Mask } from '../domain/mask.js'
import type { AdapterMode, HardwareProfile } from './api.js'

/** O-7 function bits. */
export const FN_APSC = 0x80000000
export const FN_MEX4K = 0x40000000
export const FN_CRT4K = 0x20000000
export const FN_CCA = 0x10000000
export const FN_ACCEL = 0x08000000
export const FN_EP11 = 0x04000000
export const FN_APXA = 0x02000000
/** The mode bits (O-7); card identity compares the function word under this mask (O-8). */
export const FN_MODE_MASK = FN_CCA | FN_ACCEL | FN_EP11

/** O-7: the default function word of an adapter in `mode`. */
export function defaultFunctions(mode: AdapterMode): number {
  const modeBit = mode === 'cca' ? FN_CCA : mode === 'accel' ? FN_ACCEL : FN_EP11
  return (FN_APSC | FN_MEX4K | FN_CRT4K | modeBit | FN_APXA) >>> 0
}

/** O-7: the mode a function word selects, or undefined when no mode bit is set. CCA wins over EP11 over accel. */
export function modeOf(functions: number): AdapterMode | undefined {
  if (functions & FN_CCA) return 'cca'
  if (functions & FN_EP11) return 'ep11'
  if (functions & FN_ACCEL) return 'accel'
  return undefined
}

/** One physical adapter of the hardware table. */
export interface HwAdapter {
  apid: number
  rawType: number
  functions: number
  depth: number
  /** Adapter configured (SCLP); TAPQ answers 03 for every domain when false. */
  config: boolean
  chkstop: boolean
  serviceMs: number
}

/** The QCI facility bits and maxima (O-1). */
export type QciFlags = NonNullable<HardwareProfile['qci']>

/** A copy of the AP configuration as a scan or vfio_ap sees it (B-2, V-1). */
export interface HostCfg {
  apm: Mask
  aqm: Mask
  adm: Mask
}

/** A TAPQ answer (O-14): response code and, when info is present, the adapter's type data. */
export interface TapqResult {
  rc: number
  info?: { rawType: number; functions: number; depth: number }
}

/** AP response codes used by the model (O-14). */
export const RC_NORMAL = 0x00
export const RC_Q_NOT_AVAIL = 0x01
export const RC_DECONFIGURED = 0x03
export const RC_CHECKSTOP = 0x04

/**
 * The machine: hostcfg (QCI) and the hardware table. Changing it does not change the bus; the
 * bus sees the change at its next scan (B-43).
 */
export class Machine {
  readonly qci: QciFlags | null
  apm: Mask
  aqm: Mask
  adm: Mask
  readonly adapters = new Map<number, HwAdapter>()
  /** Per-APQN TAPQ overrides (config-off / checkstop of a single queue), keyed by qid (O-4). */
  readonly queueOverrides = new Map<number, { config?: boolean; chkstop?: boolean }>()
  readonly resetMs: number
  /** Bumped by every change of hostcfg or the hardware table, so a scan can tell that nothing changed. */
  version = 0

  constructor(p: HardwareProfile) {
    this.qci = p.qci ? { ...p.qci } : null
    this.resetMs = p.resetMs ?? 2
    for (const a of p.adapters) {
      this.adapters.set(a.apid, {
        apid: a.apid,
        rawType: a.rawType,
        functions: (a.functions ?? defaultFunctions(a.mode)) >>> 0,
        depth: a.depth ?? 8,
        config: a.config ?? true,
        chkstop: a.chkstop ?? false,
        serviceMs: a.serviceMs ?? 5,
      })
    }
    if (this.qci) {
      this.apm = Mask.of(p.adapters.map((a) => a.apid))
      this.aqm = Mask.of(p.domains)
      this.adm = Mask.of(p.controlDomains)
    } else {
      // O-2: without QCI every adapter 0..63 and domain 0..15 counts as configured, control domains as not.
      this.apm = Mask.range(0, 63)
      this.aqm = Mask.range(0, 15)
      this.adm = Mask.empty()
    }
  }

  /** O-2: `ap_max_adapter_id`. */
  maxAdapterId(): number {
    return this.qci?.apxa && this.qci.na !== 0 ? this.qci.na : 63
  }

  /** O-2: `ap_max_domain_id`. */
  maxDomainId(): number {
    return this.qci?.apxa && this.qci.nd !== 0 ? this.qci.nd : 15
  }

  /** PQAP(QCI): a snapshot of the configuration masks. */
  readQci(): HostCfg {
    return { apm: this.apm, aqm: this.aqm, adm: this.adm }
  }

  /** O-3: the APQN is in the host configuration. */
  inConfig(apid: number, apqi: number): boolean {
    return this.apm.has(apid) && this.aqm.has(apqi) && apid <= this.maxAdapterId() && apqi <= this.maxDomainId()
  }

  /** PQAP(TAPQ) for one APQN (O-14): 01 when the APQN is not there, 03 deconfigured, 04 checkstopped. */
  tapq(apid: number, apqi: number): TapqResult {
    const hw = this.adapters.get(apid)
    if (!hw || !this.inConfig(apid, apqi)) return { rc: RC_Q_NOT_AVAIL }
    const info = { rawType: hw.rawType, functions: hw.functions, depth: hw.depth }
    const o = this.queueOverrides.get((apid << 8) | apqi)
    if (hw.chkstop || o?.chkstop) return { rc: RC_CHECKSTOP, info }
    if (!hw.config || o?.config === false) return { rc: RC_DECONFIGURED, info }
    return { rc: RC_NORMAL, info }
  }

  /** The response code a ZAPQ/RAPQ on this APQN ends with (V-39): TAPQ's code, 00 when usable. */
  resetRc(apid: number, apqi: number): number {
    return this.tapq(apid, apqi).rc
  }
}
