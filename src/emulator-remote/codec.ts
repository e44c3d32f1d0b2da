/**
 * Conversions between the emulator's control types (src/emulator/api.ts) and the wire messages of
 * emulator.proto (events are host-bus messages: src/hostbus/codec.ts). Both directions live here so a
 * field added to one side is added to the other.
 */
import type { HardwareAction, RequestStats } from '../emulator/api.js'
import { type FaultConfig, type FaultStatus, faultStatusMessage } from '../emulator/faults.js'
import type { WireFaultConfig, WireFaultStatus, WireHardwareAction, WireRequestStats } from './proto.js'

/** A hardware action on the wire: only the fields that are set. */
export function hardwareToWire(a: HardwareAction): WireHardwareAction {
  const src = a as Partial<Record<string, unknown>>
  const w: WireHardwareAction = { action: a.action }
  if (src.apid !== undefined) w.apid = src.apid as number
  if (src.apqi !== undefined) w.apqi = src.apqi as number
  if (src.rawType !== undefined) w.raw_type = src.rawType as number
  if (src.type !== undefined) w.type = src.type as string
  if (src.mode !== undefined) w.mode = src.mode as string
  if (src.functions !== undefined) w.functions = src.functions as number
  if (src.control !== undefined) w.control = src.control as boolean
  if (src.notify !== undefined) w.notify = src.notify as boolean
  return w
}

/**
 * The hardware action of a wire message, with unset optional fields left out (proto3 `optional`
 * keeps "not sent" apart from 0/false). The host validates the combination (INVALID_ARGUMENT).
 */
export function hardwareFromWire(w: WireHardwareAction): HardwareAction {
  const a: Record<string, unknown> = { action: w.action }
  const set = (k: string, v: unknown): void => {
    if (v !== undefined && v !== null) a[k] = v
  }
  set('apid', w.apid)
  set('apqi', w.apqi)
  set('rawType', w.raw_type)
  set('type', w.type)
  set('mode', w.mode)
  set('functions', w.functions)
  set('control', w.control)
  set('notify', w.notify)
  return a as unknown as HardwareAction
}

export function statsToWire(s: RequestStats): WireRequestStats {
  return { submitted: s.submitted, completed: s.completed, flushed: s.flushed, rejected: s.rejected }
}

export function statsFromWire(w: WireRequestStats): RequestStats {
  return { submitted: Number(w.submitted), completed: Number(w.completed), flushed: Number(w.flushed), rejected: Number(w.rejected) }
}

/** A fault configuration on the wire (`delay_ms` 0 = none). */
export function faultConfigToWire(c: FaultConfig): WireFaultConfig {
  return {
    rules: c.rules.map((r) => ({ path: r.path, rate: r.rate, kind: r.kind, delay_ms: r.delayMs ?? 0 })),
    ...(c.seed !== undefined ? { seed: c.seed } : {}),
  }
}

/** The configuration of a wire message, unchecked (FaultInjector.set validates it). */
export function faultConfigFromWire(w: WireFaultConfig): unknown {
  return {
    rules: (w.rules ?? []).map((r) => ({ path: r.path, rate: r.rate, kind: r.kind, ...(r.delay_ms ? { delayMs: r.delay_ms } : {}) })),
    ...(w.seed !== undefined && w.seed !== null ? { seed: w.seed } : {}),
  }
}

export function faultStatusToWire(s: FaultStatus): WireFaultStatus {
  return faultStatusMessage(s)
}

export function faultStatusFromWire(w: WireFaultStatus): FaultStatus {
  return {
    rules: w.rules.map((r) => ({
      path: r.path,
      rate: r.rate,
      kind: r.kind as FaultStatus['rules'][number]['kind'],
      ...(r.delay_ms ? { delayMs: r.delay_ms } : {}),
      matched: Number(r.matched),
      injected: Number(r.injected),
    })),
    seed: w.seed,
    writes: Number(w.writes),
    failed: Number(w.failed),
    delayed: Number(w.delayed),
  }
}
