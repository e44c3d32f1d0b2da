/** How a matrix device reads for people: one table row (`mdev list`) and the detailed view (`mdev get`). */
import { type Mdev, readyCondition } from '../client/api-types.js'
import { otherConditionsCell, statusCell } from './conditions.js'
import { formatApqns, formatIds, formatRanges } from './ids.js'
import { renderFields, renderTable } from './table.js'

/** Columns of {@link mdevRow}. */
export const MDEV_COLUMNS = ['UUID', 'STATE', 'STATUS', 'READY', 'CONDITIONS', 'ADAPTERS', 'DOMAINS', 'CONTROL', 'GEN', 'OWNER'] as const

/** The status of the Ready condition: `True`, `False` or `Unknown` (its reason is in STATUS). */
function readyCell(m: Mdev): string {
  return readyCondition(m)?.status ?? 'Unknown'
}

/**
 * One row of `mdev list`. STATUS: the summary of {@link statusCell}; READY: the Ready condition's status;
 * CONDITIONS: the other True conditions ({@link otherConditionsCell}). GEN is `generation/observedGeneration` when they differ. */
export function mdevRow(m: Mdev): string[] {
  const gen = m.metadata.generation
  const seen = m.status.observedGeneration
  return [
    m.metadata.uuid,
    m.spec.state,
    statusCell(m),
    readyCell(m),
    otherConditionsCell(m),
    formatRanges(m.spec.adapters),
    formatRanges(m.spec.domains),
    formatRanges(m.spec.controlDomains),
    seen === undefined || seen === gen ? String(gen) : `${gen}/${seen}`,
    m.metadata.owner ?? '-',
  ]
}

/** The detailed view of `mdev get`: metadata, spec, the observed matrix and guest matrix, conditions. */
export function describeMdev(m: Mdev): string {
  const md = m.metadata
  const st = m.status
  const labels = Object.entries(md.labels)
  let out = renderFields([
    ['UUID', md.uuid],
    ['Host', md.host],
    ['Owner', md.owner ?? '-'],
    ['Labels', labels.length ? labels.map(([k, v]) => `${k}=${v}`).join(',') : '-'],
    ['Generation', `${md.generation} (observed ${st.observedGeneration ?? '-'})`],
    ['Created', md.createdAt],
    ['Updated', md.updatedAt],
    ...(md.deletionRequestedAt ? ([['Deletion requested', `${md.deletionRequestedAt}${md.force ? ' (force)' : ''}`]] as const) : []),
  ])
  out += 'Spec:\n'
  out += renderFields(
    [
      ['State', m.spec.state],
      ['Adapters', formatIds(m.spec.adapters)],
      ['Domains', formatIds(m.spec.domains)],
      ['Control domains', formatIds(m.spec.controlDomains)],
      [
        'Drain',
        m.spec.drain
          ? `timeout ${m.spec.drain.timeoutSeconds !== undefined ? `${m.spec.drain.timeoutSeconds} s` : 'default'}, on timeout ${m.spec.drain.onTimeout ?? 'default'}`
          : 'server default',
      ],
    ],
    '  ',
  )
  out += 'Status:\n'
  out += renderFields(
    [
      ['Active', st.active === undefined ? '-' : st.active ? 'yes' : 'no'],
      ['Guest', st.guest ?? '-'],
      ['Matrix', formatApqns(st.matrix)],
      // V-20: what the guest really gets after the kernel's adapter filtering.
      ['Guest matrix', formatApqns(st.guestMatrix)],
      ['Control domains', formatIds(st.controlDomains ?? [])],
      ...(st.lostRequests ? ([['Lost requests', String(st.lostRequests)]] as const) : []),
      ...(st.draining
        ? ([
            [
              'Draining',
              Object.entries(st.draining)
                .map(([q, n]) => `${q} (${n} in flight)`)
                .join(', '),
            ],
          ] as const)
        : []),
    ],
    '  ',
  )
  const conds = st.conditions ?? []
  out += 'Conditions:\n'
  if (conds.length === 0) return `${out}  (none reported yet)\n`
  const table = renderTable(
    ['TYPE', 'STATUS', 'REASON', 'GEN', 'SINCE', 'MESSAGE'],
    conds.map((c) => [c.type, c.status, c.reason, String(c.observedGeneration), c.lastTransitionTime, c.message]),
  )
  return out + table.replace(/^(?=.)/gm, '  ')
}
