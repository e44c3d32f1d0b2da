/**
 * Bus writes under a lease on a host that cannot check a fencing token (the in-process emulator, a `sysfs`
 * host): there the lease's expiry is the only fence, so every write must happen while the lease is known to
 * be held. Hosts that check the token (remote emulator, agent) refuse a stale write themselves and need no
 * more than the read-only check before each phase (docs/api.md (Reconcile), one replica per host).
 */
import type { BusPort } from '../bus/port.js'
import { ExecutionAborted } from './executor.js'

/** A pass's lease on a host was lost (taken over, expired, or released): the pass ends without another write. */
export class LeaseLostError extends ExecutionAborted {
  constructor(host: string, token: number, why: string) {
    super(`lease on ${host} lost (token ${token}): ${why}`)
    this.name = 'LeaseLostError'
  }
}

/**
 * The same bus with `check` awaited before every write (reads pass through); `check` throws to refuse the
 * write. Views made from it (withFence, exclusive) are checked too.
 */
export function guardWrites(bus: BusPort, check: () => Promise<void>): BusPort {
  const g =
    <A extends unknown[], R>(f: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      await check()
      return f(...a)
    }
  const withFence = bus.withFence?.bind(bus)
  const exclusive = bus.exclusive?.bind(bus)
  const watch = bus.watch?.bind(bus)
  return {
    checksFence: bus.checksFence,
    observe: () => bus.observe(),
    observeTopology: () => bus.observeTopology(),
    observeHostFacts: () => bus.observeHostFacts(),
    observeAdapters: () => bus.observeAdapters(),
    observeQueues: (q) => bus.observeQueues(q),
    queueLoad: (apqns) => bus.queueLoad(apqns),
    setMasks: g((m) => bus.setMasks(m)),
    createMdev: g((uuid) => bus.createMdev(uuid)),
    removeMdev: g((uuid) => bus.removeMdev(uuid)),
    configureMdev: g((uuid, target, current) => bus.configureMdev(uuid, target, current)),
    resetQueue: g((apqn) => bus.resetQueue(apqn)),
    setQueueOnline: g((apqn, online) => bus.setQueueOnline(apqn, online)),
    bindQueue: g((apqn, driver) => bus.bindQueue(apqn, driver)),
    unbindQueue: g((apqn, driver) => bus.unbindQueue(apqn, driver)),
    rescan: g(() => bus.rescan()),
    ...(withFence ? { withFence: (f) => guardWrites(withFence(f), check) } : {}),
    ...(exclusive ? { exclusive: (fn) => exclusive((locked) => fn(guardWrites(locked, check))) } : {}),
    ...(watch ? { watch } : {}),
  }
}
