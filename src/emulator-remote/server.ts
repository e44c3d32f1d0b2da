/**
 * One emulated host (ap-bus.md X-7) served over gRPC (proto/apmatrix/emulator/v1/emulator.proto), so
 * the host lives in its own process and survives a crash of the service that drives it
 * (product.md §1). The core is synchronous and every handler runs to completion on Node's one
 * thread, which keeps X-5's one global lock per host across concurrent remote callers.
 */
import * as grpc from '@grpc/grpc-js'
import { ReflectionService } from '@grpc/reflection'
import { HealthImplementation } from 'grpc-health-check'
import { SysfsError } from '../domain/errors.js'
import { startRealtimeClock } from '../emulator/async-host.js'
import type { EmulatedHostApi, EmulatorEvent, HardwareProfile, KernelProfileName, SysfsFace } from '../emulator/api.js'
import { createHost } from '../emulator/host.js'
import { eventToWire, hardwareFromWire, statsToWire } from './codec.js'
import { toServiceError } from './errors.js'
import { FENCE_METADATA_KEY, parseFence } from './fence.js'
import { EMULATOR_SERVICE_NAME, type WireEvent, type WireHardwareAction, type WireInfo, type WireU64, type WireWriteLog, loadEmulatorProto } from './proto.js'
import { FencedWriteLog, WRITE_LOG_CAPACITY } from './write-log.js'

/** How virtual time moves: with wall time, or only through the `Advance` call (deterministic tests). */
export type EmulatorClock = 'realtime' | 'manual'

/** Options of {@link startEmulatorServer}. */
export interface EmulatorServerOptions {
  /** `host:port` to listen on; port 0 picks a free port (see {@link EmulatorServer.address}). */
  addr: string
  /** A HardwareProfile, a builtin profile name or a JSON profile file path. */
  profile: HardwareProfile | string
  /** Default `current-6.x`. */
  kernel?: KernelProfileName
  /** Default `realtime`. */
  clock?: EmulatorClock
  /** Realtime clock tick in wall milliseconds (default 100). */
  tickMs?: number
  /** Emit a `request` event per completed request (see CreateHostOptions). */
  traceRequests?: boolean
  /** One line per lifecycle step or unexpected failure (the CLI sends it to stderr). */
  log?: (line: string) => void
}

/** A running emulator server. */
export interface EmulatorServer {
  /** The listening address with the real port (`127.0.0.1:43121` when port 0 was asked). */
  readonly address: string
  /**
   * The served host's sysfs for another face of this process (the FUSE mount of `emulator serve
   * --mount`): always the current boot (also after a Reboot); every write goes into the write log with
   * origin `fuse`, unfenced, exactly like a gRPC Write otherwise. Throws the host's SysfsError.
   */
  readonly localSysfs: SysfsFace
  /** The current host's identity (changes on Reboot). */
  info(): { profile: string; kernel: KernelProfileName; bootId: string; now: number; clock: EmulatorClock }
  /** Ends the event streams and stops the server; idempotent. */
  close(): Promise<void>
}

interface EventStream {
  call: grpc.ServerWritableStream<{ since_seq: WireU64; boot_id: string }, WireEvent>
  detach: () => void
}

/** Bounds of untrusted input (the emulator shell's limits): PATH_MAX, one shell line, one hour of virtual time per call. */
export const MAX_PATH_BYTES = 4096
export const MAX_VALUE_BYTES = 64 * 1024
export const MAX_ADVANCE_MS = 3_600_000

function boundedPath(p: string): string {
  if (Buffer.byteLength(p, 'utf8') > MAX_PATH_BYTES) throw new SysfsError('EINVAL', `path longer than ${MAX_PATH_BYTES} bytes`)
  return p
}

function boundedValue(v: string): string {
  if (Buffer.byteLength(v, 'utf8') > MAX_VALUE_BYTES) throw new SysfsError('EINVAL', `value longer than ${MAX_VALUE_BYTES} bytes`)
  return v
}

