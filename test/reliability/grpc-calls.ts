/**
 * Sends the gRPC fuzz cases (test/reliability/proto-cases.ts) as bytes (makeUnaryRequest with identity
 * serialisers) and judges what came back against docs/api.md (Errors).
 */
import * as grpc from '@grpc/grpc-js'
import { GRPC_FORBIDDEN } from './error-contract.js'
import type { GrpcCase, GrpcMethod } from './proto-cases.js'

/** A hang guard on calls without a short deadline, not a speed limit. */
const HANG_MS = 30_000

/** How a call ended. */
export interface CallOutcome {
  code: grpc.status
  details: string
  trailers: grpc.Metadata | undefined
  response?: Buffer
}

const identity = (b: Buffer): Buffer => b

/** One call of `c` on `client`: the bytes as they are, the metadata, the deadline. */
export function send(client: grpc.Client, c: GrpcCase): Promise<CallOutcome> {
  const md = new grpc.Metadata()
  for (const [k, v] of c.metadata) md.add(k, v)
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | undefined
    const call = client.makeUnaryRequest(
      c.path,
      identity,
      identity,
      Buffer.from(c.bytes),
      md,
      { deadline: Date.now() + (c.deadlineMs ?? HANG_MS) },
      (err: grpc.ServiceError | null, res?: Buffer) => {
        if (err) resolve({ code: err.code, details: err.details, trailers: err.metadata ?? trailers })
        else resolve({ code: grpc.status.OK, details: '', trailers, ...(res ? { response: res } : {}) })
      },
    )
    call.on('status', (s) => (trailers = s.metadata))
  })
}

/** What is wrong with the outcome of `c`, or undefined. */
export function outcomeProblem(c: GrpcCase, o: CallOutcome, methods: Map<string, GrpcMethod>, documented: Map<string, grpc.status>): string | undefined {
  const name = grpc.status[o.code]
  if (GRPC_FORBIDDEN.has(o.code)) return `${name}: ${o.details}`
  if (o.details.length > 2048) return `${name} with ${o.details.length} characters of details`
  if (o.code === grpc.status.OK) {
    const m = methods.get(c.path)
    if (!m) return `OK from ${c.path}, which is no method`
    try {
      m.responseType.decode(o.response ?? Buffer.alloc(0))
    } catch (e) {
      return `an OK answer that does not decode as ${m.responseType.fullName}: ${(e as Error).message}`
    }
    return undefined
  }
  const code = o.trailers?.get('code')[0]
  if (typeof code === 'string') {
    const expected = documented.get(code)
    if (expected === undefined) return `${name} with code ${code}, which docs/api.md's error table does not list`
    if (expected !== o.code) return `${name} with code ${code}; docs/api.md gives ${code} ${grpc.status[expected]}`
    return undefined
  }
  // Statuses grpc-js (or the health service) gives without an apmatrix code.
  const short = c.deadlineMs !== undefined
  if ((o.code === grpc.status.DEADLINE_EXCEEDED || o.code === grpc.status.CANCELLED) && short) return undefined
  if (o.code === grpc.status.UNIMPLEMENTED && !methods.has(c.path)) return undefined
  if (o.code === grpc.status.RESOURCE_EXHAUSTED && c.bytes.length > 4 * 1024 * 1024) return undefined
  if (o.code === grpc.status.NOT_FOUND && c.path === '/grpc.health.v1.Health/Check') return undefined
  return `${name} without an apmatrix code (${o.details})`
}
