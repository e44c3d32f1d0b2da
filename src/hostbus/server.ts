/**
 * The host-bus service (proto/apmatrix/hostbus/v1/hostbus.proto) over any host: the handlers that both
 * `apmatrix agent` (a real sysfs through node:fs) and `apmatrix emulator serve` (an emulated host)
 * register, so fencing, the write log, event streaming and lock sessions behave the same on both.
 */
import { randomUUID } from 'node:crypto'
import * as grpc from '@grpc/grpc-js'
import { SysfsError } from '../domain/errors.js'
import { eventToWire, type HostBusEvent } from './codec.js'
import { toServiceError } from './errors.js'
import { FENCE_METADATA_KEY, parseFence } from './fence.js'
import { LOCK_SESSION_METADATA_KEY, type WireEvent, type WireInfo, type WireLockGrant, type WireU64, type WireWriteLog } from './proto.js'
import { FencedWriteLog, WRITE_LOG_CAPACITY } from './write-log.js'
import { type WriteFault, faultDelay, throwIfFailed } from '../emulator/faults.js'

/** Bounds of untrusted input: PATH_MAX, and one shell line for a value. */
export const MAX_PATH_BYTES = 4096
export const MAX_VALUE_BYTES = 64 * 1024

/** A host's events: what is kept, and live ones. */
export interface HostBusEventSource {
  /** The sequence the seqs belong to; a new epoch restarts them (a reboot, a new agent process). */
  epoch(): string
  /** Kept events with seq > `sinceSeq`, oldest first. */
  since(sinceSeq: number): HostBusEvent[]
  /** Calls `fn` for every new event; returns the unsubscribe function. */
  subscribe(fn: (e: HostBusEvent) => void): () => void
}

/** The host a host-bus server serves. Errors: SysfsError (or BusError) with the kernel errno. */
export interface HostBusBackend {
  read(path: string): string | Promise<string>
  list(path: string): string[] | Promise<string[]>
  exists(path: string): boolean | Promise<boolean>
  readlink(path: string): string | Promise<string>
  /** A write on its own (an agent takes the AP configuration lock around it). */
  write(path: string, value: string): void | Promise<void>
  /**
   * True when `write` completes synchronously (the emulator core): then the fence check and the write
   * run in one synchronous step, and no other call can come between them.
   */
  synchronous: boolean
  bootId(): string
  info(): WireInfo
  events: HostBusEventSource
  /**
   * Runs `fn` while holding the host's AP configuration lock, waiting at most `waitMs` for it; `fn`
   * gets the write to use under the hold. Absent when the host has no lock (an emulator).
   */
  exclusive?(opts: { waitMs: number; signal: AbortSignal }, fn: (write: (path: string, value: string) => Promise<void>) => Promise<void>): Promise<void>
  /** The lock file (for LockResponse), when there is one. */
  lockPath?: string
  /**
   * Injected faults (the emulator's, src/emulator/faults.ts): what happens to a write of `path`, decided
   * when it arrives. A delay comes before the fence check; a failure is the write's outcome (logged).
   */
  writeFault?(path: string): WriteFault | undefined
}

/** Options of {@link createHostBusService}. */
export interface HostBusServiceOptions {
  /** One line per unexpected failure or lock session event. */
  log?: (line: string) => void
  /** Cap of a Lock call's wait_ms (default 30,000). */
  maxLockWaitMs?: number
  /** How long a lock session may hold the lock before the server ends it (default 120,000). */
  maxLockHoldMs?: number
}

/** The service: its handlers and the controls its server needs. */
export interface HostBusService {
  handlers: grpc.UntypedServiceImplementation
  /** The fence check and write log of this server. */
  writes: FencedWriteLog
  /** Re-attaches every event stream from the start of the current epoch (after a reboot of an emulated host). */
  reattachStreams(): void
  /** Ends every event stream and lock session (server shutdown). */
  close(): void
}

interface EventStream {
  call: grpc.ServerWritableStream<{ since_seq: WireU64; epoch: string }, WireEvent>
  detach: () => void
}

