/**
 * A keyed work queue in the manner of client-go's rate-limited workqueue: a key is never handed to two
 * workers at once; adding a key that is queued is a no-op; adding a key that is in flight marks it dirty so
 * it runs once more after the current run; failures requeue with per-key exponential backoff.
 */

/** What the work queue reports (client-go workqueue metrics); absent means nothing is recorded. */
export interface WorkQueueMetrics {
  added(): void
  depth(n: number): void
  retried(): void
  waited(seconds: number): void
  worked(seconds: number): void
}

export interface WorkQueueOptions {
  /** Records adds, depth, retries and the time keys wait and are worked on (client-go workqueue metrics). */
  metrics?: WorkQueueMetrics
  /** First retry delay after a failure. */
  baseDelayMs?: number
  /** Cap of the exponential backoff. */
  maxDelayMs?: number
}

/** How a key is queued: `first` puts it ahead of the keys waiting. */
export interface AddOptions {
  first?: boolean
}

/** Rate-limited, de-duplicating work queue over string keys. */
export class WorkQueue {
  private readonly queue: string[] = []
  private readonly queued = new Set<string>()
  private readonly inFlight = new Set<string>()
  private readonly dirty = new Set<string>()
  private readonly failures = new Map<string, number>()
  /** Keys to queue later: the timer and when it fires (performance.now() ms). */
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; due: number; first: boolean }>()
  private readonly waiters: Array<(key: string | null) => void> = []
  private closed = false
  private readonly baseDelayMs: number
  private readonly maxDelayMs: number
  private readonly metrics: WorkQueueMetrics | undefined
  /** When each queued key was queued, and when each key in flight was handed out (metrics only). */
  private readonly since = new Map<string, number>()

  constructor(opts: WorkQueueOptions = {}) {
    this.metrics = opts.metrics
    this.baseDelayMs = opts.baseDelayMs ?? 50
    this.maxDelayMs = opts.maxDelayMs ?? 30_000
    if (!(this.baseDelayMs > 0) || !(this.maxDelayMs >= this.baseDelayMs)) throw new RangeError('WorkQueue: need 0 < baseDelayMs <= maxDelayMs')
  }

  /**
   * Queues `key` now (idempotent). A key in flight runs again once after it is done. `first`: ahead of every
   * key waiting, and a key already waiting moves there (a host whose lease a dead replica left: its move is
   * bounded by the lease time, not by the passes queued before it).
   */
  add(key: string, opts: AddOptions = {}): void {
    if (this.closed) return
    if (this.inFlight.has(key)) {
      this.dirty.add(key)
      return
    }
    if (this.queued.has(key)) {
      if (opts.first) {
        const i = this.queue.indexOf(key)
        if (i > 0) this.queue.unshift(...this.queue.splice(i, 1))
      }
      return
    }
    this.queued.add(key)
    this.metrics?.added()
    const w = this.waiters.shift()
    if (w) {
      this.queued.delete(key)
      this.handOut(key, performance.now())
      w(key)
    } else {
      if (opts.first) this.queue.unshift(key)
      else this.queue.push(key)
      if (this.metrics) this.since.set(key, performance.now())
    }
    this.metrics?.depth(this.queue.length)
  }

  private handOut(key: string, queuedAt: number): void {
    this.inFlight.add(key)
    if (!this.metrics) return
    const now = performance.now()
    this.metrics.waited((now - queuedAt) / 1000)
    this.since.set(key, now)
  }

  /**
   * Queues `key` after `ms` (an add that comes first wins). A key already waiting keeps the earlier of its two
   * times, as client-go's delaying queue does: a host put off for a backoff of 30 s is still looked at when a
   * later call asks for it in 50 ms (a lease that runs out).
   */
  addAfter(key: string, ms: number, opts: AddOptions = {}): void {
    if (this.closed) return
    const due = performance.now() + ms
    const pending = this.timers.get(key)
    const first = !!opts.first || !!pending?.first
    if (pending) {
      pending.first = first
      if (pending.due <= due) return
      clearTimeout(pending.timer)
    }
    const entry = {
      timer: setTimeout(() => {
        this.timers.delete(key)
        this.add(key, { first: entry.first })
      }, ms),
      due,
      first,
    }
    this.timers.set(key, entry)
  }

  /** Requeues after a failure with exponential backoff; returns the delay chosen. */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0
    this.failures.set(key, n + 1)
    this.metrics?.retried()
    const delay = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** n)
    this.addAfter(key, delay)
    return delay
  }

  /** Clears the failure count of a key (after a success). */
  forget(key: string): void {
    this.failures.delete(key)
  }

  /** How many times `key` failed in a row. */
  retries(key: string): number {
    return this.failures.get(key) ?? 0
  }

  /** Waits for the next key; null once the queue is shut down. The caller must call {@link done}. */
  get(): Promise<string | null> {
    if (this.closed) return Promise.resolve(null)
    const key = this.queue.shift()
    if (key !== undefined) {
      this.queued.delete(key)
      this.handOut(key, this.since.get(key) ?? performance.now())
      this.metrics?.depth(this.queue.length)
      return Promise.resolve(key)
    }
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** Marks a key finished; if it was added meanwhile, it is queued again. */
  done(key: string): void {
    this.inFlight.delete(key)
    const began = this.since.get(key)
    if (this.metrics && began !== undefined) {
      this.since.delete(key)
      this.metrics.worked((performance.now() - began) / 1000)
    }
    if (this.dirty.delete(key)) this.add(key)
  }

  /** Number of keys waiting (not in flight). */
  get length(): number {
    return this.queue.length
  }

  /** Stops handing out keys; pending gets resolve with null. */
  shutdown(): void {
    this.closed = true
    for (const t of this.timers.values()) clearTimeout(t.timer)
    this.timers.clear()
    for (const w of this.waiters.splice(0)) w(null)
  }
}
