/**
 * `apmatrix agent`: one small process per LPAR that serves its host's sysfs to the apmatrix service over
 * the host-bus gRPC service (proto/apmatrix/hostbus/v1/hostbus.proto), so one service (or its replicas)
 * manages many LPARs. It is the remote emulator's sysfs face without the emulator controls: the same
 * handlers (src/hostbus/server.ts), so fencing tokens, the write log and lock sessions behave exactly as
 * on the emulator; behind them a node:fs access to the root (src/bus/node-sysfs-access.ts) with the
 * s390-tools AP configuration lock and change detection (udev or polling).
 *
 * Where the lock is held: a Write without a session takes the lock for that one write; a service pass
 * opens a `Lock` session and sends its writes under it, so the whole pass is one hold (released when the
 * service ends the session, when its connection breaks, or after `lockMaxHoldMs`).
 */
import { randomUUID } from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import * as grpc from '@grpc/grpc-js'
import { ReflectionService } from '@grpc/reflection'
import { HealthImplementation } from 'grpc-health-check'
import { ApConfigLock } from '../bus/ap-config-lock.js'
import { NodeSysfsAccess } from '../bus/node-sysfs-access.js'
import type { WatchMode } from '../bus/change-watcher.js'
import { HostIdentity } from '../hosts/host-identity.js'
import { HOSTBUS_SERVICE_NAME, loadHostBusProto, type WireInfo } from '../hostbus/proto.js'
import { createHostBusService, MAX_VALUE_BYTES } from '../hostbus/server.js'
import { clientNameInterceptor, type HostBusServerTls, hostBusServerCredentials, tlsSummary } from '../hostbus/tls.js'
import { appVersion } from '../version.js'
import { AgentEventLog } from './event-log.js'
import { checkWriteTarget, servedPath } from './served-paths.js'

/** Options of {@link startAgentServer}. */
export interface AgentServerOptions {
  /** `host:port` to listen on; port 0 picks a free port (see {@link AgentServer.address}). */
  addr: string
  /** The directory served as /sys. */
  sysfsRoot: string
  /** The s390-tools lock file, or null for none. */
  lockPath: string | null
  watch: WatchMode
  pollMs: number
  bootIdFile?: string
  /** How long a Lock session may hold the lock (default 120,000 ms). */
  lockMaxHoldMs?: number
  /** How long a write outside a session waits for the lock (default 5000 ms). */
  lockWaitMs?: number
  /** One line per lifecycle step or unexpected failure (the CLI sends it to stderr). */
  log?: (line: string) => void
  /** Mutual TLS: only clients with a certificate of `tls.ca` (and one of `tls.clientNames`, when given) get a connection. Default: plaintext. */
  tls?: HostBusServerTls
}

/** A running agent. */
export interface AgentServer {
  /** The listening address with the real port. */
  readonly address: string
  /** What the agent reports in Info. */
  info(): Promise<{ machineId: string; bootId: string; kernel: string; watch: 'udev' | 'poll' | undefined }>
  /** Ends event streams and lock sessions, stops change detection and the server; idempotent. */
  close(): Promise<void>
}

/** Kernel and argument errors are normal answers; only these statuses are worth a log line. */
const UNEXPECTED = new Set<grpc.status>([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.RESOURCE_EXHAUSTED])

/**
 * Serves `sysfsRoot` until closed. Rejects when the root is not a sysfs with an AP bus (no
 * `bus/ap/apmask`), or with the bind error (EADDRINUSE, ...).
 */
