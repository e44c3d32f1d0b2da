/**
 * Client of the host-bus service (an `apmatrix agent` or an `apmatrix emulator serve`): the remote host's
 * sysfs face as a {@link SysfsAccess}, so the bus port drives it exactly like a local /sys; fenced views,
 * lock sessions (exclusive sections), the event stream and the write log. Kernel errors come back as the
 * same SysfsError (same errno, same message) the host threw; failures to reach the host are
 * {@link RemoteHostError} (code UNAVAILABLE), never a SysfsError.
 */
import * as grpc from '@grpc/grpc-js'
import type { BusChange, BusFence, SysfsAccess } from '../bus/port.js'
import { SysfsError } from '../domain/errors.js'
import { eventFromWire, type HostBusEvent } from './codec.js'
import { RemoteHostError, fromServiceError } from './errors.js'
import { FENCE_METADATA_KEY, formatFence } from './fence.js'
import { LOCK_SESSION_METADATA_KEY, loadHostBusProto, type WireEvent, type WireInfo, type WireLockGrant, type WireWriteLog } from './proto.js'
import { type HostBusClientTls, hostBusChannelCredentials, probeHostTls } from './tls.js'

export { RemoteHostError }

/** Options of {@link connectHostBus}. */
export interface HostBusClientOptions {
  /** Deadline of every unary call, in milliseconds (default 5000). */
  timeoutMs?: number
  /** Event stream reconnect backoff: first delay and cap in milliseconds (default 100 and 2000). */
  reconnectMinMs?: number
  reconnectMaxMs?: number
  /** How long an exclusive section waits for the host's AP configuration lock (default 5000 ms). */
  lockWaitMs?: number
  /** Mutual TLS (src/hostbus/tls.ts): verify the host's certificate against this CA and present this client certificate. Default: plaintext. */
  tls?: HostBusClientTls
}

/** What a host-bus server says about itself (hostbus.proto InfoResponse). */
export interface HostBusInfo {
  driver: string
  machineId: string
  bootId: string
  kernel: string
  profile: string
  services: string[]
  configLock: string
  hostname: string
  sysfsRoot: string
  version: string
}

/** One Write the host answered (see the `WriteLog` RPC). */
export interface WriteLogEntry {
  seq: number
  /** Wall clock of the host's server process, milliseconds since the epoch. */
  wallTimeMs: number
  path: string
  value: string
  /** Null for an unfenced write. */
  fence: BusFence | null
  /** Undefined when the kernel accepted the write; else its errno (EACCES for a stale fence). */
  errno?: string
  /** True when the fence check refused it (errno EACCES; the kernel never saw it). */
  fenceRefused: boolean
  bootId: string
  /** The face the write came through: the host-bus `Write`, or the FUSE mount of an emulator (never fenced). */
  origin: 'grpc' | 'fuse'
}

/** The host's write log from a point on. */
export interface WriteLog {
  entries: WriteLogEntry[]
  /** Seq of the oldest entry the host still keeps (0 when none); entries before it were dropped. */
  firstSeq: number
  lastSeq: number
  /** The highest fencing token whose check passed, per host. */
  highestToken: Map<string, number>
}

/** Options of {@link HostBusClient.events}. */
export interface EventsOptions {
  /** The epoch `sinceSeq` belongs to; if it changed since (reboot, agent restart), the stream starts at the new epoch's first event. */
  epoch?: string
  /** Called when the stream breaks (before the automatic reconnect), or when `onEvent` throws. */
  onError?: (err: Error) => void
  /**
   * Called when events were lost: a host keeps only its last events, so a subscriber that resumes after
   * a long outage can find the oldest ones already dropped. `from..to` are the missing seqs.
   */
  onGap?: (from: number, to: number) => void
}

