/**
 * In-process fan-out of the store's event log (docs/api.md (Resources) Event) to many watchers: gRPC
 * `EventService.Watch` and REST `GET /v1/events` both subscribe here.
 *
 * One poller reads `events.list({ since: position, limit: 1000 })` (every `pollIntervalMs`, or at once
 * after {@link EventHub.notify}) and dispatches each batch to the live subscribers. The store only makes
 * an event visible after every lower seq (event-repo.ts), so reading `seq > position` never skips one.
 * The hub also keeps the last `ringSize` events it dispatched, so a subscriber that joins slightly behind
 * (or falls behind) catches up from memory; further back it reads the store.
 *
 * Per subscriber the guarantees are: seq strictly increasing, no gap (every stored event matching the
 * filter with seq > sinceSeq is delivered), no duplicate. A `cursor` per subscriber (highest seq queued
 * or known not to match) is what makes switching between store reads, the ring and live dispatch exact.
 *
 * Slow consumers: `onEvent` may return a promise (backpressure: the next event waits for it). Each
 * subscriber has its own pump and a queue of at most `bufferLimit` live events; a subscriber whose
 * queue is full leaves the live set and is caught up later from the ring or the store, so it never
 * stalls the poller, the writers or the other subscribers and its memory stays bounded. A subscriber
 * that fell out of the live set and then drifts more than `maxLagEvents` behind the newest event is
 * ended with {@link SubscriptionLagError} carrying `resumeSeq` (the last seq it was given): the client
 * resumes from there. That holds also while its listener is still waiting (a watcher that stopped reading: the
 * transport's write never drains): each dispatch checks the subscribers that left the live set, so one that
 * never reads again is ended as soon as it is `maxLagEvents` behind, its queue released, instead of holding its
 * queue and its stream forever. A new subscription replaying old history is never ended for lag. A store read
 * that fails while catching up ends the subscription with that error (UNAVAILABLE when the store is
 * down); the poller itself retries at the next period.
 *
 * Retention (src/store/retention.ts) removes the oldest events and records a floor: every seq <= floor is gone,
 * every stored seq above it is kept. {@link EventHub.startPosition} refuses a position below the floor with GONE
 * before anything is opened. A subscriber that is overtaken later (its next store read starts below a floor that
 * moved past it) is ended with the same GONE error, never handed a log with a hole: each catch-up read from
 * the store checks the floor after it (a compaction that ran before the read has moved the floor by then). The
 * poller notices a floor that overtook it from the gap it leaves in the seqs, and ends the subscribers it
 * would have short-changed.
 *
 * Bookmarks: a subscriber may ask for one every `bookmarkMs`: its current position with no event (the seq up to
 * which it has been given every matching event), delivered in order with its events through `onBookmark`, so a
 * client that sees few events resumes from a recent position.
 */
import { positionGone } from '../domain/errors.js'
import type { EventQuery, EventRecord } from '../store/index.js'

/** An event as the hub delivers it (the store's record); transports use this, not the store. */
export type { EventRecord }

/** The part of the store the hub reads (`store.events`). */
export interface EventSource {
  list(q: EventQuery): Promise<EventRecord[]>
  lastSeq(): Promise<number>
  /** The compaction floor: every seq <= floor was removed by retention. */
  floor(): Promise<number>
}

/** Options of {@link EventHub}. */
export interface EventHubOptions {
  source: EventSource
  /** Poll period in ms (default 100). */
  pollIntervalMs?: number
  /** Live events queued per subscriber before it is switched to catch-up (default 1000). */
  bufferLimit?: number
  /** Recent events kept in memory for catch-up (default 10,000). */
  ringSize?: number
  /** A subscriber further behind than this is ended with {@link SubscriptionLagError} (default 100,000). */
  maxLagEvents?: number
  /** Called when a poll fails (the poller retries at the next period). */
  onPollError?: (err: unknown) => void
}

/** What a subscriber wants. */
export interface SubscribeOptions {
  /** Deliver events with seq > sinceSeq (0 = every stored event). Absent: only events stored from now on. */
  sinceSeq?: number
  host?: string
  /** Only these kinds; absent or empty = all. */
  kinds?: string[]
  /**
   * Every `bookmarkMs` (a positive integer), `onBookmark` is given the subscriber's position: every matching event
   * up to that seq has been given to `onEvent` (and settled). In order with the events; a returned promise delays
   * the next event or bookmark. Absent: no bookmarks.
   */
  bookmarkMs?: number
  onBookmark?: (seq: number) => void | Promise<void>
}

/** Receives one event; a returned promise delays the next event until it settles (backpressure). */
export type EventListener = (e: EventRecord) => void | Promise<void>

