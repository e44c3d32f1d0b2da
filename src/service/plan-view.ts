/**
 * The dry-run plan of a proposed desired state (docs/api.md (Reconcile) last paragraph): the planner's ordered
 * operations plus what a caller wants to know before applying: the APQNs the proposal pulls in with
 * their current owners, the adapters a guest would lose to filtering (V-20), the host queues drained.
 */
import type { Violation } from '../domain/errors.js'
import { formatApqn, qid } from '../domain/ids.js'
import { parseAbsoluteMask } from '../domain/mask.js'
import type { ObservedTopology } from '../domain/observed.js'
import { planHost } from '../domain/plan.js'
import type { HostDesired } from './admission.js'
import { type DrainPolicy, resolveDrainPolicy } from '../domain/drain-policy.js'
import type { ClaimedApqn, FilteredAdapter, PlanDrainPolicy, PlanView } from './types.js'
import { SUMMARY_FIRST } from './plan-summary.js'

/** The service default drain policy when the caller names none (APMATRIX_DRAIN_TIMEOUT_MS / _ON_TIMEOUT defaults). */
export const DEFAULT_DRAIN_POLICY: DrainPolicy = { timeoutMs: 30_000, onTimeout: 'flush' }

/**
 * Plans `desired` against `observed`. `focus` limits claimedApqns and filteredAdapters to the devices
 * a request touches (all started devices when omitted). `drainDefault` is the service's default drain policy,
 * for the plan's `drainPolicy`. Pure.
 */
export function planView(
  desired: HostDesired,
  observed: ObservedTopology,
  guests: Array<{ uuid: string; guest: string }>,
  violations: Violation[] = [],
  focus?: ReadonlySet<string>,
  drainDefault: DrainPolicy = DEFAULT_DRAIN_POLICY,
): PlanView {
  const guestOf = new Map(guests.map((g) => [g.uuid, g.guest]))
  const plan = planHost({ apmask: desired.apmask, aqmask: desired.aqmask, mdevs: desired.mdevs }, observed, (u) => guestOf.get(u) ?? null)

  const busOwner = new Map<number, string>()
  for (const m of observed.mdevs) for (const a of m.adapters) for (const d of m.domains) busOwner.set(qid(a, d), m.uuid)
  const queues = new Set(observed.queues.map((q) => qid(q.apid, q.apqi)))
  const ap = parseAbsoluteMask(observed.apmask.trim())
  const aq = parseAbsoluteMask(observed.aqmask.trim())
  const hostHas = (a: number, d: number) => ap.ok && aq.ok && ap.mask.has(a) && aq.mask.has(d) && queues.has(qid(a, d))
  const configAdapters = new Set(observed.config.adapters)
  const configDomains = new Set(observed.config.domains)

  const claimedApqns: ClaimedApqn[] = []
  const filteredAdapters: FilteredAdapter[] = []
  for (const m of desired.mdevs) {
    if (m.deleting || m.state !== 'started' || (focus && !focus.has(m.uuid))) continue
    for (const a of m.adapters) {
      for (const d of m.domains) {
        const owner = busOwner.get(qid(a, d)) ?? (hostHas(a, d) ? 'host' : null)
        if (owner !== m.uuid) claimedApqns.push({ apqn: formatApqn(a, d), uuid: m.uuid, currentOwner: owner })
      }
      // V-20: the guest gets mdev APM ∩ hostcfg apm; an adapter with any APQN lacking a queue device is dropped whole.
      if (!configAdapters.has(a)) {
        filteredAdapters.push({ uuid: m.uuid, apid: a, reason: 'NotInHostConfig', apqns: [] })
        continue
      }
      const missing = m.domains.filter((d) => configDomains.has(d) && !queues.has(qid(a, d))).map((d) => formatApqn(a, d))
      if (missing.length) filteredAdapters.push({ uuid: m.uuid, apid: a, reason: 'QueueMissing', apqns: missing })
    }
  }
  return {
    operations: plan.operations,
    violations,
    claimedApqns,
    filteredAdapters,
    drainedQueues: plan.drainedQueues,
    drainPolicy: drainPolicyOf(plan.drainedQueues, desired, drainDefault),
    deferred: plan.deferred.map((d) => ({ reason: d.reason, message: d.message, ...(d.uuid ? { uuid: d.uuid } : {}), ...(d.apqns ? { apqns: d.apqns } : {}) })),
  }
}

/** The policy the reconciler would drain `drained` under (the same resolution: domain/drain-policy.ts). */
function drainPolicyOf(drained: string[], desired: HostDesired, fallback: DrainPolicy): PlanDrainPolicy | null {
  if (!drained.length) return null
  const p = resolveDrainPolicy(drained, desired.mdevs, fallback)
  const devices = [...new Set(Object.values(p.takers).flat())].sort()
  return {
    timeoutSeconds: p.timeoutMs / 1000,
    onTimeout: p.onTimeout,
    devices: devices.slice(0, SUMMARY_FIRST),
    deviceCount: devices.length,
    defaultApplies: Object.values(p.takers).some((u) => u.length === 0),
  }
}
