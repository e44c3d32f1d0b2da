/** `GET /metrics` and the HTTP request duration histogram (docs/operations.md (Metrics)). */
import type { FastifyInstance } from 'fastify'
import { ApmatrixMetrics } from '../../observability/metrics.js'

/**
 * Registers the duration hook and `GET /metrics` on `app`. Without `metrics` the app gets a registry of its own
 * (apps built side by side in one process, as tests do, do not clash).
 */
export function registerMetrics(app: FastifyInstance, metrics: ApmatrixMetrics = new ApmatrixMetrics()): ApmatrixMetrics {
  app.addHook('onResponse', async (req, reply) => {
    // The route pattern, not the URL: label cardinality stays bounded.
    metrics.httpDuration.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    )
  })
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.type(metrics.registry.contentType)
    return metrics.registry.metrics()
  })
  return metrics
}
