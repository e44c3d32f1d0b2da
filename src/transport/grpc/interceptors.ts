/**
 * Server interceptors: request ids and access logging, so handlers stay free of both.
 * Every call gets a request id of the server's own (generated), which handlers read back from the call
 * metadata (`x-request-id`, replacing the caller's) and which is sent in the response headers and
 * trailers. A caller's sane `x-request-id` becomes the call's correlation id: `x-correlation-id` in the
 * metadata handlers see and in the answer, and beside the request id in the log.
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
export const CORRELATION_ID_KEY = 'x-correlation-id'

/** The request id of a call (set by {@link requestIdInterceptor}; generated if it did not run). */
export function requestIdOf(metadata: grpc.Metadata): string {
  const v = metadata.get(REQUEST_ID_KEY)[0]
  return typeof v === 'string' && REQUEST_ID.test(v) ? v : randomUUID()
}

/** The caller's own request id of a call (set by {@link requestIdInterceptor}), if it sent a sane one. */
export function correlationIdOf(metadata: grpc.Metadata): string | undefined {
  const v = metadata.get(CORRELATION_ID_KEY)[0]
  return typeof v === 'string' && REQUEST_ID.test(v) ? v : undefined
}

/** Generates the call's request id, keeps the caller's as its correlation id, sends both, and logs each call's outcome and duration. */
export function requestIdInterceptor(logger: GrpcLogger | null): grpc.ServerInterceptor {
  return (method, call) => {
    const requestId = randomUUID()
    let correlationId: string | undefined
    const started = process.hrtime.bigint()
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMd) {
            const caller = metadata.get(REQUEST_ID_KEY)[0]
            correlationId = typeof caller === 'string' && REQUEST_ID.test(caller) ? caller : undefined
            metadata.set(REQUEST_ID_KEY, requestId)
            metadata.remove(CORRELATION_ID_KEY)
            if (correlationId) metadata.set(CORRELATION_ID_KEY, correlationId)
            nextMd(metadata)
          },
        })
      },
      sendMetadata(metadata, next) {
        metadata.set(REQUEST_ID_KEY, requestId)
        if (correlationId) metadata.set(CORRELATION_ID_KEY, correlationId)
        next(metadata)
      },
      sendStatus(status, next) {
        const metadata = status.metadata ?? new grpc.Metadata()
        metadata.set(REQUEST_ID_KEY, requestId)
        if (correlationId) metadata.set(CORRELATION_ID_KEY, correlationId)
        // Every status leaves through here: a message grpc-js cannot encode would throw outside any handler.
        const details = safeDetails(status.details)
        if (logger) {
          const entry = {
            method: method.path,
            requestId,
            ...(correlationId ? { correlationId } : {}),
            code: grpc.status[status.code ?? 0],
            ms: Number(process.hrtime.bigint() - started) / 1e6,
          }
          if (status.code === grpc.status.INTERNAL || status.code === grpc.status.UNKNOWN) logger.error(entry, details || 'grpc call failed')
          else logger.info(entry, 'grpc call')
        }
        next({ ...status, details, metadata })
      },
    })
  }
}