function boundedPath(p: string): string {
  if (Buffer.byteLength(p, 'utf8') > MAX_PATH_BYTES) throw new SysfsError('EINVAL', `path longer than ${MAX_PATH_BYTES} bytes`)
  return p
}

function boundedValue(v: string): string {
  if (Buffer.byteLength(v, 'utf8') > MAX_VALUE_BYTES) throw new SysfsError('EINVAL', `value longer than ${MAX_VALUE_BYTES} bytes`)
  return v
}

/** Handlers of apmatrix.hostbus.v1.HostBus over `backend`. */
export function createHostBusService(backend: HostBusBackend, opts: HostBusServiceOptions = {}): HostBusService {
  const log = opts.log ?? (() => undefined)
  const maxLockWaitMs = opts.maxLockWaitMs ?? 30_000
  const maxLockHoldMs = opts.maxLockHoldMs ?? 120_000
  const writes = new FencedWriteLog()
  const streams = new Set<EventStream>()
  /** Live lock sessions: id -> the write to use under the hold, and how to end the session. */
  const sessions = new Map<string, { write: (path: string, value: string) => Promise<void>; end: (why?: string) => void }>()

  /** Sends the kept events after `since`, then live ones; snapshot and subscribe in one tick, so no gap and no repeat. */
  const attach = (s: EventStream, since: number): void => {
    const epoch = backend.events.epoch()
    const bootId = backend.bootId()
    const send = (e: HostBusEvent): void => {
      s.call.write(eventToWire(e, bootId, epoch))
    }
    for (const e of backend.events.since(since)) send(e)
    s.detach = backend.events.subscribe(send)
  }

  const unary =
    <Req, Res>(fn: (req: Req) => Res | Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
    (call, cb) => {
      let res: Res | Promise<Res>
      try {
        res = fn(call.request)
      } catch (e) {
        cb(toServiceError(e))
        return
      }
      Promise.resolve(res).then(
        (r) => cb(null, r),
        (e: unknown) => cb(toServiceError(e)),
      )
    }

  const empty = {}

  const write = (call: grpc.ServerUnaryCall<{ path: string; value: string }, object>, cb: grpc.sendUnaryData<object>): void => {
    let done: Promise<void> | undefined
    let path: string
    let value: string
    let fence: ReturnType<typeof parseFence> | null
    let fault: WriteFault | undefined
    try {
      path = boundedPath(call.request.path)
      value = boundedValue(call.request.value)
      const header = call.metadata.get(FENCE_METADATA_KEY)[0]
      fence = header === undefined ? null : parseFence(String(header))
      fault = backend.writeFault?.(path)
    } catch (e) {
      cb(toServiceError(e))
      return
    }
    const perform = (): Promise<void> | undefined => {
      const sessionId = call.metadata.get(LOCK_SESSION_METADATA_KEY)[0]
      if (sessionId !== undefined) {
        const session = sessions.get(String(sessionId))
        // A pass whose hold ended (client gone, server limit) must not go on writing as if it held the lock.
        const run = session
          ? async () => (throwIfFailed(fault), session.write(path, value))
          : () => Promise.reject(new SysfsError('ECANCELED', `lock session ${String(sessionId).slice(0, 64)} has ended: the write was not made`))
        return writes.applyAsync(path, value, fence, backend.bootId(), run)
      }
      if (backend.synchronous) {
        // Check and write in one synchronous run: no other call can slip between them.
        writes.apply(path, value, fence, backend.bootId(), () => (throwIfFailed(fault), void backend.write(path, value)))
        return undefined
      }
      return writes.applyAsync(path, value, fence, backend.bootId(), async () => (throwIfFailed(fault), backend.write(path, value)))
    }
    try {
      done = fault && fault.delayMs > 0 ? faultDelay(fault).then(perform) : perform()
    } catch (e) {
      cb(toServiceError(e))
      return
    }
    Promise.resolve(done).then(
      () => cb(null, empty),
      (e: unknown) => cb(toServiceError(e)),
    )
  }

  const lock = (call: grpc.ServerWritableStream<{ wait_ms: number }, WireLockGrant>): void => {
    const id = randomUUID()
    const abort = new AbortController()
    let finished = false
    let release!: () => void
    const released = new Promise<void>((r) => (release = r))
    const end = (why?: string): void => {
      if (finished) return
      finished = true
      sessions.delete(id)
      abort.abort(new Error(why ?? 'lock call ended'))
      release()
      if (why && !call.cancelled) call.emit('error', { code: grpc.status.ABORTED, details: why, metadata: new grpc.Metadata() })
      else if (!call.cancelled) call.end()
    }
    call.on('cancelled', () => end())
    call.on('error', () => end())
    const waitMs = Math.min(Math.max(0, call.request.wait_ms), maxLockWaitMs)
    const hold = async (w: (path: string, value: string) => Promise<void>): Promise<void> => {
      if (finished) return
      sessions.set(id, { write: w, end })
      const timer = setTimeout(() => {
        log(`lock session ${id} ended: held for more than ${maxLockHoldMs} ms`)
        end(`the AP configuration lock was held for more than ${maxLockHoldMs} ms and has been released`)
      }, maxLockHoldMs)
      timer.unref?.()
      call.write({ session: id, lock_path: backend.lockPath ?? '', holder_pid: process.pid, max_hold_ms: maxLockHoldMs })
      await released
      clearTimeout(timer)
    }
    const run = backend.exclusive
      ? backend.exclusive({ waitMs, signal: abort.signal }, hold)
      : hold(async (path, value) => {
          await backend.write(path, value)
        })
    run.catch((e: unknown) => {
      if (finished) return
      finished = true
      sessions.delete(id)
      if (!call.cancelled) call.emit('error', toServiceError(e))
    })
  }

  const handlers = {
    Read: unary((r: { path: string }) => Promise.resolve(backend.read(boundedPath(r.path))).then((text) => ({ text }))),
    Write: write,
    List: unary((r: { path: string }) => Promise.resolve(backend.list(boundedPath(r.path))).then((entries) => ({ entries }))),
    Exists: unary((r: { path: string }) => Promise.resolve(backend.exists(boundedPath(r.path))).then((exists) => ({ exists }))),
    Readlink: unary((r: { path: string }) => Promise.resolve(backend.readlink(boundedPath(r.path))).then((target) => ({ target }))),
    Info: unary(() => backend.info()),
    WriteLog: unary((r: { since_seq: WireU64; limit: number }): WireWriteLog => {
      const limit = r.limit > 0 ? Math.min(r.limit, WRITE_LOG_CAPACITY) : WRITE_LOG_CAPACITY
      const { first, last } = writes.bounds()
      return {
        entries: writes.since(Number(r.since_seq), limit).map((e) => ({
          seq: String(e.seq),
          wall_time_ms: e.wallTimeMs,
          path: e.path,
          value: e.value,
          fence_host: e.fence?.host ?? '',
          fence_holder: e.fence?.holder ?? '',
          fence_token: String(e.fence?.token ?? 0),
          errno: e.errno ?? '',
          boot_id: e.bootId,
          fence_refused: e.fenceRefused,
          origin: e.origin,
        })),
        first_seq: String(first),
        last_seq: String(last),
        highest_token: Object.fromEntries([...writes.highestTokens()].map(([h, t]) => [h, String(t)])),
      }
    }),
    Events: (call: EventStream['call']) => {
      const s: EventStream = { call, detach: () => undefined }
      const since = call.request.epoch !== '' && call.request.epoch !== backend.events.epoch() ? 0 : Number(call.request.since_seq)
      streams.add(s)
      call.on('cancelled', () => {
        s.detach()
        streams.delete(s)
      })
      attach(s, since)
    },
    Lock: lock,
  }

  return {
    handlers: handlers as unknown as grpc.UntypedServiceImplementation,
    writes,
    reattachStreams() {
      for (const s of streams) {
        s.detach()
        attach(s, 0)
      }
    },
    close() {
      for (const s of streams) {
        s.detach()
        s.call.end()
      }
      streams.clear()
      for (const s of [...sessions.values()]) s.end('the server is shutting down')
    },
  }
}
