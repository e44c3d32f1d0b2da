/**
 * A host apmatrix manages: its bus (for the reconciler and inventory) and, for emulated hosts, the
 * emulator controls (REST `/v1/hosts/{host}/emulator/...`). The composition root builds them; the service
 * and the reconciler only see this interface. Drivers (HostInfo.driver):
 * - `emulator`: the emulator core in this process (src/hosts/local-emulated-host.ts);
 * - `remote-emulator`: `apmatrix emulator serve` over gRPC (src/hosts/remote-emulated-host.ts);
 * - `agent`: `apmatrix agent` on an LPAR over gRPC (src/hosts/agent-host.ts);
 * - `sysfs`: a /sys of this machine, or a mount of one, through node:fs (src/hosts/sysfs-host.ts).
 */
import type { EmulatorEvent, HardwareAction } from '../emulator/api.js'
import type { BusPort } from '../bus/port.js'
import type { FaultStatus } from '../emulator/faults.js'

/** Emulator controls of an emulated host. Errors are SysfsError with the kernel errno. */
export interface EmulatorControl {
  /** Raw sysfs access as root would do it. */
  read(path: string): Promise<string>
  write(path: string, value: string): Promise<void>
  list(path: string): Promise<string[]>
  hardware(action: HardwareAction): Promise<void>
  guestOpen(uuid: string, guest: string): Promise<void>
  /** Closes whatever device `guest` has open; ENOENT when it has none. */
  guestCloseByGuest(guest: string): Promise<void>
  guests(): Promise<Array<{ uuid: string; guest: string }>>
  submitRequests(apqn: string, count: number): Promise<number>
  /** A steady host workload on a queue (requests per second of virtual time; 0 stops it). */
  setWorkload(apqn: string, perSecond: number): Promise<void>
  /** Restarts the host: kernel state is lost, a new bootId (docs/api.md (REST) `POST reboot`). */
  reboot(): Promise<void>
  /** Replaces the injected write faults (src/emulator/faults.ts); ApmatrixError INVALID_ARGUMENT for a bad configuration. */
  setFaults(config: unknown): Promise<FaultStatus>
  /** The injected write faults in force, with their counts. */
  faults(): Promise<FaultStatus>
  /** Every kernel event (uevents, log lines, APCB changes) as it happens; returns an unsubscribe function. */
  subscribe(listener: (e: EmulatorEvent) => void): () => void
}

/** How apmatrix reaches a host. */
export type HostDriver = 'emulator' | 'remote-emulator' | 'agent' | 'sysfs'

/** Identity and capabilities of a host (docs/api.md (Resources) Host). */
export interface HostInfo {
  name: string
  driver: HostDriver
  /** The emulator's hardware profile; null for a real host. */
  profile: string | null
  /** Kernel release (real host) or kernel profile (emulator); '' when unknown. */
  kernel: string
  /** Stable per machine (docs/hosts.md "Identity"; the emulator derives it from the profile name). */
  machineId: string
  /** Changes at every reboot (for a mount without a boot id: stable, and a reboot is found as drift). */
  bootId: string
}

/** One managed host. */
export interface ManagedHost {
  readonly name: string
  /** The bus port; its `watch` reports changes that may be drift, its `exclusive` exists when the host has an AP configuration lock. */
  readonly bus: BusPort
  /** The emulator controls; null for a host that is not emulated (agent, sysfs). */
  readonly emulator: EmulatorControl | null
  info(): Promise<HostInfo>
  /** Which guest holds which device open (the hypervisor's view; empty when unknown). */
  guests(): Promise<Array<{ uuid: string; guest: string }>>
  close(): Promise<void>
}

/** The hosts this process manages, by name (`local` in the default setup). */
export interface HostRegistry {
  list(): ManagedHost[]
  get(name: string): ManagedHost | undefined
}

/** A fixed registry over a list of hosts. */
export class StaticHostRegistry implements HostRegistry {
  private readonly byName: Map<string, ManagedHost>
  constructor(hosts: ManagedHost[]) {
    this.byName = new Map(hosts.map((h) => [h.name, h]))
  }
  list(): ManagedHost[] {
    return [...this.byName.values()]
  }
  get(name: string): ManagedHost | undefined {
    return this.byName.get(name)
  }
}

/** What the service needs of the reconciler: a nudge that a host's desired state changed. */
export interface ReconcileTrigger {
  enqueue(host: string): void
  /**
   * The service has just rebooted `host` into boot `bootId`: unless a pass has already read that boot (its
   * statuses are then the new boot's), devices' `Ready` turns `Unknown` (reason `HostRebooted`) until the next
   * pass reads the bus. Optional: tests' triggers need not.
   */
  markRebooted?(host: string, bootId: string, message: string): Promise<void>
}
