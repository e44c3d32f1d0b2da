/**
 * A host's whole desired state (docs/api.md (Reconcile)): the declarative apply of a document and the
 * dry-run plan of a document or of one device change.
 */
import { randomUUID } from 'node:crypto'
import { ApmatrixError, type Violation } from '../domain/errors.js'
import { normalizeSpec, normalizeUuid, type MdevSpec } from '../domain/mdev.js'
import type { EventInput, MdevRecord, Store } from '../store/index.js'
import { newViolations, parseMaskInput, rejection, type HostDesired } from './admission.js'
import type { HostAccess } from './host-access.js'
import { desiredOf, loadStored, planned, withMdev, type StoredState } from './host-state.js'
import { checkLabels, checkOwner } from './mdev-input.js'
import type { MutationRunner } from './mutation-runner.js'
import { planAnswer } from './plan-summary.js'
import { planView } from './plan-view.js'
import { precondition } from './preconditions.js'
import { masksChangedEvent, mdevEvent } from './resource-events.js'
import type { ApplyResult, CallContext, DesiredInput, MdevCreateInput, Mutation, PlanAnswer, PlanDetail, PlanView } from './types.js'

/** A device a desired document lists, checked. */
interface ListedMdev {
  uuid: string
  spec: MdevSpec
  labels: Record<string, string>
  owner: string | null
}

/** The desired-state operations of the service. */
export class DesiredState {
  constructor(
    private readonly store: Store,
    private readonly access: HostAccess,
    private readonly runner: MutationRunner,
  ) {}

  /**
   * Declarative apply of a host's whole desired state, atomically: masks (absent = unchanged), the listed
   * devices created or updated, and devices of the same `owner` that the document omits deleted.
   * Every violation across the whole document is reported. Returns the plan and the new generations.
   */
  async applyDesired(host: string, doc: DesiredInput, ctx: CallContext = {}): Promise<Mutation<ApplyResult>> {
    return this.runner.run<ApplyResult>(ctx, {
      host,
      action: 'desired.apply',
      target: `hosts/${host}/desired`,
      request: doc,
      withPlan: (result, plan) => ({ ...result, plan }),
      prepare: (state, stored) => {
        const { after, listed } = desiredAfter(state, stored, doc)
        return {
          after,
          focus: new Set(listed.map((m) => m.uuid)),
          apply: async (tx) => {
            const events: EventInput[] = []
            const mdevs: ApplyResult['mdevs'] = []
            const written: MdevRecord[] = []
            const masks = await tx.masks.set(
              host,
              { apmask: after.apmask.toString(), aqmask: after.aqmask.toString() },
              precondition(ctx, stored.masks?.resourceVersion),
            )
            // Also a first set of masks that were only adopted (generation 0 -> 1): the stored row changed.
            if (masks.resourceVersion !== stored.masks?.resourceVersion) events.push(masksChangedEvent(host, masks))
            for (const m of listed) {
              const cur = stored.mdevs.find((r) => r.uuid === m.uuid)
              if (!cur) {
                const { mdev } = await tx.mdevs.create({ host, uuid: m.uuid, spec: m.spec, labels: m.labels, owner: m.owner })
                events.push(mdevEvent(mdev, 'MdevDefined', 'defined by desired-state apply'))
                mdevs.push({ uuid: m.uuid, generation: mdev.generation, resourceVersion: mdev.resourceVersion, action: 'created' })
                continue
              }
              const rec = await tx.mdevs.update(host, m.uuid, { spec: m.spec, labels: m.labels, owner: m.owner }, {}, cur)
              const changed = rec.resourceVersion !== cur.resourceVersion
              if (changed) {
                events.push(mdevEvent(rec, 'MdevUpdated', `updated by desired-state apply (generation ${rec.generation})`))
                written.push(rec)
              }
              mdevs.push({ uuid: m.uuid, generation: rec.generation, resourceVersion: rec.resourceVersion, action: changed ? 'updated' : 'unchanged' })
            }
            for (const m of after.mdevs) {
              const cur = stored.mdevs.find((r) => r.uuid === m.uuid)
              if (!cur || cur.deletionRequestedAt || !m.deleting) continue
              const rec = await tx.mdevs.markDeleted(host, m.uuid)
              events.push(mdevEvent(rec, 'MdevUndefined', 'omitted from the desired-state document of its owner'))
              mdevs.push({ uuid: m.uuid, generation: rec.generation, resourceVersion: rec.resourceVersion, action: 'deleted' })
            }
            // The plan is added by the runner (withPlan), outside the transaction.
            const result: ApplyResult = {
              plan: planAnswer(emptyPlan()),
              masks: { generation: masks.generation, resourceVersion: masks.resourceVersion },
              mdevs,
            }
            return { result, events, detail: { mdevs: mdevs.length }, written }
          },
        }
      },
    })
  }

