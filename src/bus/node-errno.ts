/**
 * The errno name of a failed node:fs call, as the bus port reports it: the kernel's answer to a sysfs
 * `write(2)` (EADDRINUSE, EBUSY, ENODEV, EINVAL, ...) reaches the reconciler unchanged (docs/kernel-model.md §4).
 */
import type { Errno } from '../domain/errors.js'

const KNOWN: ReadonlySet<string> = new Set<Errno>([
  'EINVAL',
  'ENODEV',
  'ENOENT',
  'EBUSY',
  'EEXIST',
  'EPERM',
  'EUSERS',
  'EAGAIN',
  'ERANGE',
  'EIO',
  'EADDRINUSE',
  'EADDRNOTAVAIL',
  'EACCES',
  'ENOTDIR',
  'EISDIR',
  'ECANCELED',
  'ENOMEM',
  'ETIMEDOUT',
  'EROFS',
  'ENXIO',
  'ENOSPC',
  'EOPNOTSUPP',
  'ELOOP',
  'ENAMETOOLONG',
  'EFAULT',
  'EINTR',
])

/**
 * The errno of `e` (`err.code` of a node:fs error). Names outside {@link Errno} become EIO, with the
 * original name kept in `original` for the message. Node reports ENOTSUP for EOPNOTSUPP (same value on Linux).
 */
export function errnoFromNode(e: unknown): { errno: Errno; original: string } {
  const code = typeof (e as NodeJS.ErrnoException | undefined)?.code === 'string' ? (e as NodeJS.ErrnoException).code! : 'EIO'
  const name = code === 'ENOTSUP' ? 'EOPNOTSUPP' : code === 'EWOULDBLOCK' ? 'EAGAIN' : code
  return { errno: KNOWN.has(name) ? (name as Errno) : 'EIO', original: code }
}
