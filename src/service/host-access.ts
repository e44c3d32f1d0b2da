/**
 * How the service reaches a managed host: resolves the name (NOT_FOUND) and reads its bus, turning a
 * failed read into UNAVAILABLE. Every service module reads hosts through this one object.
 */
import { ApmatrixError } from '../domain/errors.js'
import type { ObservedAdapter, ObservedHost, ObservedHostFacts, ObservedTopology } from '../domain/observed.js'
import { clip } from '../domain/text.js'
import type { QueuePage, QueuePageQuery } from '../bus/port.js'
import type { HostRegistry, ManagedHost } from '../hosts/managed-host.js'

/** Resolves managed hosts and reads their buses. */
export class HostAccess {
  constructor(readonly registry: HostRegistry) {}

  /** The managed host of this name. NOT_FOUND (also for a name that is not a string). */
  managed(name: string): ManagedHost {
    const h = typeof name === 'string' ? this.registry.get(name) : undefined
    if (!h) throw new ApmatrixError('NOT_FOUND', `host ${clip(String(name), 64)} not found`)
    return h
  }

  /** Masks, configuration, devices and queue bindings: what admission and planning need (cheap on large hosts). UNAVAILABLE. */
  observe(h: ManagedHost): Promise<ObservedTopology> {
    return busRead(h, () => h.bus.observeTopology())
  }

  /** Features, maxima, masks, configuration and bindings: no device is walked (host, masks and domains reads). UNAVAILABLE. */
  facts(h: ManagedHost): Promise<ObservedHostFacts> {
    return busRead(h, () => h.bus.observeHostFacts())
  }

  /** One page of queues with their attributes (only the page's queues are read). UNAVAILABLE. */
  queues(h: ManagedHost, q: QueuePageQuery): Promise<QueuePage> {
    return busRead(h, () => h.bus.observeQueues(q))
  }

  /** The adapters with their attributes: no queue is read (the adapters list). UNAVAILABLE. */
  adapters(h: ManagedHost): Promise<ObservedAdapter[]> {
    return busRead(h, () => h.bus.observeAdapters())
  }

  /** The full inventory (every card and queue attribute): only the inventory reads need it. UNAVAILABLE. */
  inventory(h: ManagedHost): Promise<ObservedHost> {
    return busRead(h, () => h.bus.observe())
  }
}

async function busRead<T>(h: ManagedHost, read: () => Promise<T>): Promise<T> {
  try {
    return await read()
  } catch (e) {
    if (e instanceof ApmatrixError) throw e
    throw new ApmatrixError('UNAVAILABLE', `host ${h.name}: the bus cannot be read (${(e as Error).message})`, { cause: e })
  }
}
