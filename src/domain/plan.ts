/**
 * The planner (docs/api.md (Reconcile)): turns (desired, observed) into an ordered list of bus operations such that
 * the kernel never refuses a step the desired state allows. Pure: no I/O; the reconciler executes the plan.
 *
 * Order: 1 shrink matrix devices, 2 remove deleted/stopped ones, 3 return APQNs to the host (set mask
 * bits), 4 drain then take APQNs from the host (clear mask bits), 5 bind queues a root user unbound,
 * 6 create matrix devices, 7 grow them.
 */
import { formatApqn } from './ids.js'
import { Mask, parseAbsoluteMask } from './mask.js'
import type { MatrixConfig, ObservedMdev, ObservedTopology } from './observed.js'
import type { DrainPolicySpec } from './drain-policy.js'

/** One matrix device as the store wants it. */
export interface PlannedMdev {
  uuid: string
  adapters: number[]
  domains: number[]
  controlDomains: number[]
  state: 'started' | 'stopped'
  /** Deletion requested (DELETE was called): remove from the bus, then from the store. */
  deleting: boolean
  /** Remove even when a guest has it open (V-29; DELETE ?force=true). */
  force: boolean
  /** The device's drain policy: how the reconciler drains queues it takes. Never an input of the plan itself. */
  drain?: DrainPolicySpec
}

/** The desired state of one host. */
export interface DesiredHost {
  apmask: Mask
  aqmask: Mask
  mdevs: PlannedMdev[]
}

/** A bus operation of a plan. Every operation is idempotent on the bus it was planned against. */
export type PlanOp =
  | { kind: 'shrinkMdev'; uuid: string; from: MatrixConfig; to: MatrixConfig }
  | { kind: 'removeMdev'; uuid: string; force: boolean; guest: string | null }
  | { kind: 'returnToHost'; apmask: string; aqmask: string; apqns: string[] }
  | { kind: 'drainQueues'; apqns: string[] }
  | { kind: 'takeFromHost'; apmask: string; aqmask: string; apqns: string[] }
  | { kind: 'bindQueue'; apqn: string; driver: 'cex4queue' | 'vfio_ap' }
  | { kind: 'createMdev'; uuid: string }
  | { kind: 'configureMdev'; uuid: string; from: MatrixConfig; to: MatrixConfig }

/** Something the plan cannot do now, and why (surfaces as a condition or event, and is retried). */
export interface Deferred {
  reason: 'InUseByGuest' | 'HeldByOtherDevice'
  uuid?: string
  apqns?: string[]
  message: string
}

export interface Plan {
  operations: PlanOp[]
  deferred: Deferred[]
  /** APQNs that leave the host's default drivers (their queues are drained first). */
  drainedQueues: string[]
  /** True when the bus already equals the desired state (nothing to do, nothing deferred). */
  converged: boolean
}

const EMPTY: MatrixConfig = { adapters: [], domains: [], controlDomains: [] }

function intersect(a: number[], b: number[]): number[] {
  const s = new Set(b)
  return a.filter((x) => s.has(x))
}

