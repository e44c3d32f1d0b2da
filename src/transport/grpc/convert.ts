/**
 * Maps between the wire messages (snake_case, generated types under src/generated/grpc) and the
 * service's plain shapes (camelCase, src/service/types.ts). Pure: no service calls, no rules beyond
 * proto3's "empty means absent" conventions documented in the .proto files.
 */
import { invalidArgument, type Violation } from '../../domain/errors.js'
import { HOST_NAME, IDEMPOTENCY_KEY } from '../../domain/names.js'
import type { PlanOp } from '../../domain/plan.js'
import type { Principal } from '../../auth/identity.js'
import { BOOKMARK_TYPE } from '../../service/index.js'
import type {
  AdapterView,
  AuditListQuery,
  AuditPage,
  BusMdevView,
  CallContext,
  DesiredInput,
  DomainsView,
  HostView,
  MaskPair,
  MasksView,
  MdevSpecInput,
  MdevView,
  ApqnSetSummary,
  PlanAnswer,
  PlanDetail,
  PlanSummary,
  PlanView,
  QueueView,
  WatchedEvent,
  WhoAmIView,
} from '../../service/index.js'
import type { ApqnSet } from '../../generated/grpc/apmatrix/v1/ApqnSet.js'
import type { BusMdev } from '../../generated/grpc/apmatrix/v1/BusMdev.js'
import type { ListAuditRecordsRequest__Output } from '../../generated/grpc/apmatrix/v1/ListAuditRecordsRequest.js'
import type { ListAuditRecordsResponse } from '../../generated/grpc/apmatrix/v1/ListAuditRecordsResponse.js'
import type { WhoAmIResponse } from '../../generated/grpc/apmatrix/v1/WhoAmIResponse.js'
import type { DeferredStep } from '../../generated/grpc/apmatrix/v1/DeferredStep.js'
import type { FilteredAdapter } from '../../generated/grpc/apmatrix/v1/FilteredAdapter.js'
import type { PlanSummary as WirePlanSummary } from '../../generated/grpc/apmatrix/v1/PlanSummary.js'
import type { PlanView as PlanViewWire } from '../../generated/grpc/apmatrix/v1/PlanView.js'
import type { Adapter } from '../../generated/grpc/apmatrix/v1/Adapter.js'
import type { DesiredState__Output } from '../../generated/grpc/apmatrix/v1/DesiredState.js'
import type { Domains } from '../../generated/grpc/apmatrix/v1/Domains.js'
import type { Event } from '../../generated/grpc/apmatrix/v1/Event.js'
import type { Host } from '../../generated/grpc/apmatrix/v1/Host.js'
import type { MaskPair as WireMaskPair } from '../../generated/grpc/apmatrix/v1/MaskPair.js'
import type { Masks } from '../../generated/grpc/apmatrix/v1/Masks.js'
import type { MatrixConfig } from '../../generated/grpc/apmatrix/v1/MatrixConfig.js'
import type { Mdev } from '../../generated/grpc/apmatrix/v1/Mdev.js'
import type { MdevSpec__Output } from '../../generated/grpc/apmatrix/v1/MdevSpec.js'
import type { DrainPolicy__Output } from '../../generated/grpc/apmatrix/v1/DrainPolicy.js'
import type { Plan } from '../../generated/grpc/apmatrix/v1/Plan.js'
import type { PlanOperation } from '../../generated/grpc/apmatrix/v1/PlanOperation.js'
import type { Queue } from '../../generated/grpc/apmatrix/v1/Queue.js'
import type { Violation as WireViolation } from '../../generated/grpc/apmatrix/v1/Violation.js'

// ---- requests ------------------------------------------------------------------------------------

const invalid = invalidArgument

/** A required host name (same syntax as REST); INVALID_ARGUMENT when missing or malformed. */
export function hostIn(v: string): string {
  if (!v) throw invalid('host', 'is required')
  if (!HOST_NAME.test(v)) throw invalid('host', 'must be 1..63 of [A-Za-z0-9._-], starting alphanumeric')
  return v
}

