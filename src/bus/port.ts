/**
 * The bus port (product.md §1): the typed interface the reconciler uses to observe and drive one AP bus.
 * It is implemented once, over sysfs paths ({@link SysfsAccess}), so the in-process emulator, a remote
 * emulator and (later) the real /sys of an s390x host are interchangeable.
 */
import type { Errno } from '../domain/errors.js'

/**
 * The lease a reconcile holds while it drives a host (product.md §4: one replica per host). Carried on
 * every bus write so the host can refuse a write from a replica whose lease was taken over: the classic
 * fencing token check, which holds even when the replica's own lease check raced with the takeover.
 */
export interface BusFence {
  host: string
  holder: string
  /** The lease's fencing token: strictly increases with every acquisition (src/store/lease-repo.ts). */
  token: number
}

/** The four file operations the bus port needs. Errors are thrown as SysfsError (with `errno`). */
export interface SysfsAccess {
  read(path: string): Promise<string>
  write(path: string, value: string): Promise<void>
  list(path: string): Promise<string[]>
  readlink(path: string): Promise<string>
  /**
   * A view whose writes carry `fence` (reads are unchanged). Optional: an access without it (the
   * in-process emulator) cannot check fences, and its writes go unfenced.
   */
  withFence?(fence: BusFence): SysfsAccess
}

export type { QueueDriver, ObservedAdapter, ObservedQueue, ObservedQueueRef, ObservedMdev, ObservedHost, ObservedTopology, MatrixConfig } from '../domain/observed.js'
import type { ObservedHost, ObservedTopology, MatrixConfig } from '../domain/observed.js'

/** What a bus write refused, with the kernel errno. */
export class BusError extends Error {
  readonly errno: Errno
  readonly path: string
  constructor(errno: Errno, path: string, message: string) {
    super(message)
    this.name = 'BusError'
    this.errno = errno
    this.path = path
  }
}

/** Operations the reconciler performs. Every method is idempotent where the kernel allows it. */
export interface BusPort {
  /** Reads the full inventory (every card and queue attribute), masks and matrix devices. */
  observe(): Promise<ObservedHost>
  /** Reads masks, configuration, matrix devices and queue bindings only: what planning needs, cheap on large hosts. */
  observeTopology(): Promise<ObservedTopology>
  /** Writes apmask and/or aqmask in kernel syntax (B-21). BusError EBUSY on the in_use veto (B-24). */
  setMasks(masks: { apmask?: string; aqmask?: string }): Promise<void>
  /** V-4: creates a matrix device; EEXIST is treated as success (idempotent). */
  createMdev(uuid: string): Promise<void>
  /** V-29: removes a matrix device; an mdev that is already gone (ENODEV) counts as success. */
  removeMdev(uuid: string): Promise<void>
  /**
   * Makes the mdev's assigned matrix equal `target`: with `ap_config` (V-22/V-23) in one atomic write when the
   * host has it, else unassign-then-assign one attribute at a time. Returns the method used.
   */
  configureMdev(uuid: string, target: MatrixConfig, current: MatrixConfig): Promise<'ap_config' | 'assign'>
  /** O-13: flush and reset a queue (`reset` write; never fails on the kernel). */
  resetQueue(apqn: string): Promise<void>
  /** B-42: zcrypt `online` of a queue (0 flushes). */
  setQueueOnline(apqn: string, online: boolean): Promise<void>
  /** B-30/B-31: bind or unbind a queue to/from a driver. */
  bindQueue(apqn: string, driver: 'cex4queue' | 'vfio_ap'): Promise<void>
  unbindQueue(apqn: string, driver: 'cex4queue' | 'vfio_ap'): Promise<void>
  /** O-12: `requestq_count` + `pendingq_count` of each queue (missing queues are left out). */
  queueLoad(apqns: string[]): Promise<Map<string, number>>
  /** B-34: forces a bus scan. */
  rescan(): Promise<void>
  /** A view of this bus whose every write carries `fence` (see {@link BusFence}); optional for fakes. */
  withFence?(fence: BusFence): BusPort
}
