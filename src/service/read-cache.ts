/**
 * The read cache of the service (docs/api.md (Conventions) "Reads"): every managed host's matrix devices and masks, held in
 * memory and kept current from the store's event log (the idea of kube-apiserver's watch cache), so that a
 * `GET`/`LIST` costs a map lookup. The store stays the truth; the cache only ever holds what the store held.
 *
 * How it stays current. Every write of a row held here appends, in the same transaction, an event naming the
 * object (kind `mdev` + uuid, kind `masks`), and the event log makes an event visible only after every lower
 * seq (event-repo.ts). A sync reads the events after `syncedSeq` and re-reads each object they name by key
 * (skipped when the event carries the resourceVersion the cache already holds); since every re-read starts
 * after the events were listed, once a sync that STARTED at time T finished, the cache reflects every write
 * committed before T. A sync that would replay more than `rebuildAfterEvents` events loads everything again
 * instead, and so does a sync that finds retention removed events it had not replayed yet (the log's
 * compaction floor passed `syncedSeq`; src/store/retention.ts): the log no longer names every change since.
 *
 * Guarantees:
 * - Read-your-writes: a writer in this process calls {@link ReadCache.syncedTo} with the seq of its last event
 *   before it answers (mutation-runner.ts, and the reconciler's status write through main.ts).
 * - Bounded staleness (across replicas, by construction): a read first checks when the last completed sync
 *   started; if that is more than `maxStalenessMs` ago it syncs (or joins a sync that started recently enough)
 *   and waits for it. So a read reflects every write committed more than `maxStalenessMs` before it began.
 * - Store outage: when that sync fails, the read answers from memory and says how old its copy is
 *   (`staleMs`: ms since the start of the last completed sync; REST `Apmatrix-Stale`, gRPC metadata
 *   `apmatrix-stale`). After a failure, reads do not retry the store for `retryMs`. Before the first load
 *   there is nothing to answer from: UNAVAILABLE.
 *
 * Views handed out are frozen and shared: the same object is returned until the device changes, so a
 * transport may keep its serialisation per object (WeakMap) and never build it twice.
 */
import { ApmatrixError } from '../domain/errors.js'
import type { EventRecord, HostMasksRecord, MdevRecord, Store } from '../store/index.js'
import { decodePageToken, encodePageToken, pageSize } from '../store/page-token.js'
import type { MdevQuery, MdevView, Page } from './types.js'
import { mdevView } from './views.js'

/** A value read from the cache: `staleMs` is null when the cache synced within its bound, else how old it is. */
export interface Fresh<T> {
  value: T
  staleMs: number | null
}

/** The part of the store the cache reads. */
export type ReadCacheStore = Pick<Store, 'events' | 'mdevs' | 'masks'>

/** Options of {@link ReadCache}. */
export interface ReadCacheOptions {
  store: ReadCacheStore
  /** The hosts to hold (the service's managed hosts). */
  hosts: () => string[]
  /** A read syncs first when the last completed sync started longer ago than this (0: every read syncs). */
  maxStalenessMs: number
  /** After a failed sync, reads answer from memory without trying the store for this long (default min(maxStalenessMs, 1000), at least 50). */
  retryMs?: number
  /** A sync that finds more new events than this reloads everything instead (default 10,000). */
  rebuildAfterEvents?: number
  /** Monotonic milliseconds (tests). */
  now?: () => number
}

interface Entry {
  rec: MdevRecord
  view: MdevView | undefined
}

interface HostData {
  mdevs: Map<string, Entry>
  /** Uuids in ascending order; null when a device came or went since it was built. */
  sorted: string[] | null
  masks: HostMasksRecord | null
}

const PAGE = 1000
/** A host with more changed devices than this in one sync is read whole (one query instead of many). */
const WHOLE_HOST = 32

/** See the file comment. */
export class ReadCache {
  private readonly store: ReadCacheStore
  private readonly maxStalenessMs: number
  private readonly retryMs: number
  private readonly rebuildAfterEvents: number
  private readonly now: () => number
  private data = new Map<string, HostData>()
  private seq = 0
  /** Start time of the last completed sync (or load); -Infinity before the first. */
  private syncedAt = Number.NEGATIVE_INFINITY
  private failedAt = Number.NEGATIVE_INFINITY
  private loaded = false
  private inflight: { startedAt: number; done: Promise<void> } | null = null
  private counts = { syncs: 0, rebuilds: 0, reads: 0, failures: 0, compactedPast: 0, handed: 0 }
  /** Rows writers of this process committed and handed over (`syncedTo`), by host and uuid: a sync takes them instead of reading them back. */
  private readonly written = new Map<string, MdevRecord>()

