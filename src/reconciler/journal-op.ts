/**
 * How a plan step is written to the journal. Steps that move queues (`returnToHost`, `drainQueues`,
 * `takeFromHost`) list every APQN they move: 65,536 of them when a whole large host changes hands, about
 * 650 KB of JSON per step that the journal would store and the store's client would copy. The journal keeps
 * them as rectangles instead, adapters x domains as two masks (one rectangle for a whole host), which is what
 * crash recovery reads back (the queues a cut drain took offline).
 */
import { formatApqn, parseApqnName } from '../domain/ids.js'
import { Mask, parseAbsoluteMask } from '../domain/mask.js'
import type { PlanOp } from '../domain/plan.js'

/** A set of APQNs as rectangles: each adapter of `adapters` with each domain of `domains` (masks in kernel text). */
export interface ApqnRects {
  rects: Array<{ adapters: string; domains: string }>
  count: number
}

/** The journal form of a step: the step itself, with any APQN list replaced by {@link ApqnRects}. */
export function journalOperation(op: PlanOp): Record<string, unknown> {
  if (!('apqns' in op)) return { ...op }
  const { apqns, ...rest } = op
  return { ...rest, queues: toRects(apqns) }
}

/**
 * The APQNs of a journaled `drainQueues` step (empty for any other step or a malformed entry). Reads both the
 * rectangles and the plain `apqns` list that earlier versions journaled.
 */
export function drainedApqns(operation: Record<string, unknown>): string[] {
  if (operation.kind !== 'drainQueues') return []
  if (Array.isArray(operation.apqns)) return operation.apqns.map(String)
  const rects = (operation.queues as Partial<ApqnRects> | undefined)?.rects
  if (!Array.isArray(rects)) return []
  const out: string[] = []
  for (const r of rects) {
    const a = parseAbsoluteMask(String(r?.adapters))
    const d = parseAbsoluteMask(String(r?.domains))
    if (!a.ok || !d.ok) continue
    for (const apid of a.mask.ids()) for (const apqi of d.mask.ids()) out.push(formatApqn(apid, apqi))
  }
  return out
}

/** Groups APQNs by their adapter's domain set: adapters with the same domains share one rectangle. */
function toRects(apqns: string[]): ApqnRects {
  const domainsOf = new Map<number, number[]>()
  for (const name of apqns) {
    const q = parseApqnName(name)
    if (!q) continue
    let ds = domainsOf.get(q.apid)
    if (!ds) domainsOf.set(q.apid, (ds = []))
    ds.push(q.apqi)
  }
  const byDomains = new Map<string, number[]>()
  for (const [apid, ds] of domainsOf) {
    const key = Mask.of(ds).toString()
    let as = byDomains.get(key)
    if (!as) byDomains.set(key, (as = []))
    as.push(apid)
  }
  return { rects: [...byDomains].map(([domains, as]) => ({ adapters: Mask.of(as).toString(), domains })), count: apqns.length }
}
