/**
 * What a scenario does to the host behind apmatrix's back: root's sysfs reads and writes, hardware events,
 * guests, crypto work, reboots. The same test drives every backend (in-process emulator, remote emulator,
 * `sysfs` driver over the FUSE view, agent over the FUSE view); only how these controls reach the emulated
 * kernel differs, never what the service sees.
 */
import { SysfsError } from '../../src/domain/errors.js'
import type { HardwareAction, RequestStats } from '../../src/emulator/api.js'
import type { RemoteEmulator } from '../../src/emulator-remote/client.js'
import type { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import type { RestCall } from './rest-client.js'

/** Root at the console of the emulated host, and the hypervisor next to it. */
export interface HostControls {
  /** An attribute's text, or null when the path does not exist (ENOENT). */
  read(path: string): Promise<string | null>
  /** A write as root would do it; rejects with the kernel's errno (a SysfsError, or an Error naming it). */
  write(path: string, value: string): Promise<void>
  hardware(action: HardwareAction): Promise<void>
  guestOpen(uuid: string, guest: string): Promise<void>
  /** The guest closes whatever device it has open. */
  guestClose(guest: string): Promise<void>
  guests(): Promise<Array<{ uuid: string; guest: string }>>
  /** `count` crypto requests arrive on a host queue; resolves to how many were accepted. */
  submitRequests(apqn: string, count: number): Promise<number>
  requestStats(apqn: string): Promise<RequestStats>
  /** Restarts the host (kernel state is lost); resolves to the new boot id. */
  reboot(): Promise<string>
}

/**
 * Controls through the service's own REST emulator routes (hosts whose driver has emulator controls), with
 * request counters read from the in-process core when there is one (REST does not expose them).
 */
export function restControls(call: RestCall, hostPath: string, stats: (apqn: string) => Promise<RequestStats>): HostControls {
  const must = async (what: string, p: ReturnType<RestCall>, ok: number[]) => {
    const r = await p
    if (!ok.includes(r.status)) throw Object.assign(new Error(`${what}: ${r.status} ${r.text}`), { errno: r.body?.errno })
    return r
  }
  return {
    read: async (path) => {
      const r = await call('GET', `${hostPath}/emulator/sysfs?path=${encodeURIComponent(path)}`)
      if (r.status === 404) return null
      if (r.status !== 200) throw new Error(`GET sysfs ${path}: ${r.status} ${r.text}`)
      return r.text
    },
    write: async (path, value) => void (await must(`POST sysfs ${path}`, call('POST', `${hostPath}/emulator/sysfs`, { body: { path, value } }), [204])),
    hardware: async (action) => void (await must(`hardware ${action.action}`, call('POST', `${hostPath}/emulator/hardware`, { body: action }), [204])),
    guestOpen: async (uuid, guest) => void (await must(`open ${uuid}`, call('POST', `${hostPath}/emulator/guests`, { body: { uuid, guest } }), [204])),
    guestClose: async (guest) => void (await must(`close ${guest}`, call('DELETE', `${hostPath}/emulator/guests/${guest}`), [204])),
    guests: async () => (await must('guests', call('GET', `${hostPath}/emulator/guests`), [200])).body.items,
    submitRequests: async (apqn, count) =>
      (await must(`requests ${apqn}`, call('POST', `${hostPath}/emulator/requests`, { body: { apqn, count } }), [200])).body.accepted,
    requestStats: stats,
    reboot: async () => (await must('reboot', call('POST', `${hostPath}/emulator/reboot`), [200])).body.bootId,
  }
}

/** Request counters of an in-process emulated host. */
export function localStats(host: LocalEmulatedHost): (apqn: string) => Promise<RequestStats> {
  return async (apqn) => host.host.requestStats(apqn)
}

/** Controls through an emulator process's own gRPC face (what a test of a `sysfs` or agent host has). */
export function emulatorControls(emu: RemoteEmulator): HostControls {
  return {
    read: async (path) => {
      try {
        return await emu.read(path)
      } catch (e) {
        if (e instanceof SysfsError && e.errno === 'ENOENT') return null
        throw e
      }
    },
    write: (path, value) => emu.write(path, value),
    hardware: (action) => emu.hardware(action),
    guestOpen: (uuid, guest) => emu.guestOpen(uuid, guest),
    guestClose: async (guest) => {
      const g = (await emu.guests()).find((x) => x.guest === guest)
      if (!g) throw new Error(`guest ${guest} has no matrix device open`)
      await emu.guestClose(g.uuid)
    },
    guests: () => emu.guests(),
    submitRequests: (apqn, count) => emu.submitRequests(apqn, count),
    requestStats: (apqn) => emu.requestStats(apqn),
    reboot: async () => (await emu.reboot()).bootId,
  }
}