/** A required, bounded string field. */
export function requiredIn(v: string, field: string, max = 4096): string {
  if (!v) throw invalid(field, 'is required')
  if (v.length > max) throw invalid(field, `at most ${max} characters`)
  return v
}

/** proto3 empty string = absent. */
export function optionalIn(v: string): string | undefined {
  return v === '' ? undefined : v
}

/** An optional enumerated string (empty = absent); INVALID_ARGUMENT for anything else. */
export function enumIn<T extends string>(v: string, allowed: readonly T[], field: string): T | undefined {
  if (v === '') return undefined
  if (!(allowed as readonly string[]).includes(v)) throw invalid(field, `must be one of ${allowed.join(', ')}`)
  return v as T
}

/** A page size: 0 = the default. */
export function limitIn(v: number): number | undefined {
  return v === 0 ? undefined : v
}

/** An optional, bounded string field (empty = absent). */
export function boundedIn(v: string, field: string, max: number): string | undefined {
  if (v.length > max) throw invalid(field, `at most ${max} characters`)
  return optionalIn(v)
}

/** Filters and page of an audit listing (bounds as REST's query; the service checks the limit). */
export function auditQueryIn(req: ListAuditRecordsRequest__Output): AuditListQuery {
  const afterId = Number(req.after_id)
  if (!Number.isSafeInteger(afterId) || afterId < 0) throw invalid('after_id', 'must be a non-negative integer')
  const target = boundedIn(req.target, 'target', 512)
  const actor = boundedIn(req.actor, 'actor', 512)
  const outcome = boundedIn(req.outcome, 'outcome', 64)
  const limit = limitIn(req.limit)
  return {
    ...(target !== undefined ? { target } : {}),
    ...(actor !== undefined ? { actor } : {}),
    ...(outcome !== undefined ? { outcome } : {}),
    ...(afterId ? { afterId } : {}),
    ...(limit !== undefined ? { limit } : {}),
  }
}

/** The service's call context from the wire fields every mutating request may carry. */
export function callContextIn(
  base: { requestId: string; correlationId?: string; actor: string; principal?: Principal },
  req: { dry_run?: boolean; resource_version?: string; idempotency_key?: string; view?: PlanViewWire },
): CallContext {
  const ctx: CallContext = { requestId: base.requestId, actor: base.actor, ...(base.principal ? { principal: base.principal } : {}) }
  if (base.correlationId) ctx.correlationId = base.correlationId
  if (req.dry_run) ctx.dryRun = true
  const view = planViewIn(req.view)
  if (view) ctx.planView = view
  if (req.resource_version) {
    if (req.resource_version.length > 128) throw invalid('resource_version', 'at most 128 characters')
    ctx.ifMatch = req.resource_version
  }
  if (req.idempotency_key) {
    if (!IDEMPOTENCY_KEY.test(req.idempotency_key)) throw invalid('idempotency_key', 'must be 1..128 visible ASCII characters')
    ctx.idempotencyKey = req.idempotency_key
  }
  return ctx
}

/** The plan view of a request (absent or UNSPECIFIED: the service's default, the summary). */
export function planViewIn(v: PlanViewWire | undefined): PlanDetail | undefined {
  if (v === undefined || v === 'PLAN_VIEW_UNSPECIFIED' || v === 0) return undefined
  if (v === 'PLAN_VIEW_SUMMARY' || v === 1) return 'summary'
  if (v === 'PLAN_VIEW_FULL' || v === 2) return 'full'
  throw invalid('view', 'must be PLAN_VIEW_SUMMARY or PLAN_VIEW_FULL')
}

/** A spec; an empty state means the default (`started`), an absent drain policy the service default. */
export function specIn(s: MdevSpec__Output | null): MdevSpecInput {
  if (!s) throw invalid('spec', 'is required')
  const drain = drainIn(s.drain)
  return {
    adapters: s.adapters,
    domains: s.domains,
    controlDomains: s.control_domains,
    ...(s.state ? { state: s.state as MdevSpecInput['state'] } : {}),
    ...(drain ? { drain } : {}),
  }
}

