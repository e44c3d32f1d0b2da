/**
 * The bus port (docs/api.md): the typed interface the reconciler uses to observe and drive one AP bus.
 * It is implemented once, over sysfs paths ({@link SysfsAccess}), so the in-process emulator, a remote
 * emulator, an `apmatrix agent` and the real /sys of an s390x host (node:fs) are interchangeable.
 */
import type { Errno } from '../domain/errors.js'

/**
 * The lease a reconcile holds while it drives a host (docs/api.md (Reconcile): one replica per host). Carried on
 * every bus write so the host can refuse a write from a replica whose lease was taken over: the classic
 * fencing token check, which holds even when the replica's own lease check raced with the takeover.
 */
export interface BusFence {
  host: string
  holder: string
  /** The lease's fencing token: strictly increases with every acquisition (src/store/lease-repo.ts). */
  token: number
}

/**
 * A change on the bus that may be drift: a kernel uevent (from the emulator or `udevadm monitor`), a guest
 * APCB change (emulator), or a changed attribute a poll noticed. Only a nudge to look again: the
 * reconciler is level-triggered and never relies on what a change says.
 */
export interface BusChange {
  source: 'uevent' | 'apcb' | 'poll'
  /** One line for logs, e.g. `add /devices/ap/card05/05.0004` or `changed: bindings`. */
  summary: string
  /** The kernel uevent itself, when the change is one (an agent forwards it to the service). */
  uevent?: { action: string; devpath: string; env: Record<string, string> }
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
  /**
   * Runs `fn` with a view whose writes happen while this process holds the host's AP configuration lock
   * (s390-tools `/run/lock/s390apconfig.lock`, src/bus/ap-config-lock.ts), held from before `fn` starts
   * until it settles, so a whole pass of writes never interleaves with chzdev, mdevctl or ap-check.
   * Waits a bounded time for another holder; then rejects with {@link ConfigLockBusyError} without
   * calling `fn`. Optional: a host no other tool configures (the emulators) has no lock.
   */
  exclusive?<T>(fn: (locked: SysfsAccess) => Promise<T>): Promise<T>
  /**
   * Calls `listener` for every change the host reports (uevents, polled attributes); returns a function
   * that stops watching. Optional: without it only the reconciler's periodic resync notices drift.
   */
  watch?(listener: (change: BusChange) => void): () => void
}

export type {
  QueueDriver,
  ObservedAdapter,
  ObservedQueue,
  ObservedQueueRef,
  ObservedMdev,
  ObservedHost,
  ObservedHostFacts,
  ObservedTopology,
  MatrixConfig,
} from '../domain/observed.js'
import type { ObservedAdapter, ObservedHost, ObservedHostFacts, ObservedQueue, ObservedTopology, MatrixConfig, QueueDriver } from '../domain/observed.js'

/** Filters and page of {@link BusPort.observeQueues}; every given filter must match. */
export interface QueuePageQuery {
  adapter?: number
  domain?: number
  driver?: QueueDriver
  /** A matrix device's uuid: the queues it has assigned; null: queues no matrix device has assigned. */
  owner?: string | null
  /** Only APQNs after this one (`05.0004`; exclusive): where the previous page ended. */
  after?: string
  /** Largest page (a positive integer). */
  limit: number
}

/** One page of queues, ordered by APQN. */
export interface QueuePage {
  items: ObservedQueue[]
  /** The last item's APQN when more queues match (pass it as `after`); absent on the last page. */
  next?: string
}

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

/**
 * The host's AP configuration lock is held by another process (chzdev, mdevctl's ap-check callout, ...)
 * and was not released within the wait bound: nothing was written; retry the pass later.
 */
export class ConfigLockBusyError extends BusError {
  /** Pid written in the lock file ('' when it could not be read, e.g. the holder has not written it yet). */
  readonly holderPid: string
  readonly waitedMs: number
  constructor(lockPath: string, holderPid: string, waitedMs: number, message?: string) {
    super(
      'EBUSY',
      lockPath,
      message ?? `AP configuration lock ${lockPath} is held by ${holderPid ? `pid ${holderPid}` : 'another process'} (waited ${waitedMs} ms)`,
    )
    this.name = 'ConfigLockBusyError'
    this.holderPid = holderPid
    this.waitedMs = waitedMs
  }
}

/** Operations the reconciler performs. Every method is idempotent where the kernel allows it. */
export interface BusPort {
  /** Reads the full inventory (every card and queue attribute), masks and matrix devices. */
  observe(): Promise<ObservedHost>
  /** Reads masks, configuration, matrix devices and queue bindings only: what planning needs, cheap on large hosts. */
  observeTopology(): Promise<ObservedTopology>
  /** Reads features, maxima, masks, configuration and bindings: no device is walked (cheap on any host). */
  observeHostFacts(): Promise<ObservedHostFacts>
  /** Reads the adapters (cards) with their attributes, by apid: no queue attribute is read (as `observe().adapters`). */
  observeAdapters(): Promise<ObservedAdapter[]>
  /**
   * One page of queues with every attribute: queue names are listed, filtered and paged first, and attributes
   * are read for the page's queues only (a page of 10 on a host of 65,536 queues reads 10 queues). RangeError
   * for a limit that is not a positive integer.
   */
  observeQueues(q: QueuePageQuery): Promise<QueuePage>
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
  /**
   * O-12: `requestq_count` + `pendingq_count` of each queue (missing queues are left out; the queues of a
   * card whose own totals are 0 read as 0 without being visited).
   */
  queueLoad(apqns: string[]): Promise<Map<string, number>>
  /** B-34: forces a bus scan. */
  rescan(): Promise<void>
  /** A view of this bus whose every write carries `fence` (see {@link BusFence}); optional for fakes. */
  withFence?(fence: BusFence): BusPort
  /**
   * True when the host itself refuses a write whose fence is stale (remote emulator, agent). Otherwise
   * (in-process emulator, sysfs) a fence cannot stop a late write, and the lease's expiry is the only guard.
   */
  readonly checksFence?: boolean
  /**
   * Present only on hosts with an AP configuration lock ({@link SysfsAccess.exclusive}): runs `fn` with a
   * view of this bus whose writes are all made under one hold of the lock. Rejects with
   * {@link ConfigLockBusyError} when the lock stays held by someone else past the wait bound.
   */
  exclusive?<T>(fn: (locked: BusPort) => Promise<T>): Promise<T>
  /** Reports changes that may be drift (see {@link BusChange}); returns an unsubscribe function. */
  watch?(listener: (change: BusChange) => void): () => void
}
