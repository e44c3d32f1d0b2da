/**
 * One emulated host (docs/kernel-model.md X-7) served over gRPC, so the host lives in its own process and survives
 * a crash of the service that drives it (docs/api.md): its sysfs face as the host-bus service every
 * remote host offers (proto/apmatrix/hostbus/v1/hostbus.proto, src/hostbus/server.ts) and the emulator's
 * own controls (proto/apmatrix/emulator/v1/emulator.proto). The core is synchronous and every handler
 * runs to completion on Node's one thread, which keeps X-5's one global lock per host across concurrent
 * remote callers.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import * as grpc from '@grpc/grpc-js'
import { ReflectionService } from '@grpc/reflection'
import { HealthImplementation } from 'grpc-health-check'
import { SysfsError } from '../domain/errors.js'
import { startRealtimeClock } from '../emulator/async-host.js'
import type { EmulatedHostApi, HardwareProfile, KernelProfileName } from '../emulator/api.js'
import { createHost } from '../emulator/host.js'
import { FaultInjector, type WriteFault, throwIfFailed } from '../emulator/faults.js'
import type { FaultyFace } from '../emulator/fuse/sysfs-operations.js'
import { toServiceError } from '../hostbus/errors.js'
import { HOSTBUS_SERVICE_NAME, loadHostBusProto, type WireInfo } from '../hostbus/proto.js'
import { createHostBusService, MAX_PATH_BYTES, MAX_VALUE_BYTES } from '../hostbus/server.js'
import { clientNameInterceptor, type HostBusServerTls, hostBusServerCredentials, tlsSummary } from '../hostbus/tls.js'
import { appVersion } from '../version.js'
import { faultConfigFromWire, faultStatusToWire, hardwareFromWire, statsToWire } from './codec.js'
import { EMULATOR_CONTROL_SERVICE_NAME, type WireEmulatorInfo, type WireFaultConfig, type WireHardwareAction, loadEmulatorProto } from './proto.js'

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
  /**
   * A file that holds the current boot id (with a newline), written at start and at every Reboot: what
   * `/proc/sys/kernel/random/boot_id` is to a real host, for a `sysfs` driver or agent behind the FUSE view.
   */
  bootIdFile?: string
  /** Mutual TLS: only clients with a certificate of `tls.ca` (and one of `tls.clientNames`, when given) get a connection. Default: plaintext. */
  tls?: HostBusServerTls
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
  readonly localSysfs: FaultyFace
  /** The injected write faults of this process (EmulatorControl.SetFaults), for every face: gRPC Write and the mount. */
  readonly faults: FaultInjector
  /** The current host's identity (changes on Reboot). */
  info(): { profile: string; kernel: KernelProfileName; bootId: string; now: number; clock: EmulatorClock }
  /** Ends the event streams and stops the server; idempotent. */
  close(): Promise<void>
}

