import type { EmulatorEvent } from './api.js'

/** Distributes an event type over a union so that `seq` and `time` can be omitted per variant. */
type WithoutStamp<T> = T extends unknown ? Omit<T, 'seq' | 'time'> : never
/** An event before the log stamps it with `seq` and `time`. */
export type EventInput = WithoutStamp<EmulatorEvent>

/** How many events a host keeps (the contract of EmulatedHostApi.events). */
export const EVENT_LOG_CAPACITY = 10_000

/**
 * The host's bounded event log (X-7: every change is an event). A ring buffer of the last
 * {@link EVENT_LOG_CAPACITY} events; emitting is O(1) plus the listeners.
 */
export class EventLog {
  private readonly ring: (EmulatorEvent | undefined)[] = new Array(EVENT_LOG_CAPACITY)
  private head = 0
  private size = 0
  private seq = 0
  private readonly listeners = new Set<(e: EmulatorEvent) => void>()

  constructor(private readonly clock: () => number) {}

  /** Stamps and stores an event, then calls the listeners (a throwing listener does not stop the kernel). */
  emit(e: EventInput, time?: number): EmulatorEvent {
    // Stamped in place (callers pass a fresh literal): a copy by spread of many event shapes was the most
    // expensive step of a mask write that moves every queue of a large host.
    const ev = e as EmulatorEvent
    ev.seq = ++this.seq
    ev.time = time ?? this.clock()
    this.ring[(this.head + this.size) % EVENT_LOG_CAPACITY] = ev
    if (this.size < EVENT_LOG_CAPACITY) this.size++
    else this.head = (this.head + 1) % EVENT_LOG_CAPACITY
    for (const l of this.listeners) {
      try {
        l(ev)
      } catch {
        // A listener's failure is the listener's problem; the emulated kernel goes on.
      }
    }
    return ev
  }

  log(level: 'info' | 'warn' | 'err', message: string): void {
    this.emit({ kind: 'log', level, message })
  }

  /** Events with seq > sinceSeq, oldest first. */
  since(sinceSeq = 0): EmulatorEvent[] {
    const out: EmulatorEvent[] = []
    for (let i = 0; i < this.size; i++) {
      const ev = this.ring[(this.head + i) % EVENT_LOG_CAPACITY]!
      if (ev.seq > sinceSeq) out.push(ev)
    }
    return out
  }

  subscribe(listener: (e: EmulatorEvent) => void): () => void {
    this.listeners.add(listener)
    return () => {
      this.listeners.delete(listener)
    }
  }
}
