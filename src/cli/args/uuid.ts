/** The UUID positional of the `mdev` verbs. */
import { UsageError } from '../command.js'
import { clip } from '../../domain/text.js'

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

/** Whether `s` is a UUID in the 8-4-4-4-12 hex form. */
export function isUuid(s: string): boolean {
  return UUID.test(s)
}

/** The one UUID among `positionals`, lowercased; {@link UsageError} when missing, malformed or followed by more. */
export function requireUuid(positionals: readonly string[]): string {
  if (positionals.length === 0) throw new UsageError('missing UUID of the matrix device')
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${clip(positionals[1]!, 60)}'`)
  const u = positionals[0]!
  if (!isUuid(u)) throw new UsageError(`'${clip(u, 60)}' is not a UUID (8-4-4-4-12 hex digits)`)
  return u.toLowerCase()
}