/** A drain policy (checked by the service); undefined when absent or empty. */
export function drainIn(d: DrainPolicy__Output | null | undefined): NonNullable<MdevSpecInput['drain']> | undefined {
  if (!d) return undefined
  const out: NonNullable<MdevSpecInput['drain']> = {}
  if (d.timeout_seconds) out.timeoutSeconds = d.timeout_seconds.value
  if (d.on_timeout) out.onTimeout = d.on_timeout
  return Object.keys(out).length ? out : undefined
}

/** A desired-state document. */
export function desiredIn(d: DesiredState__Output | null): DesiredInput {
  if (!d) throw invalid('desired', 'is required')
  const masks: DesiredInput['masks'] = {}
  if (d.masks?.apmask) masks.apmask = d.masks.apmask
  if (d.masks?.aqmask) masks.aqmask = d.masks.aqmask
  return {
    masks,
    mdevs: d.mdevs.map((m, i) => ({
      uuid: m.uuid,
      spec: specIn(m.spec ?? nullSpec(`mdevs[${i}].spec`)),
      labels: m.labels,
      ...(m.owner ? { owner: m.owner } : {}),
    })),
    ...(d.owner ? { owner: d.owner } : {}),
  }
}

function nullSpec(field: string): never {
  throw invalid(field, 'is required')
}

// ---- responses -----------------------------------------------------------------------------------

export function hostOut(h: HostView): Host {
  return {
    name: h.name,
    machine_id: h.machineId,
    driver: h.driver,
    profile: h.profile ?? '',
    features: h.features,
    max_adapter_id: h.maxAdapterId,
    max_domain_id: h.maxDomainId,
    boot_id: h.bootId,
    lease_holder: h.leaseHolder ?? '',
  }
}

export function adapterOut(a: AdapterView): Adapter {
  return {
    apid: a.apid,
    hwtype: a.hwtype,
    raw_hwtype: a.rawHwtype,
    type: a.type,
    mode: a.mode,
    functions: a.functions,
    config: a.config,
    chkstop: a.chkstop,
    online: a.online === null ? null : { value: a.online },
    driver: a.driver,
    depth: a.depth === null ? null : { value: a.depth },
  }
}

export function queueOut(q: QueueView): Queue {
  return {
    apqn: q.apqn,
    apid: q.apid,
    apqi: q.apqi,
    driver: q.driver,
    vfio_status: q.vfioStatus ?? '',
    config: q.config,
    chkstop: q.chkstop,
    online: q.online === null ? null : { value: q.online },
    requestq_count: q.requestqCount,
    pendingq_count: q.pendingqCount,
    request_count: q.requestCount === null ? null : { value: q.requestCount },
    owner: q.owner ?? '',
  }
}

export function busMdevOut(m: BusMdevView): BusMdev {
  return {
    uuid: m.uuid,
    managed: m.managed,
    adapters: m.adapters,
    domains: m.domains,
    control_domains: m.controlDomains,
    matrix: m.matrix,
    guest_matrix: m.guestMatrix,
    guest: m.guest ?? '',
  }
}

export function domainsOut(d: DomainsView): Domains {
  return { usage_domains: d.usageDomains, control_domains: d.controlDomains, host_domains: d.hostDomains }
}

function maskPairOut(p: MaskPair & { observedAt?: string; lostRequests?: number }): WireMaskPair {
  return {
    apmask: p.apmask,
    aqmask: p.aqmask,
    apmask_ids: p.apmaskIds,
    aqmask_ids: p.aqmaskIds,
    observed_at: p.observedAt ?? '',
    lost_requests: p.lostRequests ?? 0,
  }
}

