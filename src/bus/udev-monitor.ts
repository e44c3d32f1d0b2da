/**
 * Kernel uevents of the AP bus and the mdev core, from `udevadm monitor --kernel --property
 * --subsystem-match=ap --subsystem-match=mdev` run as a child process: the real-host counterpart of the
 * emulator's event stream (B-44: card and queue add/remove, CONFIG=, ONLINE=, APMASK=, BINDINGS=; the mdev
 * core's add/remove of matrix devices). A child that dies is restarted with exponential backoff; events lost
 * while it was down are covered by one synthetic "restarted" report (look again) and the periodic resync.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { UeventParser, type MonitorUevent } from './uevent-parser.js'

/** The monitor command line (without the program). */
export const UDEVADM_MONITOR_ARGS: readonly string[] = ['monitor', '--kernel', '--property', '--subsystem-match=ap', '--subsystem-match=mdev']

/** Options of {@link UdevMonitor}. */
export interface UdevMonitorOptions {
  /** The program (default `udevadm`, looked up on PATH). */
  command?: string
  /** Every event, in order. */
  onEvent: (e: MonitorUevent) => void
  /** The child has set its monitor up (its banner), after the first start and after every restart. */
  onReady?: (info: { restarts: number }) => void
  /** One line per lifecycle step or child stderr line. */
  log?: (line: string) => void
  /** Restart backoff: first delay and cap, in milliseconds (default 500 and 30,000). */
  minBackoffMs?: number
  maxBackoffMs?: number
  /**
   * Give up after this many consecutive starts that exited before the monitor was set up (no banner, e.g.
   * no netlink permission in a container); `onGiveUp` is then called once and no restart follows. Default: never.
   */
  maxStartFailures?: number
  onGiveUp?: (why: string) => void
}

/** A child that ran at least this long resets the backoff (it was working, the exit is news). */
const STABLE_MS = 10_000

/** The udevadm monitor child and its restarts. Not started until {@link UdevMonitor.start}. */
export class UdevMonitor {
  private child: ChildProcess | undefined
  private timer: NodeJS.Timeout | undefined
  private stopped = true
  private delay: number
  private startFailures = 0
  private restartCount = 0
  private readonly o: Required<Omit<UdevMonitorOptions, 'onReady' | 'onGiveUp' | 'log'>> & Pick<UdevMonitorOptions, 'onReady' | 'onGiveUp' | 'log'>

  constructor(opts: UdevMonitorOptions) {
    this.o = { command: 'udevadm', minBackoffMs: 500, maxBackoffMs: 30_000, maxStartFailures: Infinity, ...opts }
    if (!(this.o.minBackoffMs > 0 && this.o.maxBackoffMs >= this.o.minBackoffMs)) throw new RangeError('UdevMonitor: need 0 < minBackoffMs <= maxBackoffMs')
    this.delay = this.o.minBackoffMs
  }

  /** How many times the child was restarted after an exit. */
  get restarts(): number {
    return this.restartCount
  }

  /** Starts the child (idempotent). */
  start(): void {
    if (!this.stopped) return
    this.stopped = false
    this.spawnChild()
  }

  /** Stops the child and any pending restart; resolves when the child has exited. */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    const c = this.child
    this.child = undefined
    if (c && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise<void>((r) => c.once('exit', () => r()))
      c.kill('SIGTERM')
      await gone
    }
  }

  private spawnChild(): void {
    const started = Date.now()
    let ready = false
    const parser = new UeventParser()
    const child = spawn(this.o.command, [...UDEVADM_MONITOR_ARGS], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    const becomeReady = (): void => {
      if (ready) return
      ready = true
      this.startFailures = 0
      this.o.log?.(`udevadm monitor (pid ${child.pid}) is watching subsystems ap and mdev`)
      this.o.onReady?.({ restarts: this.restartCount })
    }
    const handle = (items: ReturnType<UeventParser['push']>): void => {
      for (const it of items) {
        if (it.kind === 'banner') {
          // "KERNEL - the kernel uevent" is printed once the kernel monitor is set up.
          if (/^KERNEL\b/.test(it.line)) becomeReady()
          continue
        }
        becomeReady()
        try {
          this.o.onEvent(it.event)
        } catch (e) {
          this.o.log?.(`uevent listener failed: ${e instanceof Error ? e.message : String(e)}`)
        }
      }
    }
    child.stdout!.setEncoding('utf8')
    child.stdout!.on('data', (d: string) => handle(parser.push(d)))
    child.stderr!.setEncoding('utf8')
    child.stderr!.on('data', (d: string) => {
      for (const l of d.split('\n')) if (l.trim()) this.o.log?.(`udevadm: ${l.trim()}`)
    })
    // A spawn failure (ENOENT: no udevadm) is reported by 'error' and then 'close' (exit code null).
    child.on('error', (e) => this.o.log?.(`udevadm monitor: ${e.message}`))
    child.once('close', (code, signal) => {
      handle(parser.end())
      if (this.child === child) this.child = undefined
      if (this.stopped) return
      if (!ready) this.startFailures++
      if (Date.now() - started >= STABLE_MS) this.delay = this.o.minBackoffMs
      if (this.startFailures >= this.o.maxStartFailures) {
        const why = `udevadm monitor exited ${this.startFailures} times before it was set up (last: ${signal ?? `exit ${code}`})`
        this.o.log?.(why)
        this.stopped = true
        this.o.onGiveUp?.(why)
        return
      }
      const wait = this.delay
      this.delay = Math.min(this.delay * 2, this.o.maxBackoffMs)
      this.o.log?.(`udevadm monitor exited (${signal ?? `code ${code}`}); restarting in ${wait} ms`)
      this.timer = setTimeout(() => {
        this.timer = undefined
        if (this.stopped) return
        this.restartCount++
        this.spawnChild()
      }, wait)
      this.timer.unref?.()
    })
  }
}
