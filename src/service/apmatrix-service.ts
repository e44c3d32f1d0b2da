/**
 * The application service (docs/api.md "service layer"): the one place that REST and gRPC call.
 * Inputs and outputs are plain objects (types.ts); every failure is an ApmatrixError with a stable code.
 *
 * Every mutating operation: reads the bus (foreign devices, limits) outside the transaction, then in ONE
 * store transaction: idempotency check, host lock, whole-host admission (every violation reported),
 * the change with its optimistic-concurrency precondition, the audit record and the events. Only after
 * the commit is the reconciler nudged. `dryRun` runs the same admission and returns the plan instead.
 */
import { randomUUID } from 'node:crypto'
import { ApmatrixError, type Violation } from '../domain/errors.js'
import { parseId } from '../domain/ids.js'
import { Mask } from '../domain/mask.js'
import { normalizeSpec, normalizeUuid, type HostLimits, type MdevSpec } from '../domain/mdev.js'
import type { ObservedHost, ObservedTopology } from '../domain/observed.js'
import type { PlannedMdev } from '../domain/plan.js'
import type { HostRegistry, ManagedHost, ReconcileTrigger } from '../hosts/managed-host.js'
import { EXPORT_FORMATS, exportMatrixDevice, IMPORT_FORMATS, importMatrixDevices } from '../interop/formats.js'
import type { EventInput, MdevRecord, Repos, Store } from '../store/index.js'
import { decodePageToken, encodePageToken, pageSize } from '../store/page-token.js'
import { admit, newViolations, parseMaskInput, rejection, type HostDesired } from './admission.js'
import { planView } from './plan-view.js'
import { requestHash } from './request-hash.js'
import { fromSysfsError } from './sysfs-errors.js'
import type {
  BusMdevView,
  AdapterView,
  ApplyResult,
  CallContext,
  DesiredInput,
  DomainsView,
  ExportView,
  HardwareInput,
  HostView,
  ImportAction,
  ImportOptions,
  ImportView,
  MasksInput,
  MasksView,
  MdevCreateInput,
  MdevQuery,
  MdevReplaceInput,
  MdevView,
  Mutation,
  Page,
  PlanView,
  QueueQuery,
  QueueView,
} from './types.js'
import { masksView, mdevView, readMask } from './views.js'
import { clip } from '../domain/text.js'

/** Constructor arguments of {@link ApmatrixService}. */
export interface ApmatrixServiceOptions {
  store: Store
  hosts: HostRegistry
  reconciler: ReconcileTrigger
  clock?: () => Date
  /** How long an idempotency key is remembered (default 24 h). */
  idempotencyTtlMs?: number
}

const FULL = Mask.full().toString()

/** What a mutation prepares from the current state: the state after it, and how to store it. */
interface Prepared<T> {
  after: HostDesired
  /** Devices the request touches (plan focus). */
  focus: Set<string>
  /** Stores the change; `plan` is the plan of `after` against the bus read for this request. */
  apply(tx: Repos, plan: PlanView): Promise<{ result: T; created?: boolean; events: EventInput[]; detail?: Record<string, unknown> }>
}

interface Operation<T> {
  host: string
  action: string
  target: string
  /** The request, hashed for idempotency keys. */
  request?: unknown
  prepare(state: HostDesired, records: StoredState): Prepared<T>
}

interface StoredState {
  masks: { apmask: string; aqmask: string; resourceVersion: string } | null
  mdevs: MdevRecord[]
}

/** The application service. All methods may throw ApmatrixError; UNAVAILABLE when the store or a host's bus is down. */
export class ApmatrixService {
  private readonly store: Store
  private readonly hosts: HostRegistry
  private readonly reconciler: ReconcileTrigger
  private readonly clock: () => Date
  private readonly idempotencyTtlMs: number

  constructor(opts: ApmatrixServiceOptions) {
    if (!opts?.store || !opts.hosts || !opts.reconciler) throw new TypeError('ApmatrixService needs store, hosts and reconciler')
    this.store = opts.store
    this.hosts = opts.hosts
    this.reconciler = opts.reconciler
    this.clock = opts.clock ?? (() => new Date())
    this.idempotencyTtlMs = opts.idempotencyTtlMs ?? 24 * 3600_000
  }

  // ---- operations ------------------------------------------------------------------------------

  /** Readiness: resolves when the store answers; UNAVAILABLE otherwise. */
  ping(): Promise<void> {
    return this.store.ping()
  }

  /**
   * Registers every host of the registry in the store (identity, features, maxima, bootId). First contact
   * changes nothing (docs/api.md (Resources) "Host masks"): a host without stored masks adopts the masks it has now
   * as the desired ones (generation 0, event `MasksAdopted`), so the first reconcile hands no queue back to
   * the host drivers that an admin set aside; foreign matrix devices stay as they are. Idempotent; call at
   * start and after a reboot.
   */
  async syncHosts(): Promise<HostView[]> {
    const out: HostView[] = []
    for (const h of this.hosts.list()) {
      const observed = await this.registerHost(h)
      // In one transaction: a replica starting at the same time cannot overwrite masks set meanwhile.
      await this.store.transaction(async (tx) => {
        const { outcome, record } = await tx.masks.adopt(h.name, { apmask: observed.apmask, aqmask: observed.aqmask })
        if (outcome !== 'created') return
        const foreign = observed.mdevs.length
        await tx.events.append({
          host: h.name,
          kind: 'masks',
          name: 'masks',
          type: 'MasksAdopted',
          actor: 'apmatrix',
          message: `first contact with ${h.name}: its masks (apmask ${record.apmask}, aqmask ${record.aqmask}) are adopted as the desired ones; ${foreign} matrix device${foreign === 1 ? '' : 's'} on the bus left as ${foreign === 1 ? 'it is' : 'they are'}; nothing is written to the host until a desired state is given`,
          data: { apmask: record.apmask, aqmask: record.aqmask, generation: record.generation, foreignMdevs: observed.mdevs.map((m) => m.uuid) },
        })
      })
      out.push(await this.getHost(h.name))
    }
    return out
  }

