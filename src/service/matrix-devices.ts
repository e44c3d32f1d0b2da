/**
 * Matrix devices (docs/api.md (Resources)): create, read, list, replace, merge patch, field update and
 * delete, each write through the mutation runner (admission over the whole host).
 */
import { randomUUID } from 'node:crypto'
import { ApmatrixError, invalidArgument } from '../domain/errors.js'
import { normalizeSpec, normalizeUuid, sameSpec } from '../domain/mdev.js'
import type { MdevRecord, Repos } from '../store/index.js'
import type { HostAccess } from './host-access.js'
import { mustFind, planned, withMdev } from './host-state.js'
import { checkLabels, checkOwner, isPlainObject, mergeFlat } from './mdev-input.js'
import type { MutationRunner } from './mutation-runner.js'
import { checkPrecondition, precondition } from './preconditions.js'
import type { Fresh, ReadCache } from './read-cache.js'
import { mdevEvent } from './resource-events.js'
import type { CallContext, MdevCreateInput, MdevFieldsUpdate, MdevQuery, MdevReplaceInput, MdevView, Mutation, Page } from './types.js'
import { mdevView } from './views.js'
import { checkVisible, ownedBy, tenantLimit } from './tenancy.js'

/** What an update makes of the stored device: the new spec, labels and owner, unchecked. */
type NextFields = (cur: MdevRecord) => { spec: unknown; labels: unknown; owner: unknown }

/** The matrix-device operations of the service. */
export class MatrixDevices {
  constructor(
    private readonly access: HostAccess,
    private readonly runner: MutationRunner,
    private readonly cache: ReadCache,
  ) {}

