/**
 * Shared fixtures for the kernel-behaviour scenario tests T-01..T-64 (docs/kernel-model.md §7). Everything here
 * goes through the emulator's public contract (src/emulator/api.ts): sysfs paths plus the host
 * controls. Expected values (mask strings, APQN names) are computed here independently of
 * src/domain so that a bug shared by the emulator and the domain code cannot hide.
 */
import path from 'node:path'
import { createHost } from '../../src/emulator/host.js'
import { loadProfile } from '../../src/emulator/profiles.js'
import { SysfsError } from '../../src/domain/errors.js'
import type { EmulatedHostApi, EmulatorEvent, HardwareProfile, KernelProfileName } from '../../src/emulator/api.js'

export { loadProfile }

export const BUS = '/sys/bus/ap'
export const MATRIX = '/sys/devices/vfio_ap/matrix'
export const TYPE_DIR = `${MATRIX}/mdev_supported_types/vfio_ap-passthrough`
export const DRIVERS = `${BUS}/drivers`

/** Two fixed mdev UUIDs (36 characters each, V-4). */
export const M1 = '11111111-2222-4333-8444-555555555555'
export const M2 = '66666666-7777-4888-9999-aaaaaaaaaaaa'

/** The §6 setup: adapters 05 (CEX8C), 06 (CEX8A), 07 (CEX8P); usage and control domains 04, 47, ab, ff. */
export const FIXTURE_ADAPTERS = [0x05, 0x06, 0x07]
export const FIXTURE_DOMAINS = [0x04, 0x47, 0xab, 0xff]

/** O-10: `XX.YYYY`, lowercase hex. */
export function apqn(apid: number, apqi: number): string {
  return `${apid.toString(16).padStart(2, '0')}.${apqi.toString(16).padStart(4, '0')}`
}

/** O-5: `cardXX`. */
export function cardName(apid: number): string {
  return `card${apid.toString(16).padStart(2, '0')}`
}

/** The queues of the §6 setup for the given adapters (default: all 12). */
export function queuesOf(apids: number[] = FIXTURE_ADAPTERS, apqis: number[] = FIXTURE_DOMAINS): string[] {
  return apids.flatMap((a) => apqis.map((q) => apqn(a, q)))
}

/** sysfs path of a device (queue `05.0004` or card `card05`) through the bus link. */
export function dev(name: string): string {
  return `${BUS}/devices/${name}`
}

export function mdevPath(uuid: string): string {
  return `${MATRIX}/${uuid}`
}

/** A 256-bit mask in the kernel's print format (B-20, 0.3): `0x` + 64 lowercase hex digits, bit 0 leftmost. No newline. */
export function maskHex(ids: Iterable<number>): string {
  const bytes = new Array<number>(32).fill(0)
  for (const id of ids) bytes[id >> 3]! |= 0x80 >> (id & 7)
  return `0x${bytes.map((b) => b.toString(16).padStart(2, '0')).join('')}`
}

/** All 256 ids except `except`. */
export function allBut(...except: number[]): number[] {
  const out: number[] = []
  for (let i = 0; i < 256; i++) if (!except.includes(i)) out.push(i)
  return out
}

export const ALL_ONES = `0x${'f'.repeat(64)}`
export const ALL_ZEROS = `0x${'0'.repeat(64)}`

export interface HostOpts {
  profile?: HardwareProfile
  kernel?: KernelProfileName
  traceRequests?: boolean
}

/** A freshly booted host of the §6 setup (`spec-fixture`) unless another profile is given. */
export function newHost(opts: HostOpts = {}): EmulatedHostApi {
  return createHost({ profile: opts.profile ?? 'spec-fixture', kernel: opts.kernel, traceRequests: opts.traceRequests })
}

/** Runs `fn` and returns 'OK', or the errno of the SysfsError it threw (anything else is rethrown). */
export function errnoOf(fn: () => unknown): string {
  try {
    fn()
    return 'OK'
  } catch (e) {
    if (e instanceof SysfsError) return e.errno
    throw e
  }
}

/** Same as {@link errnoOf} for a promise-returning call. */
export async function errnoOfAsync(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn()
    return 'OK'
  } catch (e) {
    if (e instanceof SysfsError) return e.errno
    throw e
  }
}

/** `echo value > path`: writes the value with the trailing newline echo adds. */
export function echo(host: EmulatedHostApi, p: string, value: string | number): void {
  host.write(p, `${value}\n`)
}

/** `echo value > path`, returning 'OK' or the errno. */
export function tryEcho(host: EmulatedHostApi, p: string, value: string | number): string {
  return errnoOf(() => echo(host, p, value))
}

/** The name of the driver a device is bound to, or null when unbound (no `driver` link). */
export function driverOf(host: EmulatedHostApi, name: string): string | null {
  try {
    return path.posix.basename(host.readlink(`${dev(name)}/driver`))
  } catch (e) {
    if (e instanceof SysfsError && e.errno === 'ENOENT') return null
    throw e
  }
}

/** Reads an attribute, or returns null when it does not exist (ENOENT). */
export function readOrNull(host: EmulatedHostApi, p: string): string | null {
  try {
    return host.read(p)
  } catch (e) {
    if (e instanceof SysfsError && e.errno === 'ENOENT') return null
    throw e
  }
}

/** vfio_ap `status` of a queue (V-31) without the newline, or null when the attribute is absent (not bound to vfio_ap). */
export function statusOf(host: EmulatedHostApi, name: string): string | null {
  const s = readOrNull(host, `${dev(name)}/status`)
  return s === null ? null : s.replace(/\n$/, '')
}

