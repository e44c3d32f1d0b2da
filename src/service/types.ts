/**
 * Plain data shapes of the application service (docs/api.md (Resources)): what every transport receives and
 * returns. JSON-safe throughout (dates as ISO strings), so a stored idempotent response replays
 * byte for byte. No transport concepts here.
 */
import type { Violation } from '../domain/errors.js'
import type { ObservedAdapter, ObservedQueue } from '../domain/observed.js'
import type { PlanOp } from '../domain/plan.js'
import type { MdevCondition } from '../store/index.js'
import type { StoredMdevStatus } from '../domain/mdev-status.js'
import type { DrainPolicySpec } from '../domain/drain-policy.js'
import type { AuthSource, Principal } from '../auth/identity.js'

/** Who calls and how: the per-request options every mutating operation takes. */
export interface CallContext {
  /** The caller, for audit and events (`anonymous` when unknown). */
  actor?: string
  /** The server's id of the request (generated, never the caller's): audit records, events, logs. */
  requestId?: string
  /** The caller's own request id (REST and gRPC `x-request-id`), kept to correlate with its logs; audit `detail.correlationId`. */
  correlationId?: string
  /**
   * Optimistic concurrency: the resourceVersion the caller last read, or several (any may match, as an
   * If-Match list in RFC 9110); `*` or absent = any.
   */
  ifMatch?: string | readonly string[]
  /** Validate and plan only: nothing is stored, nothing enqueued. */
  dryRun?: boolean
  /** Creates only: the same key with the same request returns the stored result. */
  idempotencyKey?: string
  /** How a returned plan is answered (dry runs, apply): `summary` (default) or `full`. */
  planView?: PlanDetail
  /**
   * The authenticated caller (src/auth): its tenant limit applies to matrix devices (service/tenancy.ts).
   * Absent: an in-process caller, not limited.
   */
  principal?: Principal
}

/** The caller as the service sees it (docs/security.md): REST `GET /v1/auth/whoami`, gRPC `AuthService.WhoAmI`. */
export interface WhoAmIView {
  subject: string
  /** How it authenticated (`local`: no authentication is configured). */
  source: AuthSource
  roles: string[]
  groups: string[]
  /** The hosts its roles are limited to; null = every host. */
  hosts: string[] | null
  /** The owner name a `tenant` role manages; null = none. */
  tenant: string | null
}

/** Filters and page of {@link ApmatrixService.listAudit}: exact matches, all must hold; records after `afterId`. */
export interface AuditListQuery {
  target?: string
  /** `transport:source:subject`, as the records name it (`rest:jwt:alice`). */
  actor?: string
  /** `ok`, or the error code (`PERMISSION_DENIED`, ...). */
  outcome?: string
  afterId?: number
  /** 1..500, default 100. */
  limit?: number
}

/** One audit record as answered (docs/security.md (Audit)). */
export interface AuditRecordView {
  id: number
  /** RFC 3339. */
  time: string
  actor: string
  action: string
  target: string
  outcome: string
  requestId: string | null
  detail: Record<string, unknown>
}

/** A page of the audit trail; `nextAfterId` (null: no more) is the `afterId` of the next page. */
export interface AuditPage {
  items: AuditRecordView[]
  nextAfterId: number | null
}

/** A host (docs/api.md (Resources) Host). */
export interface HostView {
  name: string
  machineId: string
  driver: string
  profile: string | null
  features: string[]
  maxAdapterId: number
  maxDomainId: number
  bootId: string
  /** The replica holding the live reconcile lease, or null. */
  leaseHolder: string | null
}

/** One page of a list. */
export interface Page<T> {
  items: T[]
  nextPageToken?: string
}

/** Inventory filters of {@link ApmatrixService.listQueues}. */
export interface QueueQuery {
  adapter?: number | string
  domain?: number | string
  driver?: 'cex4queue' | 'vfio_ap' | 'none'
  /** An mdev uuid; `none` = queues no mdev holds. */
  owner?: string
  limit?: number
  pageToken?: string
}

export type AdapterView = ObservedAdapter
export type QueueView = ObservedQueue

/** Usage and control domains of the host configuration (QCI), and what the masks reserve. */
export interface DomainsView {
  usageDomains: number[]
  controlDomains: number[]
  /** Domains whose aqmask bit is set on the bus (usable by the default drivers). */
  hostDomains: number[]
}

/** A matrix device as the bus shows it, and whether apmatrix manages it (docs/api.md (Reconcile): foreign devices show). */
export interface BusMdevView {
  uuid: string
  /** True when a stored matrix device has this uuid (apmatrix created or adopted it). */
  managed: boolean
  adapters: number[]
  domains: number[]
  controlDomains: number[]
  matrix: string[]
  guestMatrix: string[]
  guest: string | null
}

/** A mask as returned: the kernel text and the ids. */
export interface MaskPair {
  apmask: string
  aqmask: string
  apmaskIds: number[]
  aqmaskIds: number[]
}

