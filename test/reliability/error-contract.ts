/**
 * The error contract of docs/api.md (Errors), read from the document itself, and the checks of one
 * answer against it: which codes each HTTP status may carry, the problem+json body of every REST
 * refusal, and which gRPC statuses a fuzzed call may end with.
 */
import fs from 'node:fs'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { projectRoot } from '../../src/paths.js'
import type { Answer } from './http-sender.js'

/**
 * HTTP status -> the codes docs/api.md's error tables give it (the `code | HTTP | ...` rows of its
 * Errors section: `INVALID_ARGUMENT | 400`, `` `UNAUTHENTICATED` / `PERMISSION_DENIED` | 401 / 403 ``, ...).
 */
export function documentedCodes(): Map<number, Set<string>> {
  const md = fs.readFileSync(path.join(projectRoot, 'docs/api.md'), 'utf8')
  const section = md.slice(md.indexOf('\n## Errors'), md.indexOf('\n## ', md.indexOf('\n## Errors') + 1))
  const out = new Map<number, Set<string>>()
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim())
    if (cells.length < 4) continue
    const codes = [...cells[1]!.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1]!)
    const statuses = [...cells[2]!.matchAll(/\b([1-5]\d\d)\b/g)].map((m) => Number(m[1]))
    if (!codes.length || !statuses.length) continue
    codes.forEach((code, i) => {
      const status = statuses[Math.min(i, statuses.length - 1)]!
      if (!out.has(status)) out.set(status, new Set())
      out.get(status)!.add(code)
    })
  }
  if (!out.get(400)?.has('INVALID_ARGUMENT') || !out.get(503)?.has('UNAVAILABLE')) throw new Error('docs/api.md: the error tables did not parse')
  return out
}

const kebab = (code: string): string => code.toLowerCase().replace(/_/g, '-')

/**
 * What is wrong with a REST answer, or undefined: a 5xx other than 503 UNAVAILABLE with Retry-After;
 * a 4xx (or that 503) without the problem+json body of docs/api.md (Errors) whose `code` is one the
 * table gives its status. `head`: the answer to a HEAD request (no body to check).
 */
export function restAnswerProblem(a: Answer, codes: Map<number, Set<string>>, head: boolean): string | undefined {
  if (!Number.isInteger(a.status) || a.status < 100 || a.status > 599) return `status ${a.status} is not an HTTP status`
  if (a.status < 400) return undefined
  if (a.status >= 500 && a.status !== 503) return `${a.status}: a server error`
  const allowed = codes.get(a.status)
  if (!allowed) return `${a.status}: a status docs/api.md's error table does not list`
  if (a.status === 503 && !a.headers['retry-after']) return '503 without Retry-After'
  if (head) return undefined
  if (!/^application\/problem\+json/.test(a.headers['content-type'] ?? ''))
    return `${a.status} with content-type ${JSON.stringify(a.headers['content-type'])}, not application/problem+json`
  let p: Record<string, unknown>
  try {
    p = JSON.parse(a.body) as Record<string, unknown>
  } catch {
    return `${a.status} with a body that is not JSON: ${JSON.stringify(a.body.slice(0, 120))}`
  }
  if (p === null || typeof p !== 'object') return `${a.status} with a problem that is not an object`
  const code = p.code
  if (typeof code !== 'string' || !allowed.has(code))
    return `${a.status} with code ${JSON.stringify(code)}; docs/api.md gives ${a.status} to ${[...allowed].join(', ')}`
  if (p.status !== a.status) return `problem status ${JSON.stringify(p.status)} on a ${a.status} answer`
  if (p.type !== `urn:apmatrix:problem:${kebab(code)}`) return `problem type ${JSON.stringify(p.type)} for code ${code}`
  if (typeof p.title !== 'string' || typeof p.detail !== 'string' || typeof p.requestId !== 'string' || p.requestId === '')
    return `problem without title, detail or requestId: ${a.body.slice(0, 200)}`
  if (a.headers['x-request-id'] !== undefined && a.headers['x-request-id'] !== p.requestId)
    return `requestId ${p.requestId} but x-request-id ${a.headers['x-request-id']}`
  if (p.detail.length > 2048) return `a detail of ${p.detail.length} characters (unbounded echo of the input?)`
  return undefined
}

/**
 * Error code -> gRPC status, from the gRPC column of docs/api.md's error table (`CONFLICT | 409 | ABORTED`;
 * `same` for the codes that are their own status).
 */
export function documentedGrpcStatuses(): Map<string, grpc.status> {
  const md = fs.readFileSync(path.join(projectRoot, 'docs/api.md'), 'utf8')
  const start = md.indexOf('\n## Errors')
  const section = md.slice(start, md.indexOf('\n## ', start + 1))
  const out = new Map<string, grpc.status>()
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim())
    if (cells.length < 6) continue
    const codes = [...cells[1]!.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1]!)
    const name = /^[A-Z_]+|^same/.exec(cells[3]!)?.[0]
    if (!codes.length || !name) continue
    for (const code of codes) {
      const status = grpc.status[(name === 'same' ? code : name) as keyof typeof grpc.status]
      if (typeof status !== 'number') throw new Error(`docs/api.md: ${code} has gRPC status ${name}, which grpc-js does not know`)
      out.set(code, status)
    }
  }
  if (out.get('CONFLICT') !== grpc.status.ABORTED || out.get('PERMISSION_DENIED') !== grpc.status.PERMISSION_DENIED)
    throw new Error('docs/api.md: the gRPC column did not parse')
  return out
}

/** gRPC statuses a fuzzed call must never end with: a bug's (INTERNAL, UNKNOWN), or one the API does not use (DATA_LOSS). */
export const GRPC_FORBIDDEN = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.DATA_LOSS])
