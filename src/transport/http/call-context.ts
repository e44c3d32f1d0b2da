/** Reads the per-request options of the service (If-Match, Idempotency-Key, dryRun, plan view, actor) from HTTP. */
import type { FastifyRequest } from 'fastify'
import { invalidArgument } from '../../domain/errors.js'
import { IDEMPOTENCY_KEY, REQUEST_ID } from '../../domain/names.js'
import type { CallContext, PlanDetail } from '../../service/index.js'
import { actorOf } from '../../auth/identity.js'

/** One entity tag of an If-Match list (RFC 9110 §8.8.3: `[W/]"etagc*"`, etagc excluding `"`), sticky at a position. */
const LISTED_TAG = /[ \t]*(?:W\/)?"([\x21\x23-\x7e]{1,128})"[ \t]*(?:,|$)/y
/** A bare version without quotes, accepted on its own for clients that send the resourceVersion as is. */
const BARE_TAG = /^[\x21\x23-\x2b\x2d-\x7e]{1,128}$/
/** Most entity tags one If-Match may list. */
export const MAX_IF_MATCH_TAGS = 32

/**
 * The versions an If-Match header accepts: `*`, one bare version, or a list of entity tags, any of which
 * may match (RFC 9110 §13.1.1). Undefined when it is none of these.
 */
export function parseIfMatch(value: string): string[] | undefined {
  const v = value.trim()
  if (v === '*') return ['*']
  if (BARE_TAG.test(v)) return [v]
  const tags: string[] = []
  LISTED_TAG.lastIndex = 0
  while (LISTED_TAG.lastIndex < v.length) {
    const at = LISTED_TAG.lastIndex
    const m = LISTED_TAG.exec(v)
    if (!m || LISTED_TAG.lastIndex === at || tags.length === MAX_IF_MATCH_TAGS) return undefined
    tags.push(m[1]!)
  }
  return tags.length > 0 && !v.endsWith(',') ? tags : undefined
}

/** The call context of a request. INVALID_ARGUMENT for a malformed If-Match or Idempotency-Key. */
export function callContext(req: FastifyRequest, opts: { dryRun?: boolean; view?: PlanDetail } = {}): CallContext {
  const ctx = readContext(req)
  if (opts.dryRun) ctx.dryRun = true
  if (opts.view) ctx.planView = opts.view
  const ifMatch = header(req, 'if-match')
  if (ifMatch !== undefined) {
    const tags = parseIfMatch(ifMatch)
    if (!tags) throw bad('If-Match', `must be * or a list of at most ${MAX_IF_MATCH_TAGS} entity tags ("...", "...")`)
    ctx.ifMatch = tags.length === 1 ? tags[0] : tags
  }
  const key = header(req, 'idempotency-key')
  if (key !== undefined) {
    if (!IDEMPOTENCY_KEY.test(key)) throw bad('Idempotency-Key', 'must be 1..128 visible ASCII characters')
    ctx.idempotencyKey = key
  }
  return ctx
}

/** The context of a read: who calls (its tenant limit applies) and the request id. */
export function readContext(req: FastifyRequest): CallContext {
  const ctx: CallContext = req.principal
    ? { actor: actorOf(req.principal, 'rest'), requestId: req.id, principal: req.principal }
    : { actor: `http:${req.ip}`, requestId: req.id }
  const correlationId = callerRequestId(req.headers)
  if (correlationId) ctx.correlationId = correlationId
  return ctx
}

/** Sets the ETag of an object from its resourceVersion. */
export function setEtag(reply: { header(name: string, value: string): unknown }, resourceVersion: string): void {
  if (resourceVersion) reply.header('etag', `"${resourceVersion}"`)
}

/** The header a read answered from the read cache's copy carries when the store could not be reached: ms since its last sync. */
export const STALE_HEADER = 'apmatrix-stale'

/** Sets {@link STALE_HEADER} when the service said the answer may be stale (`staleMs` not null). */
export function setStale(reply: { header(name: string, value: string): unknown }, staleMs: number | null): void {
  if (staleMs !== null) reply.header(STALE_HEADER, String(staleMs))
}

/**
 * RFC 9110 13.1.2 If-None-Match for a GET: true when the header is `*` (the resource exists) or lists an entity
 * tag that weakly matches `etag` (`W/"x"` and `"x"` match). A header that does not parse matches nothing (the
 * full answer is sent, as the RFC lets a server ignore a malformed precondition).
 */
export function noneMatchHit(value: string | string[] | undefined, etag: string): boolean {
  if (value === undefined) return false
  const text = Array.isArray(value) ? value.join(',') : value
  if (text.length > 8192) return false
  const want = opaque(etag)
  if (text.trim() === '*') return true
  for (const part of text.split(',')) {
    const p = part.trim()
    if (p && opaque(p) === want) return true
  }
  return false
}

/** The opaque part of an entity tag (`W/"abc"` and `"abc"` → `abc`). */
function opaque(tag: string): string {
  const t = tag.startsWith('W/') ? tag.slice(2) : tag
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

function bad(field: string, message: string) {
  return invalidArgument(field, `header ${message}`)
}

/**
 * The caller's own request id (`x-request-id`) when it is sane (`[A-Za-z0-9._:-]{1,128}`), else
 * undefined. It correlates; it never replaces the server's request id.
 */
export function callerRequestId(headers: Record<string, string | string[] | undefined>): string | undefined {
  const h = headers['x-request-id']
  const v = Array.isArray(h) ? h[0] : h
  return v !== undefined && REQUEST_ID.test(v) ? v : undefined
}
