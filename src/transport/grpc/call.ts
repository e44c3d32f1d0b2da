/**
 * Wraps a handler body so that every unary call answers exactly once, through the one error mapper,
 * and does not start work for a call that is already cancelled or past its deadline.
 */
import * as grpc from '@grpc/grpc-js'
const { Metadata } = grpc
import { toGrpcError } from './errors.js'
import { correlationIdOf, requestIdOf, type GrpcLogger } from './interceptors.js'
import { principalOf } from './auth.js'
import { actorOf, type Principal } from '../../auth/identity.js'

/** Who is calling: the server's request id, the caller's own (correlation), and the actor recorded in audit and events. */
export interface GrpcCallInfo {
  requestId: string
  correlationId?: string
  actor: string
  /** Trailing metadata sent with a successful answer (created on first use by {@link setTrailer}). */
  trailer?: grpc.Metadata
  /** The authenticated caller (auth.ts). */
  principal: Principal
}

/** The metadata key of a read answered from the read cache's copy while the store was unreachable: ms since its last sync. */
export const STALE_KEY = 'apmatrix-stale'

/** Sets a trailing metadata entry of the answer. */
export function setTrailer(info: GrpcCallInfo, key: string, value: string): void {
  info.trailer ??= new Metadata()
  info.trailer.set(key, value)
}

/** Marks the answer as possibly stale (`staleMs` not null; read-cache.ts). */
export function setStale(info: GrpcCallInfo, staleMs: number | null): void {
  if (staleMs !== null) setTrailer(info, STALE_KEY, String(staleMs))
}

/** Request id, correlation id and actor of a call. */
export function callInfo(call: { metadata: grpc.Metadata; getPeer(): string }): GrpcCallInfo {
  const correlationId = correlationIdOf(call.metadata)
  const principal = principalOf(call.metadata)
  return { requestId: requestIdOf(call.metadata), ...(correlationId ? { correlationId } : {}), actor: actorOf(principal, 'grpc'), principal }
}

/** True when the client's deadline has passed (grpc-js has then answered DEADLINE_EXCEEDED already). */
export function pastDeadline(call: { getDeadline(): grpc.Deadline }): boolean {
  const d = call.getDeadline()
  const ms = d instanceof Date ? d.getTime() : d
  return Number.isFinite(ms) && ms <= Date.now()
}

/** A unary handler from an async body `fn(request, info)`. */
export function unary<Req, Res>(logger: GrpcLogger | null, fn: (req: Req, info: GrpcCallInfo) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const info = callInfo(call)
    if (call.cancelled || pastDeadline(call)) return
    let p: Promise<Res>
    try {
      p = fn(call.request, info)
    } catch (e) {
      p = Promise.reject(e)
    }
    const internal = (e: unknown) => logger?.error({ err: e, requestId: info.requestId }, 'grpc handler failed')
    // `callback` serialises the answer and encodes the status; whatever it throws must stay with this call
    // (inside a promise reaction it would be an unhandled rejection, which ends the process).
    const answer = (err: grpc.ServiceError | null, res?: Res): void => {
      try {
        if (!err && info.trailer) callback(null, res, info.trailer)
        else callback(err, res)
      } catch (e) {
        internal(e)
        try {
          callback(toGrpcError(e, info.requestId))
        } catch {
          // The call is beyond answering (its stream is gone); the client sees the connection's status.
        }
      }
    }
    p.then(
      (res) => {
        if (!call.cancelled) answer(null, res)
      },
      (err: unknown) => {
        if (call.cancelled) return
        answer(toGrpcError(err, info.requestId, internal))
      },
    )
  }
}
