/**
 * The gRPC server (docs/api.md (gRPC)): the apmatrix.v1 services over the application service (Watch
 * included), `grpc.health.v1.Health` driven by a readiness callback, and server reflection.
 * It is the only file here that binds a socket; the composition root (serve command) or a test calls it.
 */
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { ReflectionService } from '@grpc/reflection'
import { HealthImplementation, protoPath as healthProtoPath, type ServingStatusMap } from 'grpc-health-check'
import type { ApmatrixService } from '../../service/index.js'
import { decodeGuardInterceptor, decodeSafely } from './decode-guard.js'
import {
  authHandlers,
  desiredStateHandlers,
  emulatorHandlers,
  eventHandlers,
  hostHandlers,
  inventoryHandlers,
  mdevHandlers,
  type HandlerDeps,
} from './handlers.js'
import { requestIdInterceptor, type GrpcLogger } from './interceptors.js'
import { authInterceptor } from './auth.js'
import { Authenticator } from '../../auth/authenticator.js'
import { API_SERVICES, loadApiProto } from './proto.js'
import { withFileDependencies } from './reflection.js'

/** Readiness: true (or resolves true) when the service can answer (store reachable, lease held...). */
export type Readiness = () => boolean | Promise<boolean>

/** Options of {@link startGrpcServer}. */
export interface GrpcServerOptions {
  service: ApmatrixService
  /** `host:port`; port 0 picks a free one (tests). */
  addr: string
  logger?: GrpcLogger | null
  /** Drives the health service; default: always SERVING. Polled every `healthIntervalMs`. */
  readiness?: Readiness
  /** Health polling period in ms (default 2000). */
  healthIntervalMs?: number
  /** Largest request message in bytes (default 4 MiB). */
  maxReceiveMessageBytes?: number
  /** Largest response message in bytes (default 16 MiB). */
  maxSendMessageBytes?: number
  /** How long close() waits for calls to finish before cancelling them (default 5000 ms). */
  shutdownGraceMs?: number
  /** Authentication (docs/security.md); default: none, every caller is the local admin subject. */
  auth?: Authenticator
  /** Server credentials (TLS, client certificates); default insecure (loopback setups). */
  credentials?: grpc.ServerCredentials
}

/** A running server. */
export interface GrpcServer {
  port: number
  server: grpc.Server
  /** Re-evaluates readiness now (health answers follow). */
  refreshHealth(): Promise<void>
  /** Graceful: stops accepting, lets calls finish (tryShutdown), then forces after the grace period. Idempotent. */
  close(): Promise<void>
}

/**
 * A grpc-js server whose every service (the API, health, reflection) gets total request deserializers:
 * undecodable bytes become INVALID_ARGUMENT through {@link decodeGuardInterceptor}, never INTERNAL.
 */
class ApiServer extends grpc.Server {
  override addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    super.addService(decodeSafely(service), implementation)
  }
}

let reflection: ReflectionService | undefined

/**
 * Reflection describes the API and the health service, so grpcurl-style tools need no .proto files. Built
 * once per process (the descriptors never change; building it decodes and re-encodes every file descriptor)
 * and added to every server the process starts.
 */
function reflectionService(definition: protoLoader.PackageDefinition): ReflectionService {
  if (!reflection) {
    const healthDefinition = protoLoader.loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true })
    reflection = new ReflectionService(withFileDependencies({ ...definition, ...healthDefinition }))
  }
  return reflection
}

/** Starts the server and resolves once it listens. */
export async function startGrpcServer(opts: GrpcServerOptions): Promise<GrpcServer> {
  const logger = opts.logger ?? null
  const { definition, v1 } = loadApiProto()
  const server = new ApiServer({
    'grpc.max_receive_message_length': opts.maxReceiveMessageBytes ?? 4 * 1024 * 1024,
    'grpc.max_send_message_length': opts.maxSendMessageBytes ?? 16 * 1024 * 1024,
    // The decode guard after the request ids (its refusals carry the id and are logged); authentication on the decoded call.
    interceptors: [requestIdInterceptor(logger), decodeGuardInterceptor(), authInterceptor(opts.auth ?? new Authenticator(), opts.service)],
  })
  const deps: HandlerDeps = { service: opts.service, logger, watches: new Set() }
  server.addService(v1.HostService.service, hostHandlers(deps))
  server.addService(v1.InventoryService.service, inventoryHandlers(deps))
  server.addService(v1.MdevService.service, mdevHandlers(deps))
  server.addService(v1.DesiredStateService.service, desiredStateHandlers(deps))
  server.addService(v1.EventService.service, eventHandlers(deps))
  server.addService(v1.EmulatorService.service, emulatorHandlers(deps))
  server.addService(v1.AuthService.service, authHandlers(deps))

  const names = ['', ...API_SERVICES]
  const statusMap: ServingStatusMap = Object.fromEntries(names.map((n) => [n, 'SERVING']))
  const health = new HealthImplementation(statusMap)
  health.addToServer(server)
  reflectionService(definition).addToServer(server)

  let current: 'SERVING' | 'NOT_SERVING' = 'SERVING'
  const refreshHealth = async () => {
    let ok = true
    try {
      ok = opts.readiness ? await opts.readiness() : true
    } catch {
      ok = false
    }
    const next = ok ? 'SERVING' : 'NOT_SERVING'
    if (next !== current) {
      current = next
      for (const n of names) health.setStatus(n, next)
      logger?.warn({ health: next }, 'grpc health changed')
    }
  }
  await refreshHealth()
  const timer = opts.readiness ? setInterval(() => void refreshHealth(), opts.healthIntervalMs ?? 2000).unref() : null

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(opts.addr, opts.credentials ?? grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  )

  let closing: Promise<void> | null = null
  return {
    port,
    server,
    refreshHealth,
    close() {
      closing ??= (async () => {
        if (timer) clearInterval(timer)
        for (const n of names) health.setStatus(n, 'NOT_SERVING')
        // Watch streams never end on their own: end them now, resumable, so tryShutdown can complete.
        for (const end of [...deps.watches]) end()
        const grace = opts.shutdownGraceMs ?? 5000
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown()
            resolve()
          }, grace)
          force.unref()
          server.tryShutdown(() => {
            clearTimeout(force)
            resolve()
          })
        })
      })()
      return closing
    },
  }
}
