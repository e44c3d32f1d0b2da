/**
 * The reconciler (docs/api.md (Reconcile)): level-triggered per host. `reconcile(host)` reads the desired state
 * (store) and the observed state (bus), plans, executes safely, writes status and conditions, and emits
 * events. The same path serves create, update, delete, periodic resync, drift, host reboot and restart
 * after a crash: it never relies on what a previous run did, only on what it reads now.
 */
import { randomUUID } from 'node:crypto'
import { Mask, parseAbsoluteMask } from '../domain/mask.js'
import { planHost, type Deferred, type DesiredHost, type Plan, type PlanOp } from '../domain/plan.js'
import type { ObservedTopology } from '../domain/observed.js'
import type { HostRegistry, ManagedHost, ReconcileTrigger } from '../hosts/managed-host.js'
import { ApmatrixError } from '../domain/errors.js'
import { ConfigLockBusyError, type BusPort } from '../bus/port.js'
import { RemoteHostError } from '../hostbus/errors.js'
import type { Store } from '../store/store.js'
import type { EventInput } from '../store/event-repo.js'
import type { HostMasksRecord, MasksStatus } from '../store/masks-repo.js'
import type { Repos } from '../store/store.js'
import type { MdevRecord } from '../store/mdev-repo.js'
import { createYielder } from '../async/yielder.js'
import { ExecutionAborted, executePlan, type ExecutionResult, type StepResult } from './executor.js'
import { drainedApqns, journalOperation } from './journal-op.js'
import { guardWrites, LeaseLostError } from './lease-guard.js'
import { computeMdevStatus, type MdevStatus } from './status.js'
import { resolveDrainPolicy, type DrainOnTimeout, type ResolvedDrainPolicy } from '../domain/drain-policy.js'
import type { DrainProgress } from './executor.js'
import { WorkQueue, type WorkQueueMetrics } from './work-queue.js'

/** Minimal structured logger (pino-compatible). */
export interface Logger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} }

/** Named points inside a reconcile, for crash-safety tests (a hook may kill the process there). */
export type ReconcilePoint = 'beforeBusWrite' | 'afterBusWrite' | 'beforeStatusWrite'

export interface ReconcilerOptions {
  store: Store
  hosts: HostRegistry
  /** This replica's identity for leases; unique per process. */
  holder?: string
  resyncMs?: number
  leaseTtlMs?: number
  /**
   * Leases above the even share this replica may hold while other replicas are alive (default 1; see
   * {@link leaseShare}). Negative turns sharing off: the replica takes every free lease it comes across.
   */
  leaseShareSlack?: number
  /** Default drain timeout (a device's `spec.drain.timeoutSeconds` overrides it for the queues it takes). */
  drainTimeoutMs?: number
  /** Default of what a drain does at its timeout (`flush`, the default, or `wait`); see domain/drain-policy.ts. */
  drainOnTimeout?: DrainOnTimeout
  /**
   * Drain time a pass spends on a hand-over that already waits past its timeout (`wait` policy) before it
   * yields the host and is retried with backoff (default 5 s, at most the timeout, at least one poll).
   */
  drainWaitSliceMs?: number
  drainPollMs?: number
  /** Skip the drain (requests on queues that leave the host are lost and reported). */
  hardHandOver?: boolean
  /**
   * Most hosts reconciled at once (default 4): a long pass on a large host does not hold back a small one.
   * One host never has two passes at once, whatever the number.
   */
  concurrency?: number
  sleep?: (ms: number) => Promise<void>
  log?: Logger
  hook?: (point: ReconcilePoint, host: string, step?: PlanOp) => Promise<void> | void
  /** Called after a pass stored events (e.g. to wake the event hub instead of waiting for its poll). */
  onEvents?: () => void
  /**
   * Awaited after every committed status write (see Reconciler.storeStatus), before the pass goes on: the
   * service's read cache syncs here, so this process's reads show the status a pass stored (read-your-writes).
   */
  afterStatusWrite?: () => Promise<void>
  /** Where passes, leases, hand-overs, bus errors and each host's state are reported (Prometheus, main.ts). */
  metrics?: ReconcilerMetrics
}

/** Where the reconciler reports hand-overs (the one place that learns of a loss). */
export interface HandOverMetrics {
  /**
   * A hand-over's mask change ran on `host`: `lostRequests` flushed (the sum of its QueueFlushed events),
   * `drainMs` the drain time of the whole hand-over (every pass it waited in), undefined without a drain.
   */
  handOver(host: string, o: { lostRequests: number; drainMs?: number }): void
}

/** How a pass ended, as controller-runtime's `result` label says it. */
export type PassResult = 'success' | 'error' | 'requeue' | 'requeue_after'

/**
 * Everything the reconciler reports for metrics (src/observability/metrics.ts implements it); every member is
 * optional so a test can listen to one of them.
 */
export interface ReconcilerMetrics extends Partial<HandOverMetrics> {
  /** One pass of `host` ended with `result` after `seconds`. */
  pass?(host: string, result: PassResult, seconds: number): void
  /** Workers busy now, of `max`. */
  workers?(busy: number, max: number): void
  /** Whether this replica holds the lease of `host` after a pass. */
  lease?(host: string, held: boolean): void
  /** What a pass's status write saw: APQNs by owner and matrix devices by condition (`total`: every device). */
  hostState?(host: string, s: { apqns: { host: number; device: number; free: number }; mdevs: Record<string, number> }): void
  /** A bus write of a pass failed with `errno`. */
  busWriteError?(host: string, errno: string): void
  /** The work queue's own figures (client-go workqueue metrics). */
  workQueue?: WorkQueueMetrics
}

/** A hand-over whose drain outlasted a pass (`wait` policy): what later passes continue from. */
interface PendingDrain {
  /** Drain time spent so far, over all passes. */
  waitedMs: number
  /** Queues the drain took offline for new work, that no mask change moved yet. */
  offline: Set<string>
  /** The DrainTimedOut event of this hand-over was emitted. */
  reported: boolean
}

/** What a status write shows of a drain in progress (see Reconciler.writeStatus). */
interface DrainView {
  policy: ResolvedDrainPolicy
  remaining: Record<string, number>
  offline: string[]
  waitedMs: number
  waiting: boolean
  /** A write during the drain: device statuses only (the masks' status waits for the pass's end). */
  progress: boolean
}

/** What one reconcile pass did. */
export interface ReconcileOutcome {
  host: string
  /** True when the bus equals the desired state after this pass and nothing is deferred. */
  converged: boolean
  /**
   * Why the pass did not drive the bus: another replica holds the lease; the host is unknown; or the host
   * is only observed (first contact, no desired state given yet: see {@link Reconciler.reconcile}).
   */
  skipped?: 'lease-held-elsewhere' | 'lease-share-full' | 'unknown-host' | 'observe-only'
  /** The host's AP configuration lock stayed held by another process (chzdev, mdevctl): nothing was written; retried later. */
  lockBusy?: { lockPath: string; holderPid: string; waitedMs: number }
  /** The host could not be reached (the host-bus client's gRPC status): its devices' Ready became Unknown. */
  unreachable?: string
  plan?: Plan
  execution?: ExecutionResult
  drift: boolean
}

/**
 * What a pass saw of a host, for the gauges: APQNs by owner (a queue on vfio_ap is a device's when a matrix device
 * has it assigned, else free; any other queue is the host's) and devices by the conditions that are True (the
 * status about to be stored, else the stored one).
 */
function hostCounts(
  after: ObservedTopology,
  rows: readonly MdevRecord[],
  statuses: ReadonlyArray<{ uuid: string; status: MdevStatus }>,
): { apqns: { host: number; device: number; free: number }; mdevs: Record<string, number> } {
  const assigned = new Set<string>()
  for (const m of after.mdevs) for (const q of m.matrix) assigned.add(q)
  const apqns = { host: 0, device: 0, free: 0 }
  for (const q of after.queues) {
    if (q.driver !== 'vfio_ap') apqns.host++
    else if (assigned.has(q.apqn)) apqns.device++
    else apqns.free++
  }
  const next = new Map(statuses.map((s) => [s.uuid, s.status]))
  const mdevs: Record<string, number> = { total: rows.length }
  for (const r of rows) {
    const st = next.get(r.uuid) ?? (r.status as Partial<MdevStatus>)
    for (const c of st.conditions ?? []) if (c.status === 'True') mdevs[c.type] = (mdevs[c.type] ?? 0) + 1
  }
  return { apqns, mdevs }
}