/** T-15 setup: `echo -5,-6 > apmask`, `echo -4,-0x47 > aqmask`, so 05.*, 06.*, 07.0004 and 07.0047 go to vfio_ap. */
export function vfioMasks(host: EmulatedHostApi): void {
  echo(host, `${BUS}/apmask`, '-5,-6')
  echo(host, `${BUS}/aqmask`, '-4,-0x47')
}

export function createMdev(host: EmulatedHostApi, uuid: string): void {
  echo(host, `${TYPE_DIR}/create`, uuid)
}

/** Assigns adapters, then domains, then control domains, each with `echo N > assign_*` (V-10, V-11, V-16). */
export function assign(host: EmulatedHostApi, uuid: string, r: { adapters?: number[]; domains?: number[]; control?: number[] }): void {
  for (const a of r.adapters ?? []) echo(host, `${mdevPath(uuid)}/assign_adapter`, a)
  for (const d of r.domains ?? []) echo(host, `${mdevPath(uuid)}/assign_domain`, d)
  for (const c of r.control ?? []) echo(host, `${mdevPath(uuid)}/assign_control_domain`, c)
}

/** V-19 `matrix` text for adapters × domains (both non-empty). */
export function matrixText(apids: number[], apqis: number[]): string {
  return apids.flatMap((a) => apqis.map((q) => `${apqn(a, q)}\n`)).join('')
}

/** Sequence number of the newest event (0 when none): take it before an action, then read `host.events(seq)`. */
export function lastSeq(host: EmulatedHostApi): number {
  const evs = host.events()
  return evs.length ? evs[evs.length - 1]!.seq : 0
}

export type UeventEv = Extract<EmulatorEvent, { kind: 'uevent' }>
export type ApcbEv = Extract<EmulatorEvent, { kind: 'apcb' }>
export type LogEv = Extract<EmulatorEvent, { kind: 'log' }>

export function uevents(evs: EmulatorEvent[]): UeventEv[] {
  return evs.filter((e): e is UeventEv => e.kind === 'uevent')
}
export function apcbs(evs: EmulatorEvent[], uuid?: string): ApcbEv[] {
  return evs.filter((e): e is ApcbEv => e.kind === 'apcb' && (uuid === undefined || e.uuid === uuid))
}
export function logs(evs: EmulatorEvent[]): LogEv[] {
  return evs.filter((e): e is LogEv => e.kind === 'log')
}

/** Mask text of an apcb event without a trailing newline (the contract says "the kernel's 0x… format"). */
export function bare(mask: string): string {
  return mask.replace(/\n$/, '')
}

/** The guest APCB pushed last for `uuid` among `evs` (undefined when none was pushed). */
export function lastApcb(evs: EmulatorEvent[], uuid: string): ApcbEv | undefined {
  const a = apcbs(evs, uuid)
  return a[a.length - 1]
}

/** Whether a uevent on the device named `name` (last path component) carries env[key] === value. */
export function hasUevent(evs: EmulatorEvent[], name: string, key: string, value: string): boolean {
  return uevents(evs).some((e) => path.posix.basename(e.devpath) === name && e.env[key] === value)
}

/** Lets every reset and request in flight finish (well below the 30 s periodic scan). */
export function settle(host: EmulatedHostApi): void {
  host.advance(200)
}

/** O-13: what a queue's `reset` attribute reads while a reset runs. */
export const RESET_IN_PROGRESS = 'Reset in progress.\n'
export const NO_RESET = 'No Reset Timer set.\n'

/**
 * Observes queue resets (ZAPQ/RAPQ, V-39, B-14) without a debug attribute: a reset flushes whatever the
 * queue holds (B-16, so `requestStats().flushed` grows) and leaves `reset` reading "Reset in progress."
 * until virtual time moves on. The constructor puts requests on the queues where they are accepted (zcrypt
 * queues only; B-17); `wasReset` is then true when either sign shows.
 * [emulator representation] The real kernel's vfio_ap ZAPQ does not touch the bus state machine, so on
 * a kernel it would not show in `reset`; this emulator shows every ZAPQ there, which is what makes
 * vfio_ap resets (V-39) observable through sysfs at all.
 */
export class ResetProbe {
  private readonly before = new Map<string, number>()
  constructor(
    private readonly host: EmulatedHostApi,
    readonly apqns: string[],
  ) {
    for (const q of apqns) {
      try {
        host.submitRequests(q, 2)
      } catch (e) {
        if (!(e instanceof SysfsError)) throw e
      }
      this.before.set(q, host.requestStats(q).flushed)
    }
  }
  flushedSince(q: string): number {
    return this.host.requestStats(q).flushed - this.before.get(q)!
  }
  wasReset(q: string): boolean {
    return this.flushedSince(q) > 0 || readOrNull(this.host, `${dev(q)}/reset`) === RESET_IN_PROGRESS
  }
}

/** Everything a failed write must leave unchanged on the AP bus side (B-22, V-23 all-or-nothing). */
export function busSnapshot(host: EmulatedHostApi): Record<string, string | null> {
  const s: Record<string, string | null> = {
    apmask: host.read(`${BUS}/apmask`),
    aqmask: host.read(`${BUS}/aqmask`),
    bindings: host.read(`${BUS}/bindings`),
  }
  for (const name of host.list(`${BUS}/devices`)) {
    s[`${name}/driver`] = driverOf(host, name)
    if (!name.startsWith('card')) s[`${name}/status`] = statusOf(host, name)
  }
  return s
}

/** An mdev's visible configuration (V-19, V-18, V-22). */
export function mdevSnapshot(host: EmulatedHostApi, uuid: string): Record<string, string> {
  const p = mdevPath(uuid)
  return {
    matrix: host.read(`${p}/matrix`),
    guest_matrix: host.read(`${p}/guest_matrix`),
    control_domains: host.read(`${p}/control_domains`),
    ap_config: host.read(`${p}/ap_config`),
  }
}
