/**
 * Client of `apmatrix emulator serve`: the remote host's sysfs face as a {@link SysfsAccess} (so the
 * bus port drives it exactly like the in-process emulator), its controls, and its event stream.
 * Kernel errors come back as the same SysfsError (same errno, same message) a local host throws;
 * failures to reach the emulator are {@link RemoteEmulatorError} (code UNAVAILABLE), never a SysfsError.
 */
import * as grpc from '@grpc/grpc-js'
import type { BusFence, SysfsAccess } from '../bus/port.js'
import type { EmulatorEvent, HardwareAction, KernelProfileName, RequestStats } from '../emulator/api.js'
import { eventFromWire, hardwareToWire, statsFromWire } from './codec.js'
import { RemoteEmulatorError, fromServiceError } from './errors.js'
import { FENCE_METADATA_KEY, formatFence } from './fence.js'
import { type WireEvent, type WireInfo, type WireRequestStats, type WireWriteLog, loadEmulatorProto } from './proto.js'
import type { WriteOrigin } from './write-log.js'

export { RemoteEmulatorError }

/** Options of {@link connectEmulator}. */
export interface RemoteEmulatorOptions {
  /** Deadline of every unary call, in milliseconds (default 5000). */
  timeoutMs?: number
  /** Event stream reconnect backoff: first delay and cap in milliseconds (default 100 and 2000). */
  reconnectMinMs?: number
  reconnectMaxMs?: number
}

/** What the emulator process says about its host. */
export interface RemoteHostInfo {
  profile: string
  kernel: KernelProfileName
  bootId: string
  now: number
  clock: 'realtime' | 'manual'
}

/** One Write the emulator answered (see the `WriteLog` RPC). */
export interface WriteLogEntry {
  seq: number
  /** Wall clock of the emulator process, milliseconds since the epoch. */
  wallTimeMs: number
  path: string
  value: string
  /** Null for an unfenced write. */
  fence: BusFence | null
  /** Undefined when the kernel accepted the write; else its errno (EACCES for a stale fence). */
  errno?: string
  /** True when the emulator's fence check refused it (errno EACCES; the kernel never saw it). */
  fenceRefused: boolean
  bootId: string
  /** The face of the emulator process the write came through (an older server sends none: gRPC). */
  origin: WriteOrigin
}

/** The emulator's write log from a point on. */
export interface WriteLog {
  entries: WriteLogEntry[]
  /** Seq of the oldest entry the emulator still keeps (0 when none); entries before it were dropped. */
  firstSeq: number
  lastSeq: number
  /** The highest fencing token whose check passed, per host. */
  highestToken: Map<string, number>
}

/** Options of {@link RemoteEmulator.events}. */
export interface EventsOptions {
  /** The boot `sinceSeq` belongs to; if the host rebooted since, the stream starts at the new boot's first event. */
  bootId?: string
  /** Called when the stream breaks (before the automatic reconnect), or when `onEvent` throws. */
  onError?: (err: Error) => void
  /**
   * Called when events were lost: the host keeps only its last 10,000 events, so a subscriber that
   * resumes after a long outage can find the oldest ones already dropped. `from..to` are the missing seqs.
   */
  onGap?: (from: number, to: number) => void
}

/** A live event subscription. */
export interface EventSubscription {
  /** Seq of the last event delivered (the resume point). */
  readonly lastSeq: number
  /** Boot of the last event delivered ('' before the first). */
  readonly bootId: string
  /** Stops the stream and any pending reconnect; idempotent. */
  close(): void
}

/** A remote emulated host: sysfs access plus async versions of the EmulatedHostApi controls. */
export interface RemoteEmulator extends SysfsAccess {
  /** The address given to {@link connectEmulator}. */
  readonly address: string
  exists(path: string): Promise<boolean>
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
  info(): Promise<RemoteHostInfo>
  /** Restarts the host from the same profile: kernel state lost, new bootId. */
  reboot(): Promise<RemoteHostInfo>
  /**
   * This host's sysfs face with every write fenced by `fence` (metadata `x-apmatrix-fence`): the emulator
   * refuses it with SysfsError EACCES when a newer lease token already wrote to `fence.host`.
   */
  withFence(fence: BusFence): SysfsAccess
  /** Writes with seq > `sinceSeq` (default 0: all kept), oldest first, at most `limit` (default 10,000). */
  writeLog(sinceSeq?: number, limit?: number): Promise<WriteLog>
  /**
   * Streams events with seq > `sinceSeq`, then live ones, to `onEvent` in order. After a broken
   * connection it reconnects with backoff and resumes after the last delivered seq, so no event is
   * delivered twice and none is skipped (within the host's 10,000 kept events; see onGap).
   */
  events(sinceSeq: number, onEvent: (e: EmulatorEvent, meta: { bootId: string }) => void, opts?: EventsOptions): EventSubscription
  /** Resolves when the channel is connected; rejects with RemoteEmulatorError after `timeoutMs`. */
  waitForReady(timeoutMs?: number): Promise<void>
  /** Closes the channel and every event subscription. */
  close(): void
}

type Callback = (err: grpc.ServiceError | null, res: unknown) => void
type UnaryMethod = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback) => grpc.ClientUnaryCall

function infoFromWire(w: WireInfo): RemoteHostInfo {
  return { profile: w.profile, kernel: w.kernel as KernelProfileName, bootId: w.boot_id, now: w.now, clock: w.clock as RemoteHostInfo['clock'] }
}

