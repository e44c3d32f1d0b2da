/** The caller's own identity (docs/security.md): `GET /v1/auth/whoami`, what `apmatrix auth whoami` prints. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { ApmatrixService } from '../../../service/index.js'
import { Type } from 'typebox'
import * as S from '../schemas.js'

const AuditQuery = Type.Object(
  {
    target: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    afterId: Type.Optional(Type.Integer({ minimum: 0 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
  },
  { additionalProperties: false },
)

export const authRoutes: FastifyPluginAsyncTypebox<{ service: ApmatrixService }> = async (app, { service }) => {
  app.get(
    '/audit',
    {
      schema: {
        tags: ['auth'],
        summary: 'The audit trail (admin): mutations and refusals with subject, roles, transport, request id, outcome; afterId pages',
        querystring: AuditQuery,
        response: S.responses({ 200: S.AuditPageOut }),
      },
    },
    async (req) => service.listAudit(req.query),
  )

  app.get(
    '/auth/whoami',
    { schema: { tags: ['auth'], summary: 'The subject and roles the service sees for this caller', response: S.responses({ 200: S.WhoAmIOut }) } },
    async (req) => {
      const p = req.principal
      return { subject: p.subject, source: p.source, roles: [...p.roles], groups: [...p.groups], hosts: p.hosts ? [...p.hosts] : null, tenant: p.tenant }
    },
  )
}
