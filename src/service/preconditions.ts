/** Optimistic concurrency (docs/api.md (REST) If-Match): the caller's resourceVersion against the stored one. */
import { ApmatrixError } from '../domain/errors.js'
import type { CallContext } from './types.js'

/** The versions the caller accepts, or undefined for any (no precondition, or `*`: the object exists). */
function acceptedVersions(ctx: CallContext): readonly string[] | undefined {
  const m = ctx.ifMatch
  if (m === undefined) return undefined
  const list = typeof m === 'string' ? [m] : m
  return list.length === 0 || list.includes('*') ? undefined : list
}

/** True when the caller names versions (If-Match other than `*`): only then can a precondition refuse. */
export function namesVersions(ctx: CallContext): boolean {
  return acceptedVersions(ctx) !== undefined
}

/**
 * The If-Match precondition as the store takes it, given the version `current` read before the write:
 * the listed version that matches it (RFC 9110: any listed entity tag may match), so the store still
 * refuses a change made in between; else the first listed, which the store refuses (CONFLICT).
 * `*` or absent: none.
 */
export function precondition(ctx: CallContext, current: string | undefined): { expectedResourceVersion?: string } {
  const list = acceptedVersions(ctx)
  if (list === undefined) return {}
  return { expectedResourceVersion: current !== undefined && list.includes(current) ? current : list[0]! }
}

/**
 * CONFLICT unless `current` is one of the versions the caller's precondition lists; `subject` starts the
 * message (`matrix device <uuid> has`). Checked before the store's own check, so a dry run answers
 * CONFLICT exactly like the real call.
 */
export function checkPrecondition(ctx: CallContext, current: string | undefined, subject: string): void {
  const list = acceptedVersions(ctx)
  if (list !== undefined && (current === undefined || !list.includes(current))) {
    const wanted = list.length === 1 ? list[0]! : `any of ${list.slice(0, 4).join(', ')}${list.length > 4 ? ', ...' : ''}`
    throw new ApmatrixError('CONFLICT', `${subject} resourceVersion ${current ?? '(none)'}, not ${wanted}`)
  }
}