/** Connects (lazily: the first call dials) to the emulator at `addr` (`host:port`). */
export function connectEmulator(addr: string, opts: RemoteEmulatorOptions = {}): RemoteEmulator {
  const timeoutMs = opts.timeoutMs ?? 5000
  const minMs = opts.reconnectMinMs ?? 100
  const maxMs = opts.reconnectMaxMs ?? 2000
  const { Emulator } = loadEmulatorProto()
  // Keepalive lets a long-lived event stream notice a vanished server instead of waiting forever.
  const client = new Emulator(addr, grpc.credentials.createInsecure(), { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000 })
  const subscriptions = new Set<EventSubscription>()

  const call = <Res>(method: string, req: object, md: grpc.Metadata = new grpc.Metadata()): Promise<Res> =>
    new Promise<Res>((resolve, reject) => {
      const fn = (client as unknown as Record<string, UnaryMethod>)[method]!.bind(client)
      try {
        fn(req, md, { deadline: Date.now() + timeoutMs }, (err, res) =>
          err ? reject(fromServiceError(err, addr, method)) : resolve(res as Res),
        )
      } catch (e) {
        // grpc-js throws synchronously on a closed channel.
        reject(new RemoteEmulatorError('UNAVAILABLE', `emulator at ${addr}: ${method}: ${(e as Error).message}`, e))
      }
    })

  const events = (sinceSeq: number, onEvent: (e: EmulatorEvent, meta: { bootId: string }) => void, eo: EventsOptions = {}): EventSubscription => {
    let last = sinceSeq
    let bootId = eo.bootId ?? ''
    let closed = false
    let delay = minMs
    let stream: grpc.ClientReadableStream<WireEvent> | undefined
    let timer: NodeJS.Timeout | undefined

    const open = (): void => {
      timer = undefined
      if (closed) return
      const s = (client as unknown as Record<string, (req: object) => grpc.ClientReadableStream<WireEvent>>)['Events']!({ since_seq: String(last), boot_id: bootId })
      stream = s
      s.on('data', (w: WireEvent) => {
        delay = minMs
        if (bootId === '') bootId = w.boot_id
        else if (w.boot_id !== bootId) {
          // A reboot: sequence numbers restart, and the server sends the new boot from its first event.
          bootId = w.boot_id
          last = 0
        }
        const seq = Number(w.seq)
        if (seq <= last) return
        // Sequence numbers of one boot are contiguous, so a jump means the log no longer held them.
        if (seq > last + 1) eo.onGap?.(last + 1, seq - 1)
        last = seq
        try {
          onEvent(eventFromWire(w), { bootId })
        } catch (e) {
          // A failing listener (or an event kind this client does not know) must not break the stream.
          eo.onError?.(e instanceof Error ? e : new Error(String(e)))
        }
      })
      s.on('error', (err: grpc.ServiceError) => {
        if (!closed) eo.onError?.(fromServiceError(err, addr, 'Events'))
      })
      s.on('status', () => {
        if (closed || stream !== s) return
        timer = setTimeout(open, delay)
        delay = Math.min(delay * 2, maxMs)
      })
    }

    const sub: EventSubscription = {
      get lastSeq() {
        return last
      },
      get bootId() {
        return bootId
      },
      close() {
        if (closed) return
        closed = true
        if (timer) clearTimeout(timer)
        stream?.cancel()
        subscriptions.delete(sub)
      },
    }
    subscriptions.add(sub)
    open()
    return sub
  }

  const read = async (path: string) => (await call<{ text: string }>('Read', { path })).text
  const list = async (path: string) => (await call<{ entries: string[] }>('List', { path })).entries
  const readlink = async (path: string) => (await call<{ target: string }>('Readlink', { path })).target
  const withFence = (fence: BusFence): SysfsAccess => {
    const header = formatFence(fence)
    return {
      read,
      list,
      readlink,
      write: async (path, value) => {
        const md = new grpc.Metadata()
        md.set(FENCE_METADATA_KEY, header)
        await call('Write', { path, value }, md)
      },
      // A newer fence replaces this one (the same host, a later lease).
      withFence,
    }
  }

  return {
    address: addr,
    read,
    write: async (path, value) => void (await call('Write', { path, value })),
    list,
    readlink,
    withFence,
    writeLog: async (sinceSeq = 0, limit = 0) => {
      const w = await call<WireWriteLog>('WriteLog', { since_seq: String(sinceSeq), limit })
      return {
        entries: w.entries.map((e) => ({
          seq: Number(e.seq),
          wallTimeMs: e.wall_time_ms,
          path: e.path,
          value: e.value,
          fence: e.fence_holder === '' && Number(e.fence_token) === 0 ? null : { host: e.fence_host, holder: e.fence_holder, token: Number(e.fence_token) },
          ...(e.errno ? { errno: e.errno } : {}),
          fenceRefused: e.fence_refused,
          bootId: e.boot_id,
          origin: e.origin === 'fuse' ? 'fuse' : 'grpc',
        })),
        firstSeq: Number(w.first_seq),
        lastSeq: Number(w.last_seq),
        highestToken: new Map(Object.entries(w.highest_token).map(([h, t]) => [h, Number(t)])),
      }
    },
    exists: async (path) => (await call<{ exists: boolean }>('Exists', { path })).exists,
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
    info: async () => infoFromWire(await call<WireInfo>('Info', {})),
    reboot: async () => infoFromWire(await call<WireInfo>('Reboot', {})),
    events,
    waitForReady: (ms = timeoutMs) =>
      new Promise<void>((resolve, reject) =>
        client.waitForReady(Date.now() + ms, (err) =>
          err ? reject(new RemoteEmulatorError('UNAVAILABLE', `emulator at ${addr} is not reachable within ${ms} ms: ${err.message}`, err)) : resolve(),
        ),
      ),
    close() {
      for (const s of [...subscriptions]) s.close()
      client.close()
    },
  }
}
