/**
 * A host's state as admission and the planner see it (HostDesired), built from the store's records and
 * the bus: stored masks (the kernel default when never set), stored devices, foreign devices. Pure.
 */
import { ApmatrixError } from '../domain/errors.js'
import { Mask } from '../domain/mask.js'
import type { HostLimits, MdevSpec } from '../domain/mdev.js'
import type { ObservedTopology } from '../domain/observed.js'
import type { PlannedMdev } from '../domain/plan.js'
import type { MdevRecord, Repos } from '../store/index.js'
import type { HostDesired } from './admission.js'
import { readMask } from './views.js'

/** What the store holds for a host: its masks row (null when never set) and every device. */
export interface StoredState {
  masks: { apmask: string; aqmask: string; resourceVersion: string } | null
  mdevs: MdevRecord[]
}

const FULL = Mask.full().toString()

/** Reads a host's stored state (inside a transaction when `repos` is one). */
export async function loadStored(repos: Pick<Repos, 'masks' | 'mdevs'>, host: string): Promise<StoredState> {
  const [masks, mdevs] = await Promise.all([repos.masks.get(host), repos.mdevs.listAll(host)])
  return { masks, mdevs }
}

/** The desired state admission sees: stored masks (kernel default when never set), stored devices, foreign devices on the bus. */
export function desiredOf(observed: ObservedTopology, stored: StoredState): HostDesired {
  const known = new Set(stored.mdevs.map((m) => m.uuid))
  const limits: HostLimits = {
    maxAdapterId: observed.maxAdapterId,
    maxDomainId: observed.maxDomainId,
    ...(observed.mdevCapacity !== null ? { maxMdevs: observed.mdevCapacity } : {}),
    hostConfig: observed.config,
  }
  return {
    limits,
    apmask: readMask(stored.masks?.apmask ?? FULL),
    aqmask: readMask(stored.masks?.aqmask ?? FULL),
    mdevs: stored.mdevs.map((r) => ({ ...planned(r.uuid, r.spec), deleting: r.deletionRequestedAt !== null, force: r.force })),
    foreign: observed.mdevs.filter((m) => !known.has(m.uuid)).map((m) => ({ uuid: m.uuid, spec: { adapters: m.adapters, domains: m.domains } })),
  }
}

/** A device as the planner takes it: started or stopped, not being deleted. */
export function planned(uuid: string, spec: MdevSpec): PlannedMdev {
  return {
    uuid,
    adapters: spec.adapters,
    domains: spec.domains,
    controlDomains: spec.controlDomains,
    state: spec.state,
    deleting: false,
    force: false,
    ...(spec.drain ? { drain: spec.drain } : {}),
  }
}

/** `state` with `m` replacing the device of its uuid, moved last (admission order). */
export function withMdev(state: HostDesired, m: PlannedMdev): HostDesired {
  return { ...state, mdevs: [...state.mdevs.filter((x) => x.uuid !== m.uuid), m] }
}

/** The stored device of this uuid. NOT_FOUND. */
export function mustFind(stored: StoredState, host: string, uuid: string): MdevRecord {
  const r = stored.mdevs.find((m) => m.uuid === uuid)
  if (!r) throw new ApmatrixError('NOT_FOUND', `matrix device ${host}/${uuid} not found`)
  return r
}