function sameIds(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

function sameMatrix(a: MatrixConfig, b: MatrixConfig): boolean {
  return sameIds(a.adapters, b.adapters) && sameIds(a.domains, b.domains) && sameIds(a.controlDomains, b.controlDomains)
}

function configOf(m: { adapters: number[]; domains: number[]; controlDomains: number[] }): MatrixConfig {
  return { adapters: [...m.adapters], domains: [...m.domains], controlDomains: [...m.controlDomains] }
}

/** APQNs (as qid numbers) a matrix claims: the cross product (V-12: an empty dimension claims nothing). */
function claimed(m: MatrixConfig, into: Set<number>): void {
  for (const a of m.adapters) for (const d of m.domains) into.add((a << 8) | d)
}

function parseMask(text: string): Mask {
  // Observed masks come in the kernel's read format (`0x` + 64 hex digits, B-20).
  const p = parseAbsoluteMask(text.trim())
  if (!p.ok) throw new RangeError(`observed mask is not in the kernel's format: ${text}`)
  return p.mask
}

/**
 * Computes the plan for one host. `guestOf` tells which guest holds an mdev open (from the bus or emulator);
 * a device a guest holds is not removed unless `force` (V-29), and is reported as deferred.
 */
export function planHost(desired: DesiredHost, observed: ObservedTopology, guestOf: (uuid: string) => string | null = () => null): Plan {
  const ops: PlanOp[] = []
  const deferred: Deferred[] = []
  const observedByUuid = new Map<string, ObservedMdev>(observed.mdevs.map((m) => [m.uuid, m]))
  const desiredByUuid = new Map(desired.mdevs.map((m) => [m.uuid, m]))

  // After steps 1-2: what each device on the bus still holds.
  const heldAfter = new Map<string, MatrixConfig>()
  for (const om of observed.mdevs) {
    const dm = desiredByUuid.get(om.uuid)
    const current = configOf(om)
    if (!dm) {
      // Not ours: never touched (docs/api.md (Reconcile)), but what it holds counts.
      heldAfter.set(om.uuid, current)
      continue
    }
    const wanted = dm.deleting || dm.state === 'stopped' ? null : configOf(dm)
    if (wanted === null) {
      const guest = guestOf(om.uuid)
      if (guest && !dm.force) {
        deferred.push({
          reason: 'InUseByGuest',
          uuid: om.uuid,
          message: `matrix device ${om.uuid} is open by guest ${guest}; waiting for it to close (or delete with force)`,
        })
        heldAfter.set(om.uuid, current)
      } else {
        ops.push({ kind: 'removeMdev', uuid: om.uuid, force: dm.force, guest })
      }
      continue
    }
    // Step 1: shrink to what is both present and wanted (hot unplug from a running guest).
    const shrunk: MatrixConfig = {
      adapters: intersect(current.adapters, wanted.adapters),
      domains: intersect(current.domains, wanted.domains),
      controlDomains: intersect(current.controlDomains, wanted.controlDomains),
    }
    if (!sameMatrix(shrunk, current)) ops.push({ kind: 'shrinkMdev', uuid: om.uuid, from: current, to: shrunk })
    heldAfter.set(om.uuid, shrunk)
  }
  // Shrinks before removals: docs/api.md (Reconcile) order 1 then 2.
  ops.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'shrinkMdev' ? -1 : b.kind === 'shrinkMdev' ? 1 : 0))

  const held = new Set<number>()
  for (const m of heldAfter.values()) claimed(m, held)

  // Step 3: return APQNs to the host (set bits). B-24: a newly set bit must not hand back a held APQN.
  const obsAp = parseMask(observed.apmask)
  const obsAq = parseMask(observed.aqmask)
  let ap3 = obsAp
  const blockedAp: number[] = []
  for (const a of desired.apmask.minus(obsAp).ids()) {
    const hit = obsAq.ids().filter((q) => held.has((a << 8) | q))
    if (hit.length) blockedAp.push(a)
    else ap3 = ap3.with(a)
  }
  let aq3 = obsAq
  const blockedAq: number[] = []
  for (const q of desired.aqmask.minus(obsAq).ids()) {
    const hit = ap3.ids().filter((a) => held.has((a << 8) | q))
    if (hit.length) blockedAq.push(q)
    else aq3 = aq3.with(q)
  }
  const queueIds = new Set(observed.queues.map((q) => (q.apid << 8) | q.apqi))
  const inside = (ap: Mask, aq: Mask, qid: number) => ap.has(qid >> 8) && aq.has(qid & 0xff)
  if (!ap3.equals(obsAp) || !aq3.equals(obsAq)) {
    const returned = [...queueIds].filter((id) => inside(ap3, aq3, id) && !inside(obsAp, obsAq, id)).sort((x, y) => x - y)
    ops.push({ kind: 'returnToHost', apmask: ap3.toString(), aqmask: aq3.toString(), apqns: returned.map((id) => formatApqn(id >> 8, id & 0xff)) })
  }

  // Step 4: take APQNs from the host (clear bits), draining their queues first.
  const ap4 = ap3.and(desired.apmask.or(Mask.of(blockedAp)))
  const aq4 = aq3.and(desired.aqmask.or(Mask.of(blockedAq)))
  const drained: string[] = []
  if (!ap4.equals(ap3) || !aq4.equals(aq3)) {
    const leaving = [...queueIds].filter((id) => inside(ap3, aq3, id) && !inside(ap4, aq4, id)).sort((x, y) => x - y)
    const byQid = new Map(observed.queues.map((q) => [(q.apid << 8) | q.apqi, q]))
    for (const id of leaving) if (byQid.get(id)?.driver === 'cex4queue') drained.push(formatApqn(id >> 8, id & 0xff))
    if (drained.length) ops.push({ kind: 'drainQueues', apqns: drained })
    ops.push({ kind: 'takeFromHost', apmask: ap4.toString(), aqmask: aq4.toString(), apqns: leaving.map((id) => formatApqn(id >> 8, id & 0xff)) })
  }

  // B-24 checks each write on its own: a bit blocked only because of a bit step 4 clears (T-13) can be set
  // once step 4 has run, in the same plan.
  let ap5 = ap4
  let aq5 = aq4
  const stillAp: number[] = []
  for (const a of blockedAp) {
    if (aq5.ids().some((q) => held.has((a << 8) | q))) stillAp.push(a)
    else ap5 = ap5.with(a)
  }
  const stillAq: number[] = []
  for (const q of blockedAq) {
    if (ap5.ids().some((a) => held.has((a << 8) | q))) stillAq.push(q)
    else aq5 = aq5.with(q)
  }
  if (!ap5.equals(ap4) || !aq5.equals(aq4)) {
    const returned = [...queueIds].filter((id) => inside(ap5, aq5, id) && !inside(ap4, aq4, id)).sort((x, y) => x - y)
    ops.push({ kind: 'returnToHost', apmask: ap5.toString(), aqmask: aq5.toString(), apqns: returned.map((id) => formatApqn(id >> 8, id & 0xff)) })
  }
  if (stillAp.length || stillAq.length) {
    const apqns: string[] = []
    for (const a of stillAp) for (const q of aq5.ids()) if (held.has((a << 8) | q)) apqns.push(formatApqn(a, q))
    for (const q of stillAq) for (const a of ap5.ids()) if (held.has((a << 8) | q)) apqns.push(formatApqn(a, q))
    deferred.push({
      reason: 'HeldByOtherDevice',
      apqns,
      message: `mask bits deferred: APQNs still assigned to a matrix device (${apqns.slice(0, 8).join(', ')}${apqns.length > 8 ? ', ...' : ''})`,
    })
  }

  // Step 5: repair queues a root user unbound (B-32: a rescan does not re-probe them).
  for (const q of observed.queues) {
    if (q.driver !== 'none') continue
    const host = inside(ap5, aq5, (q.apid << 8) | q.apqi)
    if (host || observed.vfioApLoaded) ops.push({ kind: 'bindQueue', apqn: q.apqn, driver: host ? 'cex4queue' : 'vfio_ap' })
  }

  // Steps 6-7: create, then grow.
  for (const dm of desired.mdevs) {
    if (dm.deleting || dm.state === 'stopped') continue
    const om = observedByUuid.get(dm.uuid)
    const from = om ? (heldAfter.get(dm.uuid) ?? EMPTY) : EMPTY
    if (!om) ops.push({ kind: 'createMdev', uuid: dm.uuid })
    const to = configOf(dm)
    if (!sameMatrix(from, to)) ops.push({ kind: 'configureMdev', uuid: dm.uuid, from, to })
  }

  return { operations: ops, deferred, drainedQueues: drained, converged: ops.length === 0 && deferred.length === 0 }
}
