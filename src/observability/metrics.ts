/**
 * The service's Prometheus metrics (docs/operations.md (Metrics)), in one registry served at `GET /metrics`.
 *
 * The controller part uses the names and labels of controller-runtime and client-go's workqueue, so existing
 * dashboards and alerts read them (`controller_runtime_reconcile_total`, `workqueue_depth`, ...), with `controller`
 * always `apmatrix` and, where the figure is per host, a `host` label. Cardinality stays bounded: labels are host
 * names (configured), condition types, owner kinds, result words, store operation kinds and errno names; never a
 * request, a device or an APQN.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { ReconcilerMetrics } from '../reconciler/reconciler.js'
import type { WorkQueueMetrics } from '../reconciler/work-queue.js'

/** The controller label value. */
export const CONTROLLER = 'apmatrix'
/** The work queue name label value. */
export const WORKQUEUE = 'hosts'

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** Who an APQN belongs to, as the `owner` label of `apmatrix_apqns`. */
export type ApqnOwnerKind = 'host' | 'device' | 'free'

/** Figures read at scrape time from the parts that own them. */
export interface MetricSources {
  /** Event fan-out: live subscribers and the largest lag (events) of any of them. */
  events?: () => { subscribers: number; maxLag: number; position: number }
}

/** All metrics of one service process. Construct once (main.ts) and hand the parts what they record. */
export class ApmatrixMetrics {
  readonly registry = new Registry()

