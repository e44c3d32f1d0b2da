/**
 * Events of a host on the wire (hostbus.proto `Event`) and back. The emulator's own events
 * (src/emulator/api.ts) are a subset of {@link HostBusEvent}; an agent adds `changed`. Both directions
 * live here so a field added to one side is added to the other.
 */
import type { EmulatorEvent } from '../emulator/api.js'
import type { WireEvent } from './proto.js'

/** Something changed that has no uevent of its own (an agent's poll, or its udev monitor restarted). */
export interface ChangedEvent {
  seq: number
  time: number
  kind: 'changed'
  source: string
  summary: string
}

/** A kernel uevent as a real kernel sends it (any action: add, remove, change, bind, unbind, move, online, offline). */
export interface HostUevent {
  seq: number
  time: number
  kind: 'uevent'
  action: string
  devpath: string
  env: Record<string, string>
}

/** Every event a host-bus server streams. */
export type HostBusEvent = Exclude<EmulatorEvent, { kind: 'uevent' }> | HostUevent | ChangedEvent

/** An event as the wire carries it, with the boot and the sequence epoch it belongs to. */
export function eventToWire(e: HostBusEvent | EmulatorEvent, bootId: string, epoch: string): WireEvent {
  const head = { seq: String(e.seq), time: e.time, kind: e.kind, boot_id: bootId, epoch }
  switch (e.kind) {
    case 'uevent':
      return { ...head, uevent: { action: e.action, devpath: e.devpath, env: { ...e.env } } }
    case 'log':
      return { ...head, log: { level: e.level, message: e.message } }
    case 'apcb':
      return { ...head, apcb: { uuid: e.uuid, guest: e.guest, apm: e.apm, aqm: e.aqm, adm: e.adm } }
    case 'request':
      return { ...head, request: { apqn: e.apqn, result: e.result } }
    case 'changed':
      return { ...head, changed: { source: e.source, summary: e.summary } }
  }
}

/** The event of a wire message; throws for a body this client does not know (a newer server). */
export function eventFromWire(w: WireEvent): HostBusEvent {
  const seq = Number(w.seq)
  const time = w.time
  if (w.uevent) return { seq, time, kind: 'uevent', action: w.uevent.action, devpath: w.uevent.devpath, env: { ...w.uevent.env } }
  if (w.log) return { seq, time, kind: 'log', level: w.log.level as 'info' | 'warn' | 'err', message: w.log.message }
  if (w.apcb) return { seq, time, kind: 'apcb', uuid: w.apcb.uuid, guest: w.apcb.guest, apm: w.apcb.apm, aqm: w.apcb.aqm, adm: w.apcb.adm }
  if (w.request) return { seq, time, kind: 'request', apqn: w.request.apqn, result: w.request.result as 'ok' | 'EAGAIN' }
  if (w.changed) return { seq, time, kind: 'changed', source: w.changed.source, summary: w.changed.summary }
  throw new Error(`host event ${seq}: unknown kind '${w.kind}'`)
}
