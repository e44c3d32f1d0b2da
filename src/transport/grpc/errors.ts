/**
 * The one place where errors become gRPC statuses (docs/api.md (REST) table, §6): the status code of the
 * ApmatrixError code, trailing metadata `code`, `errno`, `violations` (a JSON array) and
 * `violations-bin` (an encoded `apmatrix.v1.Violations`), `x-request-id`, and the standard rich status
 * `grpc-status-details-bin` (rich-status.ts). Anything that is not an ApmatrixError is INTERNAL with a
 * generic message: no stack trace or internal text leaks.
 */
import * as grpc from '@grpc/grpc-js'
import { ApmatrixError, type ErrorCode, type Violation } from '../../domain/errors.js'
import { clip } from '../../domain/text.js'
import { HubClosedError, SubscriptionLagError } from '../../service/index.js'
import { encodeRichStatus, STATUS_DETAILS_KEY } from './rich-status.js'

/** gRPC status of each error code. */
export const GRPC_STATUS: Record<ErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  OUT_OF_RANGE: grpc.status.OUT_OF_RANGE,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  CONFLICT: grpc.status.ABORTED,
  APQN_IN_USE: grpc.status.FAILED_PRECONDITION,
  APQN_RESERVED: grpc.status.FAILED_PRECONDITION,
  BUSY: grpc.status.FAILED_PRECONDITION,
  INSTANCE_LIMIT: grpc.status.FAILED_PRECONDITION,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  PAYLOAD_TOO_LARGE: grpc.status.RESOURCE_EXHAUSTED,
  RATE_LIMITED: grpc.status.RESOURCE_EXHAUSTED,
  GONE: grpc.status.OUT_OF_RANGE,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
}

/** A status object for `callback(err)` / `call.emit('error', err)`, with the trailers above. */
export type GrpcError = grpc.ServiceError & { metadata: grpc.Metadata }

// gRPC metadata values travel in HTTP/2 headers: keep the JSON bounded.
const MAX_VIOLATIONS_JSON = 8 * 1024
// The encoded list too: a peer refuses trailers over its header list limit (64 KiB for grpc-js and
// Node), and the call then never ends (1,001 violations took ~90 KiB). With the JSON (8 KiB), the rich
// status (8 KiB) and base64, all trailers stay under ~45 KiB.
const MAX_VIOLATIONS_BIN = 16 * 1024

/** Maps any thrown value. `internal` is told about errors that became INTERNAL (for logging). */
export function toGrpcError(err: unknown, requestId: string, internal?: (err: unknown) => void): GrpcError {
  const md = new grpc.Metadata()
  md.set('x-request-id', requestId)
  if (err instanceof ApmatrixError) {
    md.set('code', err.code)
    if (err.errno) md.set('errno', err.errno)
    if (err.retryAfterSeconds !== undefined) md.set('retry-after', String(err.retryAfterSeconds))
    if (err.oldestSeq !== undefined) md.set('oldest-seq', String(err.oldestSeq))
    if (err.violations.length) {
      md.set('violations', boundedJson(err.violations))
      md.set('violations-bin', boundedViolationsBin(err.violations))
    }
    return status(GRPC_STATUS[err.code] ?? grpc.status.INTERNAL, err.message, md, {
      reason: err.code,
      requestId,
      errno: err.errno,
      ...(err.retryAfterSeconds !== undefined ? { retryAfter: String(err.retryAfterSeconds) } : {}),
      ...(err.oldestSeq !== undefined ? { oldestSeq: String(err.oldestSeq) } : {}),
      violations: err.violations,
    })
  }
  if (err instanceof SubscriptionLagError) {
    md.set('code', 'RATE_LIMITED')
    md.set('resume-seq', String(err.resumeSeq))
    return status(grpc.status.RESOURCE_EXHAUSTED, err.message, md, { reason: 'RATE_LIMITED', requestId, resumeSeq: String(err.resumeSeq) })
  }
  if (err instanceof HubClosedError) {
    md.set('code', 'UNAVAILABLE')
    md.set('resume-seq', String(err.resumeSeq))
    return status(grpc.status.UNAVAILABLE, 'server shutting down; resume from resume-seq', md, {
      reason: 'UNAVAILABLE',
      requestId,
      resumeSeq: String(err.resumeSeq),
    })
  }
  internal?.(err)
  md.set('code', 'INTERNAL')
  return status(grpc.status.INTERNAL, `internal error (request ${requestId})`, md, { reason: 'INTERNAL', requestId })
}

