/**
 * Client of `apmatrix emulator serve`: the host-bus face every remote host has (src/hostbus/client.ts:
 * sysfs, fencing, write log, events) plus the emulator's controls (guests, workload, hardware, time,
 * reboot; proto/apmatrix/emulator/v1/emulator.proto), over one channel. Kernel errors come back as the same
 * SysfsError a local host throws; failures to reach the emulator are {@link RemoteHostError}.
 */
import * as grpc from '@grpc/grpc-js'
import type { EmulatorEvent, HardwareAction, KernelProfileName, RequestStats } from '../emulator/api.js'
import { connectHostBus, type EventsOptions, type EventSubscription, type HostBusClient, type HostBusClientOptions } from '../hostbus/client.js'
import { RemoteHostError, fromServiceError } from '../hostbus/errors.js'
import { faultConfigToWire, faultStatusFromWire, hardwareToWire, statsFromWire } from './codec.js'
import type { FaultConfig, FaultStatus } from '../emulator/faults.js'
import { type WireEmulatorInfo, type WireFaultStatus, type WireRequestStats, loadEmulatorProto } from './proto.js'

export { RemoteHostError }
export type { EventsOptions, EventSubscription, WriteLog, WriteLogEntry } from '../hostbus/client.js'

/** Options of {@link connectEmulator}. */
export type RemoteEmulatorOptions = HostBusClientOptions

/** What the emulator process says about its host. */
export interface RemoteHostInfo {
  profile: string
  kernel: KernelProfileName
  bootId: string
  now: number
  clock: 'realtime' | 'manual'
}

/** A remote emulated host: its host-bus face plus async versions of the EmulatedHostApi controls. */
export interface RemoteEmulator extends Omit<HostBusClient, 'events' | 'info'> {
  guestOpen(uuid: string, guest: string): Promise<void>
  guestClose(uuid: string): Promise<void>
  guests(): Promise<Array<{ uuid: string; guest: string }>>
  guestAqic(uuid: string, apqn: string, nib: number): Promise<number>
  submitRequests(apqn: string, count: number): Promise<number>
  setWorkload(apqn: string, perSecond: number): Promise<void>
  requestStats(apqn: string): Promise<RequestStats>
  hardware(action: HardwareAction): Promise<void>
  scan(): Promise<void>
  advance(ms: number): Promise<void>
  now(): Promise<number>
  /** The emulated host (EmulatorControl.Info). */
  info(): Promise<RemoteHostInfo>
  /** The host-bus identity (HostBus.Info: driver, machine id, services). */
  hostInfo: HostBusClient['info']
  /** Restarts the host from the same profile: kernel state lost, new bootId. */
  reboot(): Promise<RemoteHostInfo>
  /** Replaces the injected write faults (no rules: none); INVALID_ARGUMENT for a bad rule. */
  setFaults(config: FaultConfig): Promise<FaultStatus>
  /** The injected write faults in force, with their counts. */
  faults(): Promise<FaultStatus>
  /**
   * The emulated kernel's events (uevents, log lines, guest APCB changes, traced requests) with seq >
   * `sinceSeq`, then live ones, resumed across broken connections (see HostBusClient.events). The epoch
   * of an emulator is its boot: after a reboot the stream continues from the new boot's first event.
   */
  events(
    sinceSeq: number,
    onEvent: (e: EmulatorEvent, meta: { bootId: string }) => void,
    opts?: Omit<EventsOptions, 'epoch'> & { bootId?: string },
  ): EventSubscription
}

type Callback = (err: grpc.ServiceError | null, res: unknown) => void
type UnaryMethod = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback) => grpc.ClientUnaryCall

function infoFromWire(w: WireEmulatorInfo): RemoteHostInfo {
  return { profile: w.profile, kernel: w.kernel as KernelProfileName, bootId: w.boot_id, now: w.now, clock: w.clock as RemoteHostInfo['clock'] }
}

/** Connects (lazily: the first call dials) to the emulator at `addr` (`host:port`). */
export function connectEmulator(addr: string, opts: RemoteEmulatorOptions = {}): RemoteEmulator {
  const timeoutMs = opts.timeoutMs ?? 5000
  const bus = connectHostBus(addr, opts)
  const { EmulatorControl } = loadEmulatorProto()
  const control = new EmulatorControl(addr, bus.credentials, { channelOverride: bus.channel })

  const call = <Res>(method: string, req: object): Promise<Res> =>
    new Promise<Res>((resolve, reject) => {
      const fn = (control as unknown as Record<string, UnaryMethod>)[method]!.bind(control)
      try {
        fn(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
          err ? reject(fromServiceError(err, addr, method)) : resolve(res as Res),
        )
      } catch (e) {
        reject(new RemoteHostError('UNAVAILABLE', `emulator at ${addr}: ${method}: ${(e as Error).message}`, e))
      }
    })

  return {
    ...bus,
    hostInfo: bus.info,
    // An emulator's events are the emulated kernel's (src/emulator/api.ts), its epoch is its boot.
    events: (sinceSeq, onEvent, eo = {}) =>
      bus.events(sinceSeq, (e, meta) => onEvent(e as EmulatorEvent, { bootId: meta.bootId }), { ...eo, ...(eo.bootId ? { epoch: eo.bootId } : {}) }),
    guestOpen: async (uuid, guest) => void (await call('GuestOpen', { uuid, guest })),
    guestClose: async (uuid) => void (await call('GuestClose', { uuid })),
    guests: async () => (await call<{ guests: { uuid: string; guest: string }[] }>('Guests', {})).guests.map(({ uuid, guest }) => ({ uuid, guest })),
    guestAqic: async (uuid, apqn, nib) => (await call<{ rc: number }>('GuestAqic', { uuid, apqn, nib })).rc,
    submitRequests: async (apqn, count) => (await call<{ accepted: number }>('SubmitRequests', { apqn, count })).accepted,
    setWorkload: async (apqn, perSecond) => void (await call('SetWorkload', { apqn, per_second: perSecond })),
    requestStats: async (apqn) => statsFromWire(await call<WireRequestStats>('RequestStats', { apqn })),
    hardware: async (action) => void (await call('Hardware', hardwareToWire(action))),
    scan: async () => void (await call('Scan', {})),
    advance: async (ms) => void (await call('Advance', { ms })),
    now: async () => (await call<{ now: number }>('Now', {})).now,
    info: async () => infoFromWire(await call<WireEmulatorInfo>('Info', {})),
    reboot: async () => infoFromWire(await call<WireEmulatorInfo>('Reboot', {})),
    setFaults: async (config) => faultStatusFromWire(await call<WireFaultStatus>('SetFaults', faultConfigToWire(config))),
    faults: async () => faultStatusFromWire(await call<WireFaultStatus>('Faults', {})),
    close() {
      bus.close()
      control.close()
    },
  }
}
