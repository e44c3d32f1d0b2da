/**
 * The one place where host errors become gRPC statuses and back, so that a caller of a remote host (an
 * agent or a remote emulator) gets exactly the error a local host would have thrown:
 * - SysfsError / BusError (a kernel errno) <-> FAILED_PRECONDITION + trailing metadata `errno`
 * - ConfigLockBusyError (the AP configuration lock stayed held) <-> the same, plus `lock-path`, `lock-holder`, `lock-waited-ms`
 * - ApmatrixError (a bad control arg)      <-> INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION + `apmatrix-code`
 * - anything else on the server            ->  INTERNAL
 * Transport failures (server down, deadline) become {@link RemoteHostError}, never a SysfsError.
 */
import * as grpc from '@grpc/grpc-js'
import { ApmatrixError, type Errno, type ErrorCode, SysfsError } from '../domain/errors.js'
import { BusError, ConfigLockBusyError } from '../bus/port.js'

const ERRNO_KEY = 'errno'
const CODE_KEY = 'apmatrix-code'
const LOCK_PATH_KEY = 'lock-path'
const LOCK_HOLDER_KEY = 'lock-holder'
const LOCK_WAITED_KEY = 'lock-waited-ms'

/** A failure to talk to the host's process itself (agent or emulator): down, unreachable, too slow, or broken. */
export class RemoteHostError extends ApmatrixError {
  /** The gRPC status name (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...). */
  readonly status: string
  constructor(status: string, message: string, cause?: unknown) {
    super('UNAVAILABLE', message, { cause })
    this.name = 'RemoteHostError'
    this.status = status
  }
}

/** The status a server handler answers for an error thrown by the host. */
export function toServiceError(e: unknown): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata()
  if (e instanceof ConfigLockBusyError) {
    metadata.set(ERRNO_KEY, e.errno)
    metadata.set(LOCK_PATH_KEY, e.path)
    metadata.set(LOCK_HOLDER_KEY, e.holderPid)
    metadata.set(LOCK_WAITED_KEY, String(e.waitedMs))
    return { code: grpc.status.FAILED_PRECONDITION, details: e.message, metadata }
  }
  if (e instanceof SysfsError || e instanceof BusError) {
    metadata.set(ERRNO_KEY, e.errno)
    return { code: grpc.status.FAILED_PRECONDITION, details: e.message, metadata }
  }
  if (e instanceof ApmatrixError) {
    metadata.set(CODE_KEY, e.code)
    if (e.errno) metadata.set(ERRNO_KEY, e.errno)
    const code = e.code === 'INVALID_ARGUMENT' ? grpc.status.INVALID_ARGUMENT : e.code === 'NOT_FOUND' ? grpc.status.NOT_FOUND : grpc.status.FAILED_PRECONDITION
    return { code, details: e.message, metadata }
  }
  return { code: grpc.status.INTERNAL, details: `host internal error: ${e instanceof Error ? e.message : String(e)}`, metadata }
}

function first(md: grpc.Metadata | undefined, key: string): string | undefined {
  const v = md?.get(key)[0]
  return typeof v === 'string' ? v : undefined
}

/** The error a client call rejects with for a failed gRPC call to the host at `addr`. */
export function fromServiceError(err: grpc.ServiceError, addr: string, method: string): Error {
  const code = first(err.metadata, CODE_KEY)
  const errno = first(err.metadata, ERRNO_KEY) as Errno | undefined
  const lockPath = first(err.metadata, LOCK_PATH_KEY)
  if (lockPath !== undefined && err.code === grpc.status.FAILED_PRECONDITION) {
    return new ConfigLockBusyError(
      lockPath,
      first(err.metadata, LOCK_HOLDER_KEY) ?? '',
      Number(first(err.metadata, LOCK_WAITED_KEY) ?? 0),
      `host at ${addr}: ${err.details}`,
    )
  }
  if (code !== undefined) return new ApmatrixError(code as ErrorCode, err.details, errno ? { errno } : {})
  if (errno !== undefined && err.code === grpc.status.FAILED_PRECONDITION) return new SysfsError(errno, err.details)
  const status = grpc.status[err.code] ?? String(err.code)
  const why =
    err.code === grpc.status.UNAVAILABLE
      ? 'is not reachable (is `apmatrix agent` or `apmatrix emulator serve` running there?)'
      : err.code === grpc.status.DEADLINE_EXCEEDED
        ? 'did not answer before the deadline'
        : 'failed'
  return new RemoteHostError(status, `host at ${addr} ${why}: ${method}: ${status}: ${err.details}`, err)
}