  readonly reconcileTotal = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Reconcile passes per host by result (success, error, requeue, requeue_after)',
    labelNames: ['controller', 'host', 'result'] as const,
    registers: [this.registry],
  })
  readonly reconcileErrors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Reconcile passes per host that ended in an error',
    labelNames: ['controller', 'host'] as const,
    registers: [this.registry],
  })
  readonly reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Duration of one reconcile pass per host',
    labelNames: ['controller', 'host'] as const,
    buckets: SECONDS,
    registers: [this.registry],
  })
  readonly activeWorkers = new Gauge({
    name: 'controller_runtime_active_workers',
    help: 'Reconcile workers busy with a host now',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  })
  readonly maxConcurrentReconciles = new Gauge({
    name: 'controller_runtime_max_concurrent_reconciles',
    help: 'Hosts reconciled at once at most',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  })

  readonly workqueueDepth = new Gauge({
    name: 'workqueue_depth',
    help: 'Hosts waiting in the work queue',
    labelNames: ['name'] as const,
    registers: [this.registry],
  })
  readonly workqueueAdds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Hosts added to the work queue',
    labelNames: ['name'] as const,
    registers: [this.registry],
  })
  readonly workqueueRetries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Rate-limited requeues (a pass that failed or did not converge)',
    labelNames: ['name'] as const,
    registers: [this.registry],
  })
  readonly workqueueQueueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long a host waited in the work queue before a worker took it',
    labelNames: ['name'] as const,
    buckets: SECONDS,
    registers: [this.registry],
  })
  readonly workqueueWorkDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long a worker held a host',
    labelNames: ['name'] as const,
    buckets: SECONDS,
    registers: [this.registry],
  })

  readonly mdevs = new Gauge({
    name: 'apmatrix_mdevs',
    help: 'Matrix devices per host by condition (a device counts once for each condition that is True; `total` counts every device)',
    labelNames: ['host', 'condition'] as const,
    registers: [this.registry],
  })
  readonly apqns = new Gauge({
    name: 'apmatrix_apqns',
    help: 'APQNs of a host by owner: host (default drivers), device (a matrix device), free (for vfio_ap, unassigned)',
    labelNames: ['host', 'owner'] as const,
    registers: [this.registry],
  })
  readonly lostRequests = new Counter({
    name: 'apmatrix_handover_lost_requests_total',
    help: 'Requests lost to a forced flush when queues moved from the host to a matrix device',
    labelNames: ['host'] as const,
    registers: [this.registry],
  })
  readonly drainDuration = new Histogram({
    name: 'apmatrix_handover_drain_seconds',
    help: 'Drain time of a hand-over (all the passes it waited in), by host',
    labelNames: ['host'] as const,
    buckets: [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600],
    registers: [this.registry],
  })
  readonly leaseHeld = new Gauge({
    name: 'apmatrix_lease_held',
    help: '1 when this replica holds the lease of the host (it is the one driving it), else 0',
    labelNames: ['host'] as const,
    registers: [this.registry],
  })
  readonly busWriteErrors = new Counter({
    name: 'apmatrix_bus_write_errors_total',
    help: 'AP bus writes that failed, per host by errno',
    labelNames: ['host', 'errno'] as const,
    registers: [this.registry],
  })
  readonly storeDuration = new Histogram({
    name: 'apmatrix_store_operation_duration_seconds',
    help: 'Store operations (transaction, read) by kind',
    labelNames: ['operation'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  })
  readonly storeErrors = new Counter({
    name: 'apmatrix_store_errors_total',
    help: 'Store operations that failed, by kind and error code',
    labelNames: ['operation', 'code'] as const,
    registers: [this.registry],
  })
  readonly httpDuration = new Histogram({
    name: 'apmatrix_http_request_duration_seconds',
    help: 'HTTP request duration by method, route and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  })

  readonly retentionDeleted = new Counter({
    name: 'apmatrix_retention_deleted_total',
    help: 'Rows retention removed, by table (events, audit, journal, idempotency)',
    labelNames: ['table'] as const,
    registers: [this.registry],
  })
  readonly eventLogFloor = new Gauge({
    name: 'apmatrix_event_log_floor',
    help: 'Compaction floor of the event log after the last retention pass: events up to this seq are gone',
    registers: [this.registry],
  })

  /** Condition types each host's gauge has a series for (so one that disappears is set to 0). */
  private readonly conditionsSeen = new Map<string, Set<string>>()

  constructor(sources: MetricSources = {}) {
    collectDefaultMetrics({ register: this.registry })
    const events = sources.events
    new Gauge({
      name: 'apmatrix_event_subscribers',
      help: 'Live event watchers (SSE and gRPC Watch)',
      registers: [this.registry],
      collect() {
        this.set(events ? events().subscribers : 0)
      },
    })
    new Gauge({
      name: 'apmatrix_event_subscriber_max_lag_events',
      help: 'Events the furthest-behind watcher has yet to receive',
      registers: [this.registry],
      collect() {
        this.set(events ? events().maxLag : 0)
      },
    })
    new Gauge({
      name: 'apmatrix_event_log_position',
      help: 'Newest event sequence number dispatched to watchers',
      registers: [this.registry],
      collect() {
        this.set(events ? events().position : 0)
      },
    })
  }

  /**
   * A hand-over's mask change ran on `host` (the reconciler, at the one place it learns of a loss): `lostRequests`
   * flushed (the sum of its QueueFlushed events), `drainMs` the drain time of the whole hand-over, if it drained.
   * The lost-requests series of a host exists from its first hand-over (inc by 0), so rate() over it is defined.
   */
  handOver(host: string, o: { lostRequests: number; drainMs?: number }): void {
    this.lostRequests.inc({ host }, o.lostRequests)
    if (o.drainMs !== undefined) this.drainDuration.observe({ host }, o.drainMs / 1000)
  }

  /** A retention pass (src/store/retention.ts) ended: what it removed per table, and the event log's floor. */
  retentionPass(r: { deleted: Record<string, number>; floors: { events: number } }): void {
    for (const [table, n] of Object.entries(r.deleted)) this.retentionDeleted.inc({ table }, n)
    this.eventLogFloor.set(r.floors.events)
  }

  /** What the reconciler reports, recorded here (controller-runtime, workqueue and the per-host gauges). */
  reconciler(): ReconcilerMetrics {
    const controller = CONTROLLER
    return {
      handOver: (host, o) => this.handOver(host, o),
      pass: (host, result, seconds) => {
        this.reconcileTotal.inc({ controller, host, result })
        if (result === 'error') this.reconcileErrors.inc({ controller, host })
        this.reconcileTime.observe({ controller, host }, seconds)
      },
      workers: (busy, max) => {
        this.activeWorkers.set({ controller }, busy)
        this.maxConcurrentReconciles.set({ controller }, max)
      },
      lease: (host, held) => this.leaseHeld.set({ host }, held ? 1 : 0),
      hostState: (host, st) => {
        for (const [owner, n] of Object.entries(st.apqns)) this.apqns.set({ host, owner }, n)
        // A condition no device has any more reads 0, not its last value.
        const seen = this.conditionsSeen.get(host) ?? new Set<string>()
        this.conditionsSeen.set(host, seen)
        for (const c of seen) if (!(c in st.mdevs)) this.mdevs.set({ host, condition: c }, 0)
        for (const [condition, n] of Object.entries(st.mdevs)) {
          seen.add(condition)
          this.mdevs.set({ host, condition }, n)
        }
      },
      busWriteError: (host, errno) => this.busWriteErrors.inc({ host, errno: /^E[A-Z0-9]{1,15}$/.test(errno) ? errno : 'other' }),
      workQueue: workQueueMetrics(this),
    }
  }

  /** The names of every metric this registry exports (the dashboard test checks its queries against them). */
  names(): string[] {
    return this.registry.getMetricsAsArray().map((m) => m.name)
  }

  /** Records one store operation (StoreOptions.observe): its duration, and its error code when it failed. */
  readonly storeOperation = (kind: string, seconds: number, errorCode?: string): void => {
    this.storeDuration.observe({ operation: kind }, seconds)
    if (errorCode) this.storeErrors.inc({ operation: kind, code: errorCode })
  }
}

/** The work queue's view of {@link ApmatrixMetrics}. */
export function workQueueMetrics(m: ApmatrixMetrics, name = WORKQUEUE): WorkQueueMetrics {
  return {
    added: () => m.workqueueAdds.inc({ name }),
    depth: (n) => m.workqueueDepth.set({ name }, n),
    retried: () => m.workqueueRetries.inc({ name }),
    waited: (s) => m.workqueueQueueDuration.observe({ name }, s),
    worked: (s) => m.workqueueWorkDuration.observe({ name }, s),
  }
}
