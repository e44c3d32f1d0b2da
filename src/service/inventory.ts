/**
 * The AP inventory of a host as its bus shows it (lszcrypt's view): adapters, queues, domains, every matrix
 * device. A caller limited to its own matrix devices (a tenant) sees the others' only as held APQNs
 * (tenancy.ts, docs/security.md (Tenants)).
 */
import { parseId } from '../domain/ids.js'
import { normalizeUuid } from '../domain/mdev.js'
import { decodePageToken, encodePageToken, pageSize } from '../store/page-token.js'
import type { HostAccess } from './host-access.js'
import type { ReadCache } from './read-cache.js'
import { HIDDEN_OWNER, inventoryVisibility } from './tenancy.js'
import type { AdapterView, BusMdevView, CallContext, DomainsView, Page, QueueQuery, QueueView } from './types.js'
import { readMask } from './views.js'

/** The inventory reads of the service. NOT_FOUND for an unknown host, UNAVAILABLE when its bus cannot be read. */
export class Inventory {
  constructor(
    private readonly cache: ReadCache,
    private readonly access: HostAccess,
  ) {}

  /** Adapters as the bus shows them (lszcrypt's cards). */
  async listAdapters(host: string): Promise<{ items: AdapterView[] }> {
    // Cards only: the full inventory would read every queue's attributes too (65,536 on a large host).
    return { items: await this.access.adapters(this.access.managed(host)) }
  }

  /**
   * Queues, filtered (all filters must match) and paged by APQN: the bus lists, filters and pages queue names
   * first and reads attributes for the page's queues only (BusPort.observeQueues). INVALID_ARGUMENT for bad
   * filters or tokens. For a caller limited to its own devices, a queue held by a device it may not see has
   * the owner {@link HIDDEN_OWNER}, and an `owner` filter naming such a device answers as for an unknown uuid
   * (no queue), so neither tells it the device exists.
   */
  async listQueues(host: string, q: QueueQuery = {}, ctx: CallContext = {}): Promise<Page<QueueView>> {
    const limit = pageSize(q.limit)
    const after = q.pageToken ? decodePageToken(q.pageToken) : undefined
    const adapter = q.adapter === undefined ? undefined : parseId(q.adapter, 'adapter')
    const domain = q.domain === undefined ? undefined : parseId(q.domain, 'domain')
    const owner = q.owner === undefined || q.owner === 'none' ? q.owner : normalizeUuid(q.owner, 'owner')
    const h = this.access.managed(host)
    const visible = await this.visibleDevices(host, ctx)
    if (visible && owner !== undefined && owner !== 'none' && !visible(owner)) return { items: [] }
    const page = await this.access.queues(h, {
      limit,
      ...(adapter !== undefined ? { adapter } : {}),
      ...(domain !== undefined ? { domain } : {}),
      ...(q.driver !== undefined ? { driver: q.driver } : {}),
      ...(owner !== undefined ? { owner: owner === 'none' ? null : owner } : {}),
      ...(after !== undefined ? { after } : {}),
    })
    const items = visible ? page.items.map((x) => (x.owner === null || visible(x.owner) ? x : { ...x, owner: HIDDEN_OWNER })) : page.items
    return page.next !== undefined ? { items, nextPageToken: encodePageToken(page.next) } : { items }
  }

  /**
   * Every matrix device on the bus, ours and foreign ones (created by root, mdevctl or libvirt), with who has
   * it open; foreign ones can be adopted with an import. A caller limited to its own devices gets those only.
   */
  async listBusMdevs(host: string, ctx: CallContext = {}): Promise<{ items: BusMdevView[] }> {
    const h = this.access.managed(host)
    const [o, guests, owners] = await Promise.all([this.access.observe(h), h.guests(), this.cache.owners(host)])
    const ownerOf = owners.value
    const visible = inventoryVisibility(ctx.principal, host)
    const guestOf = new Map(guests.map((g) => [g.uuid, g.guest]))
    return {
      items: (visible ? o.mdevs.filter((m) => visible(ownerOf(m.uuid))) : o.mdevs).map((m) => ({
        uuid: m.uuid,
        managed: ownerOf(m.uuid) !== undefined,
        adapters: m.adapters,
        domains: m.domains,
        controlDomains: m.controlDomains,
        matrix: m.matrix,
        guestMatrix: m.guestMatrix,
        guest: guestOf.get(m.uuid) ?? null,
      })),
    }
  }

  /** Which device uuids the caller may see on `host` (tenancy.ts), or null when it sees every one (no store read then). */
  private async visibleDevices(host: string, ctx: CallContext): Promise<((uuid: string) => boolean) | null> {
    const visible = inventoryVisibility(ctx.principal, host)
    if (!visible) return null
    const ownerOf = (await this.cache.owners(host)).value
    return (uuid) => visible(ownerOf(uuid))
  }

  /** Usage and control domains of the host configuration (QCI). */
  async listDomains(host: string): Promise<DomainsView> {
    const o = await this.access.facts(this.access.managed(host))
    const aq = readMask(o.aqmask)
    return { usageDomains: o.config.domains, controlDomains: o.config.controlDomains, hostDomains: o.config.domains.filter((d) => aq.has(d)) }
  }
}