function maskOrFull(text: string | undefined): Mask {
  if (!text) return Mask.full()
  const p = parseAbsoluteMask(text)
  return p.ok ? p.mask : Mask.full()
}

function opTarget(op: PlanOp): string | undefined {
  return 'uuid' in op ? op.uuid : undefined
}

/**
 * Most host leases one replica holds while `replicas` replicas share `hosts` hosts: the even share, rounded up,
 * plus `slack` (docs/api.md (Reconcile), "Sharing the hosts"). `replicas` counts every live replica, itself
 * included, so one replica alone may take all hosts, and the shares of the live replicas always cover them.
 */
export function leaseShare(hosts: number, replicas: number, slack: number): number {
  return Math.ceil(hosts / Math.max(1, replicas)) + slack
}

/**
 * A host whose lease another replica holds is looked at again this long after that lease's expiry (store clock): a
 * killed replica's hosts are taken as soon as its leases run out, not up to a lease time later.
 */
const RECHECK_AFTER_EXPIRY_MS = 50

/** A replica at its share counts the live replicas again before refusing a host, at most this often. */
const RECOUNT_EVERY_MS = 100
/** A host left alone while acquisitions in flight filled the share is claimed again this much later. */
const SHARE_RECHECK_MS = 100

/** A lease this replica holds: its token and its expiry as last confirmed (store clock). */
interface HeldLease {
  token: number
  expiresAt: Date
}

/**
 * Level-triggered reconciler with a work queue (one pass per host at a time, several hosts at once), backoff,
 * resync and leases.
 */
export class Reconciler implements ReconcileTrigger {
  private readonly queue: WorkQueue
  private readonly o: Required<Omit<ReconcilerOptions, 'hook' | 'sleep' | 'onEvents' | 'afterStatusWrite' | 'metrics'>> &
    Pick<ReconcilerOptions, 'hook' | 'sleep' | 'onEvents' | 'afterStatusWrite' | 'metrics'>
  private readonly held = new Map<string, HeldLease>()
  /** Live replicas (itself included) at the last heartbeat; undefined before the first. */
  private liveReplicas: number | undefined
  /** When the last heartbeat counted them (performance.now()), and the one in flight. */
  private countedAt = Number.NEGATIVE_INFINITY
  private counting: Promise<void> | undefined
  /** Expiry (store clock) of the lease another replica held at this replica's last look at the host. */
  private readonly heldElsewhereUntil = new Map<string, Date>()
  /** Hosts left alone because this replica held its share: claimed at once when the share grows. */
  private readonly leftForShare = new Set<string>()
  /** The earliest expiry (store clock) of another replica's heartbeat row at the last count. */
  private othersNextExpiry: Date | null = null
  /** Leases being taken now (not held yet): counted against the share. */
  private acquiring = 0
  /** Timers of {@link claim}: hosts another replica held, looked at again when that lease runs out. */
  private readonly claimTimers = new Map<string, NodeJS.Timeout>()
  /** Hosts a worker is reconciling now: their leases are never given up to make room. */
  private readonly inPass = new Set<string>()
  /** Boot id of each host at this replica's last pass (see checkBoot). */
  private readonly seenBoot = new Map<string, string>()
  /** Hosts whose last pass found the AP configuration lock held (one event per episode, not per retry). */
  private readonly lockBlocked = new Set<string>()
  /** Hosts whose last pass could not reach them (a `HostUnreachable` event was stored; `HostReachable` ends it). */
  private readonly unreachable = new Set<string>()
  /** Hosts whose hand-over waits past its drain timeout (`wait` policy), continued by the next pass. */
  private readonly pendingDrains = new Map<string, PendingDrain>()
  private readonly listeners = new Set<(o: ReconcileOutcome) => void>()
  private readonly unsubscribes: Array<() => void> = []
  private resyncTimer: NodeJS.Timeout | undefined
  private renewTimer: NodeJS.Timeout | undefined
  private workers: Array<Promise<void>> = []
  private running = false