  constructor(private readonly opts: ReadCacheOptions) {
    if (!opts?.store || !opts.hosts) throw new TypeError('ReadCache needs store and hosts')
    if (!Number.isInteger(opts.maxStalenessMs) || opts.maxStalenessMs < 0) throw new RangeError('ReadCache maxStalenessMs must be a non-negative integer')
    this.store = opts.store
    this.maxStalenessMs = opts.maxStalenessMs
    this.retryMs = opts.retryMs ?? Math.max(50, Math.min(opts.maxStalenessMs, 1000))
    this.rebuildAfterEvents = opts.rebuildAfterEvents ?? 10_000
    this.now = opts.now ?? (() => performance.now())
  }

  /** True once the first load completed. */
  get isLoaded(): boolean {
    return this.loaded
  }

  /** The highest event seq the cache reflects. */
  get syncedSeq(): number {
    return this.seq
  }

  /**
   * Counters since start (tests, metrics): syncs completed, full loads, store re-reads of objects, failed syncs,
   * syncs that found retention had removed events they had not replayed (each followed by a full load), and
   * rows a writer handed over that a sync took instead of a re-read.
   */
  stats(): { syncs: number; rebuilds: number; reads: number; failures: number; compactedPast: number; handed: number } {
    return { ...this.counts }
  }

  /** Loads every host's devices and masks (the service calls it at start; reads load on first use otherwise). UNAVAILABLE. */
  start(): Promise<void> {
    return this.run(true)
  }

  /**
   * One sync that starts now (or joins one in flight that started no earlier than `notBefore`). Rejects with the
   * store's error (UNAVAILABLE) when it fails; the cache keeps what it had.
   */
  sync(notBefore = this.now()): Promise<void> {
    return this.run(false, notBefore)
  }

  /** Starts a sync in the background (a hub or reconciler hint that the log moved); failures only count. */
  kick(): void {
    if (!this.loaded) return
    this.sync().catch(() => undefined)
  }

  /**
   * Read-your-writes for a writer of this process: resolves once the cache reflects every event up to `seq`
   * (the writer's last event). Never rejects: the write is committed either way; if the store fails now, the
   * next reads report themselves stale until a sync succeeds.
   * `written`: rows the writer's transaction stored, exactly as a read returns them (mdev-repo.ts `update`). A
   * sync that meets an event naming one of them at the resourceVersion it has takes it instead of reading the
   * row again (two queries on PostgreSQL). A resourceVersion names one stored state of a row, so the row
   * handed over is the row a read at that version would give; an event of a later write names another version
   * and is read as before.
   */
  async syncedTo(seq: number, written: readonly MdevRecord[] = []): Promise<void> {
    for (const r of written) this.written.set(rowKey(r.host, r.uuid), r)
    try {
      while (this.loaded && this.seq < seq) {
        try {
          await this.sync()
        } catch {
          return
        }
      }
    } finally {
      for (const r of written) if (this.written.get(rowKey(r.host, r.uuid)) === r) this.written.delete(rowKey(r.host, r.uuid))
    }
  }

  /** One device. NOT_FOUND; UNAVAILABLE only before the first load. */
  async mdev(host: string, uuid: string): Promise<Fresh<MdevView>> {
    const staleMs = await this.fresh()
    const e = this.data.get(host)?.mdevs.get(uuid)
    if (!e) throw new ApmatrixError('NOT_FOUND', `mdev ${host}/${uuid} not found`)
    return { value: viewOf(e), staleMs }
  }

