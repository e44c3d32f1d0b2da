/**
 * The REST app (docs/api.md (REST)): a fastify instance with every route, schema validation, problem+json
 * errors, request ids, health, readiness, metrics and the OpenAPI document. It never listens: the
 * process entry (serve command) or a test calls `listen`.
 */
import { randomUUID } from 'node:crypto'
import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { lazyCompilers } from './lazy-compilers.js'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { ApmatrixService } from '../../service/index.js'
import type { ApmatrixMetrics } from '../../observability/metrics.js'
import { CONSOLE_DIR, registerConsole } from './console.js'
import { registerMetrics } from './metrics.js'
import { callerRequestId } from './call-context.js'
import { clientErrorHandler, connectRequestHandler, errorHandler, frameworkErrorHandler, sendProblem, toProblem } from './problem.js'
import { normaliseOrigin, registerRequestGuards } from './request-guard.js'
import { desiredRoutes } from './routes/desired.js'
import { emulatorRoutes } from './routes/emulator.js'
import { eventRoutes } from './routes/events.js'
import { hostRoutes } from './routes/hosts.js'
import { interopRoutes } from './routes/interop.js'
import { mdevRoutes } from './routes/mdevs.js'
import { COMPONENT_SCHEMAS, StatusOut } from './schemas.js'
import { clip } from '../../domain/text.js'
import { Authenticator, AuthenticationError } from '../../auth/authenticator.js'
import { authorize } from '../../auth/authorize.js'
import { actorOf, type Principal } from '../../auth/identity.js'
import { ApmatrixError } from '../../domain/errors.js'
import type { TLSSocket } from 'node:tls'
import { routePermission } from './permissions.js'
import { authRoutes } from './routes/auth.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller (set by the authentication hook before any /v1 route runs). */
    principal: Principal
  }
}

/** Options of {@link buildApp}. */
export interface AppOptions {
  service: ApmatrixService
  /** A pino logger, fastify logger options, or false (default) for none. */
  logger?: FastifyBaseLogger | FastifyServerOptions['logger']
  /** Largest request body in bytes (default 1 MiB); larger: 413 PAYLOAD_TOO_LARGE. */
  bodyLimit?: number
  /** Serve `/docs` (Swagger UI). Default true. */
  docs?: boolean
  /** Period of the SSE `: ping` heartbeat in ms (default 15 s). */
  sseHeartbeatMs?: number
  /** The process's metrics (served at `/metrics` with the request durations); default: a registry of this app's own. */
  metrics?: ApmatrixMetrics
  /**
   * Origins (`https://console.example:8443`) allowed to call the API from a browser: CORS answers for
   * them, and their state-changing requests pass the origin check. Default none: CORS off, and only the
   * service's own origin may send POST, PUT, PATCH, DELETE with an `Origin` header (else 403).
   */
  corsOrigins?: readonly string[]
  /**
   * Refuse (421 MISDIRECTED_REQUEST) requests whose `Host` is not a loopback name (127.0.0.1,
   * localhost, [::1], any port): DNS-rebinding protection for a service without authentication.
   * Default true; the composition root turns it off only when callers are authenticated.
   */
  requireLocalHost?: boolean
  /** Authentication (docs/security.md); default: none, every caller is the local admin subject. */
  auth?: Authenticator
  /** TLS: node `tls` options of an https server (cert, key, and for client certificates ca + requestCert). */
  https?: { cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean; rejectUnauthorized: boolean }
  /** Folder of the built web console served at `/ui/` (default dist/console), or false for none. */
  consoleDir?: string | false
}

/** The security headers of every answer (helmet): CSP for the HTML pages, no sniffing, no framing. */
const HELMET_OPTIONS = {
  contentSecurityPolicy: {
    directives: {
      // Swagger UI loads only its own scripts and styles (no inline script): 'self' is enough.
      'frame-ancestors': ["'none'"],
      // A plain-http loopback service: upgrading its own subresources to https would break /docs.
      'upgrade-insecure-requests': null,
    },
  },
  frameguard: { action: 'deny' as const },
}

