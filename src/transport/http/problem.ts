/**
 * The one place where errors become HTTP answers (docs/api.md (REST)): `application/problem+json` with a
 * stable `code`, the kernel `errno` when there is one, every violation, and the request id. Bad input
 * of any kind is a 4xx; only a bug is a 500.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ApmatrixError, type ErrorCode, type Violation } from '../../domain/errors.js'
import { clip } from '../../domain/text.js'

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
  GONE: 410,
  UNAVAILABLE: 503,
}

/** Seconds a client should wait before retrying a 503 (or a 429 whose error does not say). */
export const RETRY_AFTER_SECONDS = 1

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  410: 'Gone',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

/**
 * Codes of refusals that happen before any service code runs (the HTTP layer's own), by status
 * (docs/api.md (Errors)). Any other 4xx from the framework is `INVALID_ARGUMENT`.
 */
export const TRANSPORT_CODES: Readonly<Record<number, string>> = {
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  408: 'REQUEST_TIMEOUT',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  421: 'MISDIRECTED_REQUEST',
  429: 'RATE_LIMITED',
  431: 'HEADERS_TOO_LARGE',
  503: 'UNAVAILABLE',
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
  /** GONE: the oldest position an event watch can start from (docs/api.md (Events) Retention). */
  oldestSeq?: number
  requestId: string
}

