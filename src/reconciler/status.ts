/**
 * Status of a matrix device from what the bus shows (docs/api.md (Resources)): observedGeneration, active, matrix,
 * guestMatrix, controlDomains, guest and Kubernetes-style conditions. Pure: the reconciler feeds it.
 */
import { formatApqn } from '../domain/ids.js'
import type { ObservedMdev } from '../domain/observed.js'
import type { Deferred } from '../domain/plan.js'
import type { Condition, ConditionStatus, MdevStatus } from '../domain/mdev-status.js'

export type { Condition, ConditionStatus, MdevStatus }

export interface StatusInput {
  generation: number
  spec: { adapters: number[]; domains: number[]; controlDomains: number[]; state: 'started' | 'stopped' }
  observed: ObservedMdev | undefined
  guest: string | null
  /**
   * Host configuration (QCI, O-3), to tell filtered adapters (V-20) from ids the machine lacks (V-13): a
   * matrix may hold those (over-provisioning), and the guest does not get them.
   */
  hostConfig: { adapters: number[]; domains: number[]; controlDomains: number[] }
  deferred: Deferred[]
  /** The failed bus step of the last reconcile, if it concerned this device. */
  failure?: { errno?: string; message: string }
  lostRequests: number
  /**
   * A drain of queues this device takes is in progress (`waiting` false: within its timeout, reason `Draining`)
   * or waits past its timeout under the `wait` policy (reason `DrainWaiting`); `queues` in-flight counts.
   */
  draining?: { queues: Record<string, number>; waiting: boolean; message: string }
  previous: MdevStatus | null
  now: Date
}

function sameList<T>(a: T[], b: T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/** Computes a device's status; conditions keep their previous transition time when their status is unchanged. */
export function computeMdevStatus(i: StatusInput): MdevStatus {
  const o = i.observed
  const wantActive = i.spec.state === 'started'
  const wantMatrix: string[] = []
  for (const a of i.spec.adapters) for (const d of i.spec.domains) wantMatrix.push(formatApqn(a, d))
  const matrix = o?.matrix ?? []
  const guestMatrix = o?.guestMatrix ?? []
  const converged = wantActive
    ? !!o &&
      sameList(matrix, wantMatrix) &&
      sameList(o.controlDomains, i.spec.controlDomains) &&
      sameList(o.adapters, i.spec.adapters) &&
      sameList(o.domains, i.spec.domains)
    : !o
  // V-20: an adapter of the matrix that the machine has but the guest does not get was filtered.
  const inGuest = new Set(guestMatrix.map((q) => Number.parseInt(q.slice(0, 2), 16)))
  const hostAdapters = new Set(i.hostConfig.adapters)
  const hostDomains = new Set(i.hostConfig.domains)
  // Without a domain the host has, the guest gets no APQN at all: that is not an adapter being filtered.
  const filtered = o?.domains.some((d) => hostDomains.has(d)) ? o.adapters.filter((a) => hostAdapters.has(a) && !inGuest.has(a)) : []
  // V-13: ids of the matrix on the bus that the host's configuration lacks; V-20 keeps them out of the guest.
  const hostControl = new Set(i.hostConfig.controlDomains)
  const lacking = o
    ? [
        ...o.adapters.filter((a) => !hostAdapters.has(a)).map((a) => `adapter ${a}`),
        ...o.domains.filter((d) => !hostDomains.has(d)).map((d) => `domain ${d}`),
        ...o.controlDomains.filter((c) => !hostControl.has(c)).map((c) => `control domain ${c}`),
      ]
    : []
  const inUse = i.deferred.find((d) => d.reason === 'InUseByGuest' && d.uuid !== undefined)

  const prev = new Map((i.previous?.conditions ?? []).map((c) => [c.type, c]))
  const cond = (type: Condition['type'], status: ConditionStatus, reason: string, message: string): Condition => {
    const p = prev.get(type)
    return {
      type,
      status,
      reason,
      message,
      lastTransitionTime: p && p.status === status ? p.lastTransitionTime : i.now.toISOString(),
      observedGeneration: i.generation,
    }
  }
  const hex = (a: number) => a.toString(16).padStart(2, '0')
  const conditions: Condition[] = [
    converged
      ? cond(
          'Ready',
          'True',
          wantActive ? 'Active' : 'Stopped',
          wantActive ? 'the matrix device exists on the bus with the desired matrix' : 'the matrix device is defined and not on the bus',
        )
      : i.failure
        ? cond('Ready', 'False', 'ReconcileFailed', i.failure.message)
        : inUse
          ? cond('Ready', 'False', 'WaitingForGuest', inUse.message)
          : cond('Ready', 'False', 'Converging', 'the bus does not match the desired state yet'),
    converged
      ? cond('Progressing', 'False', 'Converged', 'nothing left to do')
      : i.draining
        ? cond('Progressing', 'True', i.draining.waiting ? 'DrainWaiting' : 'Draining', i.draining.message)
        : cond('Progressing', 'True', 'Reconciling', 'bus operations are pending'),
    i.failure
      ? cond('Degraded', 'True', 'ReconcileFailed', `${i.failure.errno ? `${i.failure.errno}: ` : ''}${i.failure.message}`)
      : filtered.length
        ? cond('Degraded', 'True', 'AdapterFiltered', `the guest does not get adapters ${filtered.map(hex).join(', ')}`)
        : lacking.length
          ? cond(
              'Degraded',
              'True',
              'NotInHostConfiguration',
              `the host does not have ${lacking.join(', ')}: the kernel keeps ${lacking.length === 1 ? 'it' : 'them'} assigned (V-13) and filters ${lacking.length === 1 ? 'it' : 'them'} out of the guest (V-20)`,
            )
          : cond('Degraded', 'False', 'Healthy', 'no fault'),
    filtered.length
      ? cond(
          'AdapterFiltered',
          'True',
          'QueueNotBound',
          `adapters ${filtered.map(hex).join(', ')} are filtered out of the guest: some of their queues are not bound to vfio_ap or failed a reset (V-20)`,
        )
      : cond('AdapterFiltered', 'False', 'AllAdaptersPassed', 'every configured adapter of the matrix reaches the guest'),
    i.guest
      ? cond('InUseByGuest', 'True', 'GuestAttached', `open by guest ${i.guest}`)
      : cond('InUseByGuest', 'False', 'NoGuest', 'no guest has the device open'),
  ]
  return {
    observedGeneration: i.generation,
    active: !!o,
    matrix,
    guestMatrix,
    controlDomains: o?.controlDomains ?? [],
    guest: i.guest,
    lostRequests: (i.previous?.lostRequests ?? 0) + i.lostRequests,
    ...(i.draining && !converged ? { draining: i.draining.queues } : {}),
    conditions,
  }
}
