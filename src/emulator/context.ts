import type { EventLog } from './events.js'
import type { KernelBehaviour } from './kernel-profiles.js'
import type { Machine } from './machine.js'
import type { ApQueue } from './queue.js'

/** What every part of the emulated kernel shares: the machine, the event log, the profile and virtual time. */
export interface KernelContext {
  readonly machine: Machine
  readonly events: EventLog
  readonly kb: KernelBehaviour
  readonly traceRequests: boolean
  /** Virtual milliseconds since boot. */
  now(): number
  /** Queues with a reset in progress or requests in flight: the only ones `advance` has to visit. */
  readonly busy: Set<ApQueue>
}