/** Builds the problem for any error thrown while handling a request. */
export function toProblem(err: unknown, requestId: string): Problem {
  if (err instanceof ApmatrixError) {
    const p = problem(HTTP_STATUS[err.code] ?? 500, err.code, err.message, requestId, err.errno, err.violations)
    return err.oldestSeq === undefined ? p : { ...p, oldestSeq: err.oldestSeq }
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
  // The router's messages quote the whole path: keep the detail bounded.
  if (e.code === 'FST_ERR_MAX_PARAM_LENGTH') return problem(414, 'URI_TOO_LONG', 'a path parameter is too long', requestId)
  const detail = clip(e.message || (TITLES[status] ?? 'bad request'), 512)
  // Malformed JSON, empty bodies, bad URL encoding...: the caller's mistake; a few statuses have their own code.
  if (status < 500 || status === 503) return problem(status, TRANSPORT_CODES[status] ?? 'INVALID_ARGUMENT', detail, requestId)
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

/** Sends a problem (with Retry-After on 503 and 429; `retryAfterSeconds` when the error says how long). */
export function sendProblem(reply: FastifyReply, p: Problem, retryAfterSeconds?: number): FastifyReply {
  if (p.status === 503 || p.status === 429) reply.header('retry-after', String(retryAfterSeconds ?? RETRY_AFTER_SECONDS))
  return reply.code(p.status).type('application/problem+json').send(JSON.stringify(p))
}

/**
 * Fastify error handler: maps, logs server faults, sends. A 413 waits until the rest of the body was
 * read (see {@link drainRejectedBody}), and then keeps the connection open.
 */
export function errorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> {
  const p = toProblem(err, req.id)
  if (p.status >= 500 && p.status !== 503) req.log.error({ err }, 'request failed')
  else req.log.info({ code: p.code, status: p.status }, p.detail)
  const send = () => sendProblem(reply, p, err instanceof ApmatrixError ? err.retryAfterSeconds : undefined)
  if (p.status !== 413 || req.raw.complete) return send()
  return drainRejectedBody(req).then(() => {
    // fastify asks to close the connection after a refused body (the rest of it would come as the next
    // request); once it was read to its end, the connection can serve the next request.
    if (req.raw.complete) reply.removeHeader('connection')
    return send()
  })
}

/** How much of a body refused as too large is read and dropped before the 413 is sent. */
const DRAIN_LIMIT = 8 * 1024 * 1024

/**
 * Reads and drops the rest of a body refused as too large (up to {@link DRAIN_LIMIT}), so that the 413
 * goes to a client that has finished sending. Answered at once, it came while the client was still
 * sending, Node closed the connection, the client's next write met a reset, and TCP dropped the answer
 * it had not read yet: half of the 2 MiB bodies sent to the default 1 MiB limit got EPIPE instead of the
 * 413. A body past the limit is answered then, and its connection closed.
 */
function drainRejectedBody(req: FastifyRequest): Promise<void> {
  const raw = req.raw
  return new Promise((resolve) => {
    let dropped = 0
    const done = () => {
      raw.off('data', onData)
      raw.off('end', done)
      raw.off('close', done)
      raw.off('error', done)
      resolve()
    }
    const onData = (chunk: Buffer) => {
      dropped += chunk.length
      if (dropped > DRAIN_LIMIT) {
        raw.pause()
        done()
      }
    }
    raw.on('data', onData)
    raw.once('end', done)
    raw.once('close', done)
    raw.once('error', done)
    raw.resume()
  })
}

/** Headers every answer carries, also the ones sent before routing (framework and client errors). */
const BASE_HEADERS = { 'x-content-type-options': 'nosniff' } as const

/**
 * fastify `frameworkErrors`: errors the router raises before any hook runs (a path that is not valid
 * percent-encoding, FST_ERR_BAD_URL; a path parameter over `maxParamLength`, FST_ERR_MAX_PARAM_LENGTH)
 * answered as problems like every other refusal.
 */
export function frameworkErrorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const p = toProblem(err, req.id)
  req.log.info({ code: p.code, status: p.status }, p.detail)
  reply.headers({ ...BASE_HEADERS, 'x-request-id': req.id })
  void sendProblem(reply, p)
}

/**
 * Writes a problem answer straight on a socket and closes the connection: for requests that never reach
 * fastify (the parser refused them, or a CONNECT), which get the same body and headers as any refusal.
 */
function answerOnSocket(socket: Socket, status: number, detail: string): void {
  const p = problem(status, TRANSPORT_CODES[status] ?? 'INVALID_ARGUMENT', detail, randomUUID())
  const body = JSON.stringify(p)
  if (socket.writable) {
    const head = [
      `HTTP/1.1 ${status} ${p.title}`,
      'content-type: application/problem+json',
      `content-length: ${Buffer.byteLength(body)}`,
      `x-request-id: ${p.requestId}`,
      ...Object.entries(BASE_HEADERS).map(([k, v]) => `${k}: ${v}`),
      'connection: close',
    ]
    socket.end(`${head.join('\r\n')}\r\n\r\n${body}`)
    lingeringClose(socket)
  } else socket.destroy()
}

/** Sockets answered and closing (see {@link lingeringClose}). */
const lingering = new WeakSet<Socket>()

/** What a lingering close reads and drops at most, and for how long, before it cuts the connection. */
const LINGER_BYTES = 8 * 1024 * 1024
const LINGER_MS = 2000

/**
 * RFC 9112 §9.6 tear-down: after the answer (and the half-close of `end`), what the client still sends
 * is read and dropped until it closes its side, or for at most {@link LINGER_BYTES} and
 * {@link LINGER_MS}. Closed at once, the connection meets the rest of the client's request with a
 * reset, and TCP drops the answer the client had not read yet (a 431 sent while a large body was still
 * coming was lost that way).
 */
function lingeringClose(socket: Socket): void {
  lingering.add(socket)
  let dropped = 0
  const timer = setTimeout(() => socket.destroy(), LINGER_MS)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
  socket.once('end', () => socket.destroy())
  socket.on('data', (chunk: Buffer) => {
    dropped += chunk.length
    if (dropped > LINGER_BYTES) socket.destroy()
  })
  socket.resume()
}

/**
 * fastify `clientErrorHandler`: Node's HTTP parser refused the request before fastify saw it
 * (HPE_HEADER_OVERFLOW: request line and headers over the server's limit, 431; a client that did not
 * finish its request in time, 408; any other parse error, 400). The answer is written on the socket,
 * as a problem with a generated request id, and the connection is closed (the parser cannot resume).
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  // The parser stays in its error state and reports every later chunk again: the answer went already,
  // and the lingering close ends the connection.
  if (err.code === 'ECONNRESET' || socket.destroyed || lingering.has(socket)) return
  const [status, detail] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'the request line and headers exceed the size limit']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'the request was not received in time']
        : [400, 'the request is not valid HTTP/1.1']
  answerOnSocket(socket, status, detail)
}

/**
 * Listener of the HTTP server's `connect` event: Node hands a CONNECT request to it instead of to
 * fastify, and closes the connection without a word when nobody listens. The service is no proxy: like
 * any other method without a route, 404 NOT_FOUND (docs/api.md (Errors)).
 */
export function connectRequestHandler(req: IncomingMessage, socket: Socket): void {
  answerOnSocket(socket, 404, `no route CONNECT ${clip(req.url ?? '', 200)}: this service is not a proxy`)
}
