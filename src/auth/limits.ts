/**
 * Per-subject limits (docs/security.md (Limits)): a token bucket of mutations per subject and a count of
 * open event streams per subject. One {@link SubjectLimits} per service, used by the mutation runner, the
 * emulator controls and the event watch, so REST and gRPC share the same budget of a subject. A refusal is
 * RATE_LIMITED (429 / RESOURCE_EXHAUSTED) with {@link ApmatrixError.retryAfterSeconds}, thrown before
 * anything is read or stored. Each subject has its own bucket: a limited subject does not slow others.
 */
import { ApmatrixError } from '../domain/errors.js'

/** The limits (both 0 = off). */
export interface LimitsConfig {
  /** Mutations per second per subject (the bucket's refill rate); 0 = no mutation limit. */
  mutationsPerSecond: number
  /** The bucket's size: how many mutations a subject may make at once after being idle. */
  burst: number
  /** Open event streams (SSE, gRPC Watch) per subject; 0 = no limit. */
  streamsPerSubject: number
}

/** Most subjects whose buckets are kept; beyond it full (idle) buckets, then the oldest, are dropped. */
export const MAX_TRACKED_SUBJECTS = 10_000

interface Bucket {
  tokens: number
  at: number
}

/** The per-subject limits; see the file comment. */
export class SubjectLimits {
  private readonly buckets = new Map<string, Bucket>()
  private readonly streams = new Map<string, number>()

  constructor(
    readonly config: LimitsConfig,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(config.mutationsPerSecond >= 0) || !(config.burst >= 0) || !(config.streamsPerSubject >= 0)) throw new RangeError('limits must be >= 0')
  }

  /**
   * Takes one mutation from `subject`'s bucket. RATE_LIMITED (with the whole seconds until a token is
   * back) when the bucket is empty. A burst of 0 with a rate counts as a burst of 1.
   */
  takeMutation(subject: string): void {
    const rate = this.config.mutationsPerSecond
    if (rate <= 0) return
    const size = Math.max(1, this.config.burst)
    const t = this.now()
    let b = this.buckets.get(subject)
    if (b) {
      b.tokens = Math.min(size, b.tokens + ((t - b.at) / 1000) * rate)
      b.at = t
    } else {
      this.prune(t, rate, size)
      b = { tokens: size, at: t }
      this.buckets.set(subject, b)
    }
    if (b.tokens >= 1) {
      b.tokens -= 1
      return
    }
    const seconds = Math.max(1, Math.ceil((1 - b.tokens) / rate))
    throw new ApmatrixError('RATE_LIMITED', `too many changes by ${subject}: at most ${rate}/s (burst ${size}); retry in ${seconds} s`, {
      retryAfterSeconds: seconds,
    })
  }

  /**
   * Counts one more open stream of `subject`; returns the release (idempotent) to call when it ends.
   * RATE_LIMITED when the subject already has `streamsPerSubject` open.
   */
  openStream(subject: string): () => void {
    const max = this.config.streamsPerSubject
    const n = this.streams.get(subject) ?? 0
    if (max > 0 && n >= max) {
      throw new ApmatrixError('RATE_LIMITED', `too many open event streams of ${subject}: at most ${max}; close one first`, { retryAfterSeconds: 1 })
    }
    this.streams.set(subject, n + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.streams.get(subject) ?? 1) - 1
      if (left > 0) this.streams.set(subject, left)
      else this.streams.delete(subject)
    }
  }

  /** Open streams of `subject` (for tests and metrics). */
  openStreams(subject: string): number {
    return this.streams.get(subject) ?? 0
  }

  private prune(t: number, rate: number, size: number): void {
    if (this.buckets.size < MAX_TRACKED_SUBJECTS) return
    for (const [s, b] of this.buckets) if (b.tokens + ((t - b.at) / 1000) * rate >= size) this.buckets.delete(s)
    while (this.buckets.size >= MAX_TRACKED_SUBJECTS) {
      const oldest = this.buckets.keys().next().value
      if (oldest === undefined) break
      this.buckets.delete(oldest)
    }
  }
}

/**
 * Parses APMATRIX_RATE_LIMIT: `0`/`off` (no limit), `N/s` (burst 2N) or `N/s burst B`; N in 1..100000,
 * B in 1..1000000. Returns null for a malformed value.
 */
export function parseRateLimit(v: string): { mutationsPerSecond: number; burst: number } | null {
  const s = v.trim()
  if (s === '0' || s === 'off') return { mutationsPerSecond: 0, burst: 0 }
  const m = /^(\d{1,6})\s*\/\s*s(?:\s+burst\s+(\d{1,7}))?$/.exec(s)
  if (!m) return null
  const rate = Number(m[1])
  const burst = m[2] === undefined ? rate * 2 : Number(m[2])
  if (rate < 1 || rate > 100_000 || burst < 1 || burst > 1_000_000) return null
  return { mutationsPerSecond: rate, burst }
}