/** Kernel and argument errors are the emulator's normal answers; only these statuses are worth a log line. */
const UNEXPECTED = new Set<grpc.status>([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.RESOURCE_EXHAUSTED])

function splitAddr(addr: string): { host: string; port: string } {
  const i = addr.lastIndexOf(':')
  if (i <= 0 || i === addr.length - 1) throw new Error(`address '${addr}' is not host:port`)
  return { host: addr.slice(0, i), port: addr.slice(i + 1) }
}

/**
 * Boots a host and serves it with grpc.health.v1 and server reflection. Rejects with the host's
 * ApmatrixError for a bad profile or kernel, or with the bind error (EADDRINUSE, ...).
 */
export async function startEmulatorServer(opts: EmulatorServerOptions): Promise<EmulatorServer> {
  const clock: EmulatorClock = opts.clock ?? 'realtime'
  const tickMs = opts.tickMs ?? 100
  const log = opts.log ?? (() => undefined)
  const { host: bindHost } = splitAddr(opts.addr)
  const boot = (profile: HardwareProfile | string): EmulatedHostApi =>
    createHost({ profile, ...(opts.kernel ? { kernel: opts.kernel } : {}), ...(opts.traceRequests ? { traceRequests: true } : {}) })

  let host = boot(opts.profile)
  let stopClock = clock === 'realtime' ? startRealtimeClock(host, { intervalMs: tickMs }) : () => undefined
  const streams = new Set<EventStream>()
  const writes = new FencedWriteLog()

  const info = () => ({ profile: host.profile.name, kernel: host.kernel, bootId: host.bootId, now: host.now(), clock })
  const infoToWire = (): WireInfo => {
    const i = info()
    return { profile: i.profile, kernel: i.kernel, boot_id: i.bootId, now: i.now, clock: i.clock }
  }

  /** Sends the kept events after `since`, then live ones; snapshot and subscribe in one tick, so no gap and no repeat. */
  const attach = (s: EventStream, h: EmulatedHostApi, since: number): void => {
    const bootId = h.bootId
    const send = (e: EmulatorEvent): void => {
      s.call.write(eventToWire(e, bootId))
    }
    for (const e of h.events(since)) send(e)
    s.detach = h.subscribe(send)
  }

  const unary =
    <Req, Res>(fn: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> =>
    (call, cb) => {
      let res: Res
      try {
        res = fn(call.request)
      } catch (e) {
        cb(toServiceError(e))
        return
      }
      cb(null, res)
    }

  const empty = {}
  const handlers = {
    Read: unary((r: { path: string }) => ({ text: host.read(boundedPath(r.path)) })),
    Write: (call: grpc.ServerUnaryCall<{ path: string; value: string }, object>, cb: grpc.sendUnaryData<object>) => {
      try {
        const path = boundedPath(call.request.path)
        const value = boundedValue(call.request.value)
        const header = call.metadata.get(FENCE_METADATA_KEY)[0]
        const fence = header === undefined ? null : parseFence(String(header))
        // Check and write in one synchronous run: no other call can slip between them.
        writes.apply(path, value, fence, host.bootId, () => host.write(path, value))
      } catch (e) {
        cb(toServiceError(e))
        return
      }
      cb(null, empty)
    },
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
    List: unary((r: { path: string }) => ({ entries: host.list(boundedPath(r.path)) })),
    Exists: unary((r: { path: string }) => ({ exists: host.exists(boundedPath(r.path)) })),
    Readlink: unary((r: { path: string }) => ({ target: host.readlink(boundedPath(r.path)) })),
    GuestOpen: unary((r: { uuid: string; guest: string }) => (host.guestOpen(r.uuid, r.guest), empty)),
    GuestClose: unary((r: { uuid: string }) => (host.guestClose(r.uuid), empty)),
    Guests: unary(() => ({ guests: host.guests() })),
    GuestAqic: unary((r: { uuid: string; apqn: string; nib: number }) => ({ rc: host.guestAqic(r.uuid, r.apqn, r.nib) })),
    SubmitRequests: unary((r: { apqn: string; count: number }) => ({ accepted: host.submitRequests(r.apqn, r.count) })),
    SetWorkload: unary((r: { apqn: string; per_second: number }) => (host.setWorkload(r.apqn, r.per_second), {})),
    RequestStats: unary((r: { apqn: string }) => statsToWire(host.requestStats(r.apqn))),
    Hardware: unary((r: WireHardwareAction) => (host.hardware(hardwareFromWire(r)), empty)),
    Scan: unary(() => (host.scan(), empty)),
    Advance: unary((r: { ms: number }) => {
      // Bounded so that one call cannot hold the host (and every other caller) for minutes.
      if (r.ms > MAX_ADVANCE_MS) throw new SysfsError('EINVAL', `advance: at most ${MAX_ADVANCE_MS} ms per call, got ${r.ms}`)
      host.advance(r.ms)
      return { now: host.now() }
    }),
    Now: unary(() => ({ now: host.now() })),
    Info: unary(infoToWire),
    Reboot: unary(() => {
      const old = host
      // Same (already validated) profile object: the machine is unchanged, only the kernel state goes.
      host = boot(old.profile)
      stopClock()
      stopClock = clock === 'realtime' ? startRealtimeClock(host, { intervalMs: tickMs }) : () => undefined
      for (const s of streams) {
        s.detach()
        attach(s, host, 0)
      }
      log(`emulator rebooted: bootId ${old.bootId} -> ${host.bootId}`)
      return infoToWire()
    }),
    Events: (call: EventStream['call']) => {
      const s: EventStream = { call, detach: () => undefined }
      const since = call.request.boot_id !== '' && call.request.boot_id !== host.bootId ? 0 : Number(call.request.since_seq)
      streams.add(s)
      call.on('cancelled', () => {
        s.detach()
        streams.delete(s)
      })
      attach(s, host, since)
    },
  }

  const logFailures: grpc.ServerInterceptor = (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      sendStatus(status, next) {
        if (UNEXPECTED.has(status.code)) log(`${method.path}: ${grpc.status[status.code]}: ${status.details}`)
        next(status)
      },
    })

  const { definition, Emulator } = loadEmulatorProto()
  const server = new grpc.Server({ interceptors: [logFailures], 'grpc.max_receive_message_length': 2 * MAX_VALUE_BYTES })
  server.addService(Emulator.service, handlers as unknown as grpc.UntypedServiceImplementation)
  const health = new HealthImplementation({ '': 'SERVING', [EMULATOR_SERVICE_NAME]: 'SERVING' })
  health.addToServer(server)
  new ReflectionService(definition).addToServer(server)

  let port: number
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(opts.addr, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    )
  } catch (e) {
    stopClock()
    server.forceShutdown()
    throw e
  }
  const address = `${bindHost}:${port}`
  log(`emulator serving ${address}: profile ${host.profile.name}, kernel ${host.kernel}, clock ${clock}, bootId ${host.bootId}`)

  let closing: Promise<void> | undefined
  return {
    address,
    localSysfs: {
      read: (p) => host.read(p),
      list: (p) => host.list(p),
      readlink: (p) => host.readlink(p),
      stat: (p) => host.stat(p),
      exists: (p) => host.exists(p),
      write: (p, v) => {
        const h = host
        writes.apply(p, v, null, h.bootId, () => h.write(p, v), 'fuse')
      },
    },
    info,
    close() {
      closing ??= new Promise<void>((resolve) => {
        stopClock()
        health.setStatus('', 'NOT_SERVING')
        health.setStatus(EMULATOR_SERVICE_NAME, 'NOT_SERVING')
        for (const s of streams) {
          s.detach()
          s.call.end()
        }
        streams.clear()
        // A client that keeps a call open must not hold the process: force after a grace period.
        const force = setTimeout(() => server.forceShutdown(), 1000)
        server.tryShutdown(() => {
          clearTimeout(force)
          log('emulator stopped')
          resolve()
        })
      })
      return closing
    },
  }
}