/** Builds the app. Call `await app.ready()` (or `listen`) before use and `close()` after. */
export function buildApp(opts: AppOptions): FastifyInstance {
  const corsOrigins = (opts.corsOrigins ?? []).map((o) => {
    const n = normaliseOrigin(o)
    if (n === undefined) throw new TypeError(`corsOrigins: ${JSON.stringify(o)} is not an http(s) origin (scheme://host[:port])`)
    return n
  })
  const logger = opts.logger ?? false
  const isInstance = typeof logger === 'object' && logger !== null && typeof (logger as FastifyBaseLogger).child === 'function'
  const compilers = lazyCompilers()
  const app = Fastify({
    schemaController: { compilersFactory: { buildSerializer: compilers.buildSerializer as never } },
    ...(isInstance ? { loggerInstance: logger as FastifyBaseLogger } : { logger: logger as FastifyServerOptions['logger'] }),
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    // A request without Host reaches the request guards, which answer it with a problem body (Node's own
    // refusal is a bare 400).
    http: { requireHostHeader: false },
    ...(opts.https ? { https: { ...opts.https, requireHostHeader: false } } : {}),
    // The request id is the server's own (logs, problems, audit records, events); a caller's sane
    // x-request-id is its correlation id, logged beside it and echoed as x-correlation-id.
    requestIdHeader: false,
    genReqId: () => randomUUID(),
    childLoggerFactory: (logger, bindings, options, raw) => {
      const correlationId = callerRequestId(raw.headers)
      return logger.child(correlationId ? { ...bindings, correlationId } : bindings, options)
    },
    ajv: { customOptions: { removeAdditional: false } },
    // fast-json-stringify is slower than JSON.stringify on long arrays (a full plan of a large host lists
    // 65,536 APQNs several times: ~150 ms against ~40 ms); the service builds every answer in its exact
    // shape, so arrays of 1,000 items or more are left to JSON.stringify.
    serializerOpts: { largeArraySize: 1000, largeArrayMechanism: 'json-stringify' },
    routerOptions: { maxParamLength: 200 },
    // Refusals before routing (bad percent-encoding, over-long parameters) and before parsing (headers
    // over the size limit) answer problem bodies too.
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler,
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.server.on('connect', connectRequestHandler)

  // TypeBox's own checker: no coercion of bodies, no silent removal of unknown fields (compiled on first use).
  app.setValidatorCompiler(compilers.validatorCompiler)
  compilers.attach(app)
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((req, reply) =>
    sendProblem(reply, toProblem(Object.assign(new Error(`no route ${req.method} ${clip(req.url.split('?')[0]!, 200)}`), { statusCode: 404 }), req.id)),
  )
  const auth = opts.auth ?? new Authenticator()
  app.decorateRequest('principal', null as unknown as Principal)
  // Authentication, then the route's permission (docs/security.md): before validation and before any
  // existence check, so a caller without the permission learns nothing (AIP-135). Refusals are audited.
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id)
    const correlationId = callerRequestId(req.headers)
    if (correlationId) reply.header('x-correlation-id', correlationId)
    const url = req.routeOptions.url
    const perm = routePermission(req.method, url)
    if (perm === 'public') return
    const refuse = (e: ApmatrixError, actor: string, detail: Record<string, unknown>) => {
      void opts.service.recordRefusal({
        actor,
        action: `http.${req.method.toLowerCase()}`,
        target: clip(req.url.split('?')[0]!, 256),
        outcome: e.code,
        requestId: req.id,
        detail: { transport: 'rest', ...detail },
      })
      return e
    }
    const socket = req.raw.socket as Partial<TLSSocket>
    const peerCert = socket.encrypted && socket.authorized && socket.getPeerCertificate ? socket.getPeerCertificate() : null
    try {
      req.principal = await auth.authenticate({ authorization: req.headers.authorization, peerCert })
    } catch (e) {
      if (!(e instanceof AuthenticationError)) throw e
      reply.header('www-authenticate', auth.challenge)
      throw refuse(e, `rest:anonymous:${req.ip}`, { reason: e.reason })
    }
    // An unmatched URL goes on to the 404 handler (authenticated callers only).
    if (url === undefined) return
    const p = req.principal
    const host = (req.params as { host?: unknown } | undefined)?.host
    const target = typeof host === 'string' ? { host } : {}
    if (perm === undefined || authorize(p, perm.verb, perm.resource, target) !== 'allow') {
      const what = perm === undefined ? `${req.method} ${url}` : `${perm.verb} ${perm.resource}${typeof host === 'string' ? ` on host ${clip(host, 64)}` : ''}`
      const err = new ApmatrixError('PERMISSION_DENIED', `${clip(p.subject, 128)} may not ${what}`)
      throw refuse(err, actorOf(p, 'rest'), { subject: p.subject, roles: [...p.roles], auth: p.source })
    }
  })
  app.register(helmet, HELMET_OPTIONS)
  if (corsOrigins.length > 0) {
    app.register(cors, {
      origin: corsOrigins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['content-type', 'if-match', 'idempotency-key', 'x-request-id', 'last-event-id', 'authorization'],
      exposedHeaders: ['etag', 'location', 'x-request-id', 'x-correlation-id', 'retry-after', 'idempotent-replayed'],
      maxAge: 600,
    })
  }
  app.after(() => registerRequestGuards(app as unknown as FastifyInstance, { allowedOrigins: corsOrigins, requireLocalHost: opts.requireLocalHost ?? true }))
  // Only JSON bodies: anything else is 415 rather than a string that fails the schema.
  app.removeContentTypeParser('text/plain')
  // RFC 7396 bodies are JSON; fastify's own parser keeps its prototype-poisoning protection.
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'))

  // The answers' schemas, shared by $id: fast-json-stringify resolves the routes' $refs against them, and the
  // OpenAPI document publishes them as components.schemas under the same names.
  for (const schema of COMPONENT_SCHEMAS) app.addSchema(schema)
  app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'apmatrix', version: '1', description: 'Desired-state manager for s390 AP crypto passthrough (vfio-ap)' },
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  })
  if (opts.docs !== false) app.register(swaggerUi, { routePrefix: '/docs' })

  app.register(async (ops) => {
    ops.get('/healthz', { schema: { hide: true, response: { 200: StatusOut } } }, async () => ({ status: 'ok' }))
    ops.get('/readyz', { schema: { hide: true, response: { 200: StatusOut } } }, async () => {
      await opts.service.ping()
      return { status: 'ready' }
    })
    ops.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
  })
  registerMetrics(app as unknown as FastifyInstance, opts.metrics)
  if (opts.consoleDir !== false) registerConsole(app as unknown as FastifyInstance, opts.consoleDir ?? CONSOLE_DIR)

  app.register(
    async (v1) => {
      const o = { service: opts.service }
      await v1.register(authRoutes, o)
      await v1.register(hostRoutes, o)
      await v1.register(mdevRoutes, o)
      await v1.register(desiredRoutes, o)
      await v1.register(emulatorRoutes, o)
      await v1.register(interopRoutes, o)
      await v1.register(eventRoutes, { service: opts.service, ...(opts.sseHeartbeatMs ? { heartbeatMs: opts.sseHeartbeatMs } : {}) })
    },
    { prefix: '/v1' },
  )
  return app as unknown as FastifyInstance
}
