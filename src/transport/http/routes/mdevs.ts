/** Matrix devices (docs/api.md (REST)): CRUD, merge patch, If-Match, Idempotency-Key, dryRun. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ApmatrixError } from '../../../domain/errors.js'
import type { ApmatrixService, MdevView, Mutation } from '../../../service/index.js'
import type { FastifyReply } from 'fastify'
import { callContext, noneMatchHit, readContext, setEtag, setStale } from '../call-context.js'
import * as S from '../schemas.js'
import { clip } from '../../../domain/text.js'

const MERGE_PATCH = 'application/merge-patch+json'
const JSON_TYPE = 'application/json; charset=utf-8'
const PAGE_HEAD = '{"items":['
const PAGE_TAIL = ']}'
// The few reply methods used here; route replies differ in their schema generics.
interface ReplyLike {
  code(status: number): ReplyLike
  header(name: string, value: string): unknown
  send(payload: unknown): unknown
}
const MdevOrDryRun = { anyOf: [S.MdevOut, S.DryRunOut] } as never

export const mdevRoutes: FastifyPluginAsyncTypebox<{ service: ApmatrixService }> = async (app, { service }) => {
  const answer = (reply: ReplyLike, out: Mutation<MdevView>, status = 200) => {
    if (out.dryRun) return reply.code(200).send({ dryRun: true, plan: out.plan })
    setEtag(reply, out.result.metadata.resourceVersion)
    // The answer comes from an earlier request with the same Idempotency-Key.
    if (out.replayed) reply.header('idempotent-replayed', 'true')
    return reply.code(status).send(out.result)
  }

  // Pre-serialised answers (docs/api.md (Conventions) "Reads"): the read cache hands out one frozen view per device version, so
  // its JSON (made by the route's own response serialiser: the same bytes as before) is built once per version.
  const json = new WeakMap<MdevView, string>()
  let serializeMdev: ((v: unknown) => string) | undefined
  const mdevJson = (reply: FastifyReply, m: MdevView): string => {
    let out = json.get(m)
    if (out === undefined) {
      serializeMdev ??= (reply.getSerializationFunction('200') as ((v: unknown) => string) | undefined) ?? JSON.stringify
      out = serializeMdev(m)
      json.set(m, out)
    }
    return out
  }

  // An item of a page, cut from what the page serialiser writes for a page of that one item (the same bytes).
  const itemJsonOf = new WeakMap<MdevView, string>()
  let serializePage: ((v: unknown) => string) | undefined
  const pageItemJson = (reply: FastifyReply, m: MdevView): string => {
    let out = itemJsonOf.get(m)
    if (out === undefined) {
      serializePage ??= (reply.getSerializationFunction('200') as ((v: unknown) => string) | undefined) ?? JSON.stringify
      const one = serializePage({ items: [m] })
      out = one.slice(PAGE_HEAD.length, -PAGE_TAIL.length)
      itemJsonOf.set(m, out)
    }
    return out
  }

  app.get(
    '/hosts/:host/mdevs',
    { schema: { tags: ['mdevs'], params: S.HostParams, querystring: S.MdevListQuery, response: S.responses({ 200: S.MdevPageOut }) } },
    async (req, reply) => {
      const { label, ...q } = req.query
      const r = await service.readMdevs(req.params.host, { ...q, ...(label !== undefined ? { labels: parseLabelSelector(label) } : {}) }, readContext(req))
      setStale(reply, r.staleMs)
      const { items, nextPageToken } = r.value
      // What the page serialiser would write for the whole page, from per-version pieces.
      let body = PAGE_HEAD
      for (let i = 0; i < items.length; i++) body += (i ? ',' : '') + pageItemJson(reply, items[i]!)
      body += nextPageToken === undefined ? ']}' : `],"nextPageToken":${JSON.stringify(nextPageToken)}}`
      return reply.header('content-type', JSON_TYPE).send(body)
    },
  )

  app.post(
    '/hosts/:host/mdevs',
    {
      schema: {
        tags: ['mdevs'],
        summary: 'Create a matrix device (idempotent on uuid; Idempotency-Key honoured)',
        params: S.HostParams,
        querystring: S.DryRunQuery,
        headers: S.IdempotencyHeaders,
        body: S.MdevCreateIn,
        response: S.responses({ 200: MdevOrDryRun, 201: S.MdevOut }),
      },
    },
    async (req, reply) => {
      const out = await service.createMdev(req.params.host, req.body, callContext(req, req.query))
      if (!out.dryRun && out.created !== false) reply.header('location', `/v1/hosts/${req.params.host}/mdevs/${out.result.metadata.uuid}`)
      return answer(reply, out, !out.dryRun && out.created !== false ? 201 : 200)
    },
  )

  app.get(
    '/hosts/:host/mdevs/:uuid',
    { schema: { tags: ['mdevs'], params: S.MdevParams, headers: S.IfNoneMatchHeaders, response: S.responses({ 200: S.MdevOut, 304: S.NotModifiedOut }) } },
    async (req, reply) => {
      const r = await service.readMdev(req.params.host, req.params.uuid, readContext(req))
      const m = r.value
      setEtag(reply, m.metadata.resourceVersion)
      setStale(reply, r.staleMs)
      if (noneMatchHit(req.headers['if-none-match'], m.metadata.resourceVersion)) return reply.code(304).send()
      return reply.header('content-type', JSON_TYPE).send(mdevJson(reply, m))
    },
  )

  app.put(
    '/hosts/:host/mdevs/:uuid',
    {
      schema: {
        tags: ['mdevs'],
        summary: 'Replace spec, labels and owner (If-Match honoured)',
        params: S.MdevParams,
        querystring: S.DryRunQuery,
        headers: S.IfMatchHeaders,
        body: S.MdevReplaceIn,
        response: S.responses({ 200: MdevOrDryRun }),
      },
    },
    async (req, reply) => answer(reply, await service.replaceMdev(req.params.host, req.params.uuid, req.body, callContext(req, req.query))),
  )

  app.patch(
    '/hosts/:host/mdevs/:uuid',
    {
      schema: {
        tags: ['mdevs'],
        summary: `JSON merge patch (${MERGE_PATCH}) of spec, labels, owner (If-Match honoured)`,
        // The document names the one media type the route takes (anything else is 415).
        consumes: [MERGE_PATCH],
        params: S.MdevParams,
        querystring: S.DryRunQuery,
        headers: S.IfMatchHeaders,
        body: S.MdevPatchIn,
        response: S.responses({ 200: MdevOrDryRun }),
      },
      preValidation: async (req) => {
        const type = String(req.headers['content-type'] ?? '')
          .split(';')[0]!
          .trim()
          .toLowerCase()
        if (type !== MERGE_PATCH) {
          throw Object.assign(new Error(`PATCH needs Content-Type ${MERGE_PATCH}`), { statusCode: 415 })
        }
      },
    },
    async (req, reply) => answer(reply, await service.patchMdev(req.params.host, req.params.uuid, req.body, callContext(req, req.query))),
  )

  app.delete(
    '/hosts/:host/mdevs/:uuid',
    {
      schema: {
        tags: ['mdevs'],
        summary: 'Request deletion (the reconciler removes the device; force: even if a guest has it open)',
        params: S.MdevParams,
        querystring: S.DeleteQuery,
        headers: S.IfMatchHeaders,
        response: S.responses({ 200: S.DryRunOut, 202: S.MdevOut }),
      },
    },
    async (req, reply) => {
      const ctx = { ...callContext(req, req.query), force: req.query.force === true }
      return answer(reply, await service.deleteMdev(req.params.host, req.params.uuid, ctx), 202)
    },
  )
}

/** `k=v,k2=v2` → a label map; INVALID_ARGUMENT for anything else. */
export function parseLabelSelector(s: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const part of s.split(',')) {
    const i = part.indexOf('=')
    if (i <= 0) throw new ApmatrixError('INVALID_ARGUMENT', `label selector '${clip(part, 64)}' is not key=value`)
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim()
  }
  return out
}