/** A live event subscription. */
export interface EventSubscription {
  /** Seq of the last event delivered (the resume point). */
  readonly lastSeq: number
  /** Epoch of the last event delivered ('' before the first). */
  readonly epoch: string
  /** Boot of the last event delivered ('' before the first). */
  readonly bootId: string
  /** Stops the stream and any pending reconnect; idempotent. */
  close(): void
}

/** A remote host's sysfs face. */
export interface HostBusClient extends SysfsAccess {
  /** The address given to {@link connectHostBus}. */
  readonly address: string
  /** The channel, for other services of the same server (emulator controls). */
  readonly channel: ReturnType<grpc.Client['getChannel']>
  /** The credentials of that channel. */
  readonly credentials: grpc.ChannelCredentials
  exists(path: string): Promise<boolean>
  info(): Promise<HostBusInfo>
  /**
   * This host's sysfs face with every write fenced by `fence` (metadata `x-apmatrix-fence`): the host
   * refuses it with SysfsError EACCES when a newer lease token already wrote to `fence.host`.
   */
  withFence(fence: BusFence): SysfsAccess & Required<Pick<SysfsAccess, 'exclusive'>>
  /**
   * A lock session (the `Lock` RPC): `fn` runs while the host holds its AP configuration lock for this
   * client, and its writes carry the session. Rejects with ConfigLockBusyError when the lock stays held by
   * another process past the wait; the session ends (the host releases) when `fn` settles.
   */
  exclusive<T>(fn: (locked: SysfsAccess) => Promise<T>): Promise<T>
  /** Changes worth a look (uevents, polls, guest APCB changes); `log` and `request` events are left out. */
  watch(listener: (change: BusChange) => void): () => void
  /** Writes with seq > `sinceSeq` (default 0: all kept), oldest first, at most `limit` (default 10,000). */
  writeLog(sinceSeq?: number, limit?: number): Promise<WriteLog>
  /**
   * Streams events with seq > `sinceSeq`, then live ones, to `onEvent` in order. After a broken
   * connection it reconnects with backoff and resumes after the last delivered seq, so no event is
   * delivered twice and none is skipped (within the events the host keeps; see onGap).
   */
  events(sinceSeq: number, onEvent: (e: HostBusEvent, meta: { bootId: string; epoch: string }) => void, opts?: EventsOptions): EventSubscription
  /**
   * Resolves when the channel is connected; rejects with RemoteHostError after `timeoutMs`, or at once
   * (with TLS) when a handshake fails because one side does not trust the other.
   */
  waitForReady(timeoutMs?: number): Promise<void>
  /** Closes the channel and every event subscription. */
  close(): void
}

type Callback = (err: grpc.ServiceError | null, res: unknown) => void
type UnaryMethod = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback) => grpc.ClientUnaryCall

function infoFromWire(w: WireInfo): HostBusInfo {
  return {
    driver: w.driver,
    machineId: w.machine_id,
    bootId: w.boot_id,
    kernel: w.kernel,
    profile: w.profile,
    services: [...w.services],
    configLock: w.config_lock,
    hostname: w.hostname,
    sysfsRoot: w.sysfs_root,
    version: w.version,
  }
}

/**
 * Probes the host's TLS until it accepts a handshake; RemoteHostError UNAVAILABLE at once when it refuses
 * one (certificates that do not match do not get better by waiting); returns at the deadline otherwise
 * (the channel's own wait then reports it).
 */
async function untilTlsAccepted(addr: string, t: HostBusClientTls, deadline: number): Promise<void> {
  for (;;) {
    const left = deadline - Date.now()
    if (left <= 0) return
    const p = await probeHostTls(addr, t, Math.min(left, 2000))
    if (p.outcome === 'accepted') return
    if (p.outcome === 'refused') throw new RemoteHostError('UNAVAILABLE', `host at ${addr} is not reachable: TLS handshake failed: ${p.reason}`)
    await new Promise((r) => setTimeout(r, Math.min(100, Math.max(0, deadline - Date.now()))))
  }
}