export async function startAgentServer(opts: AgentServerOptions): Promise<AgentServer> {
  const log = opts.log ?? (() => undefined)
  const i = opts.addr.lastIndexOf(':')
  const bindHost = opts.addr.slice(0, i)
  try {
    await fs.access(`${opts.sysfsRoot}/bus/ap/apmask`)
  } catch (e) {
    throw new Error(
      `${opts.sysfsRoot} is not a sysfs with an AP bus (no ${opts.sysfsRoot}/bus/ap/apmask: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    )
  }
  const identity = new HostIdentity({ root: opts.sysfsRoot, ...(opts.bootIdFile ? { bootIdFile: opts.bootIdFile } : {}) })
  const [machineId, bootId, kernel] = await Promise.all([identity.machineId(), identity.bootId(), identity.kernel()])
  const access = new NodeSysfsAccess({
    root: opts.sysfsRoot,
    lock: opts.lockPath ? new ApConfigLock({ path: opts.lockPath }) : null,
    lockWaitMs: opts.lockWaitMs ?? 5000,
    watch: { mode: opts.watch, pollMs: opts.pollMs, log },
  })
  // Seqs restart with every agent process: the epoch names this one (and the boot it serves).
  const events = new AgentEventLog(`${bootId}/${randomUUID()}`)
  const stopWatch = access.watch!((c) => events.add(c))
  let currentBoot = bootId

  const info = (): WireInfo => ({
    driver: 'agent',
    machine_id: machineId,
    boot_id: currentBoot,
    kernel,
    profile: '',
    services: [HOSTBUS_SERVICE_NAME],
    config_lock: opts.lockPath ?? '',
    hostname: os.hostname(),
    sysfs_root: access.root,
    version: appVersion(),
  })
  const refreshBoot = async (): Promise<void> => {
    currentBoot = await identity.bootId().catch(() => currentBoot)
  }

  const write = async (locked: { write(p: string, v: string): Promise<void> }, p: string, v: string): Promise<void> => {
    await checkWriteTarget(access.root, access.resolve(servedPath(p)), p)
    await locked.write(p, v)
  }

  const bus = createHostBusService(
    {
      read: (p) => access.read(servedPath(p)),
      list: (p) => access.list(servedPath(p)),
      exists: (p) => {
        try {
          return access.exists(servedPath(p))
        } catch {
          return false
        }
      },
      readlink: (p) => access.readlink(servedPath(p)),
      write: (p, v) => write(access, p, v),
      synchronous: false,
      bootId: () => currentBoot,
      info,
      events,
      ...(access.exclusive
        ? {
            exclusive: async ({ waitMs, signal }, fn) => {
              await access.exclusive!((locked) => fn((p, v) => write(locked, p, v)), { waitMs, signal })
            },
            lockPath: opts.lockPath ?? '',
          }
        : {}),
    },
    { log, maxLockHoldMs: opts.lockMaxHoldMs ?? 120_000 },
  )
  // The boot id can only change under a mount (the emulator behind a FUSE view rebooted with a boot-id file): read it now and then.
  const bootTimer = setInterval(() => void refreshBoot(), 10_000)
  bootTimer.unref()

  const logFailures: grpc.ServerInterceptor = (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      sendStatus(status, next) {
        if (UNEXPECTED.has(status.code)) log(`${method.path}: ${grpc.status[status.code]}: ${status.details}`)
        next(status)
      },
    })

  const { definition, HostBus } = loadHostBusProto()
  const interceptors = [logFailures, ...(opts.tls?.clientNames.length ? [clientNameInterceptor(opts.tls.clientNames, log)] : [])]
  const server = new grpc.Server({ interceptors, 'grpc.max_receive_message_length': 2 * MAX_VALUE_BYTES })
  server.addService(HostBus.service, bus.handlers)
  const health = new HealthImplementation({ '': 'SERVING', [HOSTBUS_SERVICE_NAME]: 'SERVING' })
  health.addToServer(server)
  new ReflectionService(definition).addToServer(server)

  const shutdownWatch = async (): Promise<void> => {
    clearInterval(bootTimer)
    stopWatch()
    await access.close()
  }
  let port: number
  try {
    const credentials = opts.tls ? hostBusServerCredentials(opts.tls) : grpc.ServerCredentials.createInsecure()
    port = await new Promise<number>((resolve, reject) => server.bindAsync(opts.addr, credentials, (err, p) => (err ? reject(err) : resolve(p))))
  } catch (e) {
    await shutdownWatch()
    server.forceShutdown()
    throw e
  }
  const address = `${bindHost}:${port}`
  log(
    `agent serving ${address}: sysfs root ${access.root}, lock ${opts.lockPath ?? 'none'}, watch ${access.watchMode ?? opts.watch}, machine ${machineId}, bootId ${bootId}, ${tlsSummary(opts.tls)}`,
  )

  let closing: Promise<void> | undefined
  return {
    address,
    info: async () => ({ machineId, bootId: currentBoot, kernel, watch: access.watchMode }),
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const name of ['', HOSTBUS_SERVICE_NAME]) health.setStatus(name, 'NOT_SERVING')
        bus.close()
        void shutdownWatch().finally(() => {
          // A client that keeps a call open must not hold the process: force after a grace period.
          const force = setTimeout(() => server.forceShutdown(), 1000)
          server.tryShutdown(() => {
            clearTimeout(force)
            log('agent stopped')
            resolve()
          })
        })
      })
      return closing
    },
  }
}
