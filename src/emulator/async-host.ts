import type { EmulatedHostApi, EmulatorEvent, HardwareAction, RequestStats } from './api.js'

/**
 * A thin async facade over one emulated host: every call takes a per-host promise mutex, so calls run
 * strictly one at a time in arrival order (X-5's global lock, also across awaits of the caller).
 * Errors are the host's own (SysfsError with the kernel errno).
 */
export class AsyncHost {
  private tail: Promise<unknown> = Promise.resolve()

  constructor(readonly host: EmulatedHostApi) {}

  /** Runs `fn` after every earlier call has settled; its result or error is this call's. */
  run<T>(fn: (host: EmulatedHostApi) => T): Promise<T> {
    const next = this.tail.then(() => fn(this.host))
    this.tail = next.catch(() => undefined)
    return next
  }

  read(path: string): Promise<string> {
    return this.run((h) => h.read(path))
  }
  write(path: string, value: string): Promise<void> {
    return this.run((h) => h.write(path, value))
  }
  list(path: string): Promise<string[]> {
    return this.run((h) => h.list(path))
  }
  exists(path: string): Promise<boolean> {
    return this.run((h) => h.exists(path))
  }
  readlink(path: string): Promise<string> {
    return this.run((h) => h.readlink(path))
  }
  guestOpen(uuid: string, guest: string): Promise<void> {
    return this.run((h) => h.guestOpen(uuid, guest))
  }
  guestClose(uuid: string): Promise<void> {
    return this.run((h) => h.guestClose(uuid))
  }
  guestAqic(uuid: string, apqn: string, nib: number): Promise<number> {
    return this.run((h) => h.guestAqic(uuid, apqn, nib))
  }
  submitRequests(apqn: string, count: number): Promise<number> {
    return this.run((h) => h.submitRequests(apqn, count))
  }
  requestStats(apqn: string): Promise<RequestStats> {
    return this.run((h) => h.requestStats(apqn))
  }
  hardware(action: HardwareAction): Promise<void> {
    return this.run((h) => h.hardware(action))
  }
  scan(): Promise<void> {
    return this.run((h) => h.scan())
  }
  advance(ms: number): Promise<void> {
    return this.run((h) => h.advance(ms))
  }
  now(): Promise<number> {
    return this.run((h) => h.now())
  }
  events(sinceSeq?: number): Promise<EmulatorEvent[]> {
    return this.run((h) => h.events(sinceSeq))
  }
  /** Listeners are called synchronously as the host emits; no lock needed. */
  subscribe(listener: (e: EmulatorEvent) => void): () => void {
    return this.host.subscribe(listener)
  }
}

/**
 * Advances the host's virtual time with wall time: every `intervalMs` (default 100) it advances by the
 * wall-clock time elapsed since the previous tick, through the mutex when an AsyncHost is given.
 * Returns a function that stops the clock. The timer is unref'd so it never keeps the process alive.
 */
export function startRealtimeClock(host: EmulatedHostApi | AsyncHost, opts: { intervalMs?: number } = {}): () => void {
  const intervalMs = opts.intervalMs ?? 100
  let last = Date.now()
  let stopped = false
  const tick = (): void => {
    if (stopped) return
    const now = Date.now()
    const dt = Math.max(0, now - last)
    last = now
    if (host instanceof AsyncHost) void host.advance(dt).catch(() => undefined)
    else host.advance(dt)
  }
  const timer = setInterval(tick, intervalMs)
  timer.unref()
  return () => {
    stopped = true
    clearInterval(timer)
  }
}
