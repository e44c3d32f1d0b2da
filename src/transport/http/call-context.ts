/** Reads the per-request options of the service (If-Match, Idempotency-Key, dryRun, plan view, actor) from HTTP. */
import type { FastifyRequest } from 'fastify'
import { invalidArgument } from '../../domain/errors.js'
import { IDEMPOTENCY_KEY } from '../../domain/names.js'
import type { CallContext, PlanDetail } from '../../service/index.js'
import { actorOf } from '../../auth/identity.js'

const TAG = /^(?:W\/)?"([\x21\x23-\x7e]{1,128})"$|^([\x21\x23-\x7e]{1,128})$/

/** The call context of a request. INVALID_ARGUMENT for a malformed If-Match or Idempotency-Key. */
export function callContext(req: FastifyRequest, opts: { dryRun?: boolean; view?: PlanDetail } = {}): CallContext {
  const ctx = readContext(req)
  if (opts.dryRun) ctx.dryRun = true
  if (opts.view) ctx.planView = opts.view
  const ifMatch = header(req, 'if-match')
  if (ifMatch !== undefined) {
    // One entity tag; a list would need matching against several versions, which no client of ours sends.
    const m = ifMatch.trim() === '*' ? ['*', '*'] : TAG.exec(ifMatch.trim())
    if (!m) throw bad('If-Match', 'must be one entity tag ("...") or *')
    ctx.ifMatch = m[1] ?? m[2]
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
  return req.principal ? { actor: actorOf(req.principal, 'rest'), requestId: req.id, principal: req.principal } : { actor: `http:${req.ip}`, requestId: req.id }
}

/** Sets the ETag of an object from its resourceVersion. */
export function setEtag(reply: { header(name: string, value: string): unknown }, resourceVersion: string): void {
  if (resourceVersion) reply.header('etag', `"${resourceVersion}"`)
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

function bad(field: string, message: string) {
  return invalidArgument(field, `header ${message}`)
}
