/**
 * The public contract of the AP bus emulator core (docs/kernel-model.md; X-7 model). Everything outside
 * src/emulator/ uses only what this file exports (plus `createHost` in host.ts), so the bus port,
 * the shell, the tests and the benchmark all drive the emulator the same way: through sysfs paths.
 *
 * The core is synchronous: Node's single thread plus the fact that no method awaits gives the one
 * global lock per host that X-5 asks for (every operation runs to completion before the next starts).
 * Time is virtual (milliseconds since boot) and only moves with {@link EmulatedHostApi.advance}.
 */
import type { Errno } from '../domain/errors.js'

/** Kernel behaviour profiles (docs/kernel-model.md §5, X-1..X-3). */
export type KernelProfileName = 'current-6.x' | 'legacy-5.x' | '6.19-override'

/** Adapter mode (O-7). */
export type AdapterMode = 'cca' | 'ep11' | 'accel'

/** One adapter of a hardware profile. */
export interface ProfileAdapter {
  apid: number
  /** Raw hardware type from TAPQ (O-6): 10 = CEX4 .. 14 = CEX8; > 14 maps through QACT; < 10 unsupported. */
  rawType: number
  /** Mode; sets the mode bit of the function word (O-7). */
  mode: AdapterMode
  /** Full 32-bit function word; default derived from mode (APSC|MEX4K|CRT4K|mode bit|APXA). */
  functions?: number
  /** Queue depth from TAPQ (O-9). Default 8. */
  depth?: number
  /** Default true. */
  config?: boolean
  /** Default false. */
  chkstop?: boolean
  /** Virtual milliseconds one request takes on this adapter's queues. Default 5. */
  serviceMs?: number
}

/**
 * A hardware profile (the JSON format of `--profile PATH`). Describes the machine (QCI) and the state
 * at boot. All ids are integers 0..255.
 */
export interface HardwareProfile {
  name: string
  description?: string
  /** QCI (O-1). `null`: the machine has no QCI (O-2: adapters 0..63 and domains 0..15 count as configured). */
  qci: {
    apxa: boolean
    qact: boolean
    apsc: boolean
    rc8a: boolean
    apsb: boolean
    /** Na, the highest APID (O-2). */
    na: number
    /** Nd, the highest domain index (O-2). */
    nd: number
  } | null
  adapters: ProfileAdapter[]
  /** Usage domains in the configuration (aqm). */
  domains: number[]
  /** Control domains in the configuration (adm). */
  controlDomains: number[]
  /** Boot parameters (B-20, B-36): `ap.apmask=`, `ap.aqmask=` (start from all zeros), `ap.domain=`. */
  boot?: { apmask?: string; aqmask?: string; domain?: number }
  /** Loaded modules; vfio_ap default true (T-56 unloads it). */
  modules?: { vfio_ap?: boolean }
  /** Virtual milliseconds a queue reset (RAPQ/ZAPQ) stays "in progress". Default 2. */
  resetMs?: number
}

/** An event the emulated kernel emits (docs/kernel-model.md B-44, E-4, V-26). Sequence numbers are per host. */
export type EmulatorEvent =
  | { seq: number; time: number; kind: 'uevent'; action: 'add' | 'remove' | 'change' | 'bind' | 'unbind'; devpath: string; env: Record<string, string> }
  | { seq: number; time: number; kind: 'log'; level: 'info' | 'warn' | 'err'; message: string }
  /** The guest APCB changed (hot plug or unplug): masks in the kernel's `0x…` format. */
  | { seq: number; time: number; kind: 'apcb'; uuid: string; guest: string; apm: string; aqm: string; adm: string }
  /** A request completed (or was flushed with EAGAIN). Only emitted when the host was created with traceRequests. */
  | { seq: number; time: number; kind: 'request'; apqn: string; result: 'ok' | 'EAGAIN' }

/** Hardware actions (the shell's `hw` op and the REST `POST hardware`). `notify` defaults to true (B-43). */
export type HardwareAction =
  | { action: 'config-off' | 'config-on' | 'checkstop' | 'checkstop-clear'; apid: number; apqi?: number; notify?: boolean }
  | { action: 'add-adapter'; apid: number; rawType?: number; type?: string; mode?: AdapterMode; functions?: number; notify?: boolean }
  | { action: 'remove-adapter'; apid: number; notify?: boolean }
  | { action: 'add-domain' | 'remove-domain'; apqi: number; control?: boolean; notify?: boolean }
  | { action: 'set-mode'; apid: number; mode: AdapterMode; notify?: boolean }