  constructor(opts: ReconcilerOptions) {
    this.o = {
      holder: `apmatrix:${process.pid}:${randomUUID().slice(0, 8)}`,
      resyncMs: 30_000,
      leaseTtlMs: 15_000,
      leaseShareSlack: 1,
      drainTimeoutMs: 30_000,
      drainPollMs: 50,
      drainOnTimeout: 'flush',
      drainWaitSliceMs: 5_000,
      hardHandOver: false,
      concurrency: 4,
      log: silent,
      ...opts,
    }
    if (!(Number.isInteger(this.o.concurrency) && this.o.concurrency > 0)) throw new RangeError('Reconciler: concurrency must be a positive integer')
    this.queue = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 30_000, ...(this.o.metrics?.workQueue ? { metrics: this.o.metrics.workQueue } : {}) })
    for (const [k, v] of Object.entries({ resyncMs: this.o.resyncMs, leaseTtlMs: this.o.leaseTtlMs, drainPollMs: this.o.drainPollMs })) {
      if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`Reconciler: ${k} must be a positive number`)
    }
    if (!(this.o.drainTimeoutMs >= 0)) throw new RangeError('Reconciler: drainTimeoutMs must be >= 0')
    if (this.o.drainOnTimeout !== 'flush' && this.o.drainOnTimeout !== 'wait') throw new RangeError("Reconciler: drainOnTimeout must be 'flush' or 'wait'")
  }

  /** This replica's lease holder id. */
  get holder(): string {
    return this.o.holder
  }

  /** Whether this replica holds the lease of `host` now (as far as it knows). */
  holds(host: string): boolean {
    return this.held.has(host)
  }

  /** Hosts whose lease this replica holds now. */
  heldHosts(): string[] {
    return [...this.held.keys()]
  }

  /** Most leases this replica takes now (Infinity when sharing is off or no heartbeat counted the replicas yet). */
  leaseCap(): number {
    if (this.o.leaseShareSlack < 0 || this.liveReplicas === undefined) return Number.POSITIVE_INFINITY
    return leaseShare(this.o.hosts.list().length, this.liveReplicas, this.o.leaseShareSlack)
  }

  /** Marks this replica alive (right after its leases, `until` their new expiry) and counts the live ones. */
  private async heartbeat(until?: Date): Promise<void> {
    if (this.o.leaseShareSlack < 0) return
    this.counted(this.leaseCap(), await this.o.store.replicas.heartbeat(this.o.holder, this.o.leaseTtlMs, until))
  }

  /**
   * Counts the live replicas without marking this one alive (a read). Renewing the row at every count made it
   * outlive the leases of a replica killed right after, and the survivors' shares grew only when the row ran out,
   * up to 0.9 s after its hosts' leases had (fleet.test.ts).
   */
  private async count(): Promise<void> {
    if (this.o.leaseShareSlack < 0) return
    this.counted(this.leaseCap(), await this.o.store.replicas.count(this.o.holder))
  }

  /** Takes a count (the share of each replica); claims the hosts left for the share if it grew from `cap`. */
  private counted(cap: number, r: { live: number; othersNextExpiry: Date | null }): void {
    this.liveReplicas = r.live
    this.othersNextExpiry = r.othersNextExpiry
    this.countedAt = performance.now()
    if (this.leaseCap() > cap) {
      const hosts = [...this.leftForShare]
      this.leftForShare.clear()
      void this.claimLeft(hosts)
    }
  }

  /**
   * The hosts left for the share, once the share grew: one read of the lease rows, then a claim now of each
   * host whose lease has run out (a dead replica's), and a look just after the expiry of each host another
   * replica still holds. Claiming all of them at once cost a lease transaction each: with 200 hosts and three
   * replicas, one killed, each survivor sent 133 of them at the same moment, two thirds bound to fail, and the
   * dead replica's hosts waited up to 2.8 s behind them in the connection pool (fleet.test.ts).
   */
  private async claimLeft(hosts: string[]): Promise<void> {
    const rows = await this.o.store.leases.list().catch(() => null)
    const byHost = new Map((rows ?? []).map((r) => [r.host, r]))
    const now = this.o.store.now()
    for (const host of hosts) {
      const r = byHost.get(host)
      if (r && r.holder !== this.o.holder && r.expiresAt > now) {
        this.heldElsewhereUntil.set(host, r.expiresAt)
        this.claimLater(host)
      } else void this.claim(host)
    }
  }

  /**
   * Counts the live replicas again when the last count is older than {@link RECOUNT_EVERY_MS}, or another
   * replica's row has run out since (one count in flight, shared). A count only reads, and a replica renews its row
   * only right after its leases, to their expiry: a replica that was killed leaves a row that runs out no later than
   * its leases, so by the time they have run out the share a survivor may take has grown.
   */
  private async recount(): Promise<void> {
    // A row of another replica has run out since the last count: count now, whatever the period.
    const rowRanOut = this.othersNextExpiry !== null && this.o.store.now() >= this.othersNextExpiry
    if (!rowRanOut && performance.now() - this.countedAt < RECOUNT_EVERY_MS) return
    this.counting ??= this.count()
      .catch(() => undefined)
      .finally(() => (this.counting = undefined))
    await this.counting
  }

  /** Ms until just after `until` (store clock), at most a lease time (a lease time when unknown). */
  private justAfter(until: Date | null | undefined): number {
    if (!until) return this.o.leaseTtlMs
    const ms = until.getTime() - this.o.store.now().getTime() + RECHECK_AFTER_EXPIRY_MS
    return Math.min(this.o.leaseTtlMs, Math.max(RECHECK_AFTER_EXPIRY_MS, ms))
  }

  /**
   * Leaves `host` alone because this replica holds its share: it is claimed when a count finds the share grown,
   * and looked at again just after the earliest expiry of another replica's row (if that replica is dead, the
   * share grows then), by a worker, ahead of routine passes. (Claiming it at that expiry outside the workers
   * instead, as a host held elsewhere is, was tried: in one fleet run of 200 a host moved only 18 s after the
   * dead lease ran out.) Below the share (acquisitions in flight fill it) it is claimed again shortly instead.
   */
  private leaveForShare(host: string): void {
    // Below the share, acquisitions in flight filled it. When a dead replica's leases run out together, every
    // survivor claims each of its hosts at once, and most of those acquisitions lose to another survivor: look
    // again in a moment instead of at the next count (up to a lease time later; fleet.test.ts saw 2.2 s).
    if (this.held.size < this.leaseCap()) {
      this.claimIn(host, SHARE_RECHECK_MS)
      return
    }
    this.leftForShare.add(host)
    // Ahead of the passes queued meanwhile: the host's move is bounded by the lease time (fleet.test.ts).
    this.queue.addAfter(host, this.justAfter(this.othersNextExpiry), { first: true })
  }

  /** Nudges a host (idempotent). */
  enqueue(host: string): void {
    this.queue.add(host)
  }

  /** Calls `fn` after every reconcile pass; returns an unsubscribe function. */
  onOutcome(fn: (o: ReconcileOutcome) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** Starts the worker, the periodic resync, and the bus event watches (drift is seen at once). */
  start(): void {
    if (this.running) return
    this.running = true
    this.stopping = false
    for (const h of this.o.hosts.list()) {
      this.enqueue(h.name)
      // Kernel changes (uevents, guest APCB changes, polled attributes) may be drift: look again.
      const stop = h.bus.watch?.(() => this.enqueue(h.name))
      if (stop) this.unsubscribes.push(stop)
    }
    this.resyncTimer = setInterval(() => {
      for (const h of this.o.hosts.list()) this.enqueue(h.name)
    }, this.o.resyncMs)
    // Held leases are renewed on their own clock, so a long drain, a slow pass on another host, or a resync
    // period longer than the lease never lets a live holder's lease lapse.
    this.renewTimer = setInterval(() => void this.renewLeases(), Math.max(50, Math.floor(this.o.leaseTtlMs / 3)))
    this.workers = Array.from({ length: this.o.concurrency }, () => this.work())
  }

  /**
   * Stops; releases held leases. A pass in flight ends before its next bus write or drain poll (the write in
   * flight completes), so a stop never waits for a drain's budget or a queue of slow writes.
   */
  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    this.stopping = true
    clearInterval(this.resyncTimer)
    clearInterval(this.renewTimer)
    for (const timer of this.claimTimers.values()) clearTimeout(timer)
    this.claimTimers.clear()
    for (const u of this.unsubscribes.splice(0)) u()
    this.queue.shutdown()
    await Promise.all(this.workers.splice(0))
    for (const [host, { token }] of this.held) {
      await this.o.store.leases.release(host, this.o.holder, token).catch(() => false)
    }
    this.held.clear()
    if (this.o.leaseShareSlack >= 0) await this.o.store.replicas.leave(this.o.holder).catch(() => undefined)
  }

  /**
   * Extends every lease this replica holds, then the heartbeat row to the same expiry; a lease found lost is forgotten and its host
   * re-queued. Leases above this replica's share (another replica joined) are then given up, hosts in a pass
   * excepted, so the replica that started first does not keep every host.
   */
  private async renewLeases(): Promise<void> {
    if (this.renewing) return
    this.renewing = true
    try {
      // Leases first, then the row to the same expiry: a replica that dies between the two leaves a row that runs
      // out first, and one that dies after leaves a row that runs out with its leases, never after them.
      const until = await this.renewHeld()
      await this.heartbeat(until).catch(() => undefined)
      await this.shed()
    } finally {
      this.renewing = false
    }
  }

  private renewing = false
  /** The first heartbeat, while in flight (see {@link lease}). */
  private firstBeat: Promise<void> | undefined

  /** Gives up leases above {@link leaseCap}, of hosts not in a pass; other replicas take them on their next look. */
  private async shed(): Promise<void> {
    let excess = this.held.size - this.leaseCap()
    for (const [host, lease] of [...this.held]) {
      if (excess <= 0 || !this.running) return
      if (this.inPass.has(host) || this.held.get(host) !== lease) continue
      this.held.delete(host)
      excess--
      await this.o.store.leases.release(host, this.o.holder, lease.token).catch(() => false)
      this.o.log.info({ host, token: lease.token, cap: this.leaseCap() }, "lease given up: more than this replica's share")
      this.o.metrics?.lease?.(host, false)
      this.queue.addAfter(host, this.o.leaseTtlMs)
    }
  }

  /**
   * Renews every held lease in one store write (a replica holds many: one write each would outlast the period);
   * returns their new expiry (undefined when none is held or the store did not answer).
   */
  private async renewHeld(): Promise<Date | undefined> {
    const held = [...this.held]
    if (!held.length) return undefined
    let r: { expiresAt: Date; renewed: Set<string> }
    try {
      r = await this.o.store.leases.renewMany(
        this.o.holder,
        held.map(([host, l]) => ({ host, fencingToken: l.token })),
        this.o.leaseTtlMs,
      )
    } catch {
      // Store down: they may still be ours until the expiries known so far. Past them nothing proves they are:
      // forget them (a pass takes them again with a write once the store answers), so no write relies on them
      // and the apmatrix_lease_held gauge says so.
      const now = this.o.store.now().getTime()
      for (const [host, lease] of held) {
        if (this.held.get(host) === lease && lease.expiresAt.getTime() <= now) {
          this.held.delete(host)
          this.o.metrics?.lease?.(host, false)
          this.o.log.warn({ host, token: lease.token }, 'lease expired: the store did not answer its renewal')
        }
      }
      return undefined
    }
    for (const [host, lease] of held) {
      if (this.held.get(host) !== lease) continue
      if (r.renewed.has(host)) {
        if (r.expiresAt > lease.expiresAt) lease.expiresAt = r.expiresAt
      } else {
        this.held.delete(host)
        this.o.log.warn({ host, token: lease.token }, 'lease lost')
        this.enqueue(host)
      }
    }
    return r.expiresAt
  }

  /** Time before a lease's expiry from which a write on a host that cannot check fences renews it first. */
  private get renewMarginMs(): number {
    return this.o.leaseTtlMs / 3
  }

  /**
   * The pass's lease: kept with a read when this replica holds it with time to spare (the renewal timer
   * extends it), else taken or extended with a write. Null when another replica holds it; `share-full` when this
   * replica already holds its share of the hosts (see {@link leaseShare}) and leaves the host to the others.
   */
  private async lease(hostName: string): Promise<HeldLease | null | 'share-full'> {
    const { store } = this.o
    const mine = this.held.get(hostName)
    if (mine && mine.expiresAt.getTime() - store.now().getTime() > this.renewMarginMs) {
      try {
        mine.expiresAt = await store.leases.confirmHeld(hostName, this.o.holder, mine.token)
        return mine
      } catch (e) {
        if (!(e instanceof ApmatrixError && e.code === 'UNAVAILABLE')) throw e
        // Lost, or the store did not answer: decide with a write, as on first contact.
      }
    }
    if (!mine && this.o.leaseShareSlack >= 0) {
      // The first count is shared by the passes that start together, so no acquisition precedes the row's write.
      if (this.liveReplicas === undefined) await (this.firstBeat ??= this.heartbeat().finally(() => (this.firstBeat = undefined)))
      // Acquisitions in flight count: claims and passes take leases concurrently, and must not overshoot the share.
      if (this.held.size + this.acquiring >= this.leaseCap()) await this.recount()
      if (this.held.size + this.acquiring >= this.leaseCap()) return 'share-full'
    }
    if (!mine) this.acquiring++
    let got: Awaited<ReturnType<typeof store.leases.tryAcquire>>
    try {
      got = await store.leases.tryAcquire(hostName, this.o.holder, this.o.leaseTtlMs)
    } finally {
      if (!mine) this.acquiring--
    }
    if (!got.acquired) {
      this.held.delete(hostName)
      this.heldElsewhereUntil.set(hostName, got.expiresAt)
      return null
    }
    const lease = { token: got.fencingToken, expiresAt: got.expiresAt }
    this.held.set(hostName, lease)
    this.leftForShare.delete(hostName)
    return lease
  }

  /**
   * Before a bus write on a host that cannot check a fencing token: the lease must be held, with more than the
   * margin left (by the store's clock), else it is renewed first. A lease that is lost, or that the store cannot
   * confirm, ends the pass without the write (LeaseLostError).
   */
  private async leaseOutlastsWrite(hostName: string, token: number): Promise<void> {
    const lease = this.held.get(hostName)
    if (!lease || lease.token !== token) throw new LeaseLostError(hostName, token, 'no longer held by this replica')
    if (lease.expiresAt.getTime() - this.o.store.now().getTime() > this.renewMarginMs) return
    let expiresAt: Date | null
    try {
      expiresAt = await this.o.store.leases.renew(hostName, this.o.holder, token, this.o.leaseTtlMs)
    } catch (e) {
      throw new LeaseLostError(hostName, token, `the store cannot confirm it (${(e as Error).message})`)
    }
    if (!expiresAt) {
      if (this.held.get(hostName) === lease) this.held.delete(hostName)
      throw new LeaseLostError(hostName, token, 'expired or taken over')
    }
    lease.expiresAt = expiresAt
  }

  private async work(): Promise<void> {
    for (;;) {
      const host = await this.queue.get()
      if (host === null) return
      const m = this.o.metrics
      const began = performance.now()
      let result: PassResult = 'error'
      this.inPass.add(host)
      this.busy++
      m?.workers?.(this.busy, this.o.concurrency)
      try {
        const out = await this.reconcile(host)
        if (out.skipped === 'lease-held-elsewhere') {
          this.claimLater(host)
          result = 'requeue_after'
        } else if (out.skipped === 'lease-share-full') {
          this.leaveForShare(host)
          result = 'requeue_after'
        } else if (out.converged || out.skipped) {
          this.queue.forget(host)
          result = 'success'
        } else {
          this.queue.addRateLimited(host)
          result = 'requeue'
        }
        for (const l of this.listeners) l(out)
      } catch (e) {
        if (this.stopping && e instanceof ExecutionAborted) {
          this.o.log.info({ host, reason: e.message }, 'pass ended for the stop')
          continue
        }
        // Store down, bus unreachable, lease lost: retry with backoff.
        const delay = this.queue.addRateLimited(host)
        this.o.log.warn({ host, err: e instanceof Error ? e.message : String(e), retryInMs: delay }, 'reconcile failed')
      } finally {
        this.busy--
        m?.workers?.(this.busy, this.o.concurrency)
        m?.pass?.(host, result, (performance.now() - began) / 1000)
        m?.lease?.(host, this.held.has(host))
        this.inPass.delete(host)
        this.queue.done(host)
      }
    }
  }

  /** Workers inside a pass now (metrics). */
  private busy = 0
  /**
   * Set by {@link stop} (not derived from `running`, which is false before a start too, when tests call
   * {@link reconcile} directly): passes in flight end at their next step (executor `stopping`).
   */
  private stopping = false

  /** Looks at `host` again (see {@link claim}) just after the lease another replica held runs out, unless a claim of it is already due. */
  private claimLater(host: string): void {
    const delay = this.justAfter(this.heldElsewhereUntil.get(host))
    this.heldElsewhereUntil.delete(host)
    this.claimIn(host, delay)
  }

  /** {@link claim}s `host` in `delay` ms, unless a claim of it is already due. */
  private claimIn(host: string, delay: number): void {
    if (!this.running || this.claimTimers.has(host)) return
    this.claimTimers.set(
      host,
      setTimeout(() => {
        this.claimTimers.delete(host)
        void this.claim(host)
      }, delay),
    )
  }

  /**
   * Takes the lease of a host another replica held, outside the workers, then queues its pass. A replica that
   * died leaves many hosts whose leases run out together: taking them is one small write each, while their passes
   * (a bus read each, at most `concurrency` at a time) take longer, so the hosts move when the leases run out and
   * converge as the workers get to them. A host already queued or in a pass is left to that pass.
   */
  private async claim(host: string): Promise<void> {
    if (!this.running) return
    if (this.held.has(host) || this.inPass.has(host) || !this.o.hosts.get(host)) return this.enqueue(host)
    try {
      const got = await this.lease(host)
      if (!this.running) {
        // Stopped meanwhile: stop() has released what it held; this one too.
        if (got && got !== 'share-full' && this.held.get(host) === got) {
          this.held.delete(host)
          await this.o.store.leases.release(host, this.o.holder, got.token).catch(() => false)
        }
        return
      }
      if (got === null) this.claimLater(host)
      else if (got === 'share-full') this.leaveForShare(host)
      else {
        this.o.metrics?.lease?.(host, true)
        // Its first pass under this replica ahead of routine ones: the host has had no driver since its lease ran out.
        this.queue.add(host, { first: true })
      }
    } catch (e) {
      const delay = this.queue.addRateLimited(host)
      this.o.log.warn({ host, err: e instanceof Error ? e.message : String(e), retryInMs: delay }, 'lease claim failed')
    }
  }

  /**
   * One reconcile pass for `host` (also used directly by tests).
   *
   * First contact changes nothing (docs/api.md (Resources) "Host masks"): while a host's desired state is only what
   * apmatrix adopted from it (masks at generation 0, no matrix device defined), the pass observes and
   * records status but writes nothing, and adopted masks follow the host (chzdev) until a caller sets them.
   *
   * On a host with an AP configuration lock (sysfs, agent), the bus writes of a pass are made under one
   * hold of the s390-tools lock, and the plan is made again from what the bus shows once it is held (chzdev
   * or mdevctl may have changed it while the pass waited). A lock that stays held past the wait bound ends
   * the pass without a write (outcome `lockBusy`, retried with backoff).
   */
  async reconcile(hostName: string): Promise<ReconcileOutcome> {
    const host = this.o.hosts.get(hostName)
    if (!host) return { host: hostName, converged: false, skipped: 'unknown-host', drift: false }
    const { store } = this.o
    const lease = await this.lease(hostName)
    if (!lease) return { host: hostName, converged: false, skipped: 'lease-held-elsewhere', drift: false }
    if (lease === 'share-full') return { host: hostName, converged: false, skipped: 'lease-share-full', drift: false }
    const events: EventInput[] = []
    const ev = (e: Omit<EventInput, 'host'>) => events.push({ host: hostName, actor: 'reconciler', ...e })
    let outcome: ReconcileOutcome
    try {
      outcome = await this.pass(host, lease.token, events, ev)
      this.lockBlocked.delete(hostName)
      if (this.unreachable.delete(hostName))
        ev({ kind: 'host', name: hostName, type: 'HostReachable', message: `host ${hostName} answers again; its bus was read and reconciled`, data: {} })
    } catch (e) {
      if (e instanceof RemoteHostError) return this.hostUnreachable(hostName, e, events, ev)
      if (!(e instanceof ConfigLockBusyError)) throw e
      const lockBusy = { lockPath: e.path, holderPid: e.holderPid, waitedMs: e.waitedMs }
      this.o.log.info({ host: hostName, ...lockBusy }, 'AP configuration lock held by another process; pass postponed')
      if (!this.lockBlocked.has(hostName)) {
        this.lockBlocked.add(hostName)
        ev({
          kind: 'host',
          name: hostName,
          type: 'ReconcileFailed',
          message: `waiting for the AP configuration lock ${e.path}, held by ${e.holderPid ? `pid ${e.holderPid}` : 'another process'} (chzdev, mdevctl or ap-check): nothing was written, the pass is retried`,
          data: { errno: 'EBUSY', ...lockBusy },
        })
      }
      outcome = { host: hostName, converged: false, drift: false, lockBusy }
    }
    // What the pass's status write did not store (a pass postponed by the configuration lock).
    if (events.length) {
      await store.events.appendMany(events)
      this.o.onEvents?.()
    }
    return outcome
  }

  /**
   * A pass that could not reach its host (an agent or remote emulator killed, paused or cut off: the host-bus
   * client's UNAVAILABLE or DEADLINE_EXCEEDED). What the bus shows is not known any more, so no device may go
   * on saying it is Ready: each device's `Ready` becomes `Unknown` (reason `HostUnreachable`), the other
   * conditions keep what was last seen, and one `HostUnreachable` event marks the episode. The pass is
   * retried with backoff (and at once on the host's next change report); the first pass that reaches the
   * host again computes every status from the bus and stores `HostReachable`.
   */
  private async hostUnreachable(
    hostName: string,
    e: RemoteHostError,
    events: EventInput[],
    ev: (e: Omit<EventInput, 'host'>) => void,
  ): Promise<ReconcileOutcome> {
    const message = `host ${hostName} cannot be reached (${e.status}): what its bus shows is not known`
    this.o.log.warn({ host: hostName, status: e.status, err: e.message }, 'host unreachable')
    if (!this.unreachable.has(hostName)) {
      this.unreachable.add(hostName)
      ev({ kind: 'host', name: hostName, type: 'HostUnreachable', message, data: { status: e.status, error: e.message.slice(0, 512) } })
    }
    await this.markReadyUnknown(hostName, 'HostUnreachable', message, events)
    return { host: hostName, converged: false, drift: false, unreachable: e.status }
  }

  /**
   * The service no longer knows what the bus shows of `hostName` (it cannot be reached, or it has just been
   * rebooted and no pass has read it yet): every device whose `Ready` is True or False turns `Unknown` with
   * `reason`, the other conditions keep what was last seen. Stored with their `MdevStatusChanged` events and
   * `events` in one transaction. The next pass that reads the bus computes every status again.
   */
  async markReadyUnknown(hostName: string, reason: string, message: string, events: EventInput[] = []): Promise<void> {
    const { store } = this.o
    const now = new Date().toISOString()
    const statuses: Array<{ uuid: string; status: MdevStatus }> = []
    for (const r of await store.mdevs.listAll(hostName)) {
      const st = r.status as MdevStatus
      if (st.observedGeneration === undefined || !Array.isArray(st.conditions)) continue
      const ready = st.conditions.find((c) => c.type === 'Ready')
      if (!ready || ready.status === 'Unknown') continue
      const conditions = st.conditions.map((c) => (c.type === 'Ready' ? { ...c, status: 'Unknown' as const, reason, message, lastTransitionTime: now } : c))
      statuses.push({ uuid: r.uuid, status: { ...st, conditions } })
    }
    if (!statuses.length && !events.length) return
    const stored = await store.transaction((tx) => this.storeStatus(tx, hostName, { statuses, events }))
    events.splice(0, stored)
    await this.statusCommitted()
  }

  /**
   * The service has just rebooted `hostName` into boot `bootId` (the emulator's control): `Ready` turns `Unknown`
   * (reason `HostRebooted`) unless a pass of this replica has already read that boot; its statuses are then the
   * new boot's, and marking them would flip a restored device back to Unknown until the next pass.
   */
  async markRebooted(hostName: string, bootId: string, message: string): Promise<void> {
    if (this.seenBoot.get(hostName) === bootId) return
    await this.markReadyUnknown(hostName, 'HostRebooted', message)
  }

  /**
   * Everything of a pass after the lease: see {@link reconcile}. Events go to `ev` (into `events`); the status
   * write at the end stores them in its transaction. Throws ConfigLockBusyError before any write.
   */
  private async pass(host: ManagedHost, token: number, events: EventInput[], ev: (e: Omit<EventInput, 'host'>) => void): Promise<ReconcileOutcome> {
    const { store } = this.o
    const hostName = host.name

    await this.closeAbandonedJournal(host, token)
    await this.checkBoot(host, ev)

    const rows = await store.mdevs.listAll(hostName)
    let masks = await store.masks.get(hostName)
    const desiredOf = (m: typeof masks): DesiredHost => ({
      apmask: maskOrFull(m?.apmask),
      aqmask: maskOrFull(m?.aqmask),
      mdevs: rows.map((r) => ({
        uuid: r.uuid,
        ...r.spec,
        deleting: r.deletionRequestedAt !== null,
        force: r.force,
      })),
    })
    let desired = desiredOf(masks)
    let before = await host.bus.observeTopology()
    let guests = new Map((await host.guests()).map((g) => [g.uuid, g.guest]))
    let plan = planHost(desired, before, (uuid) => guests.get(uuid) ?? null)

    if (masks?.generation === 0 && rows.length === 0) {
      // Observe only: the masks follow the host until a caller sets them, so they never go stale.
      if (masks.apmask !== before.apmask || masks.aqmask !== before.aqmask) {
        const { outcome, record } = await store.masks.adopt(hostName, { apmask: before.apmask, aqmask: before.aqmask })
        if (outcome === 'refreshed') {
          masks = record
          desired = desiredOf(masks)
          plan = planHost(desired, before, (uuid) => guests.get(uuid) ?? null)
          ev({
            kind: 'masks',
            name: 'masks',
            type: 'MasksAdopted',
            message: `the host's masks changed (apmask ${record.apmask}, aqmask ${record.aqmask}) before a desired state was given: adopted again`,
            data: { apmask: record.apmask, aqmask: record.aqmask, generation: record.generation },
          })
        }
      }
      await this.o.hook?.('beforeStatusWrite', hostName)
      await this.writeStatus(hostName, rows, masks, before, guests, plan.deferred, undefined, events, ev)
      return { host: hostName, converged: plan.converged, skipped: 'observe-only', plan, drift: false }
    }

    // Drift: the store says everything was converged at these generations, yet the bus differs.
    const wasConverged =
      rows.every((r) => r.status.observedGeneration === r.generation && r.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) &&
      (!masks || masks.status.observedGeneration === masks.generation)
    const drift = wasConverged && plan.operations.length > 0 && (rows.length > 0 || masks !== null)
    if (drift) {
      ev({
        kind: 'host',
        name: hostName,
        type: 'DriftDetected',
        message: `the bus differs from the desired state: ${plan.operations.map((o) => o.kind).join(', ')}`,
        data: { operations: plan.operations.map(summarizeOp) },
      })
    }

    let execution: ExecutionResult | undefined
    let policy: ResolvedDrainPolicy | undefined
    const pending = this.pendingDrains.get(hostName)
    // Queues a waiting hand-over took offline that no plan moves any more (the device was deleted, the masks
    // changed back): back online, or zcrypt would never give them work again.
    const stranded = (p: Plan) => (pending ? [...pending.offline].filter((q) => !p.drainedQueues.includes(q)) : [])
    if (plan.operations.length > 0 || stranded(plan).length > 0) {
      const r = await this.underConfigLock(this.writeBus(host, token), async (bus, locked) => {
        if (locked) {
          // While this pass waited for the lock, chzdev or mdevctl may have changed the bus: plan from what it is now.
          before = await bus.observeTopology()
          guests = new Map((await host.guests()).map((g) => [g.uuid, g.guest]))
          plan = planHost(desired, before, (uuid) => guests.get(uuid) ?? null)
        }
        await this.restoreOnline(bus, before, stranded(plan))
        if (!plan.drainedQueues.length) this.pendingDrains.delete(hostName)
        if (plan.operations.length === 0) return undefined
        policy = resolveDrainPolicy(
          plan.drainedQueues,
          rows.map((r) => ({ uuid: r.uuid, ...r.spec, deleting: r.deletionRequestedAt !== null })),
          {
            timeoutMs: this.o.drainTimeoutMs,
            onTimeout: this.o.drainOnTimeout,
          },
        )
        const resolved = policy
        const progress = async (p: DrainProgress) => {
          await this.writeStatus(hostName, await store.mdevs.listAll(hostName), masks, before, guests, plan.deferred, undefined, events, ev, {
            policy: resolved,
            remaining: p.remaining,
            offline: p.offline,
            waitedMs: (this.pendingDrains.get(hostName)?.waitedMs ?? 0) + p.waitedMs,
            waiting: (this.pendingDrains.get(hostName)?.waitedMs ?? 0) + p.waitedMs >= resolved.timeoutMs,
            progress: true,
          })
        }
        return this.execute(host, bus, plan, token, ev, resolved, progress)
      })
      execution = r
    } else if (!plan.drainedQueues.length) this.pendingDrains.delete(hostName)

    const after = execution ? await host.bus.observeTopology() : before
    const guestsAfter = execution ? new Map((await host.guests()).map((g) => [g.uuid, g.guest])) : guests
    await this.o.hook?.('beforeStatusWrite', hostName)
    // Read again after a bus write: a device defined while the pass drained (a drain may wait for many seconds)
    // is the one that took the queues, and the requests the hand-over lost are counted on it.
    const rowsNow = execution ? await store.mdevs.listAll(hostName) : rows
    const waitingStep = execution?.waiting
    const drainView: DrainView | undefined =
      waitingStep?.drain && policy
        ? {
            policy,
            remaining: waitingStep.drain.remaining,
            offline: waitingStep.drain.offline,
            waitedMs: this.pendingDrains.get(hostName)?.waitedMs ?? waitingStep.drain.waitedMs,
            waiting: true,
            progress: false,
          }
        : undefined
    await this.writeStatus(hostName, rowsNow, masks, after, guestsAfter, plan.deferred, execution, events, ev, drainView)
    const convergedNow = planHost(desired, after, (uuid) => guestsAfter.get(uuid) ?? null)
    return { host: hostName, converged: convergedNow.converged, plan, execution, drift }
  }

  /**
   * Runs `fn` with the bus it should write through: on a host with an AP configuration lock, inside one
   * hold of it (`locked` true); elsewhere directly. Rejects with ConfigLockBusyError, `fn` not called.
   */
  private underConfigLock<T>(bus: BusPort, fn: (bus: BusPort, locked: boolean) => Promise<T>): Promise<T> {
    return bus.exclusive ? bus.exclusive((b) => fn(b, true)) : fn(bus, false)
  }

  /**
   * The host's bus for this pass's writes (docs/api.md (Reconcile), one replica per host): every write carries
   * the lease (holder, `token`), so a host that checks fences (remote emulator, agent) refuses it once a newer
   * lease wrote, even when the pass's own lease check raced with a takeover. On a host that cannot check a
   * fence (in-process emulator, sysfs) every write instead waits until the lease is known to outlast it.
   */
  private writeBus(host: ManagedHost, token: number): BusPort {
    const fenced = host.bus.withFence?.({ host: host.name, holder: this.o.holder, token }) ?? host.bus
    return fenced.checksFence ? fenced : guardWrites(fenced, () => this.leaseOutlastsWrite(host.name, token))
  }

  /**
   * Executes `plan` through `bus` (see {@link writeBus}). Store writes: the plan's steps are journaled
   * `planned` in one transaction before the first, and each phase's outcomes in one transaction after it. The
   * fence is checked before each phase with a read of the lease row, never a write.
   */
  private async execute(
    host: ManagedHost,
    bus: BusPort,
    plan: Plan,
    token: number,
    ev: (e: Omit<EventInput, 'host'>) => void,
    policy: ResolvedDrainPolicy,
    onDrainProgress: (p: DrainProgress) => Promise<void>,
  ): Promise<ExecutionResult> {
    const { store } = this.o
    const reconcileId = randomUUID()
    const entries = await store.journal.append(plan.operations.map((op, step) => ({ host: host.name, reconcileId, step, operation: journalOperation(op) })))
    // The drain's budget in this pass: what is left of the timeout; past it, `wait` polls one slice and yields.
    const pending = this.pendingDrains.get(host.name)
    const spent = pending?.waitedMs ?? 0
    const slice = Math.max(this.o.drainPollMs, Math.min(this.o.drainWaitSliceMs, policy.timeoutMs))
    const budget = spent < policy.timeoutMs ? policy.timeoutMs - spent : policy.onTimeout === 'wait' ? slice : 0
    const result = await executePlan(
      bus,
      plan,
      {
        drainTimeoutMs: budget,
        onDrainTimeout: policy.onTimeout,
        drainPollMs: this.o.drainPollMs,
        hard: this.o.hardHandOver,
        sleep: this.o.sleep,
        onDrainProgress,
        stopping: () => this.stopping,
      },
      {
        beforePhase: async () => {
          const lease = this.held.get(host.name)
          if (!lease || lease.token !== token) throw new LeaseLostError(host.name, token, 'no longer held by this replica')
          lease.expiresAt = await store.leases.confirmHeld(host.name, this.o.holder, token)
        },
        beforeStep: (step) => this.o.hook?.('beforeBusWrite', host.name, step.op),
        afterStep: async (step) => {
          await this.o.hook?.('afterBusWrite', host.name, step.op)
          if (step.state === 'failed' && step.errno) this.o.metrics?.busWriteError?.(host.name, step.errno)
          this.stepEvents(step, ev, policy, spent)
        },
        afterPhase: async (_phase, steps) => {
          await store.journal.finish(steps.map((st) => ({ id: entries[st.index]!.id, state: st.state, error: st.message })))
        },
      },
    )
    const drainStep = result.steps.find((st) => st.op.kind === 'drainQueues' && st.drain)
    if (result.waiting?.drain) {
      const d = result.waiting.drain
      this.pendingDrains.set(host.name, { waitedMs: spent + d.waitedMs, offline: new Set([...(pending?.offline ?? []), ...d.offline]), reported: true })
      // The steps after the drain did not run and will not: the next pass plans again (not a crash to recover from).
      const ran = new Set(result.steps.map((st) => st.index))
      const unrun = entries.filter((_, i) => !ran.has(i))
      if (unrun.length)
        await store.journal.finish(
          unrun.map((e) => ({ id: e.id, state: 'failed' as const, error: 'not run: the hand-over waits for its drain (policy wait)' })),
        )
    } else {
      this.pendingDrains.delete(host.name)
      if (result.steps.some((st) => st.op.kind === 'takeFromHost' && st.state === 'done'))
        this.o.metrics?.handOver?.(host.name, { lostRequests: result.lostRequests, drainMs: drainStep?.drain ? spent + drainStep.drain.waitedMs : undefined })
    }
    return result
  }

  /** Puts `apqns` back online for new work where they are still host queues (zcrypt `cex4queue`). */
  private async restoreOnline(bus: BusPort, topo: ObservedTopology, apqns: string[]): Promise<void> {
    if (!apqns.length) return
    const want = new Set(apqns)
    for (const q of topo.queues) {
      if (q.driver === 'cex4queue' && want.has(q.apqn))
        await bus.setQueueOnline(q.apqn, true).catch((e: unknown) => {
          if (e instanceof ExecutionAborted) throw e
        })
    }
  }

  private stepEvents(step: StepResult, ev: (e: Omit<EventInput, 'host'>) => void, policy?: ResolvedDrainPolicy, spentBeforeMs = 0): void {
    const op = step.op
    if (step.state === 'failed') {
      ev({
        kind: opTarget(op) ? 'mdev' : 'host',
        name: opTarget(op) ?? '',
        type: 'ReconcileFailed',
        message: `${op.kind} failed: ${step.message}`,
        data: { errno: step.errno ?? null, op: summarizeOp(op) },
      })
      return
    }
    switch (op.kind) {
      case 'createMdev':
        ev({ kind: 'mdev', name: op.uuid, type: 'MdevStarted', message: `matrix device ${op.uuid} created on the bus` })
        break
      case 'removeMdev':
        ev({
          kind: 'mdev',
          name: op.uuid,
          type: 'MdevStopped',
          message: `matrix device ${op.uuid} removed from the bus${op.guest ? ` (guest ${op.guest} was detached: forced)` : ''}`,
        })
        break
      case 'shrinkMdev':
      case 'configureMdev':
        ev({
          kind: 'mdev',
          name: op.uuid,
          type: 'MdevReconfigured',
          message: `matrix of ${op.uuid} set to ${op.to.adapters.length} adapters x ${op.to.domains.length} domains, ${op.to.controlDomains.length} control domains`,
          data: { to: op.to },
        })
        break
      case 'returnToHost':
      case 'takeFromHost':
        ev({
          kind: 'masks',
          name: 'masks',
          type: 'MasksApplied',
          message: `${op.kind === 'returnToHost' ? 'returned' : 'took'} ${op.apqns.length} queues ${op.kind === 'returnToHost' ? 'to' : 'from'} the host drivers`,
          data: { apmask: op.apmask, aqmask: op.aqmask, queues: op.apqns.length },
        })
        for (const [apqn, n] of Object.entries(step.lostByApqn ?? {})) {
          ev({
            kind: 'queue',
            name: apqn,
            type: 'QueueFlushed',
            message: `${n} requests on ${apqn} were lost to the flush (drain ${step.lostRequests ? 'incomplete' : 'complete'})`,
            data: { lost: n },
          })
        }
        break
      case 'drainQueues': {
        // One event per hand-over: a `wait` hand-over reaches its timeout once, however many passes it waits.
        const total = spentBeforeMs + (step.drain?.waitedMs ?? 0)
        const firstTimeout = policy ? spentBeforeMs < policy.timeoutMs || (policy.timeoutMs === 0 && spentBeforeMs === 0) : true
        if (step.drain?.timedOut && firstTimeout)
          ev({
            kind: 'host',
            name: '',
            type: 'DrainTimedOut',
            message: `queues still busy after ${total} ms: ${Object.keys(step.drain.remaining).join(', ')}${
              step.drain.waiting ? ' (policy wait: the hand-over waits until they are idle, no request is lost)' : ' (policy flush: the mask changes now)'
            }`,
            data: { remaining: step.drain.remaining, onTimeout: policy?.onTimeout ?? 'flush', waitedMs: total },
          })
        break
      }
      case 'bindQueue':
        ev({ kind: 'queue', name: op.apqn, type: 'QueueBound', message: `${op.apqn} bound to ${op.driver} again` })
        break
    }
  }

  /**
   * Computes every device's status from what the bus shows now, then stores in one transaction the statuses
   * that changed, the removal of devices whose deletion finished, the masks' status and the pass's `events`
   * (emptied once stored): a crash leaves all of it or none. A pass that changed nothing stores nothing.
   * With `drain`, the devices that take the drained queues show it (Progressing `Draining` or `DrainWaiting`,
   * `status.draining`); a `progress` write, made while the drain waits, leaves the masks' status alone. The
   * masks' status counts every request its hand-overs lost (`lostRequests`), as the devices do for their queues.
   */
  private async writeStatus(
    hostName: string,
    rows: MdevRecord[],
    masks: HostMasksRecord | null,
    after: ObservedTopology,
    guests: Map<string, string>,
    deferred: Deferred[],
    execution: ExecutionResult | undefined,
    events: EventInput[],
    ev: (e: Omit<EventInput, 'host'>) => void,
    drain?: DrainView,
  ): Promise<void> {
    const { store } = this.o
    // Per device, the drained queues it takes with their in-flight counts (0: idle and offline already).
    const drainingOf = new Map<string, Record<string, number>>()
    if (drain) {
      for (const [apqn, uuids] of Object.entries(drain.policy.takers)) {
        for (const uuid of uuids) {
          let m = drainingOf.get(uuid)
          if (!m) drainingOf.set(uuid, (m = {}))
          m[apqn] = drain.remaining[apqn] ?? 0
        }
      }
    }
    const drainMessage = (queues: Record<string, number>): string => {
      const busy = Object.entries(queues).filter(([, n]) => n > 0)
      const list = busy.map(([q, n]) => `${q} (${n})`).join(', ') || 'none'
      const p = drain!.policy
      return drain!.waiting
        ? `queues still busy after ${drain!.waitedMs} ms, past the drain timeout of ${p.timeoutMs} ms: ${list}; policy wait: the hand-over waits until they are idle, no request is lost`
        : `draining queues before they move to this device: ${list} requests in flight; ${drain!.waitedMs} of ${p.timeoutMs} ms, then ${p.onTimeout === 'wait' ? 'keep waiting (policy wait)' : 'flush (policy flush)'}`
    }
    const observed = new Map(after.mdevs.map((m) => [m.uuid, m]))
    const lostByApqn = new Map<string, number>()
    for (const s of execution?.steps ?? []) for (const [q, n] of Object.entries(s.lostByApqn ?? {})) lostByApqn.set(q, (lostByApqn.get(q) ?? 0) + n)
    const turn = createYielder()
    const removed: MdevRecord[] = []
    const statuses: Array<{ uuid: string; status: MdevStatus }> = []
    for (const r of rows) {
      await turn()
      const o = observed.get(r.uuid)
      if (r.deletionRequestedAt && !o) {
        removed.push(r)
        continue
      }
      const failedStep = execution?.failed && opTarget(execution.failed.op) === r.uuid ? execution.failed : undefined
      let lost = 0
      for (const a of r.spec.adapters)
        for (const d of r.spec.domains) lost += lostByApqn.get(`${a.toString(16).padStart(2, '0')}.${d.toString(16).padStart(4, '0')}`) ?? 0
      const previous = (r.status.observedGeneration !== undefined ? r.status : null) as MdevStatus | null
      const status = computeMdevStatus({
        generation: r.generation,
        // A device being deleted is converged once it is off the bus, like a stopped one.
        spec: r.deletionRequestedAt ? { ...r.spec, state: 'stopped' } : r.spec,
        observed: o,
        guest: guests.get(r.uuid) ?? null,
        hostConfig: after.config,
        deferred: deferred.filter((d) => d.uuid === r.uuid),
        failure: failedStep ? { errno: failedStep.errno, message: failedStep.message ?? 'bus operation failed' } : undefined,
        lostRequests: lost,
        ...(drainingOf.has(r.uuid) && !r.deletionRequestedAt
          ? { draining: { queues: drainingOf.get(r.uuid)!, waiting: drain!.waiting, message: drainMessage(drainingOf.get(r.uuid)!) } }
          : {}),
        previous,
        now: new Date(),
      })
      this.transitionEvents(r, previous, status, ev)
      if (JSON.stringify(status) !== JSON.stringify(r.status)) statuses.push({ uuid: r.uuid, status })
    }
    const masksGeneration = masks?.generation
    const lostNow = execution?.lostRequests ?? 0
    const maskStatusOf = (m: HostMasksRecord) => ({
      apmask: after.apmask,
      aqmask: after.aqmask,
      observedGeneration: masksGeneration,
      readAt: new Date().toISOString(),
      lostRequests: (m.status.lostRequests ?? 0) + lostNow,
    })
    const masksDiffer = (m: HostMasksRecord | null) =>
      !!m &&
      !drain?.progress &&
      (m.status.apmask !== after.apmask || m.status.aqmask !== after.aqmask || m.status.observedGeneration !== masksGeneration || lostNow > 0)
    if (this.o.metrics?.hostState && !drain?.progress) this.o.metrics.hostState(hostName, hostCounts(after, rows, statuses))
    // Only this replica (the lease holder) writes statuses: what the pass read is what is stored.
    if (!statuses.length && !removed.length && !events.length && !masksDiffer(masks)) return
    const stored = await store.transaction(async (tx) => {
      const m = await tx.masks.get(hostName)
      return this.storeStatus(tx, hostName, { statuses, removed, masks: m && masksDiffer(m) ? maskStatusOf(m) : undefined, events })
    })
    events.splice(0, stored)
    await this.statusCommitted()
  }

  /** After a transaction with {@link storeStatus} committed: wakes the hub and the read cache (awaited). */
  private async statusCommitted(): Promise<void> {
    this.o.onEvents?.()
    await this.o.afterStatusWrite?.()
  }

  /**
   * THE status write of the reconciler (every write of device or masks status goes through here, in the caller's
   * transaction): stores the devices' statuses, removes the rows of devices whose deletion finished, stores the
   * masks' status, and appends one event per object written, so other replicas' read caches learn of it from
   * the event log (`MdevStatusChanged`, `MdevDeleted`, `MasksStatusChanged`; docs/api.md (Events)), followed by
   * `events`. Appending is the last step (it serialises writers until commit, event-repo.ts). Returns how many
   * of `events` were stored (all of them). After the commit the caller awaits {@link statusCommitted}.
   */
  private async storeStatus(
    tx: Repos,
    hostName: string,
    w: { statuses: Array<{ uuid: string; status: MdevStatus }>; removed?: MdevRecord[]; masks?: MasksStatus | undefined; events?: EventInput[] },
  ): Promise<number> {
    const out: EventInput[] = []
    const byUuid = new Map(w.statuses.map((s) => [s.uuid, s.status]))
    for (const { uuid, resourceVersion } of await tx.mdevs.setStatuses(hostName, w.statuses)) {
      out.push(mdevStatusEvent(hostName, uuid, resourceVersion, byUuid.get(uuid)!))
    }
    for (const r of w.removed ?? []) {
      const gone = await tx.mdevs.delete(r.host, r.uuid).then(
        () => true,
        (e: unknown) => {
          // Deleted meanwhile (another replica, after a takeover): nothing left to remove.
          if (!(e instanceof ApmatrixError && e.code === 'NOT_FOUND')) throw e
          return false
        },
      )
      if (gone)
        out.push({ host: hostName, actor: 'reconciler', kind: 'mdev', name: r.uuid, type: 'MdevDeleted', message: `matrix device ${r.uuid} deleted`, data: {} })
    }
    if (w.masks) {
      const rec = await tx.masks.setStatus(hostName, w.masks)
      out.push({
        host: hostName,
        actor: 'reconciler',
        kind: 'masks',
        name: 'masks',
        type: 'MasksStatusChanged',
        message: `masks on the bus: apmask ${w.masks.apmask} aqmask ${w.masks.aqmask}`,
        data: {
          resourceVersion: rec.resourceVersion,
          generation: rec.generation,
          observedGeneration: w.masks.observedGeneration ?? null,
          applied: rec.apmask === w.masks.apmask && rec.aqmask === w.masks.aqmask,
        },
      })
    }
    const extra = w.events ?? []
    await tx.events.appendMany([...out, ...extra])
    return extra.length
  }

  private transitionEvents(r: MdevRecord, prev: MdevStatus | null, next: MdevStatus, ev: (e: Omit<EventInput, 'host'>) => void): void {
    const was = (t: string) => prev?.conditions.find((c) => c.type === t)?.status === 'True'
    const is = (t: string) => next.conditions.find((c) => c.type === t)?.status === 'True'
    if (!was('AdapterFiltered') && is('AdapterFiltered')) {
      ev({ kind: 'mdev', name: r.uuid, type: 'AdapterFiltered', message: next.conditions.find((c) => c.type === 'AdapterFiltered')!.message })
    }
    if ((prev?.guest ?? null) !== next.guest) {
      if (prev?.guest) ev({ kind: 'mdev', name: r.uuid, type: 'GuestDetached', message: `guest ${prev.guest} closed ${r.uuid}` })
      if (next.guest) ev({ kind: 'mdev', name: r.uuid, type: 'GuestAttached', message: `guest ${next.guest} opened ${r.uuid}` })
    }
  }

  /**
   * Steps a crashed run left `planned`: their outcome is unknown; the fresh plan redoes what is missing. A drain
   * that was interrupted may have left host queues offline (zcrypt `online=0`) that the mask never moved: they
   * are put back online, since nothing else would (an operator's own offline queues are not touched).
   */
  private async closeAbandonedJournal(host: ManagedHost, token: number): Promise<void> {
    const open = await this.o.store.journal.listOpen(host.name)
    if (!open.length) return
    const drained = new Set<string>()
    for (const e of open) for (const q of drainedApqns(e.operation)) drained.add(q)
    if (drained.size) {
      // Bus writes: under the AP configuration lock like every other write of a pass.
      await this.underConfigLock(this.writeBus(host, token), async (bus) => {
        const topo = await bus.observeTopology()
        const turn = createYielder()
        for (const q of topo.queues) {
          await turn()
          if (q.driver === 'cex4queue' && drained.has(q.apqn))
            await bus.setQueueOnline(q.apqn, true).catch((e: unknown) => {
              if (e instanceof ExecutionAborted) throw e
            })
        }
      })
    }
    // Closed together with their event: a crash later in this pass must not lose the record that steps were abandoned.
    await this.o.store.transaction(async (tx) => {
      const error = 'abandoned: the reconcile that planned it did not finish (crash or lease loss)'
      await tx.journal.finish(open.map((e) => ({ id: e.id, state: 'failed' as const, error })))
      await tx.events.append({
        host: host.name,
        kind: 'host',
        name: host.name,
        type: 'ReconcileResumed',
        actor: 'reconciler',
        message: `${open.length} steps of an interrupted reconcile were abandoned; re-planning from the bus`,
      })
    })
  }

  private async checkBoot(host: ManagedHost, ev: (e: Omit<EventInput, 'host'>) => void): Promise<void> {
    const info = await host.info()
    const rec = await this.o.store.hosts.get(host.name).catch(() => null)
    // The service re-registers a host it rebooted itself (REST `POST .../emulator/reboot`), so the stored
    // bootId can already be the new one: the boot this replica last reconciled counts as well.
    const seen = this.seenBoot.get(host.name)
    this.seenBoot.set(host.name, info.bootId)
    const storedDiffers = rec !== null && rec.bootId !== info.bootId
    if (storedDiffers) {
      // The new boot id shows (GET host) only once no device claims Ready from the old boot's bus.
      await this.markReadyUnknown(host.name, 'HostRebooted', `host ${host.name} rebooted: its bus is read again and the desired state restored`, [])
      await this.o.store.hosts.upsert({ ...rec, bootId: info.bootId })
    }
    if (storedDiffers || (seen !== undefined && seen !== info.bootId)) {
      ev({ kind: 'host', name: host.name, type: 'HostBooted', message: `host ${host.name} rebooted (boot id ${info.bootId}); restoring the desired state` })
    }
  }
}

/**
 * `MdevStatusChanged`: a device's stored status changed. Small: the new resourceVersion and the Ready summary
 * (what a console needs to redraw a row; the object itself is one GET away).
 */
function mdevStatusEvent(host: string, uuid: string, resourceVersion: string, status: MdevStatus): EventInput {
  const ready = status.conditions.find((c) => c.type === 'Ready')
  return {
    host,
    actor: 'reconciler',
    kind: 'mdev',
    name: uuid,
    type: 'MdevStatusChanged',
    message: `matrix device ${uuid} status: Ready ${ready?.status ?? 'Unknown'}${ready?.reason ? ` (${ready.reason})` : ''}`,
    data: {
      resourceVersion,
      observedGeneration: status.observedGeneration,
      ready: ready?.status ?? 'Unknown',
      reason: ready?.reason ?? null,
      guest: status.guest ?? null,
    },
  }
}

function summarizeOp(op: PlanOp): Record<string, unknown> {
  switch (op.kind) {
    case 'returnToHost':
    case 'takeFromHost':
    case 'drainQueues':
      return { kind: op.kind, queues: op.apqns.length }
    default:
      return { ...op }
  }
}
