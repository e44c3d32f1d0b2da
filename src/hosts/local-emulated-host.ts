/**
 * An emulated host inside the service process: the emulator core with a real-time clock, behind the bus
 * port. A reboot replaces the core with a fresh one built from the same profile (kernel state is lost).
 * Like a remote emulator, it keeps a log of every bus write (not fenced: there is no other process to
 * fence off), so tests can prove what the service wrote.
 */
import { createHash } from 'node:crypto'
import { createHost } from '../emulator/host.js'
import { startRealtimeClock } from '../emulator/async-host.js'
import { FaultInjector, faultDelay, throwIfFailed } from '../emulator/faults.js'
import type { EmulatedHostApi, EmulatorEvent, HardwareProfile, KernelProfileName } from '../emulator/api.js'
import { SysfsError } from '../domain/errors.js'
import { SysfsBus } from '../bus/sysfs-bus.js'
import type { SysfsAccess } from '../bus/port.js'
import { FencedWriteLog, type WriteRecord } from '../hostbus/write-log.js'
import type { EmulatorControl, HostInfo, ManagedHost } from './managed-host.js'

export interface LocalEmulatedHostOptions {
  name: string
  profile: HardwareProfile | string
  kernel?: KernelProfileName
  /** Advance virtual time with wall time (default true); false for tests that drive time themselves. */
  realtime?: boolean
  tickMs?: number
}

/** An in-process emulated host. */
export class LocalEmulatedHost implements ManagedHost, EmulatorControl {
  readonly name: string
  readonly bus: SysfsBus
  readonly emulator: EmulatorControl = this
  private core: EmulatedHostApi
  private stopClock: () => void = () => {}
  private readonly listeners = new Set<(e: EmulatorEvent) => void>()
  private unsubscribeCore: () => void = () => {}
  private readonly writes = new FencedWriteLog()

  constructor(private readonly opts: LocalEmulatedHostOptions) {
    this.name = opts.name
    this.core = this.boot()
    const access: SysfsAccess = {
      read: async (p) => this.core.read(p),
      write: (p, v) => this.faultyWrite(p, v),
      list: async (p) => this.core.list(p),
      readlink: async (p) => this.core.readlink(p),
      // Kernel changes (uevents, guest APCB changes) may be drift; log lines and request completions are not.
      watch: (listener) =>
        this.subscribe((e) => {
          if (e.kind === 'uevent') listener({ source: 'uevent', summary: `${e.action} ${e.devpath}` })
          else if (e.kind === 'apcb') listener({ source: 'apcb', summary: `guest ${e.guest} of ${e.uuid}: apm ${e.apm}` })
        }),
    }
    this.bus = new SysfsBus(access)
  }

  /** Injected write faults (src/emulator/faults.ts): every sysfs write, the bus's and the control's, meets them. */
  private readonly injector = new FaultInjector()

  /** A logged write under the injected faults: the delay first, then the write or its injected errno. */
  private async faultyWrite(p: string, v: string): Promise<void> {
    const f = this.injector.decide(p)
    await faultDelay(f)
    this.writes.apply(p, v, null, this.core.bootId, () => (throwIfFailed(f), this.core.write(p, v)))
  }

  async setFaults(config: unknown) {
    return this.injector.set(config)
  }
  async faults() {
    return this.injector.status()
  }

  /** Every bus write through {@link bus} (the reconciler's), oldest first, with seq > `sinceSeq`. Emulator controls are not bus writes. */
  writeLog(sinceSeq = 0): WriteRecord[] {
    return this.writes.since(sinceSeq)
  }

  private boot(): EmulatedHostApi {
    const core = createHost({ profile: this.opts.profile, kernel: this.opts.kernel })
    this.unsubscribeCore = core.subscribe((e) => {
      for (const l of this.listeners) l(e)
    })
    if (this.opts.realtime !== false) this.stopClock = startRealtimeClock(core, { intervalMs: this.opts.tickMs ?? 10 })
    return core
  }

  /** The emulator core (tests drive virtual time and inspect request counters through it). */
  get host(): EmulatedHostApi {
    return this.core
  }

  async info(): Promise<HostInfo> {
    const profile = this.core.profile.name
    return {
      name: this.name,
      driver: 'emulator',
      profile,
      kernel: this.core.kernel,
      machineId: createHash('sha256').update(`${this.name}/${profile}`).digest('hex').slice(0, 16),
      bootId: this.core.bootId,
    }
  }

  async read(path: string) {
    return this.core.read(path)
  }
  async write(path: string, value: string) {
    const f = this.injector.decide(path)
    await faultDelay(f)
    throwIfFailed(f)
    this.core.write(path, value)
  }
  async list(path: string) {
    return this.core.list(path)
  }
  async hardware(action: Parameters<EmulatedHostApi['hardware']>[0]) {
    this.core.hardware(action)
  }
  async guestOpen(uuid: string, guest: string) {
    this.core.guestOpen(uuid, guest)
  }
  async guestCloseByGuest(guest: string) {
    const g = this.core.guests().find((x) => x.guest === guest)
    if (!g) throw new SysfsError('ENOENT', `guest ${guest} has no matrix device open`)
    this.core.guestClose(g.uuid)
  }
  async guests() {
    return this.core.guests()
  }
  async submitRequests(apqn: string, count: number) {
    return this.core.submitRequests(apqn, count)
  }
  async setWorkload(apqn: string, perSecond: number) {
    this.core.setWorkload(apqn, perSecond)
  }
  async reboot() {
    this.stopClock()
    this.unsubscribeCore()
    this.core = this.boot()
  }
  subscribe(listener: (e: EmulatorEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
  async close() {
    this.stopClock()
    this.unsubscribeCore()
    this.listeners.clear()
  }
}
