/**
 * The one place where errors become HTTP answers (docs/api.md (REST)): `application/problem+json` with a
 * stable `code`, the kernel `errno` when there is one, every violation, and the request id. Bad input
 * of any kind is a 4xx; only a bug is a 500.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ApmatrixError, type ErrorCode, type Violation } from '../../domain/errors.js'

/** HTTP status of each error code (docs/api.md (REST) table). */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  OUT_OF_RANGE: 400,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  CONFLICT: 409,
  APQN_IN_USE: 409,
  APQN_RESERVED: 409,
  BUSY: 409,
  INSTANCE_LIMIT: 409,
  FAILED_PRECONDITION: 409,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
}

/** Seconds a client should wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = 1

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

/** The problem body. */
export interface Problem {
  type: string
  status: number
  title: string
  detail: string
  code: string
  errno?: string
  violations?: Violation[]
  requestId: string
}

/** Builds the problem for any error thrown while handling a request. */
export function toProblem(err: unknown, requestId: string): Problem {
  if (err instanceof ApmatrixError) {
    return problem(HTTP_STATUS[err.code] ?? 500, err.code, err.message, requestId, err.errno, err.violations)
  }
  const e = err as Partial<FastifyError> & { validation?: Array<{ instancePath?: string; message?: string; params?: unknown }> }
  if (e.validation) {
    const where = e.validationContext ?? 'body'
    const violations: Violation[] = e.validation.slice(0, 100).map((v) => ({
      rule: 'INVALID_ARGUMENT',
      field: `${where}${(v.instancePath ?? '').replace(/\//g, '.')}`,
      message: `${where}${v.instancePath ?? ''} ${v.message ?? 'is invalid'}`.slice(0, 512),
    }))
    return problem(400, 'INVALID_ARGUMENT', `invalid ${where}: ${violations[0]?.message ?? e.message}`, requestId, undefined, violations)
  }
  const status = typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) return problem(413, 'PAYLOAD_TOO_LARGE', 'request body is too large', requestId)
  if (status === 404) return problem(404, 'NOT_FOUND', e.message ?? 'not found', requestId)
  if (status === 429) return problem(429, 'RATE_LIMITED', e.message ?? 'too many requests', requestId)
  if (status === 503) return problem(503, 'UNAVAILABLE', e.message ?? 'unavailable', requestId)
  // Malformed JSON, empty bodies, unsupported media types...: the caller's mistake.
  if (status < 500) return problem(status, 'INVALID_ARGUMENT', e.message ?? 'bad request', requestId)
  return problem(500, 'INTERNAL', 'internal error', requestId)
}

function problem(status: number, code: string, detail: string, requestId: string, errno?: string, violations?: Violation[]): Problem {
  return {
    type: `urn:apmatrix:problem:${code.toLowerCase().replace(/_/g, '-')}`,
    status,
    title: TITLES[status] ?? code,
    detail,
    code,
    ...(errno ? { errno } : {}),
    ...(violations?.length ? { violations } : {}),
    requestId,
  }
}

/** Sends a problem (with Retry-After on 503). */
export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  if (p.status === 503) reply.header('retry-after', String(RETRY_AFTER_SECONDS))
  return reply.code(p.status).type('application/problem+json').send(JSON.stringify(p))
}

/** Fastify error handler: maps, logs server faults, sends. */
export function errorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const p = toProblem(err, req.id)
  if (p.status >= 500 && p.status !== 503) req.log.error({ err }, 'request failed')
  else req.log.info({ code: p.code, status: p.status }, p.detail)
  return sendProblem(reply, p)
}
