import { ApmatrixError } from '../domain/errors.js'

/** Largest page a list call returns (docs/api.md (REST)). */
export const MAX_PAGE_SIZE = 500
/** Page size when the caller gives none. */
export const DEFAULT_PAGE_SIZE = 100

/** Encodes the position after `after` (the last key of a page) as an opaque token. */
export function encodePageToken(after: string): string {
  return Buffer.from(JSON.stringify({ v: 1, a: after }), 'utf8').toString('base64url')
}

/** Decodes a token from {@link encodePageToken}; anything else is `INVALID_ARGUMENT`. */
export function decodePageToken(token: string): string {
  try {
    const o = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { v?: unknown; a?: unknown }
    if (o.v === 1 && typeof o.a === 'string') return o.a
  } catch {
    // fall through
  }
  throw new ApmatrixError('INVALID_ARGUMENT', 'invalid pageToken')
}

/** Validates a page size: an integer in 1..500, default 100; otherwise `INVALID_ARGUMENT`. */
export function pageSize(limit: number | undefined, max = MAX_PAGE_SIZE): number {
  if (limit === undefined) return Math.min(DEFAULT_PAGE_SIZE, max)
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new ApmatrixError('INVALID_ARGUMENT', `limit must be an integer in 1..${max}, got ${limit}`)
  }
  return limit
}
