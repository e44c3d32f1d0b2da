/** Whole-host desired state: declarative apply and dry-run plan (docs/api.md (REST)). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { ApmatrixService } from '../../../service/index.js'
import { callContext } from '../call-context.js'
import * as S from '../schemas.js'

export const desiredRoutes: FastifyPluginAsyncTypebox<{ service: ApmatrixService }> = async (app, { service }) => {
  app.put(
    '/hosts/:host/desired',
    {
      schema: {
        tags: ['desired'],
        summary: "Apply a host's whole desired state atomically; devices of the same owner that the document omits are deleted",
        params: S.HostParams,
        querystring: S.DryRunQuery,
        headers: S.IfMatchHeaders,
        body: S.DesiredIn,
        response: S.responses({ 200: { anyOf: [S.ApplyOut, S.DryRunOut] } as never }),
      },
    },
    async (req) => {
      const out = await service.applyDesired(req.params.host, req.body, callContext(req, req.query))
      return out.dryRun ? { dryRun: true as const, plan: out.plan } : out.result
    },
  )

  app.post(
    '/hosts/:host/plan',
    {
      schema: {
        tags: ['desired'],
        summary: 'Dry-run plan of a desired document or of one device change; never stores',
        params: S.HostParams,
        querystring: S.PlanQuery,
        body: S.PlanIn,
        response: S.responses({ 200: S.PlanOut }),
      },
    },
    async (req) => service.plan(req.params.host, req.body, req.query.view),
  )
}