/** Per-queue workload counters, for tests and the reconciler's drain accounting. */
export interface RequestStats {
  submitted: number
  completed: number
  /** Requests that completed with EAGAIN because of a flush (B-16): "requests lost". */
  flushed: number
  /** Requests refused at submission because the queue was not usable (B-17). */
  rejected: number
}

/**
 * What one sysfs path is, as `lstat` sees it: a directory, an attribute (with what its `show`/`store`
 * can do, which is what sysfs turns into the file mode: 0444, 0200 or 0644), or a symbolic link with the
 * relative target the kernel shows.
 */
export type SysfsStat = { type: 'dir' } | { type: 'attr'; readable: boolean; writable: boolean } | { type: 'link'; target: string }

/** The sysfs part of a host: what a filesystem face (the FUSE mount) needs. */
export type SysfsFace = Pick<EmulatedHostApi, 'read' | 'write' | 'list' | 'readlink' | 'stat' | 'exists'>

/** The emulated host. Every sysfs method throws {@link SysfsError} with the kernel's errno. */
export interface EmulatedHostApi {
  readonly kernel: KernelProfileName
  readonly profile: HardwareProfile
  /** Changes at every boot (reboot = a new host object built from the same profile). */
  readonly bootId: string

  /** Reads an attribute: the exact text the kernel returns, including the trailing newline. ENOENT, EACCES (write-only), EISDIR. */
  read(path: string): string
  /** Writes an attribute exactly as given (the caller adds the newline `echo` would add). */
  write(path: string, value: string): void
  /** Lists a directory: sorted entry names. ENOENT, ENOTDIR. */
  list(path: string): string[]
  exists(path: string): boolean
  /** Target of a sysfs symlink, relative as the kernel shows it (e.g. `driver` of a queue: `../../../../bus/ap/drivers/cex4queue`). ENOENT (no link, e.g. an unbound queue's `driver`), EINVAL (not a link). */
  readlink(path: string): string
  /** What the node at `path` is, without following a final link (lstat). ENOENT, ENOTDIR, ELOOP. */
  stat(path: string): SysfsStat

  /** V-25: a guest (KVM `guest`) opens the mdev. EINVAL no guest name, ENODEV unknown mdev, EPERM guest has another vfio-ap device, EBUSY mdev already open. */
  guestOpen(uuid: string, guest: string): void
  /** V-27: the guest closes the mdev (detach). ENODEV if not open. */
  guestClose(uuid: string): void
  /** Which guest has which matrix device open (what the hypervisor knows; sysfs shows it only as queue `status` `in use`). Sorted by uuid. */
  guests(): Array<{ uuid: string; guest: string }>
  /** V-40/T-58: a guest PQAP(AQIC) enable for `apqn` with notification byte address `nib`; returns the AP response code (0x00, 0x01, 0x06, ...). */
  guestAqic(uuid: string, apqn: string, nib: number): number

  /** `count` crypto requests arrive on a queue (host workload, B-17). Returns how many were accepted; ENODEV when none could be. */
  submitRequests(apqn: string, count: number): number
  /**
   * A steady host workload on a queue: one request arrives every 1000/perSecond virtual ms (0 stops it).
   * Arrivals on a queue that is not usable or not online are refused (counted in `rejected`), as zcrypt
   * would not dispatch to it (B-17). ENOENT for an unknown APQN, EINVAL for a bad rate.
   */
  setWorkload(apqn: string, perSecond: number): void
  /** Workload counters of one queue (throws ENOENT for an unknown APQN). */
  requestStats(apqn: string): RequestStats

  /** Changes the machine (hostcfg or TAPQ answers); with notify (default) a scan runs at once (B-43). */
  hardware(action: HardwareAction): void
  /** B-1/B-2: one bus scan now. */
  scan(): void
  /** Moves virtual time forward: requests complete, resets finish, the periodic scan runs every config_time seconds. */
  advance(ms: number): void
  /** Virtual milliseconds since boot. */
  now(): number

  /** Events with seq > `sinceSeq` (all kept events when omitted). The host keeps the last 10,000. */
  events(sinceSeq?: number): EmulatorEvent[]
  /** Calls `listener` for every event as it is emitted; returns an unsubscribe function. */
  subscribe(listener: (e: EmulatorEvent) => void): () => void
}

export type { Errno }
