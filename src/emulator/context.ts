import type { EventLog } from './events.js'
import type { KernelBehaviour } from './kernel-profiles.js'
import type { Machine } from './machine.js'

/**
 * What every part of the emulated kernel shares: the machine, the event log, the profile and virtual
 * time. `Q` is the queue type of the `busy` set: the host that advances time reads it as queues; the
 * parts that only add and remove need not know the queue type (so this file imports no part of the kernel).
 */
export interface KernelContext<Q = unknown> {
  readonly machine: Machine
  readonly events: EventLog
  readonly kb: KernelBehaviour
  readonly traceRequests: boolean
  /** Virtual milliseconds since boot. */
  now(): number
  /** Queues with a reset in progress or requests in flight: the only ones `advance` has to visit. */
  readonly busy: Set<Q>
}
