/**
 * Watching the event log (docs/api.md (Resources) Event): the one subscription life cycle behind REST's
 * server-sent events and gRPC's `EventService.Watch`, so both offer the same filters and views and
 * deliver the same events for the same request. Transports only parse their wire input and map the
 * delivered events and the end of the watch.
 *
 * Over the {@link EventHub} (replay, then live; no gap, no duplicate, seq strictly increasing). Filters:
 * `host`, `kinds` (applied by the hub, also on its store reads) and `types`; format `libvirt` delivers
 * only the events that have a libvirt node-device lifecycle name (events/libvirt-lifecycle.ts), with it.
 */
import { ApmatrixError, invalidArgument } from '../domain/errors.js'
import { EVENT_NAME, HOST_NAME } from '../domain/names.js'
import { clip } from '../domain/text.js'
import type { EventHub, EventRecord } from '../events/hub.js'
import { type LibvirtLifecycleName, toLibvirtEvent } from '../events/libvirt-lifecycle.js'
import { authorize } from '../auth/authorize.js'
import type { Principal } from '../auth/identity.js'
import type { Resource } from '../auth/roles.js'
import type { SubjectLimits } from '../auth/limits.js'

/** How events are delivered: as stored (`apmatrix`), or only those libvirt has a name for, with it (`libvirt`). */
export const WATCH_FORMATS = ['apmatrix', 'libvirt'] as const
/** A {@link WATCH_FORMATS} member. */
export type WatchFormat = (typeof WATCH_FORMATS)[number]

/** Most names in a `kinds` or `types` filter. */
export const MAX_WATCH_NAMES = 32

/** What a watcher asks for (checked by {@link EventWatch.watch}). */
export interface WatchInput {
  /** Only this host's events. */
  host?: string
  /** Only these kinds (`mdev`, `masks`, `queue`, `host`, ...); absent or empty = all. */
  kinds?: readonly string[]
  /** Only these types (`MdevDefined`, ...); absent or empty = all. */
  types?: readonly string[]
  /**
   * Events with seq > sinceSeq (0 = every event the log still keeps); absent = only events stored from now on.
   * A position below the log's compaction floor is GONE (docs/api.md (Events) Retention).
   */
  sinceSeq?: number
  /** A bookmark (the watch's position, no event) every this many seconds, 1..3600; absent or 0 = none. */
  bookmarkSeconds?: number
  /** Default `apmatrix`. */
  format?: string
  /**
   * The watcher (src/auth): only events about objects it may read are delivered, decided per event by
   * the one authorization function (a tenant's watch carries its own matrix devices' events only).
   * Absent: an in-process watcher, everything.
   */
  principal?: Principal
}

/** The owner of a stored matrix device (null = unowned, undefined = unknown / gone). */
export type OwnerLookup = (host: string, uuid: string) => Promise<string | null | undefined>

/** The resource an event is about, by its kind (what the watcher must be allowed to read). */
export function eventResource(kind: string): Resource {
  if (kind === 'mdev') return 'mdevs'
  if (kind === 'masks') return 'masks'
  if (kind === 'queue' || kind === 'adapter' || kind === 'domain') return 'inventory'
  return 'hosts'
}

/** One delivered event; `libvirt` is set exactly when the format is `libvirt`. */
export interface WatchedEvent {
  event: EventRecord
  libvirt?: { lifecycle: LibvirtLifecycleName; device: string }
}

/** An open watch. */
export interface Watch {
  /**
   * The highest seq this watch has passed (delivered, or skipped by a filter): resuming with
   * `sinceSeq = position` loses nothing the watcher asked for. Starts at `sinceSeq` (or the newest seq).
   */
  readonly position: number
  /** Ends the watch (idempotent); `onEnd` is not called for it. */
  close(): void
}

/** Receives one event; a returned promise delays the next one until it settles (backpressure). */
export type WatchListener = (e: WatchedEvent) => void | Promise<void>

/**
 * Receives a bookmark: the watch's position (every event the watcher asked for up to that seq was given to the
 * listener before), with no event; resuming from it loses nothing. In order with the events, with backpressure.
 */
export type BookmarkListener = (position: number) => void | Promise<void>

/** The type of a bookmark as the transports send it (SSE event name; gRPC `Event.type`, with `bookmark` set). */
export const BOOKMARK_TYPE = 'Bookmark'

/** Most seconds between bookmarks a watch may ask for. */
export const MAX_BOOKMARK_SECONDS = 3600

/**
 * Told once when the watch ends on its own: `SubscriptionLagError` (too slow, with `resumeSeq`),
 * `HubClosedError` (shutdown), GONE (retention overtook the watch: re-list; ApmatrixError with `oldestSeq`), or
 * the store's error (UNAVAILABLE).
 */
export type WatchEndListener = (err: Error) => void

/** The event watching of the service. */
export class EventWatch {
  constructor(
    private readonly hub: EventHub | undefined,
    private readonly ownerOf: OwnerLookup = async () => undefined,
    private readonly limits?: SubjectLimits,
  ) {}

