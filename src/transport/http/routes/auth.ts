/**
 * The caller's own identity (docs/security.md): `GET /v1/auth/whoami`, what `apmatrix auth whoami` prints; and
 * the audit trail, `GET /v1/audit` (admin).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { ApmatrixService } from '../../../service/index.js'
import { Type } from 'typebox'
import { readContext } from '../call-context.js'
import * as S from '../schemas.js'

const AuditQuery = Type.Object(
  {
    target: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    actor: Type.Optional(Type.String({ minLength: 1, maxLength: 512, description: 'transport:source:subject, e.g. rest:jwt:alice' })),
    outcome: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'ok, or an error code (PERMISSION_DENIED, ...)' })),
    // Audit ids are the store's 32-bit autoincrement keys: a larger position is no position (and a 500 from the store).
    afterId: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 })),
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
        summary:
          'The audit trail (admin): mutations and refusals with subject, roles, transport, request id, outcome; filters target, actor, outcome (exact); afterId pages',
        querystring: AuditQuery,
        response: S.responses({ 200: S.AuditPageOut }),
      },
    },
    async (req) => service.listAudit(req.query),
  )

  app.get(
    '/auth/whoami',
    { schema: { tags: ['auth'], summary: 'The subject and roles the service sees for this caller', response: S.responses({ 200: S.WhoAmIOut }) } },
    async (req) => service.whoAmI(readContext(req)),
  )
}