  /**
   * A page of a host's devices by uuid, filtered as the store filters them (store.mdevs.list: state, owner,
   * every label pair; `pageToken` after a uuid; limit 1..500, default 100; INVALID_ARGUMENT for a bad limit or token).
   */
  async mdevs(host: string, q: MdevQuery = {}): Promise<Fresh<Page<MdevView>>> {
    const limit = pageSize(q.limit)
    const after = q.pageToken ? decodePageToken(q.pageToken) : undefined
    const staleMs = await this.fresh()
    const d = this.data.get(host)
    const items: MdevView[] = []
    let more = false
    if (d) {
      d.sorted ??= [...d.mdevs.keys()].sort(byCodeUnit)
      const labels = Object.entries(q.labels ?? {})
      for (let i = after === undefined ? 0 : firstAfter(d.sorted, after); i < d.sorted.length; i++) {
        const e = d.mdevs.get(d.sorted[i]!)!
        const r = e.rec
        if (q.state !== undefined && r.spec.state !== q.state) continue
        if (q.owner !== undefined && r.owner !== q.owner) continue
        if (labels.length && !labels.every(([k, v]) => Object.hasOwn(r.labels, k) && r.labels[k] === v)) continue
        if (items.length === limit) {
          more = true
          break
        }
        items.push(viewOf(e))
      }
    }
    const page: Page<MdevView> = more ? { items, nextPageToken: encodePageToken(items[items.length - 1]!.metadata.uuid) } : { items }
    return { value: page, staleMs }
  }

  /**
   * The stored owner of a host's devices, by uuid: null = unowned, undefined = no such stored device (as the
   * copy a read would answer from). UNAVAILABLE only before the first load.
   */
  async owners(host: string): Promise<Fresh<(uuid: string) => string | null | undefined>> {
    const staleMs = await this.fresh()
    const d = this.data.get(host)
    return { value: (uuid) => d?.mdevs.get(uuid)?.rec.owner, staleMs }
  }

  /** The stored masks of a host (null: never stored). */
  async masks(host: string): Promise<Fresh<HostMasksRecord | null>> {
    const staleMs = await this.fresh()
    return { value: this.data.get(host)?.masks ?? null, staleMs }
  }

  // ---- internals -------------------------------------------------------------------------------

  /** Syncs when the copy is older than the bound; returns null (fresh) or the age of the copy (store down). */
  private async fresh(): Promise<number | null> {
    const t = this.now()
    if (!this.loaded) {
      await this.start()
      return null
    }
    if (t - this.syncedAt <= this.maxStalenessMs && this.maxStalenessMs > 0) return null
    if (t - this.failedAt < this.retryMs) return Math.round(t - this.syncedAt)
    try {
      await this.sync(t - this.maxStalenessMs)
      return null
    } catch {
      return Math.round(this.now() - this.syncedAt)
    }
  }

  /** Runs (or joins) a load or sync that started no earlier than `notBefore`. */
  private async run(load: boolean, notBefore = Number.NEGATIVE_INFINITY): Promise<void> {
    for (;;) {
      const cur = this.inflight
      if (cur && cur.startedAt >= notBefore && (!load || !this.loaded)) return cur.done
      if (load && this.loaded) return
      if (cur) {
        await cur.done.catch(() => undefined)
        if (load && this.loaded) return
        continue
      }
      const startedAt = this.now()
      const done = (load || !this.loaded ? this.load(startedAt) : this.syncOnce(startedAt)).then(
        () => {
          this.failedAt = Number.NEGATIVE_INFINITY
        },
        (e: unknown) => {
          this.counts.failures++
          this.failedAt = this.now()
          throw e
        },
      )
      const slot = { startedAt, done }
      this.inflight = slot
      done.then(
        () => this.clear(slot),
        () => this.clear(slot),
      )
      return done
    }
  }

  private clear(slot: { startedAt: number; done: Promise<void> }): void {
    if (this.inflight === slot) this.inflight = null
  }

  /** Reads everything: the log position first, so that every write after the rows were read has a later event. */
  private async load(startedAt: number): Promise<void> {
    const seq = await this.store.events.lastSeq()
    const data = new Map<string, HostData>()
    for (const host of this.opts.hosts()) data.set(host, await this.readHost(host))
    this.data = data
    this.seq = seq
    this.syncedAt = startedAt
    this.loaded = true
    this.counts.rebuilds++
  }

  private async readHost(host: string): Promise<HostData> {
    const [rows, masks] = await Promise.all([this.store.mdevs.listAll(host), this.store.masks.get(host)])
    this.counts.reads += rows.length + 1
    return { mdevs: new Map(rows.map((r) => [r.uuid, { rec: r, view: undefined }])), sorted: null, masks }
  }

