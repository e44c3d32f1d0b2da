/**
 * The REST app (docs/api.md (REST)): a fastify instance with every route, schema validation, problem+json
 * errors, request ids, health, readiness, metrics and the OpenAPI document. It never listens: the
 * process entry (serve command) or a test calls `listen`.
 */
import { randomUUID } from 'node:crypto'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { REQUEST_ID } from '../../domain/names.js'
import type { ApmatrixService } from '../../service/index.js'
import { CONSOLE_DIR, registerConsole } from './console.js'
import { registerMetrics } from './metrics.js'
import { errorHandler, sendProblem, toProblem } from './problem.js'
import { desiredRoutes } from './routes/desired.js'
import { emulatorRoutes } from './routes/emulator.js'
import { eventRoutes } from './routes/events.js'
import { hostRoutes } from './routes/hosts.js'
import { interopRoutes } from './routes/interop.js'
import { mdevRoutes } from './routes/mdevs.js'
import { COMPONENT_SCHEMAS, StatusOut } from './schemas.js'
import { clip } from '../../domain/text.js'

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
  /** Folder of the built web console served at `/ui/` (default dist/web/console), or false for none. */
  consoleDir?: string | false
}

/** Builds the app. Call `await app.ready()` (or `listen`) before use and `close()` after. */
export function buildApp(opts: AppOptions): FastifyInstance {
  const logger = opts.logger ?? false
  const isInstance = typeof logger === 'object' && logger !== null && typeof (logger as FastifyBaseLogger).child === 'function'
  const app = Fastify({
    ...(isInstance ? { loggerInstance: logger as FastifyBaseLogger } : { logger: logger as FastifyServerOptions['logger'] }),
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    // A caller's x-request-id is kept when it is sane, so logs correlate across services.
    requestIdHeader: false,
    genReqId: (req) => {
      const h = req.headers['x-request-id']
      const v = Array.isArray(h) ? h[0] : h
      return v && REQUEST_ID.test(v) ? v : randomUUID()
    },
    ajv: { customOptions: { removeAdditional: false } },
    // fast-json-stringify is slower than JSON.stringify on long arrays (a full plan of a large host lists
    // 65,536 APQNs several times: ~150 ms against ~40 ms); the service builds every answer in its exact
    // shape, so arrays of 1,000 items or more are left to JSON.stringify.
    serializerOpts: { largeArraySize: 1000, largeArrayMechanism: 'json-stringify' },
    routerOptions: { maxParamLength: 200 },
  }).withTypeProvider<TypeBoxTypeProvider>()

  // TypeBox's own checker: no coercion of bodies, no silent removal of unknown fields.
  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((req, reply) =>
    sendProblem(reply, toProblem(Object.assign(new Error(`no route ${req.method} ${clip(req.url.split('?')[0]!, 200)}`), { statusCode: 404 }), req.id)),
  )
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id)
  })
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
  registerMetrics(app as unknown as FastifyInstance)
  if (opts.consoleDir !== false) registerConsole(app as unknown as FastifyInstance, opts.consoleDir ?? CONSOLE_DIR)

  app.register(
    async (v1) => {
      const o = { service: opts.service }
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