  /** Every managed host. */
  async listHosts(): Promise<HostView[]> {
    return Promise.all(this.hosts.list().map((h) => this.getHost(h.name)))
  }

  /** One host: identity from the host, features and maxima from its bus (the store's copy if the bus is down). NOT_FOUND. */
  async getHost(name: string): Promise<HostView> {
    const h = this.managed(name)
    const info = await h.info()
    let features: string[]
    let maxAdapterId: number
    let maxDomainId: number
    try {
      ;({ features, maxAdapterId, maxDomainId } = await this.observe(h))
    } catch (e) {
      const rec = await this.store.hosts.get(name).catch(() => {
        throw e
      })
      ;({ features, maxAdapterId, maxDomainId } = rec)
    }
    const lease = await this.store.leases.get(name)
    return {
      name,
      machineId: info.machineId,
      driver: info.driver,
      profile: info.profile,
      features: [...features].sort(),
      maxAdapterId,
      maxDomainId,
      bootId: info.bootId,
      leaseHolder: lease && lease.expiresAt > this.clock() ? lease.holder : null,
    }
  }

  /** Adapters as the bus shows them (lszcrypt's cards). */
  async listAdapters(host: string): Promise<{ items: AdapterView[] }> {
    return { items: (await this.inventory(this.managed(host))).adapters }
  }

  /** Queues, filtered (all filters must match) and paged by APQN. INVALID_ARGUMENT for bad filters or tokens. */
  async listQueues(host: string, q: QueueQuery = {}): Promise<Page<QueueView>> {
    const limit = pageSize(q.limit)
    const after = q.pageToken ? decodePageToken(q.pageToken) : undefined
    const adapter = q.adapter === undefined ? undefined : parseId(q.adapter, 'adapter')
    const domain = q.domain === undefined ? undefined : parseId(q.domain, 'domain')
    const owner = q.owner === undefined || q.owner === 'none' ? q.owner : normalizeUuid(q.owner, 'owner')
    const all = (await this.inventory(this.managed(host))).queues
      .filter(
        (x) =>
          (adapter === undefined || x.apid === adapter) &&
          (domain === undefined || x.apqi === domain) &&
          (q.driver === undefined || x.driver === q.driver) &&
          (owner === undefined || (owner === 'none' ? x.owner === null : x.owner === owner)) &&
          (after === undefined || x.apqn > after),
      )
      .sort((a, b) => (a.apqn < b.apqn ? -1 : 1))
    const items = all.slice(0, limit)
    return all.length > limit ? { items, nextPageToken: encodePageToken(items[items.length - 1]!.apqn) } : { items }
  }

  /**
   * Every matrix device on the bus, ours and foreign ones (created by root, mdevctl or libvirt), with who has
   * it open; foreign ones can be adopted with an import. NOT_FOUND, UNAVAILABLE.
   */
  async listBusMdevs(host: string): Promise<{ items: BusMdevView[] }> {
    const h = this.managed(host)
    const [o, guests, stored] = await Promise.all([this.observe(h), h.guests(), this.store.mdevs.listAll(host)])
    const ours = new Set(stored.map((m) => m.uuid))
    const guestOf = new Map(guests.map((g) => [g.uuid, g.guest]))
    return {
      items: o.mdevs.map((m) => ({
        uuid: m.uuid,
        managed: ours.has(m.uuid),
        adapters: m.adapters,
        domains: m.domains,
        controlDomains: m.controlDomains,
        matrix: m.matrix,
        guestMatrix: m.guestMatrix,
        guest: guestOf.get(m.uuid) ?? null,
      })),
    }
  }

  /** Usage and control domains of the host configuration (QCI). */
  async listDomains(host: string): Promise<DomainsView> {
    const o = await this.observe(this.managed(host))
    const aq = readMask(o.aqmask)
    return { usageDomains: o.config.domains, controlDomains: o.config.controlDomains, hostDomains: o.config.domains.filter((d) => aq.has(d)) }
  }

  /** Desired masks (spec) and the masks on the bus (status; null if the bus cannot be read). */
  async getMasks(host: string): Promise<MasksView> {
    const h = this.managed(host)
    const rec = await this.store.masks.get(host)
    const observed = await this.observe(h).then(
      (o) => ({ apmask: o.apmask, aqmask: o.aqmask, at: this.clock() }),
      () => null,
    )
    return masksView(host, rec, observed)
  }

