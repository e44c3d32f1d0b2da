/**
 * The events an agent streams (hostbus.proto `Event`): its host's uevents and polled changes, numbered
 * in one sequence per agent process (the epoch), the last `capacity` kept for clients that resume.
 */
import type { BusChange } from '../bus/port.js'
import type { HostBusEvent } from '../hostbus/codec.js'
import type { HostBusEventSource } from '../hostbus/server.js'

/** A bounded, numbered event log with live subscribers. */
export class AgentEventLog implements HostBusEventSource {
  private readonly kept: HostBusEvent[] = []
  private nextSeq = 1
  private readonly listeners = new Set<(e: HostBusEvent) => void>()
  private readonly started = Date.now()

  constructor(
    private readonly epochId: string,
    private readonly capacity = 1000,
  ) {}

  epoch(): string {
    return this.epochId
  }

  since(sinceSeq: number): HostBusEvent[] {
    return this.kept.filter((e) => e.seq > sinceSeq)
  }

  subscribe(fn: (e: HostBusEvent) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** Records a change reported by the watcher and sends it to every subscriber. */
  add(c: BusChange): void {
    const head = { seq: this.nextSeq++, time: Date.now() - this.started }
    const e: HostBusEvent = c.uevent
      ? { ...head, kind: 'uevent', ...c.uevent, env: { ...c.uevent.env } }
      : { ...head, kind: 'changed', source: c.source, summary: c.summary }
    this.kept.push(e)
    if (this.kept.length > this.capacity) this.kept.splice(0, this.kept.length - this.capacity)
    for (const l of [...this.listeners]) l(e)
  }
}
