/**
 * The wire form of a bus write's fence (proto/apmatrix/hostbus/v1/hostbus.proto, "Fencing"):
 * request metadata `x-apmatrix-fence: <host>/<holder>/<token>`, host and holder percent-encoded so a
 * holder id with `/` or non-ASCII characters survives, token the lease's decimal fencing token.
 */
import { ApmatrixError } from '../domain/errors.js'
import type { BusFence } from '../bus/port.js'
import { clip } from '../domain/text.js'

/** The gRPC metadata key of the fence of a Write. */
export const FENCE_METADATA_KEY = 'x-apmatrix-fence'

/** `<host>/<holder>/<token>` of a fence. */
export function formatFence(f: BusFence): string {
  if (!Number.isSafeInteger(f.token) || f.token < 1) throw new RangeError(`fence token must be a positive integer, got ${f.token}`)
  return `${encodeURIComponent(f.host)}/${encodeURIComponent(f.holder)}/${f.token}`
}

/** The fence of a header value; throws ApmatrixError INVALID_ARGUMENT for anything else. */
export function parseFence(text: string): BusFence {
  const m = /^([^/]+)\/([^/]+)\/([1-9]\d{0,15})$/.exec(text)
  const token = m ? Number(m[3]) : NaN
  if (!m || !Number.isSafeInteger(token)) {
    throw new ApmatrixError('INVALID_ARGUMENT', `${FENCE_METADATA_KEY}: '${clip(text, 200)}' is not <host>/<holder>/<token>`)
  }
  try {
    return { host: decodeURIComponent(m[1]!), holder: decodeURIComponent(m[2]!), token }
  } catch {
    throw new ApmatrixError('INVALID_ARGUMENT', `${FENCE_METADATA_KEY}: '${clip(text, 200)}' has a bad percent-encoding`)
  }
}
