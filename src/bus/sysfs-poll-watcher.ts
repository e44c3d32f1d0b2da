/**
 * Change detection without uevents: a cheap poll of the few attributes that move whenever the AP
 * configuration does (B-34 `scans` and `bindings`, B-20 `apmask`/`aqmask`, V-3 the matrix device list),
 * every `periodMs`. A difference from the previous round is reported once; the reconciler then looks at
 * the whole bus. Changes that move none of them (an assign on a foreign device, a guest attach) are left to
 * the periodic resync.
 */
import type { BusChange, SysfsAccess } from './port.js'

/** The polled paths (bus port paths, `/sys/...`). */
export const POLLED_PATHS = {
  scans: '/sys/bus/ap/scans',
  bindings: '/sys/bus/ap/bindings',
  apmask: '/sys/bus/ap/apmask',
  aqmask: '/sys/bus/ap/aqmask',
  mdevs: '/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/devices',
} as const

/** Options of {@link SysfsPollWatcher}. */
export interface SysfsPollWatcherOptions {
  /** Reads go through this access (only `read` and `list`). */
  access: Pick<SysfsAccess, 'read' | 'list'>
  periodMs: number
  onChange: (change: BusChange) => void
  log?: (line: string) => void
}

/** Polls until stopped; one round at a time (a slow read delays the next round, never overlaps it). */
export class SysfsPollWatcher {
  private timer: NodeJS.Timeout | undefined
  private running = false
  private last: Map<string, string> | undefined
  private round: Promise<void> | undefined

  constructor(private readonly o: SysfsPollWatcherOptions) {
    if (!(Number.isFinite(o.periodMs) && o.periodMs >= 10)) throw new RangeError(`poll period must be at least 10 ms, got ${o.periodMs}`)
  }

  /** Starts polling; the first round only records where things are. Idempotent. */
  start(): void {
    if (this.running) return
    this.running = true
    this.last = undefined
    this.schedule(0)
  }

  /** Stops polling; resolves after the round in flight. */
  async stop(): Promise<void> {
    this.running = false
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.round
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.round = this.poll().finally(() => {
        this.round = undefined
        if (this.running) this.schedule(this.o.periodMs)
      })
    }, ms)
    this.timer.unref?.()
  }

  /** One round: reads every polled path and reports what differs from the previous round. */
  private async poll(): Promise<void> {
    const now = new Map<string, string>()
    await Promise.all(
      Object.entries(POLLED_PATHS).map(async ([name, path]) => {
        try {
          now.set(name, name === 'mdevs' ? (await this.o.access.list(path)).join(' ') : await this.o.access.read(path))
        } catch (e) {
          // A missing attribute (vfio_ap not loaded) is a value too: its appearance is a change.
          now.set(name, `!${(e as { errno?: string }).errno ?? (e as Error).message}`)
        }
      }),
    )
    const before = this.last
    this.last = now
    if (!before || !this.running) return
    const changed = [...now].filter(([k, v]) => before.get(k) !== v).map(([k]) => k)
    if (changed.length === 0) return
    try {
      this.o.onChange({ source: 'poll', summary: `changed: ${changed.join(', ')}` })
    } catch (e) {
      this.o.log?.(`poll listener failed: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
}