  /**
   * Dry-run plan of a proposed desired document, or of a single device change (`{uuid?, spec, labels?,
   * owner?}`: create or replace), in `view` (default summary). Never stores. Violations are returned in the plan, not thrown;
   * only an unknown host (NOT_FOUND) or an unreachable store or bus (UNAVAILABLE) throw.
   */
  async plan(host: string, doc: DesiredInput | MdevCreateInput, view?: PlanDetail): Promise<PlanAnswer> {
    const h = this.access.managed(host)
    const [observed, guests] = await Promise.all([this.access.observe(h), h.guests()])
    const stored = await loadStored(this.store, host)
    const state = desiredOf(observed, stored)
    try {
      let after: HostDesired
      let focus: Set<string> | undefined
      if ('spec' in doc) {
        const uuid = doc.uuid === undefined ? randomUUID() : normalizeUuid(doc.uuid)
        const spec = normalizeSpec(doc.spec, state.limits)
        after = withMdev(state, planned(uuid, spec))
        focus = new Set([uuid])
      } else {
        const r = desiredAfter(state, stored, doc)
        after = r.after
        focus = new Set(r.listed.map((m) => m.uuid))
      }
      return planAnswer(planView(after, observed, guests, newViolations(state, after), focus, this.runner.drainDefault), view)
    } catch (e) {
      if (e instanceof ApmatrixError && e.violations.length && e.code !== 'UNAVAILABLE') return planAnswer({ ...emptyPlan(), violations: e.violations }, view)
      throw e
    }
  }
}

/** A plan with nothing in it. */
function emptyPlan(): PlanView {
  return { operations: [], violations: [], claimedApqns: [], filteredAdapters: [], drainedQueues: [], drainPolicy: null, deferred: [] }
}

/** The state after a desired document, and the devices it lists (checked). Collects every syntax violation. */
function desiredAfter(state: HostDesired, stored: StoredState, doc: DesiredInput): { after: HostDesired; listed: ListedMdev[] } {
  const violations: Violation[] = []
  const collect = <T>(fn: () => T, fallback: T): T => {
    try {
      return fn()
    } catch (e) {
      if (!(e instanceof ApmatrixError) || !e.violations.length) throw e
      violations.push(...e.violations)
      return fallback
    }
  }
  const apmask = doc.masks?.apmask === undefined ? state.apmask : collect(() => parseMaskInput(doc.masks!.apmask!, state.apmask, 'masks.apmask'), state.apmask)
  const aqmask = doc.masks?.aqmask === undefined ? state.aqmask : collect(() => parseMaskInput(doc.masks!.aqmask!, state.aqmask, 'masks.aqmask'), state.aqmask)
  const owner = doc.owner === undefined || doc.owner === null ? null : collect(() => checkOwner(doc.owner), null)
  const listed: ListedMdev[] = []
  const seen = new Set<string>()
  ;(doc.mdevs ?? []).forEach((m, i) => {
    const uuid = collect(() => normalizeUuid(m.uuid, `mdevs[${i}].uuid`), '')
    const spec = collect(() => normalizeSpec(m.spec, state.limits, `mdevs[${i}].spec`), null)
    if (!uuid || !spec) return
    if (seen.has(uuid)) {
      violations.push({ rule: 'INVALID_ARGUMENT', field: `mdevs[${i}].uuid`, message: `matrix device ${uuid} is listed more than once` })
      return
    }
    seen.add(uuid)
    if (stored.mdevs.find((r) => r.uuid === uuid)?.deletionRequestedAt) {
      violations.push({
        rule: 'INVALID_ARGUMENT',
        field: `mdevs[${i}].uuid`,
        message: `matrix device ${uuid} is being deleted`,
        fix: 'wait until it is gone, or use another uuid',
      })
      return
    }
    const labels = collect(() => checkLabels(m.labels ?? {}), {})
    const mOwner = m.owner === undefined ? owner : collect(() => checkOwner(m.owner), null)
    listed.push({ uuid, spec, labels, owner: mOwner })
  })
  if (violations.length) throw rejection(violations, 'desired state')
  const byUuid = new Map(listed.map((m) => [m.uuid, m]))
  const storedByUuid = new Map(stored.mdevs.map((r) => [r.uuid, r]))
  // Unlisted devices first, listed ones last: conflicts are reported against the devices that stay.
  const others = state.mdevs
    .filter((m) => !byUuid.has(m.uuid))
    .map((m) => (storedByUuid.get(m.uuid)!.owner === owner && !m.deleting ? { ...m, deleting: true } : m))
  const after: HostDesired = { ...state, apmask, aqmask, mdevs: [...others, ...listed.map((m) => planned(m.uuid, m.spec))] }
  return { after, listed }
}
