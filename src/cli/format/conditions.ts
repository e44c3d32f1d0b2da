/**
 * How a device's conditions (docs/api.md (Resources) conditions) read for people: the CONDITIONS column of
 * `mdev list` and the per-device report of a wait that timed out (`apply`, `--wait`).
 */
import { type Condition, type Mdev, readyCondition } from '../client/api-types.js'
import { renderTable } from './table.js'

/**
 * The CONDITIONS cell of `mdev list`: every condition other than Ready that is True, comma separated,
 * `Degraded` with its reason (it has several: ReconcileFailed, AdapterFiltered, NotInHostConfiguration);
 * `AdapterFiltered` only when Degraded does not already say so; `-` when none is True. READY has its own column.
 */
export function conditionsCell(m: Mdev): string {
  const on = (m.status.conditions ?? []).filter((c) => c.type !== 'Ready' && c.status === 'True')
  const degraded = on.find((c) => c.type === 'Degraded')
  const cells = on
    .filter((c) => !(c.type === 'AdapterFiltered' && degraded?.reason === 'AdapterFiltered'))
    .map((c) => (c.type === 'Degraded' ? `Degraded(${c.reason})` : c.type))
  return cells.length ? cells.join(',') : '-'
}

// The conditions a person needs to see why a device is not Ready, in this order (AdapterFiltered only when True).
const REPORTED = ['Ready', 'Progressing', 'Degraded', 'InUseByGuest', 'AdapterFiltered'] as const

/**
 * The last known conditions of a device that is not done, as an indented table (TYPE, STATUS, REASON,
 * MESSAGE): Ready, Progressing, Degraded and InUseByGuest, plus AdapterFiltered when True. `generation`
 * is the one waited for: a status older than it is said to be so. No conditions: one line saying so.
 */
export function describeConditions(m: Mdev, generation: number, indent = '    '): string {
  const conds = m.status.conditions ?? []
  const rows: Condition[] = []
  for (const type of REPORTED) {
    const c = conds.find((x) => x.type === type)
    if (c && (type !== 'AdapterFiltered' || c.status === 'True')) rows.push(c)
  }
  const seen = m.status.observedGeneration
  const stale =
    seen === undefined || seen < generation
      ? `${indent}(status of generation ${seen ?? '-'}; the reconciler has not reported generation ${generation} yet)\n`
      : ''
  if (rows.length === 0) return `${stale}${indent}(no condition reported yet)\n`
  return (
    stale +
    renderTable(
      ['TYPE', 'STATUS', 'REASON', 'MESSAGE'],
      rows.map((c) => [c.type, c.status, c.reason, c.message]),
    ).replace(/^(?=.)/gm, indent)
  )
}

/** `Ready (Active)` or `not Ready: WaitingForGuest: open by guest vm1`: the Ready condition in one phrase. */
export function readyPhrase(m: Mdev): string {
  const r = readyCondition(m)
  if (!r) return 'no Ready condition yet'
  return r.status === 'True' ? `Ready (${r.reason})` : `not Ready: ${r.reason}: ${r.message}`
}

/**
 * The STATUS cell of `mdev list`, one phrase that sums the conditions up (most telling first): `Deleting`
 * while a delete is pending; `Pending` before the first report; `Degraded (reason)` when Degraded is True
 * (reasons: ReconcileFailed, AdapterFiltered, NotInHostConfiguration), even when Ready; `Ready`;
 * `Progressing (reason)` while the reconciler works towards Ready (the reason of Ready, e.g. WaitingForGuest);
 * else `NotReady (reason)`.
 */
export function statusCell(m: Mdev): string {
  if (m.metadata.deletionRequestedAt) return 'Deleting'
  const conds = m.status.conditions ?? []
  const ready = readyCondition(m)
  if (!ready) return 'Pending'
  const degraded = conds.find((c) => c.type === 'Degraded' && c.status === 'True')
  if (degraded) return `Degraded (${degraded.reason})`
  if (ready.status === 'True') return 'Ready'
  if (conds.some((c) => c.type === 'Progressing' && c.status === 'True')) return `Progressing (${ready.reason})`
  return `NotReady (${ready.reason})`
}

/**
 * The CONDITIONS cell next to {@link statusCell}: the conditions other than Ready that are True and that the
 * status does not already name, comma separated; `-` when none.
 */
export function otherConditionsCell(m: Mdev): string {
  const status = statusCell(m)
  const named = status.startsWith('Degraded') ? ['Degraded'] : status.startsWith('Progressing') ? ['Progressing'] : []
  if (status === 'Degraded (AdapterFiltered)') named.push('AdapterFiltered')
  const rest = (m.status.conditions ?? []).filter((c) => c.type !== 'Ready' && c.status === 'True' && !named.includes(c.type)).map((c) => c.type)
  return rest.length ? rest.join(',') : '-'
}