  /**
   * Changes the desired masks. Each of apmask/aqmask: any kernel syntax (relative terms apply to the
   * current DESIRED mask) or an array of ids; absent = unchanged. BUSY (rule 4, B-24) for every APQN a
   * matrix device (ours or foreign) holds that the change would hand back to the host.
   */
  async setMasks(host: string, input: MasksInput, ctx: CallContext = {}): Promise<Mutation<MasksView>> {
    const out = await this.mutate<{ generation: number }>(ctx, {
      host,
      action: 'masks.set',
      target: `hosts/${host}/masks`,
      request: input,
      prepare: (state, stored) => {
        const violations: Violation[] = []
        let errno: ApmatrixError['errno']
        const parse = (v: MasksInput['apmask'], cur: Mask, field: string) => {
          if (v === undefined) return cur
          try {
            return parseMaskInput(v, cur, field)
          } catch (e) {
            if (!(e instanceof ApmatrixError)) throw e
            violations.push(...e.violations)
            errno ??= e.errno
            return cur
          }
        }
        const apmask = parse(input.apmask, state.apmask, 'apmask')
        const aqmask = parse(input.aqmask, state.aqmask, 'aqmask')
        if (violations.length) throw rejection(violations, 'masks', errno)
        const pre = precondition(ctx).expectedResourceVersion
        if (pre !== undefined && pre !== stored.masks?.resourceVersion) {
          throw new ApmatrixError('CONFLICT', `masks of ${host} have resourceVersion ${stored.masks?.resourceVersion ?? '(none)'}, not ${pre}`)
        }
        return {
          after: { ...state, apmask, aqmask },
          focus: new Set(),
          apply: async (tx) => {
            const rec = await tx.masks.set(host, { apmask: apmask.toString(), aqmask: aqmask.toString() }, precondition(ctx))
            const changed = !state.apmask.equals(apmask) || !state.aqmask.equals(aqmask)
            return {
              result: { generation: rec.generation },
              events: changed
                ? [
                    {
                      host,
                      kind: 'masks',
                      name: 'masks',
                      type: 'MasksChanged',
                      message: `apmask ${rec.apmask} aqmask ${rec.aqmask}`,
                      data: { generation: rec.generation },
                    },
                  ]
                : [],
            }
          },
        }
      },
    })
    if (out.dryRun) return out
    return { dryRun: false, result: await this.getMasks(host) }
  }

  /**
   * Creates a matrix device; `uuid` is generated when absent. Idempotent on uuid: the same spec again
   * returns the stored object (`created: false`), another spec is ALREADY_EXISTS. Admission over the
   * whole host (APQN_IN_USE, APQN_RESERVED, OUT_OF_RANGE, INVALID_ARGUMENT). Honours idempotencyKey.
   */
  async createMdev(host: string, input: MdevCreateInput, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    const uuid = input.uuid === undefined ? randomUUID() : normalizeUuid(input.uuid)
    return this.mutate<MdevView>(ctx, {
      host,
      action: 'mdev.create',
      target: `hosts/${host}/mdevs/${uuid}`,
      request: input,
      prepare: (state, stored) => {
        const spec = normalizeSpec(input.spec, state.limits)
        const labels = checkLabels(input.labels ?? {})
        const owner = input.owner === undefined ? null : checkOwner(input.owner)
        const existing = stored.mdevs.find((m) => m.uuid === uuid)
        if (existing) {
          if (existing.deletionRequestedAt) throw new ApmatrixError('ALREADY_EXISTS', `matrix device ${uuid} exists and is being deleted`)
          if (!sameSpec(existing.spec, spec)) throw new ApmatrixError('ALREADY_EXISTS', `matrix device ${uuid} already exists with a different spec`)
          return { after: state, focus: new Set([uuid]), apply: async () => ({ result: mdevView(existing), created: false, events: [] }) }
        }
        return {
          after: withMdev(state, planned(uuid, spec)),
          focus: new Set([uuid]),
          apply: async (tx) => {
            const { mdev, created } = await tx.mdevs.create({ host, uuid, spec, labels, owner })
            return { result: mdevView(mdev), created, events: created ? [mdevEvent(mdev, 'MdevDefined', 'defined')] : [] }
          },
        }
      },
    })
  }

  /** One matrix device. NOT_FOUND. */
  async getMdev(host: string, uuid: string): Promise<MdevView> {
    this.managed(host)
    return mdevView(await this.store.mdevs.get(host, normalizeUuid(uuid)))
  }

