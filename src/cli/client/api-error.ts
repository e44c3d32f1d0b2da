/**
 * Failures of a REST call as the `apmatrix` client verbs see them, and the exit code each maps to
 * (src/cli/EXIT-CODES.md). The server's problem body (docs/api.md (REST)) is kept whole so the verb can print
 * its detail and every violation with its fix.
 */
import type { Violation } from '../../domain/errors.js'
import { EXIT } from '../command.js'

/**
 * One violation of a problem body (docs/api.md (Admission): rule, APQN or id, current owner, suggested fix): the
 * domain's Violation, with `rule` any string since a newer server may know more rules.
 */
export type ProblemViolation = Omit<Violation, 'rule'> & { rule: string }

/** The `application/problem+json` body of an error answer. */
export interface Problem {
  status: number
  title?: string
  detail: string
  code: string
  errno?: string
  violations?: ProblemViolation[]
  requestId?: string
}

/** The server answered with an error status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(problem.detail)
    this.name = 'ApiError'
  }

  get code(): string {
    return this.problem.code
  }
}

/** No usable answer: connection refused, DNS failure, reset, or no answer within the request timeout. */
export class UnreachableError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UnreachableError'
  }
}

/** The devices did not converge before the wait deadline (`apply`, `--wait`). */
export class WaitTimeoutError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'WaitTimeoutError'
  }
}

const REFUSED_CODES = new Set(['APQN_IN_USE', 'APQN_RESERVED', 'BUSY', 'INSTANCE_LIMIT'])

/** The exit code of an API error: admission refusals 3, not found 4, conflicts 5, unavailable 6, else 1. */
export function exitCodeOf(e: ApiError): number {
  const { code, violations } = e.problem
  if (REFUSED_CODES.has(code)) return EXIT.REFUSED
  // A 400 that lists violations is a refusal of the content (OUT_OF_RANGE, bad ids), not a crash.
  if (e.status === 400 && violations && violations.length > 0) return EXIT.REFUSED
  if (code === 'NOT_FOUND' || e.status === 404) return EXIT.NOT_FOUND
  if (code === 'CONFLICT' || code === 'ALREADY_EXISTS') return EXIT.CONFLICT
  if (code === 'UNAVAILABLE' || e.status === 503) return EXIT.UNAVAILABLE
  return EXIT.FAILURE
}
