/**
 * What a refused sysfs operation on an emulated host means for a caller: the kernel errno (docs/kernel-model.md §4)
 * mapped to a stable error code, so REST and gRPC answer alike and keep the errno.
 */
import { ApmatrixError, SysfsError, type ErrorCode, type Errno } from '../domain/errors.js'

const BY_ERRNO: Record<Errno, ErrorCode> = {
  ENOENT: 'NOT_FOUND',
  ENOTDIR: 'NOT_FOUND',
  EISDIR: 'INVALID_ARGUMENT',
  // A path through more than 40 symbolic links (the VFS limit).
  ELOOP: 'INVALID_ARGUMENT',
  EINVAL: 'INVALID_ARGUMENT',
  ERANGE: 'OUT_OF_RANGE',
  // E-3: an id above the machine's maximum.
  ENODEV: 'OUT_OF_RANGE',
  EBUSY: 'BUSY',
  EADDRINUSE: 'APQN_IN_USE',
  EADDRNOTAVAIL: 'APQN_RESERVED',
  EEXIST: 'ALREADY_EXISTS',
  EPERM: 'PERMISSION_DENIED',
  EACCES: 'PERMISSION_DENIED',
  // V-4: no instances of the mdev type left.
  EUSERS: 'INSTANCE_LIMIT',
  ECANCELED: 'CONFLICT',
  EAGAIN: 'UNAVAILABLE',
  EIO: 'UNAVAILABLE',
  ETIMEDOUT: 'UNAVAILABLE',
  ENOMEM: 'RATE_LIMITED',
  // A real /sys or a mount of one: the attribute cannot be used this way, or the file system refused.
  EROFS: 'PERMISSION_DENIED',
  ENXIO: 'NOT_FOUND',
  ENOSPC: 'UNAVAILABLE',
  EOPNOTSUPP: 'INVALID_ARGUMENT',
  ENAMETOOLONG: 'INVALID_ARGUMENT',
  EFAULT: 'INVALID_ARGUMENT',
  EINTR: 'UNAVAILABLE',
}

/**
 * The ApmatrixError for a SysfsError (errno kept); other errors are returned unchanged. `overrides`
 * re-reads an errno where the operation gives it another meaning (ENODEV of a guest open: no such device).
 */
export function fromSysfsError(e: unknown, overrides: Partial<Record<Errno, ErrorCode>> = {}): unknown {
  if (e instanceof SysfsError) return new ApmatrixError(overrides[e.errno] ?? BY_ERRNO[e.errno] ?? 'INVALID_ARGUMENT', e.message, { errno: e.errno, cause: e })
  return e
}
