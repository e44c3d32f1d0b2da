/**
 * A dry-run plan for people (docs/api.md (Reconcile): the ordered operations, the APQNs the cross product pulls in
 * with their current owners, adapters a guest would lose to filtering (V-20), the host queues that would
 * be drained, and every violation with its fix).
 */
import type { Plan, PlanOp } from '../client/api-types.js'
import { formatViolations } from '../client/report-error.js'
import { formatRanges } from './ids.js'
import { renderTable } from './table.js'

interface Matrix {
  adapters: number[]
  domains: number[]
  controlDomains: number[]
}

function apqnList(apqns: unknown): string {
  const a = Array.isArray(apqns) ? (apqns as string[]) : []
  if (a.length <= 8) return a.join(' ')
  return `${a.slice(0, 8).join(' ')} ... (${a.length} APQNs)`
}

function matrixChange(from: Matrix, to: Matrix): string {
  const parts: string[] = []
  for (const [k, name] of [
    ['adapters', 'adapters'],
    ['domains', 'domains'],
    ['controlDomains', 'control domains'],
  ] as const) {
    const added = to[k].filter((i) => !from[k].includes(i))
    const removed = from[k].filter((i) => !to[k].includes(i))
    if (added.length || removed.length)
      parts.push(`${name}${added.length ? ` +${formatRanges(added)}` : ''}${removed.length ? ` -${formatRanges(removed)}` : ''}`)
  }
  return parts.join('; ') || 'no change'
}

/** One operation as a line (unknown kinds: their fields as JSON, so a newer server still reads). */
export function describeOp(op: PlanOp): string {
  switch (op.kind) {
    case 'shrinkMdev':
    case 'configureMdev':
      return `${op.uuid}: ${matrixChange(op.from, op.to)}`
    case 'removeMdev':
      return `${op.uuid}${op.guest ? ` (open by guest ${op.guest})` : ''}${op.force ? ' force' : ''}`
    case 'createMdev':
      return op.uuid
    case 'returnToHost':
    case 'takeFromHost':
      return `apmask ${op.apmask} aqmask ${op.aqmask}: ${apqnList(op.apqns)}`
    case 'drainQueues':
      return apqnList(op.apqns)
    case 'bindQueue':
      return `${op.apqn} -> ${op.driver}`
    default: {
      const { kind: _kind, ...rest } = op as Record<string, unknown>
      return JSON.stringify(rest)
    }
  }
}

/** The whole plan as text. */
export function renderPlan(plan: Plan): string {
  let out = ''
  out += plan.operations.length ? `Operations (${plan.operations.length}):\n` : 'Operations: none (already converged)\n'
  plan.operations.forEach((op, i) => {
    out += `  ${String(i + 1).padStart(2)}. ${op.kind.padEnd(14)} ${describeOp(op)}\n`
  })
  if (plan.claimedApqns.length) {
    out += `Claimed APQNs (${plan.claimedApqns.length}):\n`
    out += renderTable(
      ['APQN', 'DEVICE', 'CURRENT OWNER'],
      plan.claimedApqns.map((c) => [c.apqn, c.uuid, c.currentOwner ?? '-']),
    ).replace(/^(?=.)/gm, '  ')
  }
  if (plan.drainedQueues.length) out += `Drained queues (${plan.drainedQueues.length}): ${plan.drainedQueues.join(' ')}\n`
  if (plan.filteredAdapters.length) {
    out += 'Adapters a guest would lose to filtering (V-20):\n'
    for (const f of plan.filteredAdapters) out += `  ${f.uuid}: adapter ${f.apid} (${f.reason}): ${f.apqns.join(' ')}\n`
  }
  if (plan.deferred.length) {
    out += 'Deferred:\n'
    for (const d of plan.deferred) out += `  ${d.reason}${d.uuid ? ` ${d.uuid}` : ''}: ${d.message}\n`
  }
  out += plan.violations.length ? `Violations (${plan.violations.length}):\n${formatViolations(plan.violations)}` : 'Violations: none\n'
  return out
}
