/** Hosts, inventory and host masks (docs/api.md (REST)). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { ApmatrixService } from '../../../service/index.js'
import { callContext, readContext, setEtag, setStale } from '../call-context.js'
import * as S from '../schemas.js'

export const hostRoutes: FastifyPluginAsyncTypebox<{ service: ApmatrixService }> = async (app, { service }) => {
  app.get(
    '/hosts',
    { schema: { tags: ['hosts'], summary: 'List the hosts the caller may read', response: S.responses({ 200: S.HostListOut }) } },
    async (req) => ({
      items: await service.listHosts(readContext(req)),
    }),
  )

  app.get('/hosts/:host', { schema: { tags: ['hosts'], params: S.HostParams, response: S.responses({ 200: S.HostOut }) } }, async (req) =>
    service.getHost(req.params.host),
  )

  app.get('/hosts/:host/adapters', { schema: { tags: ['inventory'], params: S.HostParams, response: S.responses({ 200: S.AdapterListOut }) } }, async (req) =>
    service.listAdapters(req.params.host),
  )

  app.get(
    '/hosts/:host/queues',
    { schema: { tags: ['inventory'], params: S.HostParams, querystring: S.QueueQuery, response: S.responses({ 200: S.QueuePageOut }) } },
    async (req) => service.listQueues(req.params.host, req.query, readContext(req)),
  )

  app.get(
    '/hosts/:host/bus-mdevs',
    {
      schema: {
        tags: ['inventory'],
        summary: 'Every matrix device on the bus, managed or not (a tenant: its own only)',
        params: S.HostParams,
        response: S.responses({ 200: S.BusMdevListOut }),
      },
    },
    async (req) => service.listBusMdevs(req.params.host, readContext(req)),
  )

  app.get('/hosts/:host/domains', { schema: { tags: ['inventory'], params: S.HostParams, response: S.responses({ 200: S.DomainsOut }) } }, async (req) =>
    service.listDomains(req.params.host),
  )

  app.get('/hosts/:host/masks', { schema: { tags: ['masks'], params: S.HostParams, response: S.responses({ 200: S.MasksOut }) } }, async (req, reply) => {
    const r = await service.readMasks(req.params.host)
    setEtag(reply, r.value.metadata.resourceVersion)
    setStale(reply, r.staleMs)
    return r.value
  })

  app.put(
    '/hosts/:host/masks',
    {
      schema: {
        tags: ['masks'],
        summary: 'Set the desired masks (kernel syntax, relative to the desired mask, or id arrays)',
        params: S.HostParams,
        querystring: S.DryRunQuery,
        headers: S.IfMatchHeaders,
        body: S.MasksIn,
        response: S.responses({ 200: { anyOf: [S.MasksOut, S.DryRunOut] } as never }),
      },
    },
    async (req, reply) => {
      const out = await service.setMasks(req.params.host, req.body, callContext(req, req.query))
      if (out.dryRun) return { dryRun: true, plan: out.plan }
      setEtag(reply, out.result.metadata.resourceVersion)
      return out.result
    },
  )
}
