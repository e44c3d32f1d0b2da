/**
 * Stable error codes of apmatrix (docs/api.md (REST)). Domain code throws {@link ApmatrixError};
 * each transport maps `code` to its status in exactly one place.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'OUT_OF_RANGE'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'CONFLICT'
  | 'APQN_IN_USE'
  | 'APQN_RESERVED'
  | 'BUSY'
  | 'INSTANCE_LIMIT'
  /** The host cannot do this at all, e.g. emulator controls on a host that is not emulated. */
  | 'FAILED_PRECONDITION'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'PAYLOAD_TOO_LARGE'
  | 'RATE_LIMITED'
  /** A watch position older than what the event log keeps (retention compacted it): re-list. */
  | 'GONE'
  | 'UNAVAILABLE'

/** Kernel errno names that sysfs writes can fail with (docs/kernel-model.md §4). */
export type Errno =
  | 'EINVAL'
  | 'ENODEV'
  | 'ENOENT'
  | 'EBUSY'
  | 'EEXIST'
  | 'EPERM'
  | 'EUSERS'
  | 'EAGAIN'
  | 'ERANGE'
  | 'EIO'
  | 'EADDRINUSE'
  | 'EADDRNOTAVAIL'
  | 'EACCES'
  | 'ENOTDIR'
  | 'EISDIR'
  | 'ECANCELED'
  | 'ENOMEM'
  | 'ETIMEDOUT'
  // What a real /sys (or a mount of one) can answer besides the AP bus's own errnos (src/bus/node-sysfs-access.ts).
  | 'EROFS'
  | 'ENXIO'
  | 'ENOSPC'
  | 'EOPNOTSUPP'
  | 'ELOOP'
  | 'ENAMETOOLONG'
  | 'EFAULT'
  | 'EINTR'

/** One reason a desired state is refused (docs/api.md (Admission)): every violation is reported, not only the first. */
export interface Violation {
  /** Rule id: the product rule (`APQN_IN_USE`, ...) that was broken. */
  rule: ErrorCode
  /** Human readable sentence. */
  message: string
  /** The APQN concerned (`05.0004`), when one applies. */
  apqn?: string
  /** An adapter or domain id, when the violation is about a single id. */
  id?: number
  /** The field the id came from (`adapters`, `apmask`, ...). */
  field?: string
  /** Who holds the APQN now: an mdev uuid, or `host` for the default drivers. */
  owner?: string
  /** What the caller can do about it (`clear bit 5 in apmask: -5`). */
  fix?: string
}

/** The one error type of the domain and service layers: a stable code, optional kernel errno and violations. */
export class ApmatrixError extends Error {
  readonly code: ErrorCode
  readonly errno?: Errno
  readonly violations: Violation[]
  /** RATE_LIMITED: whole seconds the caller should wait before retrying (REST `Retry-After`, gRPC `retry-after`). */
  readonly retryAfterSeconds?: number
  /** GONE: the oldest position a watch can still start from (REST `oldestSeq`, gRPC `oldest-seq`). */
  readonly oldestSeq?: number
  constructor(
    code: ErrorCode,
    message: string,
    opts: { errno?: Errno; violations?: Violation[]; cause?: unknown; retryAfterSeconds?: number; oldestSeq?: number } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'ApmatrixError'
    this.code = code
    this.errno = opts.errno
    this.violations = opts.violations ?? []
    if (opts.retryAfterSeconds !== undefined) this.retryAfterSeconds = opts.retryAfterSeconds
    if (opts.oldestSeq !== undefined) this.oldestSeq = opts.oldestSeq
  }
}

/**
 * GONE for a watch position below the event log's compaction floor (docs/api.md (Events) Retention): the events
 * after `position` are no longer all kept, so a watch from there would miss some. The client re-lists (reads the
 * objects again, then watches from now); `oldestSeq` is the oldest position a watch can start from.
 */
export function positionGone(position: number, oldestSeq: number): ApmatrixError {
  return new ApmatrixError(
    'GONE',
    `events after seq ${position} are no longer kept (retention compacted the log up to seq ${oldestSeq}): re-list (read the objects again, then watch from now); the oldest position a watch can start from is ${oldestSeq}`,
    { oldestSeq },
  )
}

/** A sysfs operation failed the way the kernel's write()/read() would: carries the errno name. */
export class SysfsError extends Error {
  readonly errno: Errno
  constructor(errno: Errno, message: string) {
    super(message)
    this.name = 'SysfsError'
    this.errno = errno
  }
}

/**
 * The INVALID_ARGUMENT error for one bad field: message `<field>: <message>`, one violation naming the
 * field (with `fix` and the kernel `errno` when given). The one builder every layer uses for a bad input.
 */
export function invalidArgument(field: string, message: string, opts: { errno?: Errno; fix?: string } = {}): ApmatrixError {
  return new ApmatrixError('INVALID_ARGUMENT', `${field}: ${message}`, {
    ...(opts.errno ? { errno: opts.errno } : {}),
    violations: [{ rule: 'INVALID_ARGUMENT', field, message, ...(opts.fix ? { fix: opts.fix } : {}) }],
  })
}
