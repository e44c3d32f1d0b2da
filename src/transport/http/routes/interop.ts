/**
 * Interop routes (docs/api.md (REST), issue 4 §4): export a matrix device as an mdevctl definition, a libvirt
 * node-device XML or a libvirt guest hostdev snippet; import an `mdevctl list --defined --dumpjson`
 * document (JSON) or a node-device XML (`application/xml`, `text/xml`). Thin: the service does the work.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { ApmatrixService } from '../../../service/index.js'
import { callContext, readContext } from '../call-context.js'
import * as S from '../schemas.js'

/** Largest XML body (the XML parser's own bound, interop/xml.ts MAX_XML_CHARS, is the same 1 MiB). */
export const XML_BODY_LIMIT = 1 << 20

const Format = (values: readonly string[]) => Type.String({ minLength: 1, maxLength: 32, description: values.join(' | ') })

const ExportQuery = Type.Object({ format: Format(['mdevctl', 'libvirt-nodedev', 'libvirt-hostdev']) }, { additionalProperties: false })
const ImportQuery = Type.Object(
  {
    format: Format(['mdevctl', 'libvirt-nodedev']),
    dryRun: Type.Optional(Type.Boolean()),
    view: S.PlanViewParam,
    owner: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'owner of the devices the import creates' })),
    state: Type.Optional(
      Type.Union([Type.Literal('started'), Type.Literal('stopped')], { description: 'libvirt-nodedev only (the XML has no state); default stopped' }),
    ),
  },
  { additionalProperties: false },
)
const ImportBody = Type.Unknown({
  description: 'format=mdevctl: an `mdevctl list --defined --dumpjson` document (JSON); format=libvirt-nodedev: a node-device XML',
})
const ImportOut = Type.Object({
  items: Type.Array(S.MdevOut),
  actions: Type.Array(Type.Object({ uuid: Type.String(), action: Type.String() })),
  skipped: Type.Array(Type.Object({ parent: Type.String(), uuid: Type.String(), mdevType: Type.Optional(Type.String()), reason: Type.String() })),
})

export const interopRoutes: FastifyPluginAsyncTypebox<{ service: ApmatrixService }> = async (app, { service }) => {
  // Encapsulated: only these routes take XML; elsewhere it stays 415.
  const limit = Math.min(app.initialConfig.bodyLimit ?? XML_BODY_LIMIT, XML_BODY_LIMIT)
  app.addContentTypeParser(['application/xml', 'text/xml'], { parseAs: 'string', bodyLimit: limit }, (_req, body, done) => done(null, body))

  app.get(
    '/hosts/:host/mdevs/:uuid/export',
    {
      schema: {
        tags: ['interop'],
        summary: 'Export a matrix device: mdevctl definition (JSON), libvirt node-device or hostdev XML',
        params: S.MdevParams,
        querystring: ExportQuery,
        response: S.responses({ 200: { type: 'string' } as never }),
      },
    },
    async (req, reply) => {
      const doc = await service.exportMdev(req.params.host, req.params.uuid, req.query.format, readContext(req))
      return reply.type(`${doc.contentType}; charset=utf-8`).send(doc.body)
    },
  )

  app.post(
    '/hosts/:host/import',
    {
      schema: {
        tags: ['interop'],
        summary: 'Import matrix devices (all or nothing): an mdevctl --dumpjson document or a libvirt node-device XML',
        params: S.HostParams,
        querystring: ImportQuery,
        headers: S.IdempotencyHeaders,
        // Documentation of the body: the service parses and checks it (either format, any size up to the limit).
        consumes: ['application/json', 'application/xml', 'text/xml'],
        body: ImportBody,
        response: S.responses({ 200: { anyOf: [ImportOut, S.DryRunOut] } as never, 201: ImportOut }),
      },
    },
    async (req, reply) => {
      const { format, dryRun, view, owner, state } = req.query
      const ctx = { ...callContext(req, { dryRun, view }), ...(owner !== undefined ? { owner } : {}), ...(state !== undefined ? { state } : {}) }
      const out = await service.importMdevs(req.params.host, format, req.body, ctx)
      if (out.dryRun) return reply.code(200).send({ dryRun: true, plan: out.plan })
      if (out.replayed) reply.header('idempotent-replayed', 'true')
      return reply.code(out.created ? 201 : 200).send(out.result)
    },
  )
}