/** Told once when the hub ends a subscription: lag, hub closed, or a failing listener or store read. */
export type EndListener = (err: Error) => void

/** The subscriber fell too far behind; resume with `sinceSeq = resumeSeq`. */
export class SubscriptionLagError extends Error {
  constructor(
    readonly resumeSeq: number,
    lag: number,
  ) {
    super(`event watcher fell ${lag} events behind; resume from seq ${resumeSeq}`)
    this.name = 'SubscriptionLagError'
  }
}

/** The hub was closed (service shutting down); resume from `resumeSeq` elsewhere or later. */
export class HubClosedError extends Error {
  constructor(readonly resumeSeq: number) {
    super('event hub closed')
    this.name = 'HubClosedError'
  }
}

const PAGE = 1000

interface Subscriber {
  filter: { host?: string; kinds?: Set<string> }
  /** Highest seq queued, delivered, or known not to match. */
  cursor: number
  /** Highest seq handed to onEvent. */
  delivered: number
  queue: EventRecord[]
  live: boolean
  /** Left the live set because its queue was full, and has not caught up since. */
  behind: boolean
  closed: boolean
  wake: (() => void) | null
  onEvent: EventListener
  onEnd?: EndListener
  bookmark?: { due: boolean; timer: NodeJS.Timeout; onBookmark: (seq: number) => void | Promise<void> }
}

/** The event fan-out. `start()` before use; `close()` ends every subscription. */
export class EventHub {
  private readonly source: EventSource
  private readonly pollIntervalMs: number
  private readonly bufferLimit: number
  private readonly ringSize: number
  private readonly maxLagEvents: number
  private readonly onPollError: (err: unknown) => void
  /** Every event with seq <= position has been dispatched to the live subscribers. */
  private position = 0
  /** Events with seq in (ringFloor, position], ascending, complete (not filtered). */
  private ring: EventRecord[] = []
  private ringFloor = 0
  private readonly live = new Set<Subscriber>()
  /** Subscribers with `behind` set (left the live set because their queue was full). */
  private readonly behind = new Set<Subscriber>()
  private readonly all = new Set<Subscriber>()
  private started: Promise<void> | null = null
  private ready = false
  private timer: NodeJS.Timeout | null = null
  private polling: Promise<void> | null = null
  private again = false
  private closed = false
  private floorRead: Promise<number> | null = null

  constructor(opts: EventHubOptions) {
    if (!opts?.source) throw new TypeError('EventHub needs a source (store.events)')
    const int = (v: number | undefined, d: number, name: string) => {
      const x = v ?? d
      if (!Number.isInteger(x) || x < 1) throw new RangeError(`EventHub ${name} must be a positive integer`)
      return x
    }
    this.source = opts.source
    this.pollIntervalMs = int(opts.pollIntervalMs, 100, 'pollIntervalMs')
    this.bufferLimit = int(opts.bufferLimit, 1000, 'bufferLimit')
    this.ringSize = int(opts.ringSize, 10_000, 'ringSize')
    this.maxLagEvents = int(opts.maxLagEvents, 100_000, 'maxLagEvents')
    this.onPollError = opts.onPollError ?? (() => undefined)
  }

  /** Live subscribers, how far the furthest behind is from the newest dispatched event, and that event's seq (metrics). */
  stats(): { subscribers: number; maxLag: number; position: number } {
    let maxLag = 0
    for (const s of this.all) maxLag = Math.max(maxLag, this.position - s.delivered)
    return { subscribers: this.all.size, maxLag, position: this.position }
  }

  /** Reads the current end of the log and starts polling. Idempotent; after a failure (store down) the next call retries. */
  start(): Promise<void> {
    this.started ??= (async () => {
      this.position = await this.source.lastSeq()
      this.ringFloor = this.position
      this.ready = true
      if (!this.closed) this.timer = setInterval(() => this.notify(), this.pollIntervalMs).unref()
    })().catch((e: unknown) => {
      this.started = null
      throw e
    })
    return this.started
  }

  /** The highest seq dispatched so far. */
  get lastSeq(): number {
    return this.position
  }

  /** Number of open subscriptions. */
  get size(): number {
    return this.all.size
  }

  /** Polls now (writers may call this after a commit to cut latency); coalesces concurrent calls. */
  notify(): void {
    if (this.closed || !this.started) return
    if (this.polling) {
      this.again = true
      return
    }
    this.polling = this.pollLoop().finally(() => {
      this.polling = null
    })
  }

  /** Resolves after one complete poll that started after this call (tests, and shutdown). */
  async flush(): Promise<void> {
    await this.start()
    while (this.polling) await this.polling
    this.polling = this.pollLoop().finally(() => {
      this.polling = null
    })
    await this.polling
  }

