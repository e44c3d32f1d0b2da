/**
 * The standard rich error model of gRPC (docs/api.md (gRPC) Errors): a `google.rpc.Status` in the
 * `grpc-status-details-bin` trailer, so any gRPC client reads our errors without knowing our own
 * metadata keys. Details: always an `ErrorInfo` (reason = the stable code, domain {@link ERROR_DOMAIN},
 * metadata: errno, requestId, resumeSeq when they apply); for violations also a `BadRequest`
 * (INVALID_ARGUMENT, OUT_OF_RANGE: one field violation each) or a `PreconditionFailure` (the other
 * codes: one violation each, type = the rule, subject = the APQN, id or field).
 *
 * Encoded with protobufjs from the vendored google/rpc/status.proto and error_details.proto
 * (proto/google/rpc/, Apache-2.0, as published by Google).
 */
import path from 'node:path'
import protobuf from 'protobufjs'
import type { Violation } from '../../domain/errors.js'
import { PROTO_ROOT } from './proto.js'

/** `ErrorInfo.domain` of every apmatrix error. */
export const ERROR_DOMAIN = 'apmatrix.dev'

/** The trailer key (binary) that carries the encoded `google.rpc.Status`. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin'

/** Largest encoded status sent: it travels in an HTTP/2 trailer beside the other metadata. */
const MAX_STATUS_BYTES = 8 * 1024

const TYPE_PREFIX = 'type.googleapis.com/'

interface Types {
  status: protobuf.Type
  errorInfo: protobuf.Type
  badRequest: protobuf.Type
  preconditionFailure: protobuf.Type
}

let types: Types | undefined

/** The google.rpc message types, loaded once (google/protobuf/any and duration are protobufjs's own). */
export function richStatusTypes(): Types {
  if (!types) {
    const root = new protobuf.Root()
    // keepCase: field names as in the .proto files, like protobufjs's bundled google/protobuf/any.proto.
    root.loadSync(
      ['google/rpc/status.proto', 'google/rpc/error_details.proto'].map((f) => path.join(PROTO_ROOT, f)),
      { keepCase: true },
    )
    types = {
      status: root.lookupType('google.rpc.Status'),
      errorInfo: root.lookupType('google.rpc.ErrorInfo'),
      badRequest: root.lookupType('google.rpc.BadRequest'),
      preconditionFailure: root.lookupType('google.rpc.PreconditionFailure'),
    }
  }
  return types
}

/** What one error says, for {@link encodeRichStatus}. */
export interface RichStatusInput {
  /** The gRPC status code (number) and message, the same as the call's status. */
  grpcCode: number
  message: string
  /** Our stable code (`ErrorInfo.reason`). */
  reason: string
  /** `ErrorInfo.metadata`: string values only, empty ones left out. */
  metadata: Record<string, string | undefined>
  violations?: readonly Violation[]
}

const FIELD_RULES = new Set(['INVALID_ARGUMENT', 'OUT_OF_RANGE'])

/** A `google.protobuf.Any` (snake_case, as loaded with keepCase). */
interface AnyMessage {
  type_url: string
  value: Uint8Array
}

function any(type: protobuf.Type, value: object): AnyMessage {
  return { type_url: `${TYPE_PREFIX}${type.fullName.replace(/^\./, '')}`, value: type.encode(type.fromObject(value)).finish() }
}

function encode(input: RichStatusInput, violations: readonly Violation[]): Buffer {
  const t = richStatusTypes()
  const metadata = Object.fromEntries(Object.entries(input.metadata).filter((e): e is [string, string] => typeof e[1] === 'string' && e[1] !== ''))
  const details: AnyMessage[] = [any(t.errorInfo, { reason: input.reason, domain: ERROR_DOMAIN, metadata })]
  const fields = violations.filter((v) => FIELD_RULES.has(v.rule))
  const preconditions = violations.filter((v) => !FIELD_RULES.has(v.rule))
  if (fields.length) {
    details.push(
      any(t.badRequest, {
        field_violations: fields.map((v) => ({ field: v.field ?? '', description: v.message, reason: v.rule })),
      }),
    )
  }
  if (preconditions.length) {
    details.push(
      any(t.preconditionFailure, {
        violations: preconditions.map((v) => ({
          type: v.rule,
          subject: v.apqn ?? (v.id !== undefined ? `${v.field ?? 'id'}:${v.id}` : (v.field ?? '')),
          description: v.fix ? `${v.message} (${v.fix})` : v.message,
        })),
      }),
    )
  }
  return Buffer.from(t.status.encode(t.status.fromObject({ code: input.grpcCode, message: input.message, details })).finish())
}

/**
 * The encoded `google.rpc.Status` of an error. Violations are cut (halved until it fits) so the status
 * stays under 8 KiB; the ErrorInfo is always there.
 */
export function encodeRichStatus(input: RichStatusInput): Buffer {
  let vs = input.violations ?? []
  let out = encode(input, vs)
  while (out.length > MAX_STATUS_BYTES && vs.length > 0) {
    vs = vs.slice(0, Math.floor(vs.length / 2))
    out = encode(input, vs)
  }
  return out
}

/** Decodes a `grpc-status-details-bin` value (tests and clients): the status with its details unpacked. */
export function decodeRichStatus(bytes: Uint8Array): { code: number; message: string; details: Array<{ type: string; value: Record<string, unknown> }> } {
  const t = richStatusTypes()
  const byName: Record<string, protobuf.Type> = Object.fromEntries(
    [t.errorInfo, t.badRequest, t.preconditionFailure].map((x) => [x.fullName.replace(/^\./, ''), x]),
  )
  const s = t.status.toObject(t.status.decode(bytes), { defaults: true }) as {
    code: number
    message: string
    details: AnyMessage[]
  }
  return {
    code: s.code,
    message: s.message,
    details: s.details.map((d) => {
      const name = d.type_url.slice(TYPE_PREFIX.length)
      const type = byName[name]
      return { type: name, value: type ? (type.toObject(type.decode(d.value), { defaults: true }) as Record<string, unknown>) : {} }
    }),
  }
}