  /** A page of a host's matrix devices, by uuid. */
  async listMdevs(host: string, q: MdevQuery = {}): Promise<Page<MdevView>> {
    this.managed(host)
    const page = await this.store.mdevs.list(host, q)
    return { items: page.items.map(mdevView), ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}) }
  }

  /** Replaces spec, labels and owner (absent labels = none, absent owner = none). NOT_FOUND, CONFLICT (ifMatch), admission codes. */
  async replaceMdev(host: string, uuid: string, input: MdevReplaceInput, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    const id = normalizeUuid(uuid)
    return this.updateMdev(host, id, ctx, 'mdev.replace', input, () => ({ spec: input.spec, labels: input.labels ?? {}, owner: input.owner ?? null }))
  }

  /**
   * JSON merge patch (RFC 7396) of the object: only `spec`, `metadata.labels` and `metadata.owner`
   * (also accepted at the top level: `labels`, `owner`) may change; anything else is INVALID_ARGUMENT.
   */
  async patchMdev(host: string, uuid: string, patch: unknown, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    const id = normalizeUuid(uuid)
    if (!isPlainObject(patch)) throw invalid('patch', 'a merge patch must be a JSON object')
    const bad: string[] = []
    for (const k of Object.keys(patch)) if (!['spec', 'metadata', 'labels', 'owner'].includes(k)) bad.push(k)
    const meta = patch.metadata
    if (meta !== undefined && meta !== null && !isPlainObject(meta)) bad.push('metadata')
    if (isPlainObject(meta)) for (const k of Object.keys(meta)) if (!['labels', 'owner'].includes(k)) bad.push(`metadata.${k}`)
    if (patch.spec === null) bad.push('spec (cannot be removed)')
    if (bad.length) {
      const violations = bad.map((f) => ({
        rule: 'INVALID_ARGUMENT' as const,
        field: f,
        message: `${f} cannot be changed by a patch (only spec, labels, owner)`,
      }))
      throw new ApmatrixError('INVALID_ARGUMENT', `patch changes read-only fields: ${bad.join(', ')}`, { violations })
    }
    const labelsPatch = isPlainObject(meta) && 'labels' in meta ? meta.labels : patch.labels
    const ownerPatch = isPlainObject(meta) && 'owner' in meta ? meta.owner : patch.owner
    return this.updateMdev(host, id, ctx, 'mdev.patch', patch, (cur) => ({
      spec: patch.spec === undefined ? cur.spec : mergeFlat(cur.spec, patch.spec),
      labels: labelsPatch === undefined ? cur.labels : labelsPatch === null ? {} : mergeFlat(cur.labels, labelsPatch),
      owner: ownerPatch === undefined ? cur.owner : (ownerPatch as string | null),
    }))
  }

  /**
   * Requests deletion: marks the device; the reconciler removes it from the bus (waiting for a guest to
   * close it unless `force`, V-29) and then the object. Idempotent. NOT_FOUND, CONFLICT (ifMatch).
   */
  async deleteMdev(host: string, uuid: string, ctx: CallContext & { force?: boolean } = {}): Promise<Mutation<MdevView>> {
    const id = normalizeUuid(uuid)
    return this.mutate<MdevView>(ctx, {
      host,
      action: 'mdev.delete',
      target: `hosts/${host}/mdevs/${id}`,
      prepare: (state, stored) => {
        const cur = mustFind(stored, host, id)
        checkIfMatch(ctx, cur)
        return {
          after: { ...state, mdevs: state.mdevs.map((m) => (m.uuid === id ? { ...m, deleting: true, force: m.force || !!ctx.force } : m)) },
          focus: new Set([id]),
          apply: async (tx) => {
            const rec = await tx.mdevs.markDeleted(host, id, { force: !!ctx.force, ...precondition(ctx) })
            const changed = !cur.deletionRequestedAt || rec.force !== cur.force
            return {
              result: mdevView(rec),
              events: changed ? [mdevEvent(rec, 'MdevUndefined', `deletion requested${rec.force ? ' (force)' : ''}`)] : [],
              detail: { force: rec.force },
            }
          },
        }
      },
    })
  }

  /**
   * Declarative apply of a host's whole desired state, atomically: masks (absent = unchanged), the listed
   * devices created or updated, and devices of the same `owner` that the document omits deleted.
   * Every violation across the whole document is reported. Returns the plan and the new generations.
   */
  async applyDesired(host: string, doc: DesiredInput, ctx: CallContext = {}): Promise<Mutation<ApplyResult>> {
    return this.mutate<ApplyResult>(ctx, {
      host,
      action: 'desired.apply',
      target: `hosts/${host}/desired`,
      request: doc,
      prepare: (state, stored) => {
        const { after, listed } = this.desiredAfter(state, stored, doc)
        const focus = new Set(listed.map((m) => m.uuid))
        return {
          after,
          focus,
          apply: async (tx, plan) => {
            const events: EventInput[] = []
            const result: ApplyResult = { plan, masks: { generation: 0, resourceVersion: '' }, mdevs: [] }
            const masks = await tx.masks.set(host, { apmask: after.apmask.toString(), aqmask: after.aqmask.toString() }, precondition(ctx))
            if (!state.apmask.equals(after.apmask) || !state.aqmask.equals(after.aqmask)) {
              events.push({
                host,
                kind: 'masks',
                name: 'masks',
                type: 'MasksChanged',
                message: `apmask ${masks.apmask} aqmask ${masks.aqmask}`,
                data: { generation: masks.generation },
              })
            }
            result.masks = { generation: masks.generation, resourceVersion: masks.resourceVersion }
            for (const m of listed) {
              const cur = stored.mdevs.find((r) => r.uuid === m.uuid)
              if (!cur) {
                const { mdev } = await tx.mdevs.create({ host, uuid: m.uuid, spec: m.spec, labels: m.labels, owner: m.owner })
                events.push(mdevEvent(mdev, 'MdevDefined', 'defined by desired-state apply'))
                result.mdevs.push({ uuid: m.uuid, generation: mdev.generation, resourceVersion: mdev.resourceVersion, action: 'created' })
                continue
              }
              const rec = await tx.mdevs.update(host, m.uuid, { spec: m.spec, labels: m.labels, owner: m.owner })
              const changed = rec.resourceVersion !== cur.resourceVersion
              if (changed) events.push(mdevEvent(rec, 'MdevUpdated', `updated by desired-state apply (generation ${rec.generation})`))
              result.mdevs.push({ uuid: m.uuid, generation: rec.generation, resourceVersion: rec.resourceVersion, action: changed ? 'updated' : 'unchanged' })
            }
            for (const m of after.mdevs) {
              const cur = stored.mdevs.find((r) => r.uuid === m.uuid)
              if (!cur || cur.deletionRequestedAt || !m.deleting) continue
              const rec = await tx.mdevs.markDeleted(host, m.uuid)
              events.push(mdevEvent(rec, 'MdevUndefined', 'omitted from the desired-state document of its owner'))
              result.mdevs.push({ uuid: m.uuid, generation: rec.generation, resourceVersion: rec.resourceVersion, action: 'deleted' })
            }
            return { result, events, detail: { mdevs: result.mdevs.length } }
          },
        }
      },
    })
  }

  /**
   * Dry-run plan of a proposed desired document, or of a single device change (`{uuid?, spec, labels?,
   * owner?}`: create or replace). Never stores. Violations are returned in the plan, not thrown;
   * only an unknown host (NOT_FOUND) or an unreachable store or bus (UNAVAILABLE) throw.
   */
  async plan(host: string, doc: DesiredInput | MdevCreateInput): Promise<PlanView> {
    const h = this.managed(host)
    const [observed, guests] = await Promise.all([this.observe(h), h.guests()])
    const stored = await this.loadStored(this.store, host)
    const state = this.desiredOf(observed, stored)
    try {
      let after: HostDesired
      let focus: Set<string> | undefined
      if ('spec' in doc) {
        const uuid = doc.uuid === undefined ? randomUUID() : normalizeUuid(doc.uuid)
        const spec = normalizeSpec(doc.spec, state.limits)
        after = withMdev(state, planned(uuid, spec))
        focus = new Set([uuid])
      } else {
        const r = this.desiredAfter(state, stored, doc)
        after = r.after
        focus = new Set(r.listed.map((m) => m.uuid))
      }
      return planView(after, observed, guests, newViolations(state, after), focus)
    } catch (e) {
      if (e instanceof ApmatrixError && e.violations.length && e.code !== 'UNAVAILABLE') return { ...emptyPlan(), violations: e.violations }
      throw e
    }
  }

  // ---- interop (issue 4 §4) ----------------------------------------------------------------------

  /**
   * One stored matrix device in a foreign tool's format (`mdevctl` definition JSON, libvirt node-device
   * XML, libvirt guest hostdev XML). INVALID_ARGUMENT for an unknown format, NOT_FOUND.
   */
  async exportMdev(host: string, uuid: string, format: string): Promise<ExportView> {
    checkFormat(format, EXPORT_FORMATS)
    const m = await this.getMdev(host, uuid)
    return exportMatrixDevice({ uuid: m.metadata.uuid, spec: m.spec }, format)
  }

  /**
   * Imports every matrix device of a foreign document (`mdevctl list --defined --dumpjson` as text or
   * parsed JSON; one libvirt node-device XML text), all or nothing, through the admission of a create
   * over the whole host (every violation reported). Per device: new → created with `origin: imported`
   * and an MdevDefined event; a device on the bus that the store does not know → adopted (it becomes
   * ours, docs/api.md (Reconcile)); stored with the same spec → left as is; stored with another spec, or being
   * deleted → ALREADY_EXISTS (every such device listed). INVALID_ARGUMENT / OUT_OF_RANGE for a malformed
   * document or format. Honours dryRun and idempotencyKey; `created` is true when any device was stored.
   */
  async importMdevs(host: string, format: string, document: unknown, ctx: CallContext & ImportOptions = {}): Promise<Mutation<ImportView>> {
    checkFormat(format, IMPORT_FORMATS)
    if (ctx.state !== undefined && format !== 'libvirt-nodedev')
      throw invalid('state', 'only a libvirt-nodedev import takes a state (mdevctl documents carry start auto|manual)')
    if (ctx.state !== undefined && ctx.state !== 'started' && ctx.state !== 'stopped') throw invalid('state', 'must be started or stopped')
    const owner = ctx.owner === undefined ? null : checkOwner(ctx.owner)
    return this.mutate<ImportView>(ctx, {
      host,
      action: 'mdev.import',
      target: `hosts/${host}/import`,
      request: { format, document, owner, state: ctx.state ?? null },
      prepare: (state, stored) => {
        const doc = importMatrixDevices(document, format, { limits: state.limits, ...(ctx.state ? { state: ctx.state } : {}) })
        const violations: Violation[] = []
        const actions: ImportAction[] = []
        let after = state
        for (const d of doc.devices) {
          const cur = stored.mdevs.find((m) => m.uuid === d.uuid)
          if (cur?.deletionRequestedAt) {
            violations.push({
              rule: 'ALREADY_EXISTS',
              field: d.uuid,
              message: `matrix device ${d.uuid} exists and is being deleted`,
              fix: 'wait until it is gone, or import it under another uuid',
            })
          } else if (cur && !sameSpec(cur.spec, d.spec)) {
            violations.push({
              rule: 'ALREADY_EXISTS',
              field: d.uuid,
              message: `matrix device ${d.uuid} already exists with a different spec`,
              fix: 'change it with PUT or PATCH, or import it under another uuid',
            })
          } else if (cur) {
            actions.push({ uuid: d.uuid, action: 'unchanged' })
          } else {
            // Adoption: the foreign device leaves `foreign` and becomes one of ours; admission then judges the document's matrix.
            const adopted = after.foreign.some((f) => f.uuid === d.uuid)
            after = { ...withMdev(after, planned(d.uuid, d.spec)), foreign: after.foreign.filter((f) => f.uuid !== d.uuid) }
            actions.push({ uuid: d.uuid, action: adopted ? 'adopted' : 'created' })
          }
        }
        if (violations.length) {
          throw new ApmatrixError(
            'ALREADY_EXISTS',
            `import refused: ${violations[0]!.message}${violations.length > 1 ? ` (${violations.length} devices in all)` : ''}`,
            { violations },
          )
        }
        const specOf = new Map(doc.devices.map((d) => [d.uuid, d.spec]))
        return {
          after,
          focus: new Set(actions.map((a) => a.uuid)),
          apply: async (tx) => {
            const events: EventInput[] = []
            const items: MdevView[] = []
            for (const a of actions) {
              if (a.action === 'unchanged') {
                items.push(mdevView(stored.mdevs.find((m) => m.uuid === a.uuid)!))
                continue
              }
              const { mdev } = await tx.mdevs.create({ host, uuid: a.uuid, spec: specOf.get(a.uuid)!, owner, origin: 'imported' })
              events.push(
                mdevEvent(mdev, 'MdevDefined', a.action === 'adopted' ? `adopted from the bus by a ${format} import` : `defined by a ${format} import`),
              )
              items.push(mdevView(mdev))
            }
            const count = (x: ImportAction['action']) => actions.filter((a) => a.action === x).length
            return {
              result: { items, actions, skipped: doc.skipped },
              created: events.length > 0,
              events,
              detail: {
                format,
                createdDevices: count('created'),
                adoptedDevices: count('adopted'),
                unchangedDevices: count('unchanged'),
                skippedDefinitions: doc.skipped.length,
              },
            }
          },
        }
      },
    })
  }

  // ---- emulator controls (docs/api.md (REST) /emulator/...) -------------------------------------------

  /** Raw sysfs read as root would do it: the attribute text. Errno errors (ENOENT → NOT_FOUND, ...). */
  async readSysfs(host: string, path: string): Promise<string> {
    return this.emulated(host, (e) => e.read(path))
  }

  /** Raw sysfs write as root would do it (a drift source for the reconciler). Errno errors. */
  async writeSysfs(host: string, path: string, value: string, ctx: CallContext = {}): Promise<void> {
    await this.emulatorAction(host, ctx, 'emulator.sysfs.write', path, (e) => e.write(path, value))
  }

  /** A hardware event (the emulator shell's actions). */
  async hardware(host: string, input: HardwareInput, ctx: CallContext = {}): Promise<void> {
    await this.emulatorAction(host, ctx, `emulator.hardware.${input.action}`, `hosts/${host}`, (e) => e.hardware(input as Parameters<typeof e.hardware>[0]))
  }

  /** A guest opens a matrix device (V-25). NOT_FOUND (ENODEV) when no such device is on the bus. */
  async openGuest(host: string, uuid: string, guest: string, ctx: CallContext = {}): Promise<void> {
    const id = normalizeUuid(uuid)
    await this.emulatorAction(host, ctx, 'emulator.guest.open', `hosts/${host}/guests/${guest}`, (e) => e.guestOpen(id, guest), { ENODEV: 'NOT_FOUND' })
  }

  /** The guest closes whatever device it has open; NOT_FOUND (ENOENT) when it has none. */
  async closeGuest(host: string, guest: string, ctx: CallContext = {}): Promise<void> {
    await this.emulatorAction(host, ctx, 'emulator.guest.close', `hosts/${host}/guests/${guest}`, (e) => e.guestCloseByGuest(guest))
  }

  /** Which guest has which device open. */
  async listGuests(host: string): Promise<{ items: Array<{ uuid: string; guest: string }> }> {
    return { items: await this.emulated(host, (e) => e.guests()) }
  }

  /** Puts `count` crypto requests on a queue; returns how many were accepted. */
  async submitRequests(host: string, apqn: string, count: number): Promise<{ accepted: number }> {
    return { accepted: await this.emulated(host, (e) => e.submitRequests(apqn, count)) }
  }

  /** Emulator: a steady host workload on a queue (`perSecond` 0 stops it). NOT_FOUND (queue), INVALID_ARGUMENT. */
  async setWorkload(host: string, apqn: string, perSecond: number): Promise<void> {
    await this.emulated(host, (e) => e.setWorkload(apqn, perSecond))
  }

  /** Reboots the emulated host (kernel state lost, new bootId); the host is re-registered and reconciled. */
  async reboot(host: string, ctx: CallContext = {}): Promise<HostView> {
    await this.emulatorAction(host, ctx, 'emulator.reboot', `hosts/${host}`, (e) => e.reboot())
    await this.registerHost(this.managed(host))
    return this.getHost(host)
  }

  // ---- internals -------------------------------------------------------------------------------

  /**
   * Stores the host's identity, features and maxima. The stored bootId is kept when there is one: the
   * reconciler compares it with the host's, reports the reboot (HostBooted) and then records the new one.
   */
  private async registerHost(h: ManagedHost): Promise<ObservedTopology> {
    const [info, observed, prev] = await Promise.all([h.info(), this.observe(h), this.store.hosts.get(h.name).catch(() => null)])
    await this.store.hosts.upsert({
      name: h.name,
      driver: info.driver,
      profile: info.profile,
      machineId: info.machineId,
      bootId: prev?.bootId ?? info.bootId,
      features: observed.features,
      maxAdapterId: observed.maxAdapterId,
      maxDomainId: observed.maxDomainId,
    })
    return observed
  }

  private managed(name: string): ManagedHost {
    const h = typeof name === 'string' ? this.hosts.get(name) : undefined
    if (!h) throw new ApmatrixError('NOT_FOUND', `host ${clip(String(name), 64)} not found`)
    return h
  }

  /** The full inventory (every card and queue attribute): only the inventory routes need it. */
  private async inventory(h: ManagedHost): Promise<ObservedHost> {
    return this.busRead(h, () => h.bus.observe())
  }

  /** Masks, configuration, devices and queue bindings: what admission and planning need (cheap on large hosts). */
  private async observe(h: ManagedHost): Promise<ObservedTopology> {
    return this.busRead(h, () => h.bus.observeTopology())
  }

  private async busRead<T>(h: ManagedHost, read: () => Promise<T>): Promise<T> {
    try {
      return await read()
    } catch (e) {
      if (e instanceof ApmatrixError) throw e
      throw new ApmatrixError('UNAVAILABLE', `host ${h.name}: the bus cannot be read (${(e as Error).message})`, { cause: e })
    }
  }

  private async emulated<T>(
    host: string,
    fn: (e: NonNullable<ManagedHost['emulator']>) => Promise<T>,
    overrides?: Parameters<typeof fromSysfsError>[1],
  ): Promise<T> {
    const h = this.managed(host)
    // A real host (driver sysfs or agent) exists but has no emulator: a precondition, not a missing resource.
    if (!h.emulator) throw new ApmatrixError('FAILED_PRECONDITION', `host ${host} is not emulated: emulator controls exist only for emulated hosts`)
    try {
      return await fn(h.emulator)
    } catch (e) {
      throw fromSysfsError(e, overrides)
    }
  }

  /** An emulator action that changes the "kernel": audited, then the host is reconciled (drift). */
  private async emulatorAction(
    host: string,
    ctx: CallContext,
    action: string,
    target: string,
    fn: (e: NonNullable<ManagedHost['emulator']>) => Promise<void>,
    overrides?: Parameters<typeof fromSysfsError>[1],
  ): Promise<void> {
    let outcome = 'ok'
    try {
      await this.emulated(host, fn, overrides)
    } catch (e) {
      outcome = e instanceof ApmatrixError ? (e.errno ?? e.code) : 'error'
      throw e
    } finally {
      if (this.hosts.get(host)?.emulator) {
        await this.store.audit.append({ actor: ctx.actor ?? 'anonymous', action, target, outcome, requestId: ctx.requestId ?? null }).catch(() => undefined)
      }
    }
    this.reconciler.enqueue(host)
  }

  private async loadStored(repos: Repos, host: string): Promise<StoredState> {
    const [masks, mdevs] = await Promise.all([repos.masks.get(host), repos.mdevs.listAll(host)])
    return { masks, mdevs }
  }

  /** The desired state admission sees: stored masks (kernel default when never set), stored devices, foreign devices on the bus. */
  private desiredOf(observed: ObservedTopology, stored: StoredState): HostDesired {
    const known = new Set(stored.mdevs.map((m) => m.uuid))
    const limits: HostLimits = {
      maxAdapterId: observed.maxAdapterId,
      maxDomainId: observed.maxDomainId,
      ...(observed.mdevCapacity !== null ? { maxMdevs: observed.mdevCapacity } : {}),
      hostConfig: observed.config,
    }
    return {
      limits,
      apmask: readMask(stored.masks?.apmask ?? FULL),
      aqmask: readMask(stored.masks?.aqmask ?? FULL),
      mdevs: stored.mdevs.map((r) => ({ ...planned(r.uuid, r.spec), deleting: r.deletionRequestedAt !== null, force: r.force })),
      foreign: observed.mdevs.filter((m) => !known.has(m.uuid)).map((m) => ({ uuid: m.uuid, spec: { adapters: m.adapters, domains: m.domains } })),
    }
  }

  /** The state after a desired document, and the devices it lists (parsed). Collects every syntax violation. */
  private desiredAfter(state: HostDesired, stored: StoredState, doc: DesiredInput) {
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
    const apmask =
      doc.masks?.apmask === undefined ? state.apmask : collect(() => parseMaskInput(doc.masks!.apmask!, state.apmask, 'masks.apmask'), state.apmask)
    const aqmask =
      doc.masks?.aqmask === undefined ? state.aqmask : collect(() => parseMaskInput(doc.masks!.aqmask!, state.aqmask, 'masks.aqmask'), state.aqmask)
    const owner = doc.owner === undefined || doc.owner === null ? null : collect(() => checkOwner(doc.owner), null)
    const listed: Array<{ uuid: string; spec: MdevSpec; labels: Record<string, string>; owner: string | null }> = []
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

  private async updateMdev(
    host: string,
    uuid: string,
    ctx: CallContext,
    action: string,
    request: unknown,
    next: (cur: MdevRecord) => { spec: unknown; labels: unknown; owner: unknown },
  ): Promise<Mutation<MdevView>> {
    return this.mutate<MdevView>(ctx, {
      host,
      action,
      target: `hosts/${host}/mdevs/${uuid}`,
      request,
      prepare: (state, stored) => {
        const cur = mustFind(stored, host, uuid)
        checkIfMatch(ctx, cur)
        if (cur.deletionRequestedAt) throw new ApmatrixError('CONFLICT', `matrix device ${uuid} is being deleted`)
        const n = next(cur)
        const spec = normalizeSpec(n.spec, state.limits)
        const labels = checkLabels(n.labels)
        const owner = checkOwner(n.owner)
        return {
          after: withMdev(state, planned(uuid, spec)),
          focus: new Set([uuid]),
          apply: async (tx) => {
            const rec = await tx.mdevs.update(host, uuid, { spec, labels, owner }, precondition(ctx))
            const changed = rec.resourceVersion !== cur.resourceVersion
            return { result: mdevView(rec), events: changed ? [mdevEvent(rec, 'MdevUpdated', `updated (generation ${rec.generation})`)] : [] }
          },
        }
      },
    })
  }

  /** Runs one mutating operation: see the file comment. */
  private async mutate<T>(ctx: CallContext, op: Operation<T>): Promise<Mutation<T>> {
    const h = this.managed(op.host)
    const actor = ctx.actor ?? 'anonymous'
    const [observed, guests] = await Promise.all([this.observe(h), h.guests()])
    if (ctx.dryRun) {
      const stored = await this.loadStored(this.store, op.host)
      const state = this.desiredOf(observed, stored)
      const p = op.prepare(state, stored)
      admit(state, p.after)
      return { dryRun: true, plan: planView(p.after, observed, guests, [], p.focus) }
    }
    const scope = `${op.action} ${op.host} ${actor}`
    const hash = ctx.idempotencyKey ? requestHash({ host: op.host, action: op.action, request: op.request ?? null }) : ''
    try {
      const out = await this.store.transaction(async (tx): Promise<Mutation<T>> => {
        if (ctx.idempotencyKey) {
          const prior = await tx.idempotency.get(scope, ctx.idempotencyKey)
          if (prior) {
            if (prior.requestHash !== hash) throw new ApmatrixError('CONFLICT', `Idempotency-Key ${ctx.idempotencyKey} was used for a different request`)
            const body = prior.responseBody as { result: T; created?: boolean }
            return { dryRun: false, result: body.result, ...(body.created !== undefined ? { created: body.created } : {}), replayed: true }
          }
        }
        await lockHost(tx, op.host)
        const stored = await this.loadStored(tx, op.host)
        const state = this.desiredOf(observed, stored)
        const p = op.prepare(state, stored)
        admit(state, p.after)
        const r = await p.apply(tx, planView(p.after, observed, guests, [], p.focus))
        const outcome: Mutation<T> = { dryRun: false, result: r.result, ...(r.created !== undefined ? { created: r.created } : {}) }
        await tx.audit.append({
          actor,
          action: op.action,
          target: op.target,
          outcome: 'ok',
          requestId: ctx.requestId ?? null,
          detail: { ...(r.detail ?? {}), ...(r.created !== undefined ? { created: r.created } : {}) },
        })
        if (ctx.idempotencyKey) {
          await tx.idempotency.put({
            scope,
            key: ctx.idempotencyKey,
            requestHash: hash,
            responseStatus: r.created ? 201 : 200,
            responseBody: { result: r.result, created: r.created },
            ttlMs: this.idempotencyTtlMs,
          })
        }
        // Events last: appending serialises writers until commit (event-repo.ts).
        for (const e of r.events) await tx.events.append({ ...e, requestId: ctx.requestId ?? null, actor })
        return outcome
      })
      if (!out.dryRun && !out.replayed) this.reconciler.enqueue(op.host)
      return out
    } catch (e) {
      if (e instanceof ApmatrixError && e.code !== 'UNAVAILABLE') {
        // A refusal is audited too; it cannot share the (rolled back) transaction.
        await this.store.audit
          .append({
            actor,
            action: op.action,
            target: op.target,
            outcome: e.code,
            requestId: ctx.requestId ?? null,
            detail: { violations: e.violations.length },
          })
          .catch(() => undefined)
      }
      throw e
    }
  }
}