export function masksOut(m: MasksView): Masks {
  return {
    metadata: { host: m.metadata.host, generation: m.metadata.generation, resource_version: m.metadata.resourceVersion, updated_at: m.metadata.updatedAt },
    spec: maskPairOut(m.spec),
    status: m.status ? maskPairOut(m.status) : null,
  }
}

export function mdevOut(m: MdevView): Mdev {
  const s = m.status
  return {
    metadata: {
      uuid: m.metadata.uuid,
      host: m.metadata.host,
      generation: m.metadata.generation,
      resource_version: m.metadata.resourceVersion,
      created_at: m.metadata.createdAt,
      updated_at: m.metadata.updatedAt,
      labels: m.metadata.labels,
      owner: m.metadata.owner ?? '',
      origin: m.metadata.origin,
      deletion_requested_at: m.metadata.deletionRequestedAt ?? '',
      force: m.metadata.force,
    },
    spec: {
      adapters: m.spec.adapters,
      domains: m.spec.domains,
      control_domains: m.spec.controlDomains,
      state: m.spec.state,
      drain: m.spec.drain
        ? {
            ...(m.spec.drain.timeoutSeconds !== undefined ? { timeout_seconds: { value: m.spec.drain.timeoutSeconds } } : {}),
            on_timeout: m.spec.drain.onTimeout ?? '',
          }
        : null,
    },
    status: {
      observed_generation: s.observedGeneration ?? 0,
      active: s.active ?? false,
      matrix: s.matrix ?? [],
      guest_matrix: s.guestMatrix ?? [],
      control_domains: s.controlDomains ?? [],
      guest: s.guest ?? '',
      lost_requests: s.lostRequests ?? 0,
      draining: s.draining ?? {},
      conditions: (s.conditions ?? []).map((c) => ({
        type: c.type,
        status: c.status,
        reason: c.reason,
        message: c.message,
        last_transition_time: c.lastTransitionTime,
        observed_generation: c.observedGeneration,
      })),
    },
  }
}

export function violationOut(v: Violation): WireViolation {
  return {
    rule: v.rule,
    message: v.message,
    apqn: v.apqn ?? '',
    id: v.id === undefined ? null : { value: v.id },
    field: v.field ?? '',
    owner: v.owner ?? '',
    fix: v.fix ?? '',
  }
}

function matrixOut(m: { adapters: number[]; domains: number[]; controlDomains: number[] }): MatrixConfig {
  return { adapters: m.adapters, domains: m.domains, control_domains: m.controlDomains }
}

function opOut(op: PlanOp): PlanOperation {
  switch (op.kind) {
    case 'shrinkMdev':
    case 'configureMdev':
      return { kind: op.kind, uuid: op.uuid, from: matrixOut(op.from), to: matrixOut(op.to) }
    case 'removeMdev':
      return { kind: op.kind, uuid: op.uuid, force: op.force, guest: op.guest ?? '' }
    case 'returnToHost':
    case 'takeFromHost':
      return { kind: op.kind, apmask: op.apmask, aqmask: op.aqmask, apqns: op.apqns }
    case 'drainQueues':
      return { kind: op.kind, apqns: op.apqns }
    case 'bindQueue':
      return { kind: op.kind, apqn: op.apqn, driver: op.driver }
    case 'createMdev':
      return { kind: op.kind, uuid: op.uuid }
  }
}

/** A plan answer: the summary always, the lists in the full view (empty otherwise). */
export function planOut(a: PlanAnswer): Plan {
  const full = a.view === 'full' ? a : null
  return {
    operations: full ? full.operations.map(opOut) : [],
    violations: full ? full.violations.map(violationOut) : [],
    claimed_apqns: full ? full.claimedApqns.map((c) => ({ apqn: c.apqn, uuid: c.uuid, current_owner: c.currentOwner ?? '' })) : [],
    filtered_adapters: full ? full.filteredAdapters.map(filteredOut) : [],
    drained_queues: full ? full.drainedQueues : [],
    deferred: full ? full.deferred.map(deferredOut) : [],
    view: a.view,
    summary: summaryOut(a.summary),
  }
}

