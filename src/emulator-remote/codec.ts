/**
 * Conversions between the emulator's own types (src/emulator/api.ts) and the wire messages of
 * emulator.proto. Both directions live here so a field added to one side is added to the other.
 */
import type { EmulatorEvent, HardwareAction, RequestStats } from '../emulator/api.js'
import type { WireEvent, WireHardwareAction, WireRequestStats } from './proto.js'

/** An event as the wire carries it, with the boot it belongs to (seq restarts at every boot). */
export function eventToWire(e: EmulatorEvent, bootId: string): WireEvent {
  const head = { seq: String(e.seq), time: e.time, kind: e.kind, boot_id: bootId }
  switch (e.kind) {
    case 'uevent':
      return { ...head, uevent: { action: e.action, devpath: e.devpath, env: { ...e.env } } }
    case 'log':
      return { ...head, log: { level: e.level, message: e.message } }
    case 'apcb':
      return { ...head, apcb: { uuid: e.uuid, guest: e.guest, apm: e.apm, aqm: e.aqm, adm: e.adm } }
    case 'request':
      return { ...head, request: { apqn: e.apqn, result: e.result } }
  }
}

/** The emulator event of a wire message; throws for a body this client does not know (a newer server). */
export function eventFromWire(w: WireEvent): EmulatorEvent {
  const seq = Number(w.seq)
  const time = w.time
  if (w.uevent) {
    const action = w.uevent.action as Extract<EmulatorEvent, { kind: 'uevent' }>['action']
    return { seq, time, kind: 'uevent', action, devpath: w.uevent.devpath, env: { ...w.uevent.env } }
  }
  if (w.log) return { seq, time, kind: 'log', level: w.log.level as 'info' | 'warn' | 'err', message: w.log.message }
  if (w.apcb) return { seq, time, kind: 'apcb', uuid: w.apcb.uuid, guest: w.apcb.guest, apm: w.apcb.apm, aqm: w.apcb.aqm, adm: w.apcb.adm }
  if (w.request) return { seq, time, kind: 'request', apqn: w.request.apqn, result: w.request.result as 'ok' | 'EAGAIN' }
  throw new Error(`emulator event ${seq}: unknown kind '${w.kind}'`)
}

/** A hardware action on the wire: only the fields that are set. */
export function hardwareToWire(a: HardwareAction): WireHardwareAction {
  const src = a as Partial<Record<string, unknown>>
  const w: WireHardwareAction = { action: a.action }
  if (src['apid'] !== undefined) w.apid = src['apid'] as number
  if (src['apqi'] !== undefined) w.apqi = src['apqi'] as number
  if (src['rawType'] !== undefined) w.raw_type = src['rawType'] as number
  if (src['type'] !== undefined) w.type = src['type'] as string
  if (src['mode'] !== undefined) w.mode = src['mode'] as string
  if (src['functions'] !== undefined) w.functions = src['functions'] as number
  if (src['control'] !== undefined) w.control = src['control'] as boolean
  if (src['notify'] !== undefined) w.notify = src['notify'] as boolean
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
