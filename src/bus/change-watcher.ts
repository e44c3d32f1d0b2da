/**
 * How a `sysfs` host notices changes between resyncs: kernel uevents through `udevadm monitor` (udev
 * mode), or a cheap poll (poll mode). `auto` picks udev only when the sysfs root is the machine's own
 * `/sys` and `udevadm` is on PATH (a mount of another machine's or the emulator's sysfs produces no uevents
 * here), and falls back to polling when the monitor cannot be set up (no netlink access in a container).
 * The watcher runs only while someone listens.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { BusChange, SysfsAccess } from './port.js'
import { SysfsPollWatcher } from './sysfs-poll-watcher.js'
import { UdevMonitor } from './udev-monitor.js'

/** Change detection modes (`APMATRIX_SYSFS_WATCH`, `apmatrix agent --watch`). */
export const WATCH_MODES = ['auto', 'udev', 'poll'] as const
export type WatchMode = (typeof WATCH_MODES)[number]

/** Options of {@link ChangeWatcher}. */
export interface ChangeWatcherOptions {
  mode: WatchMode
  /** The directory that plays /sys (decides what `auto` means). */
  root: string
  /** Reads of the poll (bus port paths). */
  access: Pick<SysfsAccess, 'read' | 'list'>
  /** Poll period in milliseconds. */
  pollMs: number
  /** The udevadm program (default `udevadm` on PATH). */
  udevadm?: string
  log?: (line: string) => void
}

/** Absolute path of an executable `cmd` on PATH (or `cmd` itself when it contains a slash), or undefined. */
export function findExecutable(cmd: string, envPath = process.env.PATH ?? ''): string | undefined {
  const candidates = cmd.includes('/')
    ? [cmd]
    : envPath
        .split(':')
        .filter(Boolean)
        .map((d) => path.join(d, cmd))
  return candidates.find((c) => {
    try {
      fs.accessSync(c, fs.constants.X_OK)
      return fs.statSync(c).isFile()
    } catch {
      return false
    }
  })
}

/** Fans one running detector out to every listener. */
export class ChangeWatcher {
  private readonly listeners = new Set<(c: BusChange) => void>()
  private stopCurrent: (() => Promise<void>) | undefined
  private active: 'udev' | 'poll' | undefined

  constructor(private readonly o: ChangeWatcherOptions) {
    if (!WATCH_MODES.includes(o.mode)) throw new RangeError(`watch mode must be one of ${WATCH_MODES.join(', ')}, got '${o.mode}'`)
  }

  /** The detector running now (undefined while nobody listens). */
  get activeMode(): 'udev' | 'poll' | undefined {
    return this.active
  }

  /** Adds a listener (starting the detector for the first one); returns the function that removes it. */
  subscribe(listener: (c: BusChange) => void): () => void {
    this.listeners.add(listener)
    if (!this.active) this.begin()
    return () => {
      this.listeners.delete(listener)
      if (this.listeners.size === 0) void this.close()
    }
  }

  /** Stops the detector; listeners stay registered only until then. */
  async close(): Promise<void> {
    const stop = this.stopCurrent
    this.stopCurrent = undefined
    this.active = undefined
    await stop?.()
  }

  private emit(c: BusChange): void {
    for (const l of [...this.listeners]) {
      try {
        l(c)
      } catch (e) {
        this.o.log?.(`change listener failed: ${e instanceof Error ? e.message : String(e)}`)
      }
    }
  }

  private begin(): void {
    const udevadm = this.o.mode === 'poll' ? undefined : findExecutable(this.o.udevadm ?? 'udevadm')
    const useUdev = this.o.mode === 'udev' || (this.o.mode === 'auto' && udevadm !== undefined && path.resolve(this.o.root) === '/sys')
    if (useUdev) this.beginUdev(udevadm ?? this.o.udevadm ?? 'udevadm')
    else this.beginPoll(this.o.mode === 'auto' ? (udevadm ? `sysfs root ${this.o.root} is not this machine's /sys` : 'udevadm not found') : 'poll mode')
  }

  private beginPoll(why: string): void {
    const w = new SysfsPollWatcher({ access: this.o.access, periodMs: this.o.pollMs, onChange: (c) => this.emit(c), log: this.o.log })
    this.active = 'poll'
    this.stopCurrent = () => w.stop()
    this.o.log?.(`watching ${this.o.root} by polling every ${this.o.pollMs} ms (${why})`)
    w.start()
  }

  private beginUdev(command: string): void {
    const m = new UdevMonitor({
      command,
      log: this.o.log,
      onEvent: (e) => this.emit({ source: 'uevent', summary: `${e.action} ${e.devpath}`, uevent: { action: e.action, devpath: e.devpath, env: e.env } }),
      // Events are lost while the child is down: one nudge after each restart makes up for them.
      onReady: ({ restarts }) => {
        if (restarts > 0) this.emit({ source: 'uevent', summary: 'udev monitor restarted: events may have been missed' })
      },
      // auto: a monitor that cannot be set up at all (no netlink in a container) is replaced by polling.
      ...(this.o.mode === 'auto'
        ? {
            maxStartFailures: 3,
            onGiveUp: (why: string) => {
              if (this.active !== 'udev' || this.listeners.size === 0) return
              this.beginPoll(`fallback: ${why}`)
            },
          }
        : {}),
    })
    this.active = 'udev'
    this.stopCurrent = () => m.stop()
    m.start()
  }
}