  /**
   * Subscribes. Returns the unsubscribe function (idempotent; `onEnd` is not called for it).
   * Events arrive in seq order through `onEvent`, one at a time.
   */
  subscribe(opts: SubscribeOptions, onEvent: EventListener, onEnd?: EndListener): () => void {
    const since = opts.sinceSeq
    if (since !== undefined && (!Number.isSafeInteger(since) || since < 0)) throw new RangeError('sinceSeq must be a non-negative integer')
    const { bookmarkMs, onBookmark } = opts
    if (bookmarkMs !== undefined && (!Number.isInteger(bookmarkMs) || bookmarkMs < 1 || !onBookmark))
      throw new RangeError('bookmarkMs must be a positive integer, with onBookmark')
    // "From now" is the position at this call once started; before start() completes, wherever it starts.
    const from = since ?? (this.ready ? this.position : -1)
    const sub: Subscriber = {
      filter: { ...(opts.host ? { host: opts.host } : {}), ...(opts.kinds?.length ? { kinds: new Set(opts.kinds) } : {}) },
      cursor: from,
      delivered: from,
      queue: [],
      live: false,
      behind: false,
      closed: false,
      wake: null,
      onEvent,
      ...(onEnd ? { onEnd } : {}),
    }
    if (bookmarkMs !== undefined && onBookmark) {
      const timer = setInterval(() => {
        if (!sub.bookmark) return
        sub.bookmark.due = true
        this.wakeUp(sub)
      }, bookmarkMs).unref()
      sub.bookmark = { due: false, timer, onBookmark }
    }
    this.all.add(sub)
    void this.pump(sub)
    return () => this.remove(sub)
  }

  /**
   * Where a watch asking for `sinceSeq` starts, checked against the store's compaction floor: `sinceSeq` itself,
   * or for 0 ("everything kept") the floor. A position below the floor is GONE (ApmatrixError with `oldestSeq`),
   * since events after it are missing; UNAVAILABLE when the store does not answer. A position the ring still
   * covers needs no store read: every event after it is in memory, whatever retention removed from the store.
   * Concurrent checks share one floor read (a compaction that lands meanwhile is caught by the subscriber's
   * first store read, which ends it with GONE).
   */
  async startPosition(sinceSeq: number): Promise<number> {
    if (this.ready && (sinceSeq > 0 ? sinceSeq >= this.ringFloor : this.ringFloor === 0)) return sinceSeq
    this.floorRead ??= this.source.floor().finally(() => {
      this.floorRead = null
    })
    const floor = await this.floorRead
    if (sinceSeq === 0) return floor
    if (sinceSeq < floor) throw positionGone(sinceSeq, floor)
    return sinceSeq
  }

  /** Stops polling and ends every subscription with {@link HubClosedError}. */
  async close(): Promise<void> {
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    for (const s of [...this.all]) this.end(s, new HubClosedError(Math.max(s.delivered, 0)))
    while (this.polling) await this.polling.catch(() => undefined)
  }

  // ---- internals -------------------------------------------------------------------------------

  private async pollLoop(): Promise<void> {
    do {
      this.again = false
      try {
        for (;;) {
          const from = this.position
          const batch = await this.source.list({ since: from, limit: PAGE })
          if (this.closed) return
          // A hole after the position: a rolled-back append (harmless), or retention removed events not yet dispatched.
          if (batch.length && batch[0]!.seq > from + 1) {
            const floor = await this.source.floor()
            if (this.closed) return
            if (floor > from) this.overtaken(floor)
          }
          if (batch.length) this.dispatch(batch)
          if (batch.length < PAGE) break
        }
      } catch (e) {
        this.onPollError(e)
        return
      }
    } while (this.again && !this.closed)
  }

  /**
   * Retention removed events after the position before the poller read them: every subscriber that has not
   * been given everything up to `floor` is ended with GONE, and the ring starts again above the floor.
   */
  private overtaken(floor: number): void {
    for (const s of [...this.all]) if (s.cursor < floor) this.end(s, positionGone(Math.max(s.delivered, 0), floor))
    this.ring = []
    this.ringFloor = floor
    this.position = floor
  }

