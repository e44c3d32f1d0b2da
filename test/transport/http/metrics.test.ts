/** GET /metrics serves the hand-over metrics the reconciler feeds (ApmatrixMetrics.handOver) beside the HTTP ones. */
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { ApmatrixMetrics } from '../../../src/observability/metrics.js'
import { registerMetrics } from '../../../src/transport/http/metrics.js'

t.test('hand-over metrics: lost requests counted per host, drain time observed', async (t) => {
  const m = new ApmatrixMetrics()
  const app = Fastify()
  t.teardown(() => app.close())
  registerMetrics(app as unknown as FastifyInstance, m)
  m.handOver('a', { lostRequests: 3, drainMs: 30_000 })
  m.handOver('a', { lostRequests: 2, drainMs: 500 })
  m.handOver('b', { lostRequests: 0 })
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.body, /^apmatrix_handover_lost_requests_total\{host="a"\} 5$/m)
  t.match(res.body, /^apmatrix_handover_lost_requests_total\{host="b"\} 0$/m, 'a host whose hand-overs lost nothing has its series')
  t.match(res.body, /^apmatrix_handover_drain_seconds_count\{host="a"\} 2$/m)
  t.match(res.body, /^apmatrix_handover_drain_seconds_sum\{host="a"\} 30\.5$/m)
  t.notMatch(res.body, /apmatrix_handover_drain_seconds_count\{host="b"\}/, 'no drain, no observation')
})
