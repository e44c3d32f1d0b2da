/** The caller's own identity (docs/security.md): `GET /v1/auth/whoami`, what `apmatrix auth whoami` prints. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { ApmatrixService } from '../../../service/index.js'
import * as S from '../schemas.js'

export const authRoutes: FastifyPluginAsyncTypebox<{ service: ApmatrixService }> = async (app) => {
  app.get(
    '/auth/whoami',
    { schema: { tags: ['auth'], summary: 'The subject and roles the service sees for this caller', response: S.responses({ 200: S.WhoAmIOut }) } },
    async (req) => {
      const p = req.principal
      return { subject: p.subject, source: p.source, roles: [...p.roles], groups: [...p.groups], hosts: p.hosts ? [...p.hosts] : null, tenant: p.tenant }
    },
  )
}
