/**
 * A host whose emulated kernel runs in another process (`apmatrix emulator serve`), reached over gRPC:
 * its host-bus face drives the bus port, its emulator controls serve the REST/gRPC emulator routes.
 * A service crash leaves that "kernel" state intact, as on a real machine (docs/api.md).
 */
import type { EmulatorEvent, HardwareAction } from '../emulator/api.js'
import { SysfsError } from '../domain/errors.js'
import { validateFaultConfig } from '../emulator/faults.js'
import type { BusFence, SysfsAccess } from '../bus/port.js'
import { SysfsBus } from '../bus/sysfs-bus.js'
import { connectEmulator, type EventSubscription, type RemoteEmulator, type RemoteEmulatorOptions } from '../emulator-remote/client.js'
import type { HostBusInfo } from '../hostbus/client.js'
import type { EmulatorControl, HostInfo, ManagedHost } from './managed-host.js'

/** A managed host backed by a remote emulator process. */
export class RemoteEmulatedHost implements ManagedHost, EmulatorControl {
  readonly bus: SysfsBus
  readonly emulator: EmulatorControl = this
  private readonly listeners = new Set<(e: EmulatorEvent) => void>()
  private sub: EventSubscription | undefined

  /** `client` must reach an emulator (its Info lists the emulator-control service): see src/main.ts. */
  constructor(
    readonly name: string,
    private readonly client: RemoteEmulator,
  ) {
    // Fenced writes (withFence) and change reports (watch) from the host-bus face; no exclusive section:
    // nothing but apmatrix configures an emulated host, so there is no AP configuration lock to take.
    this.bus = new SysfsBus({ ...withoutLock(client), watch: client.watch })
  }

  /** Connects to the emulator at `addr` and waits until it answers (throws UNAVAILABLE after `timeoutMs`). */
  static async connect(name: string, addr: string, timeoutMs = 10_000, opts: RemoteEmulatorOptions = {}): Promise<RemoteEmulatedHost> {
    const client = connectEmulator(addr, opts)
    try {
      await client.waitForReady(timeoutMs)
    } catch (e) {
      client.close()
      throw e
    }
    return new RemoteEmulatedHost(name, client)
  }

  async info(): Promise<HostInfo> {
    const [bus, emu] = await Promise.all([this.client.hostInfo(), this.client.info()])
    return hostInfoOf(this.name, 'remote-emulator', bus, emu.profile)
  }

  read(path: string) {
    return this.client.read(path)
  }
  write(path: string, value: string) {
    return this.client.write(path, value)
  }
  list(path: string) {
    return this.client.list(path)
  }
  hardware(action: HardwareAction) {
    return this.client.hardware(action)
  }
  guestOpen(uuid: string, guest: string) {
    return this.client.guestOpen(uuid, guest)
  }
  async guestCloseByGuest(guest: string) {
    const g = (await this.client.guests()).find((x) => x.guest === guest)
    if (!g) throw new SysfsError('ENOENT', `guest ${guest} has no matrix device open`)
    await this.client.guestClose(g.uuid)
  }
  guests() {
    return this.client.guests()
  }
  submitRequests(apqn: string, count: number) {
    return this.client.submitRequests(apqn, count)
  }
  setWorkload(apqn: string, perSecond: number) {
    return this.client.setWorkload(apqn, perSecond)
  }
  async reboot() {
    await this.client.reboot()
  }
  /** Checked here too, so a bad rule is refused with the same message whichever emulator is behind. */
  setFaults(config: unknown) {
    return this.client.setFaults(validateFaultConfig(config))
  }
  faults() {
    return this.client.faults()
  }

  /** Live kernel events; the stream starts at the current end and resumes by itself after a broken connection. */
  subscribe(listener: (e: EmulatorEvent) => void): () => void {
    this.listeners.add(listener)
    if (!this.sub) {
      // From the start of what the host keeps: watchers only use events as a nudge to look again, so a
      // replay costs one extra reconcile, while starting "at the end" could miss a reboot's first events.
      this.sub = this.client.events(0, (e) => {
        for (const l of this.listeners) l(e)
      })
    }
    return () => {
      this.listeners.delete(listener)
      if (this.listeners.size === 0) {
        this.sub?.close()
        this.sub = undefined
      }
    }
  }

  async close() {
    this.sub?.close()
    this.client.close()
  }
}

/** The file operations and fenced views of a host-bus client, without lock sessions (at any depth of fencing). */
function withoutLock(a: SysfsAccess): SysfsAccess {
  const withFence = a.withFence
  return { read: a.read, write: a.write, list: a.list, readlink: a.readlink, ...(withFence ? { withFence: (f: BusFence) => withoutLock(withFence(f)) } : {}) }
}

/** The HostInfo of a host-bus server's Info (remote emulator or agent). */
export function hostInfoOf(name: string, driver: 'remote-emulator' | 'agent', i: HostBusInfo, profile: string | null): HostInfo {
  return { name, driver, profile, kernel: i.kernel, machineId: i.machineId, bootId: i.bootId }
}
