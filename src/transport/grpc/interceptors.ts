/**
 * Server interceptors: request ids and access logging, so handlers stay free of both.
 * A caller's `x-request-id` metadata is kept when it is sane (else one is generated); handlers read it
 * back from the call metadata, and it is echoed in the response headers and trailers.
 */
import { randomUUID } from 'node:crypto'
import * as grpc from '@grpc/grpc-js'
import { REQUEST_ID } from '../../domain/names.js'
import { safeDetails } from './errors.js'

/** The smallest logger the transport needs (pino fits). */
export interface GrpcLogger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export const REQUEST_ID_KEY = 'x-request-id'

/** The request id of a call (set by {@link requestIdInterceptor}; generated if it did not run). */
export function requestIdOf(metadata: grpc.Metadata): string {
  const v = metadata.get(REQUEST_ID_KEY)[0]
  return typeof v === 'string' && REQUEST_ID.test(v) ? v : randomUUID()
}

/** Honours or generates `x-request-id`, echoes it, and logs each call's outcome and duration. */
export function requestIdInterceptor(logger: GrpcLogger | null): grpc.ServerInterceptor {
  return (method, call) => {
    let requestId = ''
    const started = process.hrtime.bigint()
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMd) {
            requestId = requestIdOf(metadata)
            metadata.set(REQUEST_ID_KEY, requestId)
            nextMd(metadata)
          },
        })
      },
      sendMetadata(metadata, next) {
        if (requestId) metadata.set(REQUEST_ID_KEY, requestId)
        next(metadata)
      },
      sendStatus(status, next) {
        const metadata = status.metadata ?? new grpc.Metadata()
        if (requestId && !metadata.get(REQUEST_ID_KEY).length) metadata.set(REQUEST_ID_KEY, requestId)
        // Every status leaves through here: a message grpc-js cannot encode would throw outside any handler.
        const details = safeDetails(status.details)
        if (logger) {
          const entry = { method: method.path, requestId, code: grpc.status[status.code ?? 0], ms: Number(process.hrtime.bigint() - started) / 1e6 }
          if (status.code === grpc.status.INTERNAL || status.code === grpc.status.UNKNOWN) logger.error(entry, details || 'grpc call failed')
          else logger.info(entry, 'grpc call')
        }
        next({ ...status, details, metadata })
      },
    })
  }
}
