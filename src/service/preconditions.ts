/** Optimistic concurrency (docs/api.md (REST) If-Match): the caller's resourceVersion against the stored one. */
import { ApmatrixError } from '../domain/errors.js'
import type { CallContext } from './types.js'

/** The If-Match precondition as the store takes it (`*` or absent matches anything). */
export function precondition(ctx: CallContext): { expectedResourceVersion?: string } {
  return ctx.ifMatch !== undefined && ctx.ifMatch !== '*' ? { expectedResourceVersion: ctx.ifMatch } : {}
}

/**
 * CONFLICT unless the caller's precondition matches `current`; `subject` starts the message
 * (`matrix device <uuid> has`). Checked before the store's own check, so a dry run answers CONFLICT
 * exactly like the real call.
 */
export function checkPrecondition(ctx: CallContext, current: string | undefined, subject: string): void {
  const pre = precondition(ctx).expectedResourceVersion
  if (pre !== undefined && pre !== current) throw new ApmatrixError('CONFLICT', `${subject} resourceVersion ${current ?? '(none)'}, not ${pre}`)
}