/** What the rich status of an error says besides its gRPC code and message. */
interface Rich {
  reason: string
  requestId: string
  errno?: string
  resumeSeq?: string
  /** RATE_LIMITED: seconds to wait (also the `retry-after` trailer). */
  retryAfter?: string
  /** GONE: the oldest position a watch can start from (also the `oldest-seq` trailer). */
  oldestSeq?: string
  violations?: readonly Violation[]
}

/** Longest status message sent (code points): it travels in the `grpc-message` trailer. */
const MAX_DETAILS = 1024

function status(code: grpc.status, details: string, metadata: grpc.Metadata, rich: Rich): GrpcError {
  const safe = safeDetails(details)
  metadata.set(
    STATUS_DETAILS_KEY,
    encodeRichStatus({
      grpcCode: code,
      message: safe,
      reason: rich.reason,
      metadata: { errno: rich.errno, requestId: rich.requestId, resumeSeq: rich.resumeSeq, retryAfter: rich.retryAfter, oldestSeq: rich.oldestSeq },
      violations: rich.violations,
    }),
  )
  return Object.assign(new Error(safe), { code, details: safe, metadata }) as GrpcError
}

/**
 * A status message grpc-js can always send: it percent-encodes `grpc-message` with `encodeURI`, which
 * throws on a lone surrogate, outside any handler (one such message used to end the process).
 */
export function safeDetails(details: unknown): string {
  return clip(typeof details === 'string' ? details : String(details ?? ''), MAX_DETAILS)
}

function boundedJson(v: Violation[]): string {
  let n = v.length
  let s = JSON.stringify(v)
  while (s.length > MAX_VIOLATIONS_JSON && n > 1) {
    n = Math.ceil(n / 2)
    s = JSON.stringify(v.slice(0, n))
  }
  // Metadata values must be printable ASCII.
  return s.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** The encoded violations, as many as fit in {@link MAX_VIOLATIONS_BIN} (the first ones, halved until they fit). */
function boundedViolationsBin(v: Violation[]): Buffer {
  let n = v.length
  let b = encodeViolations(v)
  while (b.length > MAX_VIOLATIONS_BIN && n > 1) {
    n = Math.ceil(n / 2)
    b = encodeViolations(v.slice(0, n))
  }
  return b
}

// ---- apmatrix.v1.Violations wire encoding (types.proto), for the `violations-bin` trailer ----------

function varint(n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}

function bytesField(field: number, bytes: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...varint(bytes.length)]), bytes])
}

function stringField(field: number, s: string | undefined): Buffer {
  return s ? bytesField(field, Buffer.from(s, 'utf8')) : Buffer.alloc(0)
}

/** Encodes `Violations { repeated Violation violations = 1; }` (field numbers of types.proto). */
export function encodeViolations(vs: Violation[]): Buffer {
  return Buffer.concat(
    vs.map((v) => {
      const id = v.id === undefined ? Buffer.alloc(0) : bytesField(4, Buffer.from(v.id === 0 ? [] : [0x08, ...varint(v.id)]))
      const msg = Buffer.concat([
        stringField(1, v.rule),
        stringField(2, v.message),
        stringField(3, v.apqn),
        id,
        stringField(5, v.field),
        stringField(6, v.owner),
        stringField(7, v.fix),
      ])
      return bytesField(1, msg)
    }),
  )
}
