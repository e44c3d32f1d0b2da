/** Prometheus metrics of one app: default process metrics, a request duration histogram, and the hand-over's. */
import type { FastifyInstance } from 'fastify'
import { collectDefaultMetrics, Counter, Histogram, type Metric, Registry } from 'prom-client'

/**
 * The hand-over metrics (docs/api.md (Metrics)), fed by the reconciler at the one place it learns of a loss
 * (main.ts passes the same object to the reconciler as its `metrics` and to {@link registerMetrics}):
 * `apmatrix_handover_lost_requests_total{host}`, the requests flushed by mask changes (the sum of the
 * QueueFlushed events), and `apmatrix_handover_drain_seconds{host}`, the drain time of each hand-over.
 */
export class HandOverMetrics {
  private readonly lost = new Counter({
    name: 'apmatrix_handover_lost_requests_total',
    help: 'Requests flushed when queues were handed over without a complete drain, by host',
    labelNames: ['host'] as const,
    registers: [],
  })
  private readonly drain = new Histogram({
    name: 'apmatrix_handover_drain_seconds',
    help: 'Drain time of a hand-over (all the passes it waited in), by host',
    labelNames: ['host'] as const,
    buckets: [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600],
    registers: [],
  })

  /** A hand-over's mask change ran on `host`, having lost `lostRequests` after draining for `drainMs` (if it drained). */
  handOver(host: string, o: { lostRequests: number; drainMs?: number }): void {
    // inc(0) too: the series of a host exists from its first hand-over, so a rate() over it is defined.
    this.lost.inc({ host }, o.lostRequests)
    if (o.drainMs !== undefined) this.drain.observe({ host }, o.drainMs / 1000)
  }

  /** The metrics to register. */
  get metrics(): Metric[] {
    return [this.lost, this.drain]
  }
}

/**
 * Registers the hooks and `GET /metrics` on `app`, with a registry of its own (apps in one process do not
 * clash); `extra` metrics (e.g. {@link HandOverMetrics.metrics}) are served from it as well.
 */
export function registerMetrics(app: FastifyInstance, extra: Metric[] = []): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  for (const m of extra) registry.registerMetric(m)
  const duration = new Histogram({
    name: 'apmatrix_http_request_duration_seconds',
    help: 'HTTP request duration by method, route and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  })
  app.addHook('onResponse', async (req, reply) => {
    // The route pattern, not the URL: label cardinality stays bounded.
    duration.observe({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) }, reply.elapsedTime / 1000)
  })
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.type(registry.contentType)
    return registry.metrics()
  })
  return registry
}