  private async syncOnce(startedAt: number): Promise<void> {
    const hosts = new Set(this.opts.hosts())
    // Per host: devices named (uuid -> resourceVersion the last event carried, or null), and whether masks were.
    const named = new Map<string, { mdevs: Map<string, string | null>; masks: string | null | undefined }>()
    let end = this.seq
    let n = 0
    for (;;) {
      const batch: EventRecord[] = await this.store.events.list({ since: end, limit: PAGE })
      // Retention deletes a prefix of the log and never the newest event: right after `end` there is either the
      // next seq or a hole. A hole is a rolled-back append, or a compaction that passed `end`: the floor tells.
      if (batch.length && batch[0]!.seq > end + 1 && (await this.store.events.floor()) > end) {
        this.counts.compactedPast++
        return this.load(startedAt)
      }
      for (const e of batch) {
        end = e.seq
        if ((e.kind !== 'mdev' && e.kind !== 'masks') || !hosts.has(e.host)) continue
        let h = named.get(e.host)
        if (!h) named.set(e.host, (h = { mdevs: new Map(), masks: undefined }))
        const rv = typeof e.data?.resourceVersion === 'string' ? e.data.resourceVersion : null
        if (e.kind === 'masks') h.masks = rv
        else h.mdevs.set(e.name, rv)
      }
      n += batch.length
      if (batch.length < PAGE) break
      // Far behind (a long outage): one full load is cheaper than replaying the log.
      if (n >= this.rebuildAfterEvents) return this.load(startedAt)
    }
    for (const host of hosts) if (!this.data.has(host)) this.data.set(host, await this.readHost(host))
    for (const [host, h] of named) {
      const d = this.data.get(host)!
      const stale = [...h.mdevs].filter(([uuid, rv]) => rv === null || d.mdevs.get(uuid)?.rec.resourceVersion !== rv).map(([uuid]) => uuid)
      if (stale.length > WHOLE_HOST) {
        const fresh = await this.readHost(host)
        d.mdevs = reuse(d.mdevs, fresh.mdevs)
        d.sorted = null
      } else {
        for (const uuid of stale) {
          // The row a writer handed over, when the event names its version (syncedTo).
          const handed = this.written.get(rowKey(host, uuid))
          const take = handed !== undefined && handed.resourceVersion === h.mdevs.get(uuid)
          this.counts[take ? 'handed' : 'reads']++
          const rec = take
            ? handed
            : await this.store.mdevs.get(host, uuid).catch((e: unknown) => {
                if (e instanceof ApmatrixError && e.code === 'NOT_FOUND') return null
                throw e
              })
          const cur = d.mdevs.get(uuid)
          if (!rec) {
            if (cur) {
              d.mdevs.delete(uuid)
              d.sorted = null
            }
          } else if (cur?.rec.resourceVersion !== rec.resourceVersion) {
            if (!cur) d.sorted = null
            d.mdevs.set(uuid, { rec, view: undefined })
          }
        }
      }
      if (h.masks !== undefined && (h.masks === null || d.masks?.resourceVersion !== h.masks)) {
        this.counts.reads++
        d.masks = await this.store.masks.get(host)
      }
    }
    this.seq = end
    this.syncedAt = startedAt
    this.counts.syncs++
  }
}

/** The key of a handed-over row in {@link ReadCache} `written`. */
function rowKey(host: string, uuid: string): string {
  return `${host}\n${uuid}`
}

/** The frozen view of an entry, built on first use. */
function viewOf(e: Entry): MdevView {
  e.view ??= deepFreeze(mdevView(e.rec))
  return e.view
}

/** Keeps the old entry (and its built view) of every device whose resourceVersion did not change. */
function reuse(old: Map<string, Entry>, fresh: Map<string, Entry>): Map<string, Entry> {
  for (const [uuid, e] of fresh) {
    const o = old.get(uuid)
    if (o && o.rec.resourceVersion === e.rec.resourceVersion) fresh.set(uuid, o)
  }
  return fresh
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}

/** Code-unit order: what SQLite's BINARY collation gives for the uuid column (and PostgreSQL for uuids). */
function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Index of the first key > after in an ascending array. */
function firstAfter(sorted: string[], after: string): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (sorted[mid]! <= after) lo = mid + 1
    else hi = mid
  }
  return lo
}
