/**
 * Hosts (docs/hosts.md, docs/api.md (Resources) Host): registration in the store at start and after a
 * reboot (first contact adopts the host's masks), and the host views.
 */
import { authorize } from '../auth/authorize.js'
import type { ObservedTopology } from '../domain/observed.js'
import type { ManagedHost } from '../hosts/managed-host.js'
import type { Store } from '../store/index.js'
import type { HostAccess } from './host-access.js'
import type { CallContext, HostView } from './types.js'

/** The host operations of the service. */
export class Hosts {
  constructor(
    private readonly store: Store,
    private readonly access: HostAccess,
    private readonly clock: () => Date,
  ) {}

  /**
   * Registers every host of the registry in the store (identity, features, maxima, bootId). First contact
   * changes nothing (docs/api.md (Resources) "Host masks"): a host without stored masks adopts the masks it has now
   * as the desired ones (generation 0, event `MasksAdopted`), so the first reconcile hands no queue back to
   * the host drivers that an admin set aside; foreign matrix devices stay as they are. Idempotent; call at
   * start and after a reboot.
   */
  async syncHosts(): Promise<HostView[]> {
    const out: HostView[] = []
    for (const h of this.access.registry.list()) {
      const observed = await this.register(h)
      // In one transaction: a replica starting at the same time cannot overwrite masks set meanwhile.
      await this.store.transaction(async (tx) => {
        const { outcome, record } = await tx.masks.adopt(h.name, { apmask: observed.apmask, aqmask: observed.aqmask })
        if (outcome === 'unchanged') return
        if (outcome === 'refreshed') {
          // Adopted masks that the host changed since: stored again, and said so (read caches of other replicas).
          await tx.events.append(
            adopted(h.name, `the host's masks changed (apmask ${record.apmask}, aqmask ${record.aqmask}) before a desired state was given: adopted again`, {
              apmask: record.apmask,
              aqmask: record.aqmask,
              generation: record.generation,
              resourceVersion: record.resourceVersion,
            }),
          )
          return
        }
        const foreign = observed.mdevs.length
        await tx.events.append(
          adopted(
            h.name,
            `first contact with ${h.name}: its masks (apmask ${record.apmask}, aqmask ${record.aqmask}) are adopted as the desired ones; ${foreign} matrix device${foreign === 1 ? '' : 's'} on the bus left as ${foreign === 1 ? 'it is' : 'they are'}; nothing is written to the host until a desired state is given`,
            { apmask: record.apmask, aqmask: record.aqmask, generation: record.generation, foreignMdevs: observed.mdevs.map((m) => m.uuid) },
          ),
        )
      })
      out.push(await this.getHost(h.name))
    }
    return out
  }

  /**
   * Every managed host the caller may read: a binding limited to hosts lists those only (the one
   * authorization function decides, as it does for each per-host call); without a principal, every host.
   */
  listHosts(ctx: CallContext = {}): Promise<HostView[]> {
    const p = ctx.principal
    const names = this.access.registry
      .list()
      .map((h) => h.name)
      .filter((name) => !p || authorize(p, 'read', 'hosts', { host: name }) === 'allow')
    return Promise.all(names.map((name) => this.getHost(name)))
  }

  /** One host: identity from the host, features and maxima from its bus (the store's copy if the bus is down). NOT_FOUND. */
  async getHost(name: string): Promise<HostView> {
    const h = this.access.managed(name)
    const info = await h.info()
    let features: string[]
    let maxAdapterId: number
    let maxDomainId: number
    try {
      ;({ features, maxAdapterId, maxDomainId } = await this.access.facts(h))
    } catch (e) {
      const rec = await this.store.hosts.get(name).catch(() => {
        throw e
      })
      ;({ features, maxAdapterId, maxDomainId } = rec)
    }
    const lease = await this.store.leases.get(name)
    return {
      name,
      machineId: info.machineId,
      driver: info.driver,
      profile: info.profile,
      features: [...features].sort(),
      maxAdapterId,
      maxDomainId,
      bootId: info.bootId,
      leaseHolder: lease && lease.expiresAt > this.clock() ? lease.holder : null,
    }
  }

  /**
   * Stores the host's identity, features and maxima. The stored bootId is kept when there is one: the
   * reconciler compares it with the host's, reports the reboot (HostBooted) and then records the new one.
   */
  async register(h: ManagedHost): Promise<ObservedTopology> {
    const [info, observed, prev] = await Promise.all([h.info(), this.access.observe(h), this.store.hosts.get(h.name).catch(() => null)])
    await this.store.hosts.upsert({
      name: h.name,
      driver: info.driver,
      profile: info.profile,
      machineId: info.machineId,
      bootId: prev?.bootId ?? info.bootId,
      features: observed.features,
      maxAdapterId: observed.maxAdapterId,
      maxDomainId: observed.maxDomainId,
    })
    return observed
  }
}

/** The `MasksAdopted` event of a host (first contact, or adopted masks the host changed since). */
function adopted(host: string, message: string, data: Record<string, unknown>) {
  return { host, kind: 'masks', name: 'masks', type: 'MasksAdopted', actor: 'apmatrix', message, data }
}