// ---- helpers --------------------------------------------------------------------------------------

/**
 * Serialises admission per host: every mutating transaction first takes the host's masks row lock on
 * PostgreSQL (SQLite runs one writer at a time anyway), so two concurrent creates cannot both pass
 * admission against the same old state. The masks and their generation are left as they are.
 */
async function lockHost(tx: Repos, host: string): Promise<void> {
  await tx.masks.lockForAdmission(host)
}

function planned(uuid: string, spec: MdevSpec): PlannedMdev {
  return { uuid, adapters: spec.adapters, domains: spec.domains, controlDomains: spec.controlDomains, state: spec.state, deleting: false, force: false }
}

/** `state` with `m` replacing the device of its uuid, moved last (admission order). */
function withMdev(state: HostDesired, m: PlannedMdev): HostDesired {
  return { ...state, mdevs: [...state.mdevs.filter((x) => x.uuid !== m.uuid), m] }
}

function sameSpec(a: MdevSpec, b: MdevSpec): boolean {
  const ids = (x: number[]) => x.join(',')
  return ids(a.adapters) === ids(b.adapters) && ids(a.domains) === ids(b.domains) && ids(a.controlDomains) === ids(b.controlDomains) && a.state === b.state
}

function mustFind(stored: StoredState, host: string, uuid: string): MdevRecord {
  const r = stored.mdevs.find((m) => m.uuid === uuid)
  if (!r) throw new ApmatrixError('NOT_FOUND', `matrix device ${host}/${uuid} not found`)
  return r
}