  /** Appends a batch (seq > position, ascending) to the ring and queues it to live subscribers. */
  private dispatch(batch: EventRecord[]): void {
    const end = batch[batch.length - 1]!.seq
    this.ring.push(...batch)
    if (this.ring.length > this.ringSize) {
      const drop = this.ring.length - this.ringSize
      this.ringFloor = this.ring[drop - 1]!.seq
      this.ring = this.ring.slice(drop)
    }
    this.position = end
    for (const s of this.live) {
      for (const e of batch) {
        if (e.seq <= s.cursor || !matches(s, e)) continue
        if (s.queue.length >= this.bufferLimit) {
          // Too slow: leave the live set; the rest comes from the ring or the store.
          s.live = false
          s.behind = true
          this.live.delete(s)
          this.behind.add(s)
          break
        }
        s.queue.push(e)
        s.cursor = e.seq
      }
      if (s.live) s.cursor = Math.max(s.cursor, end)
      this.wakeUp(s)
    }
    // Subscribers that fell out of the live set: those whose listener never settles again (a watcher that does
    // not read) are ended here, since their pump never reaches catchUp's check.
    // The lag is counted from the cursor, as in catchUp: a filtered subscriber is not behind for events it does not want.
    for (const s of this.behind) {
      const lag = end - s.cursor
      if (lag > this.maxLagEvents) this.end(s, new SubscriptionLagError(s.delivered, lag))
    }
  }

  private async pump(s: Subscriber): Promise<void> {
    try {
      await this.start()
      if (s.cursor < 0) s.cursor = s.delivered = this.position
      while (!s.closed) {
        if (s.bookmark?.due) {
          s.bookmark.due = false
          // Everything handed out so far has settled: with nothing queued that is everything up to the cursor.
          const at = s.queue.length ? s.delivered : s.cursor
          s.delivered = at
          const r = s.bookmark.onBookmark(at)
          if (r) await r
          continue
        }
        const e = s.queue.shift()
        if (e) {
          s.delivered = e.seq
          const r = s.onEvent(e)
          if (r) await r
          continue
        }
        if (!s.live) {
          await this.catchUp(s)
          continue
        }
        await new Promise<void>((resolve) => {
          s.wake = resolve
        })
        s.wake = null
      }
    } catch (err) {
      this.end(s, err instanceof Error ? err : new Error(String(err)))
    }
  }

  /** One catch-up step for a subscriber that is not live and has nothing queued. */
  private async catchUp(s: Subscriber): Promise<void> {
    // Only a consumer that fell behind live delivery is ended; a new one replaying history reads at its own pace.
    const lag = this.position - s.cursor
    if (s.behind && lag > this.maxLagEvents) throw new SubscriptionLagError(s.delivered, lag)
    if (s.cursor >= this.ringFloor) {
      // Synchronous from here to the end: no dispatch can slip between the ring read and joining.
      let i = firstAfter(this.ring, s.cursor)
      for (; i < this.ring.length && s.queue.length < this.bufferLimit; i++) {
        const e = this.ring[i]!
        if (matches(s, e)) s.queue.push(e)
        s.cursor = e.seq
      }
      if (i === this.ring.length) {
        s.cursor = Math.max(s.cursor, this.position)
        s.live = true
        s.behind = false
        this.behind.delete(s)
        this.live.add(s)
      }
      return
    }
    // Everything <= pos was visible before this read started (the poller read it), so an exhausted
    // filtered read covers (cursor, pos] even where it returned nothing.
    const pos = this.position
    const from = s.cursor
    const page = await this.source.list({
      since: from,
      limit: PAGE,
      ...(s.filter.host ? { host: s.filter.host } : {}),
      ...(s.filter.kinds ? { kinds: [...s.filter.kinds] } : {}),
    })
    if (s.closed) return
    // Read after the page: a compaction that removed events above `from` before the page was read shows here.
    const floor = await this.source.floor()
    if (s.closed) return
    if (floor > from) throw positionGone(Math.max(s.delivered, 0), floor)
    for (const e of page) if (e.seq > s.cursor) s.queue.push(e)
    if (page.length) s.cursor = Math.max(s.cursor, page[page.length - 1]!.seq)
    if (page.length < PAGE) s.cursor = Math.max(s.cursor, pos)
  }

  private wakeUp(s: Subscriber): void {
    const w = s.wake
    s.wake = null
    w?.()
  }

  private remove(s: Subscriber): void {
    if (s.bookmark) clearInterval(s.bookmark.timer)
    s.closed = true
    s.queue = []
    this.live.delete(s)
    this.behind.delete(s)
    this.all.delete(s)
    this.wakeUp(s)
  }

  private end(s: Subscriber, err: Error): void {
    if (s.closed) return
    this.remove(s)
    s.onEnd?.(err)
  }
}

function matches(s: Subscriber, e: EventRecord): boolean {
  return (s.filter.host === undefined || e.host === s.filter.host) && (s.filter.kinds === undefined || s.filter.kinds.has(e.kind))
}

/** Index of the first event with seq > after (the ring is ascending). */
function firstAfter(ring: EventRecord[], after: number): number {
  let lo = 0
  let hi = ring.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (ring[mid]!.seq <= after) lo = mid + 1
    else hi = mid
  }
  return lo
}
