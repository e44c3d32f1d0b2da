/**
 * Controls of an emulated host (docs/api.md (REST) /emulator/...): raw sysfs as root would use it,
 * hardware events, guests, workloads, reboot. Each action that changes the "kernel" is audited and
 * the host reconciled after it (it is a drift source). FAILED_PRECONDITION on a host that is not emulated.
 */
import { ApmatrixError } from '../domain/errors.js'
import { normalizeUuid } from '../domain/mdev.js'
import type { ManagedHost, ReconcileTrigger } from '../hosts/managed-host.js'
import type { Store } from '../store/index.js'
import type { HostAccess } from './host-access.js'
import { correlation } from './mutation-runner.js'
import type { Hosts } from './hosts.js'
import { fromSysfsError } from './sysfs-errors.js'
import type { CallContext, HardwareInput, HostView } from './types.js'
import type { FaultStatus } from '../emulator/faults.js'
import { principalDetail } from './mutation-runner.js'
import type { SubjectLimits } from '../auth/limits.js'

type Emulator = NonNullable<ManagedHost['emulator']>
type ErrnoOverrides = Parameters<typeof fromSysfsError>[1]

/** The emulator controls of the service. */
export class EmulatorControls {
  constructor(
    private readonly store: Store,
    private readonly access: HostAccess,
    private readonly hosts: Hosts,
    private readonly reconciler: ReconcileTrigger,
    private readonly limits?: SubjectLimits,
  ) {}

  /** Raw sysfs read as root would do it: the attribute text. Errno errors (ENOENT → NOT_FOUND, ...). */
  readSysfs(host: string, path: string): Promise<string> {
    return this.emulated(host, (e) => e.read(path))
  }

  /** Raw sysfs write as root would do it (a drift source for the reconciler). Errno errors. */
  writeSysfs(host: string, path: string, value: string, ctx: CallContext = {}): Promise<void> {
    return this.action(host, ctx, 'emulator.sysfs.write', path, (e) => e.write(path, value))
  }

  /** A hardware event (the emulator shell's actions). */
  hardware(host: string, input: HardwareInput, ctx: CallContext = {}): Promise<void> {
    return this.action(host, ctx, `emulator.hardware.${input.action}`, `hosts/${host}`, (e) => e.hardware(input as Parameters<Emulator['hardware']>[0]))
  }

  /** A guest opens a matrix device (V-25). NOT_FOUND (ENODEV) when no such device is on the bus. */
  openGuest(host: string, uuid: string, guest: string, ctx: CallContext = {}): Promise<void> {
    const id = normalizeUuid(uuid)
    return this.action(host, ctx, 'emulator.guest.open', `hosts/${host}/guests/${guest}`, (e) => e.guestOpen(id, guest), { ENODEV: 'NOT_FOUND' })
  }

  /** The guest closes whatever device it has open; NOT_FOUND (ENOENT) when it has none. */
  closeGuest(host: string, guest: string, ctx: CallContext = {}): Promise<void> {
    return this.action(host, ctx, 'emulator.guest.close', `hosts/${host}/guests/${guest}`, (e) => e.guestCloseByGuest(guest))
  }

  /** Which guest has which device open. */
  async listGuests(host: string): Promise<{ items: Array<{ uuid: string; guest: string }> }> {
    return { items: await this.emulated(host, (e) => e.guests()) }
  }

  /** Puts `count` crypto requests on a queue; returns how many were accepted. */
  async submitRequests(host: string, apqn: string, count: number): Promise<{ accepted: number }> {
    return { accepted: await this.emulated(host, (e) => e.submitRequests(apqn, count)) }
  }

  /** A steady host workload on a queue (`perSecond` 0 stops it). NOT_FOUND (queue), INVALID_ARGUMENT. */
  setWorkload(host: string, apqn: string, perSecond: number): Promise<void> {
    return this.emulated(host, (e) => e.setWorkload(apqn, perSecond))
  }

  /** Reboots the emulated host (kernel state lost, new bootId); the host is re-registered and reconciled. */
  async reboot(host: string, ctx: CallContext = {}): Promise<HostView> {
    await this.action(host, ctx, 'emulator.reboot', `hosts/${host}`, (e) => e.reboot())
    // The devices the old boot had are gone until the reconciler restores them: no status may go on
    // saying Ready next to the new boot id (issue 11 §3; restored by the pass the action enqueued). A pass that
    // has already read the new boot wrote statuses of it: those are kept (no flip back to Unknown).
    const { bootId } = await this.access.managed(host).info()
    await this.reconciler.markRebooted?.(host, bootId, `host ${host} was rebooted: its bus is read again and the desired state restored`)
    // A pass after the marking reads the bus again (else Unknown would stay until the periodic resync).
    this.reconciler.enqueue(host)
    await this.hosts.register(this.access.managed(host))
    return this.hosts.getHost(host)
  }

  /**
   * Replaces the host's injected write faults (docs/emulator-sysfs.md "Fault injection"): INVALID_ARGUMENT
   * for a bad rule (the old ones stay). Audited; not a kernel change, so nothing is reconciled.
   */
  async setFaults(host: string, config: unknown, ctx: CallContext = {}): Promise<FaultStatus> {
    let out: FaultStatus | undefined
    await this.action(host, ctx, 'emulator.faults.set', `hosts/${host}`, async (e) => void (out = await e.setFaults(config)), undefined, false)
    return out!
  }

  /** No injected faults from now on. */
  clearFaults(host: string, ctx: CallContext = {}): Promise<FaultStatus> {
    return this.setFaults(host, { rules: [] }, ctx)
  }

  /** The injected write faults in force, with their counts. */
  faults(host: string): Promise<FaultStatus> {
    return this.emulated(host, (e) => e.faults())
  }

  private async emulated<T>(host: string, fn: (e: Emulator) => Promise<T>, overrides?: ErrnoOverrides): Promise<T> {
    const h = this.access.managed(host)
    // A real host (driver sysfs or agent) exists but has no emulator: a precondition, not a missing resource.
    if (!h.emulator) throw new ApmatrixError('FAILED_PRECONDITION', `host ${host} is not emulated: emulator controls exist only for emulated hosts`)
    try {
      return await fn(h.emulator)
    } catch (e) {
      throw fromSysfsError(e, overrides)
    }
  }

  /** An emulator action that changes the "kernel": audited, then the host is reconciled (drift). */
  private async action(
    host: string,
    ctx: CallContext,
    action: string,
    target: string,
    fn: (e: Emulator) => Promise<void>,
    overrides?: ErrnoOverrides,
    reconcile = true,
  ): Promise<void> {
    // Limited like every mutation (auth/limits.ts): refused before the emulator is touched, not audited.
    if (ctx.principal) this.limits?.takeMutation(ctx.principal.subject)
    let outcome = 'ok'
    try {
      await this.emulated(host, fn, overrides)
    } catch (e) {
      outcome = e instanceof ApmatrixError ? (e.errno ?? e.code) : 'error'
      throw e
    } finally {
      if (this.access.registry.get(host)?.emulator) {
        await this.store.audit
          .append({
            actor: ctx.actor ?? 'anonymous',
            action,
            target,
            outcome,
            requestId: ctx.requestId ?? null,
            detail: { ...principalDetail(ctx), ...correlation(ctx) },
          })
          .catch(() => undefined)
      }
    }
    if (reconcile) this.reconciler.enqueue(host)
  }
}
