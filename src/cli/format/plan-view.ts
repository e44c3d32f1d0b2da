/**
 * A dry-run plan for people (docs/api.md (Reconcile) "Plan views": the ordered operations, the APQNs the cross product pulls in
 * with their current owners, adapters a guest would lose to filtering (V-20), the host queues that would
 * be drained, and every violation with its fix).
 */
import type { ApqnSetSummary } from '../../service/types.js'
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

/** Lists longer than this are printed as the summary's counts and ranges, not row by row. */
const MAX_ROWS = 64

function ranges(set: ApqnSetSummary): string {
  return `${set.ranges.join(' ')}${set.moreRanges ? ` ... (${set.moreRanges} more ranges)` : ''}`
}

/**
 * The whole plan as text. A full answer is printed row by row; a summary answer, or a list too long to
 * read (more than 64 rows), is printed as the summary's counts, APQN ranges and first entries.
 */
export function renderPlan(plan: Plan): string {
  const s = plan.summary
  const full = plan.view === 'full' ? plan : null
  let out = ''
  if (!s.operationCount) out += 'Operations: none (already converged)\n'
  else if (full && full.operations.length <= MAX_ROWS) {
    out += `Operations (${full.operations.length}):\n`
    full.operations.forEach((op, i) => {
      out += `  ${String(i + 1).padStart(2)}. ${op.kind.padEnd(14)} ${describeOp(op)}\n`
    })
  } else {
    out += `Operations (${s.operationCount}, by kind in plan order):\n`
    for (const k of s.operations) {
      const devices = k.deviceCount ? ` ${k.devices.join(' ')}${k.deviceCount > k.devices.length ? ` ... (${k.deviceCount} devices)` : ''}` : ''
      const apqns = k.apqns.count ? ` APQNs ${ranges(k.apqns)}` : ''
      out += `  ${String(k.count).padStart(5)} x ${k.kind.padEnd(14)}${devices}${apqns}\n`
    }
  }
  if (full?.claimedApqns.length && full.claimedApqns.length <= MAX_ROWS) {
    out += `Claimed APQNs (${full.claimedApqns.length}):\n`
    out += renderTable(
      ['APQN', 'DEVICE', 'CURRENT OWNER'],
      full.claimedApqns.map((c) => [c.apqn, c.uuid, c.currentOwner ?? '-']),
    ).replace(/^(?=.)/gm, '  ')
  } else if (s.claimedApqns.count) {
    const owners = s.claimedApqns.byOwner.map((o) => `${o.currentOwner ?? '-'} ${o.count}`).join(', ')
    out += `Claimed APQNs (${s.claimedApqns.count}; by current owner: ${owners}): ${ranges(s.claimedApqns)}\n`
  }
  if (full?.drainedQueues.length && full.drainedQueues.length <= MAX_ROWS)
    out += `Drained queues (${full.drainedQueues.length}): ${full.drainedQueues.join(' ')}\n`
  else if (s.drainedQueues.count) out += `Drained queues (${s.drainedQueues.count}): ${ranges(s.drainedQueues)}\n`
  const dp = s.drainPolicy
  if (dp) {
    const who = [
      dp.deviceCount ? `devices ${dp.devices.join(' ')}${dp.deviceCount > dp.devices.length ? ' ...' : ''}` : '',
      dp.defaultApplies ? 'the default' : '',
    ]
    out += `Drain policy: wait up to ${dp.timeoutSeconds} s, then ${dp.onTimeout === 'wait' ? 'keep waiting (no request lost)' : 'flush (requests still queued are lost)'}; from ${who.filter(Boolean).join(' and ')}\n`
  }
  const filtered = full ? full.filteredAdapters : s.filteredAdapters.first
  if (filtered.length) {
    out += `Adapters a guest would lose to filtering (V-20)${filtered.length < s.filteredAdapters.count ? `, the first ${filtered.length} of ${s.filteredAdapters.count}` : ''}:\n`
    for (const f of filtered.slice(0, MAX_ROWS)) out += `  ${f.uuid}: adapter ${f.apid} (${f.reason}): ${f.apqns.join(' ')}\n`
  }
  const deferred = full ? full.deferred : s.deferred.first
  if (deferred.length) {
    out += 'Deferred:\n'
    for (const d of deferred.slice(0, MAX_ROWS)) out += `  ${d.reason}${d.uuid ? ` ${d.uuid}` : ''}: ${d.message}\n`
  }
  const violations = full ? full.violations : s.violations.first
  if (!s.violations.count) out += 'Violations: none\n'
  else {
    const shown = violations.slice(0, MAX_ROWS)
    out += `Violations (${s.violations.count}${shown.length < s.violations.count ? `, the first ${shown.length}` : ''}):\n${formatViolations(shown)}`
  }
  return out
}