/** The If-Match precondition (`*` matches anything). */
function precondition(ctx: CallContext): { expectedResourceVersion?: string } {
  return ctx.ifMatch !== undefined && ctx.ifMatch !== '*' ? { expectedResourceVersion: ctx.ifMatch } : {}
}

/** Checked early so a dry run answers CONFLICT exactly like the real call. */
function checkIfMatch(ctx: CallContext, cur: { resourceVersion: string; uuid: string }): void {
  const pre = precondition(ctx).expectedResourceVersion
  if (pre !== undefined && pre !== cur.resourceVersion) {
    throw new ApmatrixError('CONFLICT', `matrix device ${cur.uuid} has resourceVersion ${cur.resourceVersion}, not ${pre}`)
  }
}

function mdevEvent(r: MdevRecord, type: string, message: string): EventInput {
  return { host: r.host, kind: 'mdev', name: r.uuid, type, message: `matrix device ${r.uuid} ${message}`, data: { generation: r.generation, owner: r.owner } }
}

function emptyPlan(): PlanView {
  return { operations: [], violations: [], claimedApqns: [], filteredAdapters: [], drainedQueues: [], deferred: [] }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** INVALID_ARGUMENT unless `format` is one of `known` (checked before any I/O). */
function checkFormat(format: string, known: readonly string[]): void {
  if (!known.includes(format)) throw invalid('format', `${JSON.stringify(clip(String(format), 32))} is not one of ${known.join(', ')}`)
}

function invalid(field: string, message: string): ApmatrixError {
  return new ApmatrixError('INVALID_ARGUMENT', `${field}: ${message}`, { violations: [{ rule: 'INVALID_ARGUMENT', field, message }] })
}

/** RFC 7396 on a flat object: a null member is removed (an id list becomes empty; `state` returns to `started`). */
function mergeFlat(cur: object, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch
  const out: Record<string, unknown> = { ...cur }
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = v
  }
  return out
}

/** Label limits, also enforced here for transports without a schema (gRPC). */
export const MAX_LABELS = 64
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$/

function checkLabels(v: unknown): Record<string, string> {
  if (!isPlainObject(v)) throw invalid('labels', 'must be an object of strings')
  const entries = Object.entries(v)
  if (entries.length > MAX_LABELS) throw invalid('labels', `at most ${MAX_LABELS} labels`)
  for (const [k, x] of entries) {
    if (!LABEL_KEY.test(k)) throw invalid(`labels.${clip(k, 64)}`, 'label keys are 1..128 of [A-Za-z0-9._/-], alphanumeric at both ends')
    if (typeof x !== 'string' || x.length > 256) throw invalid(`labels.${k}`, 'label values are strings of at most 256 characters')
  }
  return v as Record<string, string>
}

function checkOwner(v: unknown): string | null {
  if (v === null) return null
  if (typeof v !== 'string' || v.length < 1 || v.length > 128) throw invalid('owner', 'owner is a string of 1..128 characters, or null')
  return v
}