function filteredOut(f: PlanView['filteredAdapters'][number]): FilteredAdapter {
  return { uuid: f.uuid, apid: f.apid, reason: f.reason, apqns: f.apqns }
}

function deferredOut(d: PlanView['deferred'][number]): DeferredStep {
  return { reason: d.reason, uuid: d.uuid ?? '', apqns: d.apqns ?? [], message: d.message }
}

function apqnSetOut(a: ApqnSetSummary): ApqnSet {
  return { count: a.count, ranges: a.ranges, more_ranges: a.moreRanges }
}

function summaryOut(s: PlanSummary): WirePlanSummary {
  return {
    operation_count: s.operationCount,
    operations: s.operations.map((o) => ({ kind: o.kind, count: o.count, devices: o.devices, device_count: o.deviceCount, apqns: apqnSetOut(o.apqns) })),
    violation_count: s.violations.count,
    violations: s.violations.first.map(violationOut),
    claimed_apqns: apqnSetOut(s.claimedApqns),
    claimed_by_owner: s.claimedApqns.byOwner.map((o) => ({ current_owner: o.currentOwner ?? '', count: o.count })),
    filtered_adapter_count: s.filteredAdapters.count,
    filtered_adapters: s.filteredAdapters.first.map(filteredOut),
    drained_queues: apqnSetOut(s.drainedQueues),
    deferred_count: s.deferred.count,
    deferred: s.deferred.first.map(deferredOut),
    drain_policy: s.drainPolicy
      ? {
          timeout_seconds: s.drainPolicy.timeoutSeconds,
          on_timeout: s.drainPolicy.onTimeout,
          devices: s.drainPolicy.devices,
          device_count: s.drainPolicy.deviceCount,
          default_applies: s.drainPolicy.defaultApplies,
        }
      : null,
  }
}

/** An event on a Watch stream; `libvirt` set in the libvirt format. */
export function eventOut(e: WatchedEvent['event'], libvirt?: WatchedEvent['libvirt']): Event {
  return {
    seq: String(e.seq),
    type: e.type,
    host: e.host,
    kind: e.kind,
    name: e.name,
    message: e.message,
    time: e.time.toISOString(),
    request_id: e.requestId ?? '',
    actor: e.actor ?? '',
    data_json: JSON.stringify(e.data ?? {}),
    libvirt_lifecycle: libvirt?.lifecycle ?? '',
    libvirt_device: libvirt?.device ?? '',
    bookmark: false,
  }
}

/** A bookmark on a Watch stream: the watch's position, no event (docs/api.md (Events) Bookmarks). */
export function bookmarkOut(position: number): Event {
  return {
    seq: String(position),
    type: BOOKMARK_TYPE,
    host: '',
    kind: '',
    name: '',
    message: '',
    time: '',
    request_id: '',
    actor: '',
    data_json: '',
    libvirt_lifecycle: '',
    libvirt_device: '',
    bookmark: true,
  }
}

/** The caller's identity; a host limit as a message (absent: every host). */
export function whoAmIOut(w: WhoAmIView): WhoAmIResponse {
  return {
    subject: w.subject,
    source: w.source,
    roles: w.roles,
    groups: w.groups,
    host_limit: w.hosts ? { hosts: w.hosts } : null,
    tenant: w.tenant ?? '',
  }
}

/** A page of the audit trail; `next_after_id` 0 = no more, `detail_json` the detail as a JSON object. */
export function auditPageOut(p: AuditPage): ListAuditRecordsResponse {
  return {
    items: p.items.map((r) => ({
      id: String(r.id),
      time: r.time,
      actor: r.actor,
      action: r.action,
      target: r.target,
      outcome: r.outcome,
      request_id: r.requestId ?? '',
      detail_json: JSON.stringify(r.detail),
    })),
    next_after_id: String(p.nextAfterId ?? 0),
  }
}
