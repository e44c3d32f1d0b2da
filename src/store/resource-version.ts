import crypto from 'node:crypto'

/**
 * A new opaque resourceVersion (also the ETag). Random rather than a counter, so a version of a
 * deleted object can never match a recreated object of the same name.
 */
export function newResourceVersion(): string {
  return crypto.randomBytes(8).toString('hex')
}
