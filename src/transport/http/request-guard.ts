/**
 * Refusals of requests a browser could be tricked into sending (docs/api.md (Security headers, CORS and
 * request guards)): a state-changing request from a foreign origin (cross-site request forgery: a page
 * in an operator's browser posting to a loopback service), and, when the service runs without
 * authentication, a request whose `Host` is not a loopback name (DNS rebinding: a foreign name that
 * resolves to 127.0.0.1 makes the browser treat the service as that site's own origin).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ApmatrixError } from '../../domain/errors.js'
import { clip } from '../../domain/text.js'

/** Methods that change state: refused from foreign origins. */
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/** Host names of the loopback listening addresses (IPv4 loopback, `localhost`, IPv6 loopback). */
const LOOPBACK_NAMES = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** Options of {@link registerRequestGuards}. */
export interface RequestGuardOptions {
  /** Origins (`scheme://host[:port]`, normalised) allowed to send state-changing requests besides the service's own. */
  allowedOrigins: readonly string[]
  /** Refuse (421) a `Host` that is not a loopback name; for a service without authentication. */
  requireLocalHost: boolean
}

/**
 * The origin of an origin-or-URL text (`https://a.example:8443`), or undefined when it is not an
 * http(s) origin without path, query, fragment or credentials.
 */
export function normaliseOrigin(text: string): string | undefined {
  let u: URL
  try {
    u = new URL(text)
  } catch {
    return undefined
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined
  if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) return undefined
  if (text.replace(/\/$/, '').toLowerCase() !== u.origin.toLowerCase()) return undefined
  return u.origin
}

/** True when a `Host` header names a loopback address, with or without a port. */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(host.trim())
  return m !== null && LOOPBACK_NAMES.has(m[1]!.toLowerCase())
}

/**
 * True when `origin` (the request's `Origin` header) may change state: it is in the allow-list, or it
 * is the service's own origin (its host and port are the request's `Host`). `null` (sandboxed frames,
 * local files) and anything unparsable are foreign.
 */
export function originAllowed(origin: string, host: string | undefined, allowed: ReadonlySet<string>): boolean {
  const o = normaliseOrigin(origin)
  if (o === undefined) return false
  if (allowed.has(o)) return true
  return host !== undefined && new URL(o).host === host.trim().toLowerCase()
}

/** How many `Host` lines a request's raw headers (name, value, name, value, ...) hold. */
function hostLineCount(raw: readonly string[]): number {
  let n = 0
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === 'host') n++
  return n
}

/**
 * Adds the guards as the first `onRequest` hook after the security headers: 400 INVALID_ARGUMENT for a
 * request without exactly one `Host` (none is allowed in HTTP/1.0), 421 MISDIRECTED_REQUEST
 * for a foreign `Host` (when `requireLocalHost`), then 403 PERMISSION_DENIED for a state-changing
 * request whose `Origin` is foreign. Requests without `Origin` (curl, the CLI, gRPC gateways) pass:
 * browsers always send it on cross-origin writes.
 */
export function registerRequestGuards(app: FastifyInstance, opts: RequestGuardOptions): void {
  const allowed = new Set(opts.allowedOrigins)
  app.addHook('onRequest', async (req: FastifyRequest) => {
    // RFC 9112 §3.2: an HTTP/1.1 request without a Host, and any request with more than one, is a 400
    // (Node keeps the first of several, so a second Host would otherwise pass unseen).
    const hostLines = hostLineCount(req.raw.rawHeaders)
    if (hostLines > 1 || (hostLines === 0 && req.raw.httpVersion === '1.1')) {
      throw new ApmatrixError('INVALID_ARGUMENT', `an HTTP/${req.raw.httpVersion} request needs exactly one Host header; it has ${hostLines}`)
    }
    const host = req.headers.host
    if (opts.requireLocalHost && !isLoopbackHost(host)) {
      throw Object.assign(
        new Error(
          `host ${JSON.stringify(clip(host ?? '', 100))} is not this service's address: without authentication it answers only to 127.0.0.1, localhost and [::1]`,
        ),
        { statusCode: 421 },
      )
    }
    const origin = req.headers.origin
    if (origin !== undefined && STATE_CHANGING.has(req.method) && !originAllowed(origin, host, allowed)) {
      throw new ApmatrixError(
        'PERMISSION_DENIED',
        `${req.method} from origin ${JSON.stringify(clip(origin, 100))} refused: not this service's origin nor in APMATRIX_CORS_ORIGINS`,
      )
    }
  })
}