  /**
   * Opens a watch; resolves once it is open. Refused before anything is opened with: INVALID_ARGUMENT for a
   * malformed host, a filter with more than {@link MAX_WATCH_NAMES} names or a name outside
   * `[A-Za-z0-9._-]{1,64}`, a negative or unsafe `sinceSeq`, an unknown format, a `bookmarkSeconds` outside
   * 0..{@link MAX_BOOKMARK_SECONDS}; UNAVAILABLE when this server has no event hub (or the store does not answer
   * the position check); RATE_LIMITED when the principal's subject already has its limit of open watches
   * (auth/limits.ts; the slot is freed when the watch is closed or ends); GONE (with `oldestSeq`) when `sinceSeq`
   * is below the event log's compaction floor.
   */
  async watch(input: WatchInput, onEvent: WatchListener, onEnd: WatchEndListener, onBookmark?: BookmarkListener): Promise<Watch> {
    const opts = checkWatch(input)
    const hub = this.hub
    if (!hub) throw new ApmatrixError('UNAVAILABLE', 'the event stream is not enabled on this server')
    const release = input.principal && this.limits ? this.limits.openStream(input.principal.subject) : () => undefined
    let sinceSeq: number | undefined
    try {
      sinceSeq = opts.sinceSeq === undefined ? undefined : await hub.startPosition(opts.sinceSeq)
    } catch (e) {
      release()
      throw e
    }
    const types = opts.types ? new Set(opts.types) : null
    const libvirt = opts.format === 'libvirt'
    let position = sinceSeq ?? hub.lastSeq
    let closed = false
    const principal = input.principal
    // Owners this watch has seen in mdev events' data (set on define and update), so a removal event of a
    // device that is gone from the store still reaches its owner.
    const owners = new Map<string, string | null>()
    const deliver = (e: EventRecord): void | Promise<void> => {
      if (!libvirt) return onEvent({ event: e })
      const lv = toLibvirtEvent(e)
      return lv ? onEvent({ event: e, libvirt: lv }) : undefined
    }
    const permitted = async (e: EventRecord): Promise<boolean> => {
      if (!principal) return true
      const resource = eventResource(e.kind)
      let owner: string | null | undefined
      if (resource === 'mdevs') {
        const key = `${e.host}/${e.name}`
        const d = e.data?.owner
        if (d === null || typeof d === 'string') owners.set(key, d)
        owner = owners.has(key) ? owners.get(key) : await this.ownerOf(e.host, e.name)
        // Unknown owner: only a caller that may read every device gets it.
        if (owner === undefined) return authorize(principal, 'read', resource, { host: e.host, owner: '\u0000unknown' }) === 'allow'
      }
      return authorize(principal, 'read', resource, { host: e.host, ...(owner !== undefined ? { owner } : {}) }) === 'allow'
    }
    let unsubscribe: () => void
    try {
      unsubscribe = hub.subscribe(
        {
          ...(sinceSeq !== undefined ? { sinceSeq } : {}),
          ...(opts.host ? { host: opts.host } : {}),
          ...(opts.kinds ? { kinds: opts.kinds } : {}),
          ...(opts.bookmarkSeconds && onBookmark
            ? {
                bookmarkMs: opts.bookmarkSeconds * 1000,
                onBookmark: (seq: number) => {
                  if (closed) return
                  position = seq
                  return onBookmark(seq)
                },
              }
            : {}),
        },
        (e) => {
          if (closed) return
          position = e.seq
          if (types && !types.has(e.type)) return
          if (!principal) return deliver(e)
          return permitted(e).then((ok) => (ok && !closed ? deliver(e) : undefined))
        },
        (err) => {
          if (closed) return
          closed = true
          release()
          onEnd(err)
        },
      )
    } catch (e) {
      release()
      throw e
    }
    return {
      get position() {
        return position
      },
      close() {
        closed = true
        release()
        unsubscribe()
      },
    }
  }
}

/** The checked options of a watch. */
interface CheckedWatch {
  host?: string
  kinds?: string[]
  types?: string[]
  sinceSeq?: number
  bookmarkSeconds?: number
  format: WatchFormat
}

function checkWatch(input: WatchInput): CheckedWatch {
  const out: CheckedWatch = { format: 'apmatrix' }
  if (input.host !== undefined) {
    if (typeof input.host !== 'string' || !HOST_NAME.test(input.host)) {
      throw invalidArgument('host', 'must be 1..63 of [A-Za-z0-9._-], starting alphanumeric')
    }
    out.host = input.host
  }
  const kinds = names(input.kinds, 'kinds')
  if (kinds) out.kinds = kinds
  const types = names(input.types, 'types')
  if (types) out.types = types
  if (input.sinceSeq !== undefined) {
    if (!Number.isSafeInteger(input.sinceSeq) || input.sinceSeq < 0) throw invalidArgument('since', 'must be a non-negative integer (an event seq)')
    out.sinceSeq = input.sinceSeq
  }
  if (input.bookmarkSeconds !== undefined) {
    if (!Number.isInteger(input.bookmarkSeconds) || input.bookmarkSeconds < 0 || input.bookmarkSeconds > MAX_BOOKMARK_SECONDS)
      throw invalidArgument('bookmarks', `must be a whole number of seconds in 0..${MAX_BOOKMARK_SECONDS} (0: none)`)
    if (input.bookmarkSeconds > 0) out.bookmarkSeconds = input.bookmarkSeconds
  }
  if (input.format !== undefined) {
    if (!(WATCH_FORMATS as readonly string[]).includes(input.format)) {
      throw invalidArgument('format', `${JSON.stringify(clip(String(input.format), 32))} is not one of ${WATCH_FORMATS.join(', ')}`)
    }
    out.format = input.format as WatchFormat
  }
  return out
}

/** Unique names, or undefined for none. */
function names(v: readonly string[] | undefined, field: string): string[] | undefined {
  if (v === undefined) return undefined
  const unique = [...new Set(v)]
  if (unique.length > MAX_WATCH_NAMES || unique.some((n) => typeof n !== 'string' || !EVENT_NAME.test(n))) {
    throw invalidArgument(field, `at most ${MAX_WATCH_NAMES} names of 1..64 characters [A-Za-z0-9._-]`)
  }
  return unique.length ? unique : undefined
}