/** Connects (lazily: the first call dials) to the host-bus server at `addr` (`host:port`). */
export function connectHostBus(addr: string, opts: HostBusClientOptions = {}): HostBusClient {
  const timeoutMs = opts.timeoutMs ?? 5000
  const minMs = opts.reconnectMinMs ?? 100
  const maxMs = opts.reconnectMaxMs ?? 2000
  const lockWaitMs = opts.lockWaitMs ?? 5000
  const { HostBus } = loadHostBusProto()
  // Keepalive lets a long-lived event stream or lock session notice a vanished server instead of waiting forever.
  const credentials = opts.tls ? hostBusChannelCredentials(opts.tls) : grpc.credentials.createInsecure()
  // A host that went away (agent restarted, emulator frozen or cut off) is dialled again at least every 2 s:
  // grpc-js would otherwise back off up to 120 s, and calls fail at once meanwhile, so a host that is back
  // would stay "unreachable" for minutes (issue 11 §3).
  const client = new HostBus(addr, credentials, {
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': 2_000,
  })
  const subscriptions = new Set<EventSubscription>()

  const call = <Res>(method: string, req: object, md: grpc.Metadata = new grpc.Metadata()): Promise<Res> =>
    new Promise<Res>((resolve, reject) => {
      const fn = (client as unknown as Record<string, UnaryMethod>)[method]!.bind(client)
      try {
        fn(req, md, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(fromServiceError(err, addr, method)) : resolve(res as Res)))
      } catch (e) {
        // grpc-js throws synchronously on a closed channel.
        reject(new RemoteHostError('UNAVAILABLE', `host at ${addr}: ${method}: ${(e as Error).message}`, e))
      }
    })

  const events = (sinceSeq: number, onEvent: (e: HostBusEvent, meta: { bootId: string; epoch: string }) => void, eo: EventsOptions = {}): EventSubscription => {
    let last = sinceSeq
    let epoch = eo.epoch ?? ''
    let bootId = ''
    let closed = false
    let delay = minMs
    let stream: grpc.ClientReadableStream<WireEvent> | undefined
    let timer: NodeJS.Timeout | undefined

    const open = (): void => {
      timer = undefined
      if (closed) return
      const s = (client as unknown as Record<string, (req: object) => grpc.ClientReadableStream<WireEvent>>).Events!({ since_seq: String(last), epoch })
      stream = s
      s.on('data', (w: WireEvent) => {
        delay = minMs
        bootId = w.boot_id
        if (epoch === '') epoch = w.epoch
        else if (w.epoch !== epoch) {
          // A new epoch (reboot, agent restart): sequence numbers restart, and the server sends it from its first event.
          epoch = w.epoch
          last = 0
        }
        const seq = Number(w.seq)
        if (seq <= last) return
        // Sequence numbers of one epoch are contiguous, so a jump means the host no longer held them.
        if (seq > last + 1) eo.onGap?.(last + 1, seq - 1)
        last = seq
        try {
          onEvent(eventFromWire(w), { bootId, epoch })
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
      get epoch() {
        return epoch
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

  /** A Write with the given request metadata (fence, lock session). */
  const writeWith = (headers: Array<[string, string]>) => async (path: string, value: string) => {
    const md = new grpc.Metadata()
    for (const [k, v] of headers) md.set(k, v)
    await call('Write', { path, value }, md)
  }

  /** Runs `fn` in a lock session; its writes carry `headers` and the session. */
  const exclusiveWith = async <T>(headers: Array<[string, string]>, fn: (locked: SysfsAccess) => Promise<T>): Promise<T> => {
    const lockCall = (client as unknown as Record<string, (req: object, opts: grpc.CallOptions) => grpc.ClientReadableStream<WireLockGrant>>).Lock!(
      { wait_ms: lockWaitMs },
      {},
    )
    let grant: WireLockGrant
    try {
      grant = await new Promise<WireLockGrant>((resolve, reject) => {
        // The server answers within the wait it was given; more than that plus a margin: the host is stuck.
        const timer = setTimeout(
          () => reject(new RemoteHostError('DEADLINE_EXCEEDED', `host at ${addr} did not answer Lock within ${lockWaitMs + timeoutMs} ms`)),
          lockWaitMs + timeoutMs,
        )
        lockCall.once('data', (g: WireLockGrant) => {
          clearTimeout(timer)
          resolve(g)
        })
        lockCall.once('error', (err: grpc.ServiceError) => {
          clearTimeout(timer)
          reject(fromServiceError(err, addr, 'Lock'))
        })
        lockCall.once('end', () => {
          clearTimeout(timer)
          reject(new RemoteHostError('UNAVAILABLE', `host at ${addr}: Lock ended without a grant`))
        })
      })
    } catch (e) {
      lockCall.cancel()
      throw e
    }
    // Errors after the grant (a server-side hold limit, a broken connection) surface on the writes (ECANCELED, UNAVAILABLE).
    lockCall.on('error', () => undefined)
    const session: Array<[string, string]> = [...headers, [LOCK_SESSION_METADATA_KEY, grant.session]]
    const sessionWrite = writeWith(session)
    let ended = false
    // A view kept past its section must not write as if it held the lock (the host refuses such a write too).
    const write = async (path: string, value: string): Promise<void> => {
      if (ended) throw new SysfsError('ECANCELED', `lock session ${grant.session} has ended: the write was not made`)
      await sessionWrite(path, value)
    }
    try {
      return await fn({ read, list, readlink, write })
    } finally {
      ended = true
      lockCall.cancel()
    }
  }

  const withFence = (fence: BusFence): SysfsAccess & Required<Pick<SysfsAccess, 'exclusive'>> => {
    const headers: Array<[string, string]> = [[FENCE_METADATA_KEY, formatFence(fence)]]
    return {
      read,
      list,
      readlink,
      write: writeWith(headers),
      exclusive: (fn) => exclusiveWith(headers, fn),
      // A newer fence replaces this one (the same host, a later lease).
      withFence,
    }
  }

  return {
    address: addr,
    channel: client.getChannel(),
    credentials,
    read,
    write: writeWith([]),
    list,
    readlink,
    withFence,
    exclusive: (fn) => exclusiveWith([], fn),
    watch(listener) {
      // From the start of what the host keeps: a watcher only uses events as a nudge to look again, so a
      // replay costs one extra reconcile, while starting "at the end" could miss a reboot's first events.
      const sub = events(0, (e) => {
        if (e.kind === 'uevent') listener({ source: 'uevent', summary: `${e.action} ${e.devpath}` })
        else if (e.kind === 'apcb') listener({ source: 'apcb', summary: `guest ${e.guest} of ${e.uuid}: apm ${e.apm}` })
        else if (e.kind === 'changed') listener({ source: e.source === 'uevent' ? 'uevent' : 'poll', summary: e.summary })
      })
      return () => sub.close()
    },
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
    info: async () => infoFromWire(await call<WireInfo>('Info', {})),
    events,
    async waitForReady(ms = timeoutMs) {
      const deadline = Date.now() + ms
      // grpc-js retries a failed handshake until the deadline and then says only that it did not connect:
      // a probe tells a host that is not up yet (wait) from one whose certificates do not match (fail now, saying why).
      if (opts.tls) await untilTlsAccepted(addr, opts.tls, deadline)
      await new Promise<void>((resolve, reject) =>
        client.waitForReady(deadline, (err) =>
          err ? reject(new RemoteHostError('UNAVAILABLE', `host at ${addr} is not reachable within ${ms} ms: ${err.message}`, err)) : resolve(),
        ),
      )
    },
    close() {
      for (const s of [...subscriptions]) s.close()
      client.close()
    },
  }
}
