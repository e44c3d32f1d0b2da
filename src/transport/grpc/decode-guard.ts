/**
 * Undecodable request messages are the caller's mistake (docs/api.md (gRPC) Errors): INVALID_ARGUMENT,
 * not the INTERNAL grpc-js answers when a method's deserializer throws. The deserializers of a service
 * definition are wrapped ({@link decodeSafely}) to hand on an {@link UndecodableRequest} instead of
 * throwing; {@link decodeGuardInterceptor} answers it before any handler sees it.
 */
import * as grpc from '@grpc/grpc-js'
import { invalidArgument } from '../../domain/errors.js'
import { clip } from '../../domain/text.js'
import { toGrpcError } from './errors.js'
import { requestIdOf } from './interceptors.js'

/** What a wrapped deserializer returns for bytes that are not a valid message of the method's type. */
export class UndecodableRequest {
  constructor(readonly reason: string) {}
}

/** The service definition with each method's request deserializer made total (see the module comment). */
export function decodeSafely<D extends grpc.ServiceDefinition>(definition: D): D {
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => [
      name,
      {
        ...method,
        requestDeserialize: (bytes: Buffer) => {
          try {
            return method.requestDeserialize(bytes)
          } catch (e) {
            return new UndecodableRequest(e instanceof Error ? e.message : String(e))
          }
        },
      },
    ]),
  ) as D
}

/**
 * Ends a call whose request message could not be decoded with INVALID_ARGUMENT (field `request`); the
 * handler never runs. Listed after the request-id interceptor, so the status carries the request id
 * and is logged like any other.
 */
export function decodeGuardInterceptor(): grpc.ServerInterceptor {
  return (_method, call) => {
    let requestId = ''
    let refused = false
    const guarded: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMd) {
            requestId = requestIdOf(metadata)
            nextMd(metadata)
          },
          onReceiveMessage(message, nextMsg) {
            if (refused) return
            if (message instanceof UndecodableRequest) {
              refused = true
              const err = invalidArgument('request', `the request message could not be decoded: ${clip(message.reason, 200)}`)
              const status = toGrpcError(err, requestId)
              guarded.sendStatus({ code: status.code, details: status.details, metadata: status.metadata })
              return
            }
            nextMsg(message)
          },
          onReceiveHalfClose(nextHc) {
            if (!refused) nextHc()
          },
        })
      },
    })
    return guarded
  }
}
