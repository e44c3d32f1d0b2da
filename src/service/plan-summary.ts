/**
 * A plan a client can read (docs/api.md (Reconcile) "Plan views"): the default answer of every call that
 * returns a plan is its summary (counts, APQN ranges, the first violations, deferrals and filtered
 * adapters), a few kilobytes even for a bring-up of 65,536 queues; `view: full` adds the full lists. The
 * summary's counts are the lengths of the full lists. Pure.
 */
import { formatApqn, parseApqnName } from '../domain/ids.js'
import type { PlanOp } from '../domain/plan.js'
import type { ApqnSetSummary, FirstOf, PlanAnswer, PlanDetail, PlanSummary, PlanView } from './types.js'

/** The views of a plan: `summary` (the default) or `full` (the summary and every list). */
export const PLAN_VIEWS: readonly PlanDetail[] = ['summary', 'full']

/** How many violations, deferrals, filtered adapters and device uuids a summary lists. */
export const SUMMARY_FIRST = 20
/** How many APQN ranges a summary lists per set. */
export const SUMMARY_RANGES = 64

/** The answer of `plan` in the requested view (default `summary`). */
export function planAnswer(plan: PlanView, view: PlanDetail = 'summary'): PlanAnswer {
  const summary = summarizePlan(plan)
  return view === 'full' ? { view, summary, ...plan } : { view: 'summary', summary }
}

/** The summary of a plan. */
export function summarizePlan(plan: PlanView): PlanSummary {
  const kinds = new Map<PlanOp['kind'], { count: number; devices: Set<string>; apqns: string[] }>()
  for (const op of plan.operations) {
    let k = kinds.get(op.kind)
    if (!k) kinds.set(op.kind, (k = { count: 0, devices: new Set(), apqns: [] }))
    k.count++
    if ('uuid' in op) k.devices.add(op.uuid)
    if ('apqns' in op) for (const a of op.apqns) k.apqns.push(a)
    if ('apqn' in op) k.apqns.push(op.apqn)
  }
  const owners = new Map<string | null, number>()
  for (const c of plan.claimedApqns) owners.set(c.currentOwner, (owners.get(c.currentOwner) ?? 0) + 1)
  return {
    operationCount: plan.operations.length,
    operations: [...kinds].map(([kind, k]) => ({
      kind,
      count: k.count,
      devices: [...k.devices].slice(0, SUMMARY_FIRST),
      deviceCount: k.devices.size,
      apqns: apqnSet(k.apqns),
    })),
    violations: firstOf(plan.violations),
    claimedApqns: {
      ...apqnSet(plan.claimedApqns.map((c) => c.apqn)),
      byOwner: [...owners].map(([currentOwner, count]) => ({ currentOwner, count })).sort((a, b) => b.count - a.count),
    },
    filteredAdapters: firstOf(plan.filteredAdapters),
    drainedQueues: apqnSet(plan.drainedQueues),
    drainPolicy: plan.drainPolicy,
    deferred: firstOf(plan.deferred),
  }
}

function firstOf<T>(list: T[]): FirstOf<T> {
  return { count: list.length, first: list.slice(0, SUMMARY_FIRST) }
}

/**
 * The ranges of a list of APQN names (`05.0004`); `count` is the list's length (a claim of the same APQN
 * by two devices counts twice, as in the full list). Names that are not APQNs are listed as they are.
 */
export function apqnSet(apqns: readonly string[]): ApqnSetSummary {
  const ids = new Set<number>()
  const other = new Set<string>()
  for (const a of apqns) {
    const p = parseApqnName(a)
    if (p) ids.add((p.apid << 16) | p.apqi)
    else other.add(a)
  }
  const sorted = [...ids].sort((a, b) => a - b)
  const ranges: string[] = []
  for (let i = 0; i < sorted.length; ) {
    let j = i
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++
    ranges.push(i === j ? name(sorted[i]!) : `${name(sorted[i]!)}-${name(sorted[j]!)}`)
    i = j + 1
  }
  ranges.push(...other)
  return { count: apqns.length, ranges: ranges.slice(0, SUMMARY_RANGES), moreRanges: Math.max(0, ranges.length - SUMMARY_RANGES) }
}

// APQI spans 16 bits in the key (ids reach 255): consecutive keys are consecutive domains of one adapter.
function name(key: number): string {
  return formatApqn(key >>> 16, key & 0xffff)
}