/** Host masks: desired (spec) and observed (status). */
export interface MasksView {
  metadata: { host: string; generation: number; resourceVersion: string; updatedAt: string }
  spec: MaskPair
  /** Null when the bus could not be read. */
  status: (MaskPair & { observedAt: string /** Requests flushed by this host's hand-overs so far (the reconciler's count). */; lostRequests: number }) | null
}

/** Mask input: any kernel syntax (B-21), or a JSON array of ids. */
export type MaskInput = string | Array<number | string>

/** Body of a masks write; absent = unchanged. */
export interface MasksInput {
  apmask?: MaskInput
  aqmask?: MaskInput
}

/** Spec as given by a caller: ids as integers or decimal / `0x` strings (docs/api.md (Resources)). */
export interface MdevSpecInput {
  adapters?: Array<number | string>
  domains?: Array<number | string>
  controlDomains?: Array<number | string>
  state?: 'started' | 'stopped'
  /** The hand-over's drain policy (domain/drain-policy.ts; checked by normalizeSpec); null or absent: the service default. */
  drain?: { timeoutSeconds?: number; onTimeout?: string } | null
}

/** Body of a create. */
export interface MdevCreateInput {
  uuid?: string
  spec: MdevSpecInput
  labels?: Record<string, string>
  owner?: string | null
}

/** Body of a replace (PUT). */
export interface MdevReplaceInput {
  spec: MdevSpecInput
  labels?: Record<string, string>
  owner?: string | null
}

/**
 * A change of the named fields of a matrix device only (gRPC UpdateMdev with a field mask); absent
 * fields stay as stored.
 */
export interface MdevFieldsUpdate {
  /** Spec fields to set; a null field returns to its default (an empty id list, `started`). */
  spec?: {
    adapters?: Array<number | string> | null
    domains?: Array<number | string> | null
    controlDomains?: Array<number | string> | null
    state?: 'started' | 'stopped' | null
    /** Replaces the whole policy; null: the service default. */
    drain?: { timeoutSeconds?: number; onTimeout?: string } | null
  }
  /** Replaces the whole label map. */
  labels?: Record<string, string>
  /** Sets (a string) or removes (null) single labels, after `labels`. */
  labelChanges?: Record<string, string | null>
  /** The new owner; null = none. */
  owner?: string | null
}

/** Condition as stored by the reconciler. */
export type ConditionView = MdevCondition

/** A matrix device (docs/api.md (Resources)). */
export interface MdevView {
  metadata: {
    uuid: string
    host: string
    generation: number
    resourceVersion: string
    createdAt: string
    updatedAt: string
    labels: Record<string, string>
    owner: string | null
    origin: 'apmatrix' | 'imported'
    /** Set once a delete was requested; the reconciler removes the device, then the object. */
    deletionRequestedAt: string | null
    force: boolean
  }
  spec: {
    adapters: number[]
    domains: number[]
    controlDomains: number[]
    state: 'started' | 'stopped' /** Null: the service default. */
    drain: DrainPolicySpec | null
  }
  status: StoredMdevStatus
}

/** List filters of {@link ApmatrixService.listMdevs}. */
export interface MdevQuery {
  state?: 'started' | 'stopped'
  owner?: string
  /** `key=value` pairs, all must match. */
  labels?: Record<string, string>
  limit?: number
  pageToken?: string
}

/** A whole-host desired document (PUT desired, POST plan). */
export interface DesiredInput {
  masks?: MasksInput
  mdevs?: Array<{ uuid: string; spec: MdevSpecInput; labels?: Record<string, string>; owner?: string | null }>
  /** Devices of this owner that the document omits are deleted. Absent: devices with no owner. */
  owner?: string | null
}

/** An APQN a proposed matrix pulls in, and who has it now. */
export interface ClaimedApqn {
  apqn: string
  /** The mdev of the proposal that claims it. */
  uuid: string
  /** `host` (default drivers), another mdev uuid, or null (no queue, or unbound). */
  currentOwner: string | null
}

/** An adapter a guest would not see (V-20). */
export interface FilteredAdapter {
  uuid: string
  apid: number
  reason: 'NotInHostConfig' | 'QueueMissing'
  /** The APQNs without a queue device (QueueMissing). */
  apqns: string[]
}

/** A dry-run plan (docs/api.md (Reconcile), §5 `POST plan`). */
export interface PlanView {
  operations: PlanOp[]
  violations: Violation[]
  claimedApqns: ClaimedApqn[]
  filteredAdapters: FilteredAdapter[]
  drainedQueues: string[]
  /** The policy the drain of `drainedQueues` would run under (null: nothing drains); see {@link PlanDrainPolicy}. */
  drainPolicy: PlanDrainPolicy | null
  /** Steps the reconciler would have to wait for (a guest holds a device open, ...). */
  deferred: Array<{ reason: string; uuid?: string; apqns?: string[]; message: string }>
}

