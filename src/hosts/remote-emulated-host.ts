/**
 * A host whose emulated kernel runs in another process (`apmatrix emulator serve`), reached over gRPC.
 * A service crash leaves that "kernel" state intact, as on a real machine (product.md §1).
 */
import { createHash } from 'node:crypto'
import type { EmulatorEvent, HardwareAction } from '../emulator/api.js'
import { SysfsError } from '../domain/errors.js'
import { SysfsBus } from '../bus/sysfs-bus.js'
import { connectEmulator, type EventSubscription, type RemoteEmulator } from '../emulator-remote/client.js'
import type { EmulatorControl, HostInfo, ManagedHost } from './managed-host.js'

/** A managed host backed by a remote emulator process. */
export class RemoteEmulatedHost implements ManagedHost, EmulatorControl {
  readonly bus: SysfsBus
  readonly emulator: EmulatorControl = this
  private readonly listeners = new Set<(e: EmulatorEvent) => void>()
  private sub: EventSubscription | undefined

  private constructor(
    readonly name: string,
    private readonly client: RemoteEmulator,
  ) {
    // The client carries fences (withFence), so the reconciler's writes reach the emulator fenced.
    this.bus = new SysfsBus(client)
  }

  /** Connects and waits until the emulator answers (throws UNAVAILABLE after `timeoutMs`). */
  static async connect(name: string, addr: string, timeoutMs = 10_000): Promise<RemoteEmulatedHost> {
    const client = connectEmulator(addr)
    await client.waitForReady(timeoutMs)
    return new RemoteEmulatedHost(name, client)
  }

  async info(): Promise<HostInfo> {
    const i = await this.client.info()
    return {
      name: this.name,
      driver: 'remote-emulator',
      profile: i.profile,
      kernel: i.kernel,
      machineId: createHash('sha256').update(`${this.client.address}/${i.profile}`).digest('hex').slice(0, 16),
      bootId: i.bootId,
    }
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
