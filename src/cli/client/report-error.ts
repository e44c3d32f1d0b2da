/**
 * The one place where a client verb's failure becomes text on stderr and an exit code
 * (src/cli/EXIT-CODES.md): the problem's detail, each violation with its owner and fix, the request id;
 * never a stack trace. Usage errors and bugs pass through to main.ts.
 */
import { type CliIo, EXIT } from '../command.js'
import { ApiError, exitCodeOf, type ProblemViolation, UnreachableError, WaitTimeoutError } from './api-error.js'

/** The lines describing violations (also used by `plan`, which gets them in a 200 answer). */
export function formatViolations(violations: readonly ProblemViolation[], indent = '  '): string {
  return violations
    .map((v) => {
      const what = v.apqn ?? (v.id !== undefined ? `id ${v.id}` : v.field)
      const head = `${indent}- ${v.rule}${what ? ` ${what}` : ''}${v.owner ? ` (held by ${v.owner})` : ''}: ${v.message}`
      return v.fix ? `${head}\n${indent}  fix: ${v.fix}\n` : `${head}\n`
    })
    .join('')
}

/** Runs a verb body; an API, network or wait failure is printed and turned into its exit code. */
export async function withClientErrors(io: CliIo, body: () => Promise<number>): Promise<number> {
  try {
    return await body()
  } catch (e) {
    if (e instanceof ApiError) {
      const p = e.problem
      const tags = [p.code, p.errno].filter(Boolean).join(', ')
      let text = `apmatrix: ${p.detail}${tags ? ` [${tags}]` : ''}\n`
      if (p.violations?.length) text += formatViolations(p.violations)
      if (p.requestId) text += `  (request id ${p.requestId})\n`
      io.stderr.write(text)
      return exitCodeOf(e)
    }
    if (e instanceof UnreachableError) {
      io.stderr.write(`apmatrix: ${e.message}\n  (set --server URL or APMATRIX_SERVER)\n`)
      return EXIT.UNAVAILABLE
    }
    if (e instanceof WaitTimeoutError) {
      io.stderr.write(`apmatrix: ${e.message}\n`)
      return EXIT.TIMEOUT
    }
    throw e
  }
}