  /**
   * Creates a matrix device; `uuid` is generated when absent. Idempotent on uuid: the same spec again
   * returns the stored object (`created: false`), another spec is ALREADY_EXISTS. Admission over the
   * whole host (APQN_IN_USE, APQN_RESERVED, OUT_OF_RANGE, INVALID_ARGUMENT). Honours idempotencyKey.
   */
  async createMdev(host: string, input: MdevCreateInput, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    const uuid = input.uuid === undefined ? randomUUID() : normalizeUuid(input.uuid)
    return this.runner.run<MdevView>(ctx, {
      host,
      action: 'mdev.create',
      target: `hosts/${host}/mdevs/${uuid}`,
      request: input,
      prepare: (state, stored) => {
        const spec = normalizeSpec(input.spec, state.limits)
        const labels = checkLabels(input.labels ?? {})
        const mine = ownedBy(ctx.principal, 'create', input.owner, true)
        const owner = mine === undefined ? null : checkOwner(mine)
        const existing = stored.mdevs.find((m) => m.uuid === uuid)
        if (existing) {
          // Someone else's device: its existence is all a limited caller learns (uuids are not guessable).
          const tenant = tenantLimit(ctx.principal, 'create')
          if (tenant !== null && existing.owner !== tenant) throw new ApmatrixError('ALREADY_EXISTS', `matrix device ${uuid} is in use`)
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

  /**
   * One matrix device, from the read cache (read-cache.ts: the view is frozen and shared). NOT_FOUND (also for a
   * device a tenant-limited caller does not own).
   */
  async getMdev(host: string, uuid: string, ctx: CallContext = {}): Promise<Fresh<MdevView>> {
    this.access.managed(host)
    const id = normalizeUuid(uuid)
    const r = await this.cache.mdev(host, id)
    checkVisible(ctx.principal, 'read', host, id, r.value.metadata.owner ?? null)
    return r
  }

  /**
   * A page of a host's matrix devices, by uuid, from the read cache (filters and paging as store.mdevs.list); a
   * tenant-limited caller's list holds its own devices only.
   */
  async listMdevs(host: string, q: MdevQuery = {}, ctx: CallContext = {}): Promise<Fresh<Page<MdevView>>> {
    this.access.managed(host)
    const tenant = tenantLimit(ctx.principal, 'read')
    if (tenant !== null) {
      if (q.owner !== undefined && q.owner !== tenant) return { value: { items: [] }, staleMs: null }
      q = { ...q, owner: tenant }
    }
    return this.cache.mdevs(host, q)
  }

  /** Replaces spec, labels and owner (absent labels = none, absent owner = none). NOT_FOUND, CONFLICT (ifMatch), admission codes. */
  async replaceMdev(host: string, uuid: string, input: MdevReplaceInput, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    const id = normalizeUuid(uuid)
    return this.update(host, id, ctx, 'mdev.replace', input, () => ({ spec: input.spec, labels: input.labels ?? {}, owner: input.owner ?? null }))
  }

  /**
   * JSON merge patch (RFC 7396) of the object: only `spec`, `metadata.labels` and `metadata.owner`
   * (also accepted at the top level: `labels`, `owner`) may change; anything else is INVALID_ARGUMENT.
   */
  async patchMdev(host: string, uuid: string, patch: unknown, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    const id = normalizeUuid(uuid)
    if (!isPlainObject(patch)) throw invalidArgument('patch', 'a merge patch must be a JSON object')
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
    return this.update(host, id, ctx, 'mdev.patch', patch, (cur) => ({
      spec: patch.spec === undefined ? cur.spec : mergeFlat(cur.spec, patch.spec),
      labels: labelsPatch === undefined ? cur.labels : labelsPatch === null ? {} : mergeFlat(cur.labels, labelsPatch),
      owner: ownerPatch === undefined ? cur.owner : (ownerPatch as string | null),
    }))
  }

  /**
   * Changes the named fields only (gRPC UpdateMdev with a field mask): spec fields merged (null = the
   * default), `labels` replacing the whole map, then `labelChanges` setting or removing single keys.
   * The replaced label map is computed from the device as read under the host lock, so a concurrent
   * label change is never resurrected. NOT_FOUND, CONFLICT (ifMatch), admission codes.
   */
  async updateMdevFields(host: string, uuid: string, update: MdevFieldsUpdate, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    const id = normalizeUuid(uuid)
    return this.update(host, id, ctx, 'mdev.patch', update, (cur) => {
      const base = update.labels ?? cur.labels
      return {
        spec: update.spec === undefined ? cur.spec : mergeFlat(cur.spec, update.spec),
        labels: update.labelChanges === undefined ? base : mergeFlat(base, update.labelChanges),
        owner: update.owner === undefined ? cur.owner : update.owner,
      }
    })
  }

  /**
   * Requests deletion: marks the device; the reconciler removes it from the bus (waiting for a guest to
   * close it unless `force`, V-29) and then the object. Idempotent. NOT_FOUND, CONFLICT (ifMatch).
   */
  async deleteMdev(host: string, uuid: string, ctx: CallContext & { force?: boolean } = {}): Promise<Mutation<MdevView>> {
    const id = normalizeUuid(uuid)
    return this.runner.run<MdevView>(ctx, {
      host,
      action: 'mdev.delete',
      target: `hosts/${host}/mdevs/${id}`,
      precheck: (repos) => this.precheck(repos, host, id, 'delete', ctx),
      prepare: (state, stored) => {
        const cur = mustFind(stored, host, id)
        checkVisible(ctx.principal, 'delete', host, id, cur.owner)
        checkPrecondition(ctx, cur.resourceVersion, `matrix device ${id} has`)
        return {
          after: { ...state, mdevs: state.mdevs.map((m) => (m.uuid === id ? { ...m, deleting: true, force: m.force || !!ctx.force } : m)) },
          focus: new Set([id]),
          apply: async (tx) => {
            const rec = await tx.mdevs.markDeleted(host, id, { force: !!ctx.force, ...precondition(ctx, cur.resourceVersion) })
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
   * The runner's early If-Match check (mutation-runner.ts `precheck`), in the order `prepare` checks: a device
   * the caller may not see answers as `prepare` would; an absent one is left to `prepare` (NOT_FOUND).
   */
  private async precheck(repos: Pick<Repos, 'mdevs'>, host: string, uuid: string, verb: 'update' | 'delete', ctx: CallContext): Promise<void> {
    const cur = await repos.mdevs.version(host, uuid)
    if (!cur) return
    checkVisible(ctx.principal, verb, host, uuid, cur.owner)
    checkPrecondition(ctx, cur.resourceVersion, `matrix device ${uuid} has`)
  }

  /** One update of spec, labels and owner as `next` makes them of the stored device (checked here). */
  private update(host: string, uuid: string, ctx: CallContext, action: string, request: unknown, next: NextFields): Promise<Mutation<MdevView>> {
    return this.runner.run<MdevView>(ctx, {
      host,
      action,
      target: `hosts/${host}/mdevs/${uuid}`,
      request,
      precheck: (repos) => this.precheck(repos, host, uuid, 'update', ctx),
      prepare: (state, stored) => {
        const cur = mustFind(stored, host, uuid)
        checkVisible(ctx.principal, 'update', host, uuid, cur.owner)
        checkPrecondition(ctx, cur.resourceVersion, `matrix device ${uuid} has`)
        if (cur.deletionRequestedAt) throw new ApmatrixError('CONFLICT', `matrix device ${uuid} is being deleted`)
        const n = next(cur)
        const spec = normalizeSpec(n.spec, state.limits)
        const labels = checkLabels(n.labels)
        const owner = checkOwner(ownedBy(ctx.principal, 'update', n.owner as string | null | undefined, true) ?? null)
        return {
          after: withMdev(state, planned(uuid, spec)),
          focus: new Set([uuid]),
          apply: async (tx) => {
            const rec = await tx.mdevs.update(host, uuid, { spec, labels, owner }, precondition(ctx, cur.resourceVersion), cur)
            const changed = rec.resourceVersion !== cur.resourceVersion
            return {
              result: mdevView(rec),
              events: changed ? [mdevEvent(rec, 'MdevUpdated', `updated (generation ${rec.generation})`)] : [],
              // Labels and owner are the caller's bookkeeping: only a new generation (a spec change) can change the plan.
              reconcile: rec.generation !== cur.generation,
              written: changed ? [rec] : [],
            }
          },
        }
      },
    })
  }
}