export { MAX_PATH_BYTES, MAX_VALUE_BYTES }
/** Bound of one Advance call: one hour of virtual time. */
export const MAX_ADVANCE_MS = 3_600_000

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
  // Replaced in one rename, so a reader never sees a half-written id.
  const publishBootId = (): void => {
    if (!opts.bootIdFile) return
    const tmp = `${opts.bootIdFile}.${process.pid}.tmp`
    fs.writeFileSync(tmp, `${host.bootId}\n`)
    fs.renameSync(tmp, opts.bootIdFile)
  }
  publishBootId()
  /** The listening address, once bound (part of the machine id). */
  let boundAddress = opts.addr
  let stopClock = clock === 'realtime' ? startRealtimeClock(host, { intervalMs: tickMs }) : () => undefined

  const info = () => ({ profile: host.profile.name, kernel: host.kernel, bootId: host.bootId, now: host.now(), clock })
  const infoToWire = (): WireEmulatorInfo => {
    const i = info()
    return { profile: i.profile, kernel: i.kernel, boot_id: i.bootId, now: i.now, clock: i.clock }
  }
  const hostBusInfo = (): WireInfo => ({
    driver: 'emulator',
    // The machine is this server and its profile: the same after every reboot, apart from other emulators.
    machine_id: createHash('sha256').update(`emulator/${os.hostname()}/${boundAddress}/${host.profile.name}`).digest('hex').slice(0, 16),
    boot_id: host.bootId,
    kernel: host.kernel,
    profile: host.profile.name,
    services: [HOSTBUS_SERVICE_NAME, EMULATOR_CONTROL_SERVICE_NAME],
    config_lock: '',
    hostname: os.hostname(),
    sysfs_root: '',
    version: appVersion(),
  })

  const faults = new FaultInjector()
  const bus = createHostBusService(
    {
      writeFault: (p) => faults.decide(p),
      read: (p) => host.read(p),
      list: (p) => host.list(p),
      exists: (p) => host.exists(p),
      readlink: (p) => host.readlink(p),
      write: (p, v) => host.write(p, v),
      synchronous: true,
      bootId: () => host.bootId,
      info: hostBusInfo,
      // The emulator's sequence restarts at every boot: its epoch is the boot id.
      events: { epoch: () => host.bootId, since: (seq) => host.events(seq), subscribe: (fn) => host.subscribe(fn) },
    },
    { log },
  )

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
  const control = {
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
    SetFaults: unary((r: WireFaultConfig) => faultStatusToWire(faults.set(faultConfigFromWire(r)))),
    Faults: unary(() => faultStatusToWire(faults.status())),
    Reboot: unary(() => {
      const old = host
      // Same (already validated) profile object: the machine is unchanged, only the kernel state goes.
      host = boot(old.profile)
      stopClock()
      stopClock = clock === 'realtime' ? startRealtimeClock(host, { intervalMs: tickMs }) : () => undefined
      bus.reattachStreams()
      publishBootId()
      log(`emulator rebooted: bootId ${old.bootId} -> ${host.bootId}`)
      return infoToWire()
    }),
  }

  const logFailures: grpc.ServerInterceptor = (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      sendStatus(status, next) {
        if (UNEXPECTED.has(status.code)) log(`${method.path}: ${grpc.status[status.code]}: ${status.details}`)
        next(status)
      },
    })

  const { definition: emulatorDefinition, EmulatorControl } = loadEmulatorProto()
  const { definition: hostBusDefinition, HostBus } = loadHostBusProto()
  const interceptors = [logFailures, ...(opts.tls?.clientNames.length ? [clientNameInterceptor(opts.tls.clientNames, log)] : [])]
  const server = new grpc.Server({ interceptors, 'grpc.max_receive_message_length': 2 * MAX_VALUE_BYTES })
  server.addService(HostBus.service, bus.handlers)
  server.addService(EmulatorControl.service, control as unknown as grpc.UntypedServiceImplementation)
  const health = new HealthImplementation({ '': 'SERVING', [HOSTBUS_SERVICE_NAME]: 'SERVING', [EMULATOR_CONTROL_SERVICE_NAME]: 'SERVING' })
  health.addToServer(server)
  new ReflectionService({ ...hostBusDefinition, ...emulatorDefinition }).addToServer(server)

  let port: number
  try {
    const credentials = opts.tls ? hostBusServerCredentials(opts.tls) : grpc.ServerCredentials.createInsecure()
    port = await new Promise<number>((resolve, reject) => server.bindAsync(opts.addr, credentials, (err, p) => (err ? reject(err) : resolve(p))))
  } catch (e) {
    stopClock()
    server.forceShutdown()
    throw e
  }
  const address = `${bindHost}:${port}`
  boundAddress = address
  log(`emulator serving ${address}: profile ${host.profile.name}, kernel ${host.kernel}, clock ${clock}, bootId ${host.bootId}, ${tlsSummary(opts.tls)}`)

  let closing: Promise<void> | undefined
  return {
    address,
    localSysfs: {
      read: (p) => host.read(p),
      list: (p) => host.list(p),
      readlink: (p) => host.readlink(p),
      stat: (p) => host.stat(p),
      exists: (p) => host.exists(p),
      writeFault: (p) => faults.decide(p),
      write: (p, v, fault?: WriteFault) => {
        const h = host
        bus.writes.apply(p, v, null, h.bootId, () => (throwIfFailed(fault), h.write(p, v)), 'fuse')
      },
    },
    faults,
    info,
    close() {
      closing ??= new Promise<void>((resolve) => {
        stopClock()
        for (const name of ['', HOSTBUS_SERVICE_NAME, EMULATOR_CONTROL_SERVICE_NAME]) health.setStatus(name, 'NOT_SERVING')
        bus.close()
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
