/** The AP inventory of a host as its bus shows it (lszcrypt's view): adapters, queues, domains, every matrix device. */
import { parseId } from '../domain/ids.js'
import { normalizeUuid } from '../domain/mdev.js'
import type { Store } from '../store/index.js'
import { decodePageToken, encodePageToken, pageSize } from '../store/page-token.js'
import type { HostAccess } from './host-access.js'
import type { AdapterView, BusMdevView, DomainsView, Page, QueueQuery, QueueView } from './types.js'
import { readMask } from './views.js'

/** The inventory reads of the service. NOT_FOUND for an unknown host, UNAVAILABLE when its bus cannot be read. */
export class Inventory {
  constructor(
    private readonly store: Store,
    private readonly access: HostAccess,
  ) {}

  /** Adapters as the bus shows them (lszcrypt's cards). */
  async listAdapters(host: string): Promise<{ items: AdapterView[] }> {
    return { items: (await this.access.inventory(this.access.managed(host))).adapters }
  }

  /**
   * Queues, filtered (all filters must match) and paged by APQN: the bus lists, filters and pages queue names
   * first and reads attributes for the page's queues only (BusPort.observeQueues). INVALID_ARGUMENT for bad
   * filters or tokens.
   */
  async listQueues(host: string, q: QueueQuery = {}): Promise<Page<QueueView>> {
    const limit = pageSize(q.limit)
    const after = q.pageToken ? decodePageToken(q.pageToken) : undefined
    const adapter = q.adapter === undefined ? undefined : parseId(q.adapter, 'adapter')
    const domain = q.domain === undefined ? undefined : parseId(q.domain, 'domain')
    const owner = q.owner === undefined || q.owner === 'none' ? q.owner : normalizeUuid(q.owner, 'owner')
    const h = this.access.managed(host)
    const page = await this.access.queues(h, {
      limit,
      ...(adapter !== undefined ? { adapter } : {}),
      ...(domain !== undefined ? { domain } : {}),
      ...(q.driver !== undefined ? { driver: q.driver } : {}),
      ...(owner !== undefined ? { owner: owner === 'none' ? null : owner } : {}),
      ...(after !== undefined ? { after } : {}),
    })
    return page.next !== undefined ? { items: page.items, nextPageToken: encodePageToken(page.next) } : { items: page.items }
  }

  /**
   * Every matrix device on the bus, ours and foreign ones (created by root, mdevctl or libvirt), with who has
   * it open; foreign ones can be adopted with an import.
   */
  async listBusMdevs(host: string): Promise<{ items: BusMdevView[] }> {
    const h = this.access.managed(host)
    const [o, guests, stored] = await Promise.all([this.access.observe(h), h.guests(), this.store.mdevs.listAll(host)])
    const ours = new Set(stored.map((m) => m.uuid))
    const guestOf = new Map(guests.map((g) => [g.uuid, g.guest]))
    return {
      items: o.mdevs.map((m) => ({
        uuid: m.uuid,
        managed: ours.has(m.uuid),
        adapters: m.adapters,
        domains: m.domains,
        controlDomains: m.controlDomains,
        matrix: m.matrix,
        guestMatrix: m.guestMatrix,
        guest: guestOf.get(m.uuid) ?? null,
      })),
    }
  }

  /** Usage and control domains of the host configuration (QCI). */
  async listDomains(host: string): Promise<DomainsView> {
    const o = await this.access.facts(this.access.managed(host))
    const aq = readMask(o.aqmask)
    return { usageDomains: o.config.domains, controlDomains: o.config.controlDomains, hostDomains: o.config.domains.filter((d) => aq.has(d)) }
  }
}