/**
 * Outcome of a mutating call: the stored result, or, with `dryRun`, the plan of what would change.
 * `created` (creates only) tells a new object from an idempotent repeat; `replayed` that the result
 * came from an earlier request with the same idempotency key.
 */
export type Mutation<T> = { dryRun: false; result: T; created?: boolean; replayed?: boolean } | { dryRun: true; plan: PlanAnswer }

/** Result of a whole-host apply. */
export interface ApplyResult {
  plan: PlanAnswer
  masks: { generation: number; resourceVersion: string }
  mdevs: Array<{ uuid: string; generation: number; resourceVersion: string; action: 'created' | 'updated' | 'unchanged' | 'deleted' }>
}

/** Emulator hardware action body (the emulator shell's actions). */
export interface HardwareInput {
  action: 'config-off' | 'config-on' | 'checkstop' | 'checkstop-clear' | 'add-adapter' | 'remove-adapter' | 'add-domain' | 'remove-domain' | 'set-mode'
  apid?: number
  apqi?: number
  rawType?: number
  type?: string
  mode?: 'cca' | 'ep11' | 'accel'
  control?: boolean
  notify?: boolean
}

/** An exported matrix device (issue 4 §4): the foreign tool's document and its media type. */
export interface ExportView {
  format: 'mdevctl' | 'libvirt-nodedev' | 'libvirt-hostdev'
  contentType: 'application/json' | 'application/xml'
  body: string
  /** mdevctl: where mdevctl keeps the definition (`/etc/mdevctl.d/matrix/<uuid>`). */
  path?: string
}

/** Per-call options of an import, beside the call context. */
export interface ImportOptions {
  /** Owner given to the devices the import creates (absent: none). */
  owner?: string | null
  /** libvirt-nodedev only: the state of the device, which the XML does not carry (default `stopped`, as `virsh nodedev-define`). */
  state?: 'started' | 'stopped'
}

/** What an import did with one device of the document. */
export interface ImportAction {
  uuid: string
  /** `created`: new; `adopted`: a foreign device on the bus, now ours; `unchanged`: stored already with the same spec. */
  action: 'created' | 'adopted' | 'unchanged'
}

/** Result of an import: every device of the document as stored, in document order. */
export interface ImportView {
  items: MdevView[]
  actions: ImportAction[]
  /** Definitions the document holds that are not matrix devices (mdevctl: other parents), with the reason. */
  skipped: Array<{ parent: string; uuid: string; mdevType?: string; reason: string }>
}

/** How a plan is answered: `summary` (the default) or `full` (the summary and every list). */
export type PlanDetail = 'summary' | 'full'

/**
 * A set of APQNs: its size and its ranges, each `aa.dddd-aa.dddd` (consecutive domains of one adapter)
 * or `aa.dddd`, in APQN order, the first 64; `moreRanges` counts the ranges left out.
 */
export interface ApqnSetSummary {
  count: number
  ranges: string[]
  moreRanges: number
}

/** The operations of one kind of a plan, in the order the plan first runs the kind. */
export interface PlanOperationSummary {
  kind: PlanOp['kind']
  count: number
  /** Matrix devices the operations name (the first 20), and how many in all. */
  devices: string[]
  deviceCount: number
  /** APQNs the operations name (mask changes, drains, binds). */
  apqns: ApqnSetSummary
}

/** The first entries of a list (at most 20), and its length. */
export interface FirstOf<T> {
  count: number
  first: T[]
}

/** The summary of a plan (docs/api.md (Reconcile) "Plan views"): its counts are the lengths of the full lists. */
/**
 * The drain policy of a plan's hand-over (domain/drain-policy.ts): the strictest of the policies of the devices
 * that take the drained queues, and of the service default for queues no device takes.
 */
export interface PlanDrainPolicy {
  timeoutSeconds: number
  onTimeout: 'flush' | 'wait'
  /** The first 20 devices taking drained queues, and how many in all. */
  devices: string[]
  deviceCount: number
  /** Some drained queue is taken by no device (a masks-only change): the service default applies to it. */
  defaultApplies: boolean
}

export interface PlanSummary {
  /** Every operation (the length of the full `operations` list). */
  operationCount: number
  operations: PlanOperationSummary[]
  violations: FirstOf<Violation>
  claimedApqns: ApqnSetSummary & {
    /** Claimed APQNs by their current owner (`host`, a device uuid, or null: no queue or unbound), largest first. */
    byOwner: Array<{ currentOwner: string | null; count: number }>
  }
  filteredAdapters: FirstOf<FilteredAdapter>
  drainedQueues: ApqnSetSummary
  drainPolicy: PlanDrainPolicy | null
  deferred: FirstOf<PlanView['deferred'][number]>
}

/** A plan as answered: always the summary; with view `full` also every list of {@link PlanView}. */
export type PlanAnswer = { view: 'summary'; summary: PlanSummary } | ({ view: 'full'; summary: PlanSummary } & PlanView)
