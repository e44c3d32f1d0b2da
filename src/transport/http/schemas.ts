/**
 * TypeBox schemas of the REST API (docs/api.md (REST)), for input validation, response serialisation and the
 * OpenAPI document. Inputs: every string, array, number and map bounded; unknown fields rejected
 * (additionalProperties false). Deeper rules (id syntax, masks, uuids, labels) are the service's.
 */
import { type Static, type TBoolean, type TInteger, type TSchema, type TString, Type } from 'typebox'
import { HOST_NAME_PATTERN } from '../../domain/names.js'
import { MAX_MASK_IDS, MAX_MASK_TEXT, PLAN_VIEWS } from '../../service/index.js'

const Str = (max: number, extra: Record<string, unknown> = {}) => Type.String({ maxLength: max, ...extra })
// Integers above the host maximum are the service's OUT_OF_RANGE (E-3), not a schema error.
const Id = Type.Union([Type.Integer({ minimum: 0, maximum: 0xffff_ffff }), Type.String({ minLength: 1, maxLength: 12 })], {
  description: 'APID or APQI: an integer, or a decimal or 0x hex string',
})
/** Id lists: up to 1024 entries (duplicates are folded). */
const IdList = Type.Array(Id, { maxItems: 1024 })
export const UuidString = Str(36, { minLength: 36, pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' })
const HostName = Str(63, { minLength: 1, pattern: HOST_NAME_PATTERN })
// Key rules live in the service (one place for REST and gRPC) and in the description: OpenAPI 3.0 has no
// `propertyNames`, and a document that uses it fails validation. The body limit bounds the keys' size.
const LABEL_KEYS = 'at most 64 labels; keys 1..128 characters of [A-Za-z0-9._/-], alphanumeric at both ends; values at most 256 characters'
const Labels = Type.Record(Type.String(), Str(256), { maxProperties: 64, description: LABEL_KEYS })
const Owner = Type.Union([Str(128, { minLength: 1 }), Type.Null()])
// The service enforces the same bounds for gRPC (one set of bounds for both transports).
const MaskIn = Type.Union([Str(MAX_MASK_TEXT), Type.Array(Id, { maxItems: MAX_MASK_IDS })], {
  description: 'kernel mask syntax (0x..., +n,-m,+a-b) or an array of ids',
})

const State = Type.Union([Type.Literal('started'), Type.Literal('stopped')])

/** The hand-over's drain policy of a device (domain/drain-policy.ts); an absent field takes the service default. */
const DrainIn = Type.Object(
  {
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600, description: 'how long queues this device takes may drain' })),
    onTimeout: Type.Optional(
      Type.Union([Type.Literal('flush'), Type.Literal('wait')], {
        description: 'flush: hand over anyway and count the lost requests; wait: keep waiting, never lose a request',
      }),
    ),
  },
  { additionalProperties: false },
)

export const SpecIn = Type.Object(
  {
    adapters: Type.Optional(IdList),
    domains: Type.Optional(IdList),
    controlDomains: Type.Optional(IdList),
    state: Type.Optional(State),
    drain: Type.Optional(Type.Union([DrainIn, Type.Null()], { description: 'null or absent: the service default' })),
  },
  { additionalProperties: false },
)

export const HostParams = Type.Object({ host: HostName }, { additionalProperties: false })
export const MdevParams = Type.Object({ host: HostName, uuid: Str(64, { minLength: 1 }) }, { additionalProperties: false })
export const GuestParams = Type.Object({ host: HostName, guest: Str(128, { minLength: 1 }) }, { additionalProperties: false })

// Request headers (documented in OpenAPI and bounded; other headers pass).
export const IfNoneMatchHeaders = Type.Object({
  'if-none-match': Type.Optional(Str(8192, { description: 'ETags of versions the client holds (weak comparison), or *: 304 Not Modified when one matches' })),
})
/** 304 Not Modified: no body. */
export const NotModifiedOut = Type.Null({ description: 'Not Modified: the ETag matched If-None-Match; no body' })
export const IfMatchHeaders = Type.Object({
  'if-match': Type.Optional(Str(4096, { description: 'the ETag of the version last read, a list of ETags (any may match), or *' })),
})
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Str(128, { minLength: 1, description: 'the same key and request again returns the stored response' })),
})

/** How a returned plan is answered: `summary` (default) or `full` (the summary and every list). */
export const PlanViewParam = Type.Optional(
  Type.Union(
    PLAN_VIEWS.map((v) => Type.Literal(v)),
    { description: 'how a returned plan is answered: summary (default) or full' },
  ),
)
export const DryRunQuery = Type.Object({ dryRun: Type.Optional(Type.Boolean()), view: PlanViewParam }, { additionalProperties: false })
export const DeleteQuery = Type.Object(
  { dryRun: Type.Optional(Type.Boolean()), force: Type.Optional(Type.Boolean()), view: PlanViewParam },
  { additionalProperties: false },
)
export const PlanQuery = Type.Object({ view: PlanViewParam }, { additionalProperties: false })
const Limit = Type.Integer({ minimum: 1, maximum: 500 })
const PageToken = Str(512)
export const QueueQuery = Type.Object(
  {
    adapter: Type.Optional(Str(12, { minLength: 1 })),
    domain: Type.Optional(Str(12, { minLength: 1 })),
    driver: Type.Optional(Type.Union([Type.Literal('cex4queue'), Type.Literal('vfio_ap'), Type.Literal('none')])),
    owner: Type.Optional(Str(36, { minLength: 1 })),
    limit: Type.Optional(Limit),
    pageToken: Type.Optional(PageToken),
  },
  { additionalProperties: false },
)
export const MdevListQuery = Type.Object(
  {
    state: Type.Optional(State),
    owner: Type.Optional(Str(128, { minLength: 1 })),
    label: Type.Optional(Str(2048, { description: 'comma-separated key=value pairs, all must match' })),
    limit: Type.Optional(Limit),
    pageToken: Type.Optional(PageToken),
  },
  { additionalProperties: false },
)
export const SysfsQuery = Type.Object({ path: Str(512, { minLength: 1 }) }, { additionalProperties: false })

export const MasksIn = Type.Object({ apmask: Type.Optional(MaskIn), aqmask: Type.Optional(MaskIn) }, { additionalProperties: false })
export const MdevCreateIn = Type.Object(
  { uuid: Type.Optional(UuidString), spec: SpecIn, labels: Type.Optional(Labels), owner: Type.Optional(Owner) },
  { additionalProperties: false },
)
export const MdevReplaceIn = Type.Object({ spec: SpecIn, labels: Type.Optional(Labels), owner: Type.Optional(Owner) }, { additionalProperties: false })
/** A merge patch: only spec, labels and owner (also under metadata) may appear; null removes (RFC 7396). */
const SpecPatch = Type.Object(
  {
    adapters: Type.Optional(Type.Union([IdList, Type.Null()])),
    domains: Type.Optional(Type.Union([IdList, Type.Null()])),
    controlDomains: Type.Optional(Type.Union([IdList, Type.Null()])),
    state: Type.Optional(Type.Union([State, Type.Null()])),
    drain: Type.Optional(Type.Union([DrainIn, Type.Null()], { description: 'replaced as a whole; null: the service default' })),
  },
  { additionalProperties: false },
)
const LabelsPatch = Type.Union([
  Type.Record(Type.String(), Type.Union([Str(256), Type.Null()]), { maxProperties: 64, description: `${LABEL_KEYS}; null removes a label` }),
  Type.Null(),
])
export const MdevPatchIn = Type.Object(
  {
    spec: Type.Optional(SpecPatch),
    labels: Type.Optional(LabelsPatch),
    owner: Type.Optional(Owner),
    metadata: Type.Optional(Type.Object({ labels: Type.Optional(LabelsPatch), owner: Type.Optional(Owner) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
)
const DesiredMdevIn = Type.Object(
  { uuid: UuidString, spec: SpecIn, labels: Type.Optional(Labels), owner: Type.Optional(Owner) },
  { additionalProperties: false },
)
export const DesiredIn = Type.Object(
  {
    masks: Type.Optional(MasksIn),
    mdevs: Type.Optional(Type.Array(DesiredMdevIn, { maxItems: 4096 })),
    owner: Type.Optional(Owner),
  },
  { additionalProperties: false },
)
export const PlanIn = Type.Union([DesiredIn, MdevCreateIn])

export const SysfsWriteIn = Type.Object({ path: Str(512, { minLength: 1 }), value: Str(4096) }, { additionalProperties: false })
export const HardwareIn = Type.Object(
  {
    action: Type.Union(
      ['config-off', 'config-on', 'checkstop', 'checkstop-clear', 'add-adapter', 'remove-adapter', 'add-domain', 'remove-domain', 'set-mode'].map((a) =>
        Type.Literal(a),
      ),
    ),
    apid: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
    apqi: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
    rawType: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
    type: Type.Optional(Str(16)),
    mode: Type.Optional(Type.Union([Type.Literal('cca'), Type.Literal('ep11'), Type.Literal('accel')])),
    control: Type.Optional(Type.Boolean()),
    notify: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)
export const GuestOpenIn = Type.Object({ uuid: UuidString, guest: Str(128, { minLength: 1 }) }, { additionalProperties: false })
export const WorkloadIn = Type.Object(
  { apqn: Str(16, { minLength: 1 }), perSecond: Type.Integer({ minimum: 0, maximum: 100_000 }) },
  { additionalProperties: false },
)
/** Injected write faults of an emulated host (docs/emulator-sysfs.md "Fault injection"); the service checks the rest (glob syntax, delayMs only and always for delay). */
const FaultRuleFields = {
  path: Str(512, { minLength: 1, description: 'a sysfs path prefix (/sys/...) or a glob over the whole path' }),
  rate: Type.Number({ minimum: 0, maximum: 1, description: 'probability that a matching write is hit' }),
  kind: Type.Union([Type.Literal('eio'), Type.Literal('ebusy'), Type.Literal('delay')]),
  delayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000, description: 'delay rules: wall ms before the write is made (1..60000)' })),
}
export const FaultsIn = Type.Object(
  {
    rules: Type.Array(Type.Object(FaultRuleFields, { additionalProperties: false }), { maxItems: 32 }),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 0xffff_ffff })),
  },
  { additionalProperties: false },
)
export const RequestsIn = Type.Object(
  { apqn: Str(16, { minLength: 1 }), count: Type.Integer({ minimum: 1, maximum: 100_000 }) },
  { additionalProperties: false },
)

// ---- outputs ------------------------------------------------------------------------------------
// The answers are published as named OpenAPI components (components.schemas.<$id>): each is registered once
// with `app.addSchema` (COMPONENT_SCHEMAS, app.ts) and used by `$ref` in routes and in other components, so
// clients generate one type per resource. Inputs stay inline: they are validated by TypeBox's own compiler.

const components: TSchema[] = []

/**
 * Declares `schema` as the component `id` and returns a `$ref` to it. The reference is typed as the schema
 * itself, so route handlers keep their reply types while the wire schema is the reference.
 */
function component<T extends TSchema>(id: string, schema: T): T {
  components.push(Object.assign(schema, { $id: id }))
  return Type.Ref(id) as unknown as T
}

/**
 * A nullable primitive written as `type: [T, 'null']`: fast-json-stringify compiles it to a null check,
 * where a `Type.Union([T, Type.Null()])` (`anyOf`) costs an ajv validation per value serialised.
 * @fastify/swagger writes it as `nullable: true` in the OpenAPI 3.0 document.
 */
function Nullable<T extends TString | TInteger | TBoolean>(t: T) {
  return Type.Unsafe<Static<T> | null>({ ...t, type: [t.type, 'null'] })
}
const NullableString = Nullable(Type.String())

const Ids = Type.Array(Type.Integer())
const Strings = Type.Array(Type.String())
export const ViolationOut = component(
  'Violation',
  Type.Object(
    {
      rule: Type.String(),
      message: Type.String(),
      apqn: Type.Optional(Type.String()),
      id: Type.Optional(Type.Integer()),
      field: Type.Optional(Type.String()),
      owner: Type.Optional(Type.String()),
      fix: Type.Optional(Type.String()),
    },
    { description: 'One broken rule: the APQN or id, the current owner, a suggested fix (docs/api.md (Admission))' },
  ),
)
export const ProblemOut = component(
  'Problem',
  Type.Object(
    {
      type: Type.Optional(Type.String()),
      status: Type.Integer(),
      title: Type.String(),
      detail: Type.String(),
      code: Type.String(),
      errno: Type.Optional(Type.String()),
      violations: Type.Optional(Type.Array(ViolationOut)),
      oldestSeq: Type.Optional(Type.Integer({ description: 'GONE (410): the oldest position an event watch can start from (docs/api.md (Events) Retention)' })),
      requestId: Type.String(),
    },
    { description: 'application/problem+json body of every error answer (docs/api.md (Errors))' },
  ),
)

export const HostOut = component(
  'Host',
  Type.Object({
    name: Type.String(),
    machineId: Type.String(),
    driver: Type.String(),
    profile: NullableString,
    features: Strings,
    maxAdapterId: Type.Integer(),
    maxDomainId: Type.Integer(),
    bootId: Type.String(),
    leaseHolder: NullableString,
  }),
)
export const HostListOut = component('HostList', Type.Object({ items: Type.Array(HostOut) }))

const NullableBool = Nullable(Type.Boolean())
export const AdapterOut = component(
  'Adapter',
  Type.Object({
    apid: Type.Integer(),
    hwtype: Type.Integer(),
    rawHwtype: Type.Integer(),
    type: Type.String(),
    mode: Type.String(),
    functions: Strings,
    config: Type.Boolean(),
    chkstop: Type.Boolean(),
    online: NullableBool,
    driver: Type.String(),
    depth: Nullable(Type.Integer()),
  }),
)
export const QueueOut = component(
  'Queue',
  Type.Object({
    apqn: Type.String(),
    apid: Type.Integer(),
    apqi: Type.Integer(),
    driver: Type.String(),
    vfioStatus: NullableString,
    config: Type.Boolean(),
    chkstop: Type.Boolean(),
    online: NullableBool,
    requestqCount: Type.Integer(),
    pendingqCount: Type.Integer(),
    requestCount: Nullable(Type.Integer()),
    owner: Nullable(
      Type.String({ description: 'uuid of the matrix device holding the APQN; "in use" when the caller may not see that device (a tenant); null when none' }),
    ),
  }),
)
export const AdapterListOut = component('AdapterList', Type.Object({ items: Type.Array(AdapterOut) }))
export const QueuePageOut = component('QueuePage', Type.Object({ items: Type.Array(QueueOut), nextPageToken: Type.Optional(Type.String()) }))
export const DomainsOut = component('Domains', Type.Object({ usageDomains: Ids, controlDomains: Ids, hostDomains: Ids }))
const BusMdevOut = component(
  'BusMdev',
  Type.Object({
    uuid: Type.String(),
    managed: Type.Boolean(),
    adapters: Ids,
    domains: Ids,
    controlDomains: Ids,
    matrix: Strings,
    guestMatrix: Strings,
    guest: NullableString,
  }),
)
export const BusMdevListOut = component('BusMdevList', Type.Object({ items: Type.Array(BusMdevOut) }))

const MaskPairOut = component('MaskPair', Type.Object({ apmask: Type.String(), aqmask: Type.String(), apmaskIds: Ids, aqmaskIds: Ids }))
export const MasksOut = component(
  'Masks',
  Type.Object({
    metadata: Type.Object({ host: Type.String(), generation: Type.Integer(), resourceVersion: Type.String(), updatedAt: Type.String() }),
    spec: MaskPairOut,
    status: Type.Union([
      Type.Object({
        apmask: Type.String(),
        aqmask: Type.String(),
        apmaskIds: Ids,
        aqmaskIds: Ids,
        observedAt: Type.String(),
        lostRequests: Type.Integer({ description: "requests flushed by this host's hand-overs so far" }),
      }),
      Type.Null(),
    ]),
  }),
)

const ConditionOut = component(
  'Condition',
  Type.Object({
    type: Type.String(),
    status: Type.String(),
    reason: Type.String(),
    message: Type.String(),
    lastTransitionTime: Type.String(),
    observedGeneration: Type.Integer(),
  }),
)
const MdevMetadataOut = component(
  'MdevMetadata',
  Type.Object({
    uuid: Type.String(),
    host: Type.String(),
    generation: Type.Integer(),
    resourceVersion: Type.String(),
    createdAt: Type.String(),
    updatedAt: Type.String(),
    labels: Type.Record(Type.String(), Type.String()),
    owner: NullableString,
    origin: Type.String(),
    deletionRequestedAt: NullableString,
    force: Type.Boolean(),
  }),
)
const DrainPolicyOut = component(
  'DrainPolicy',
  Type.Object(
    { timeoutSeconds: Type.Optional(Type.Integer()), onTimeout: Type.Optional(Type.String()) },
    { description: 'absent fields: the service default' },
  ),
)
const MdevSpecOut = component(
  'MdevSpec',
  Type.Object({ adapters: Ids, domains: Ids, controlDomains: Ids, state: Type.String(), drain: Type.Union([DrainPolicyOut, Type.Null()]) }),
)
const MdevStatusOut = component(
  'MdevStatus',
  Type.Object(
    {
      observedGeneration: Type.Optional(Type.Integer()),
      active: Type.Optional(Type.Boolean()),
      matrix: Type.Optional(Strings),
      guestMatrix: Type.Optional(Strings),
      controlDomains: Type.Optional(Ids),
      guest: Type.Optional(NullableString),
      lostRequests: Type.Optional(Type.Integer()),
      draining: Type.Optional(
        Type.Record(Type.String(), Type.Integer(), {
          description: 'while a hand-over drains queues this device takes: requests in flight per queue (0: idle, offline for new work)',
        }),
      ),
      conditions: Type.Optional(Type.Array(ConditionOut)),
    },
    { description: '{} until the first reconcile pass' },
  ),
)
export const MdevOut = component('Mdev', Type.Object({ metadata: MdevMetadataOut, spec: MdevSpecOut, status: MdevStatusOut }))
export const MdevPageOut = component('MdevPage', Type.Object({ items: Type.Array(MdevOut), nextPageToken: Type.Optional(Type.String()) }))

// Plan operations are a tagged union (domain/plan.ts PlanOp); documented by `kind`, fields passed through.
const PlanOpOut = component('PlanOperation', Type.Object({ kind: Type.String() }, { additionalProperties: true }))
const ClaimedApqnOut = Type.Object({ apqn: Type.String(), uuid: Type.String(), currentOwner: NullableString })
const FilteredAdapterOut = Type.Object({ uuid: Type.String(), apid: Type.Integer(), reason: Type.String(), apqns: Strings })
const DeferredOut = Type.Object({ reason: Type.String(), uuid: Type.Optional(Type.String()), apqns: Type.Optional(Strings), message: Type.String() })
const ApqnSetOut = Type.Object({ count: Type.Integer(), ranges: Strings, moreRanges: Type.Integer() })
const firstOf = <T extends TSchema>(item: T) => Type.Object({ count: Type.Integer(), first: Type.Array(item) })
const PlanDrainPolicyOut = component(
  'PlanDrainPolicy',
  Type.Union([
    Type.Object(
      {
        timeoutSeconds: Type.Number(),
        onTimeout: Type.String(),
        devices: Strings,
        deviceCount: Type.Integer(),
        defaultApplies: Type.Boolean(),
      },
      { description: 'the strictest policy of the devices taking the drained queues (and the default for queues none takes)' },
    ),
    Type.Null(),
  ]),
)
const PlanSummaryOut = component(
  'PlanSummary',
  Type.Object({
    operationCount: Type.Integer(),
    operations: Type.Array(Type.Object({ kind: Type.String(), count: Type.Integer(), devices: Strings, deviceCount: Type.Integer(), apqns: ApqnSetOut })),
    violations: firstOf(ViolationOut),
    claimedApqns: Type.Object({
      count: Type.Integer(),
      ranges: Strings,
      moreRanges: Type.Integer(),
      byOwner: Type.Array(Type.Object({ currentOwner: NullableString, count: Type.Integer() })),
    }),
    filteredAdapters: firstOf(FilteredAdapterOut),
    drainedQueues: ApqnSetOut,
    drainPolicy: PlanDrainPolicyOut,
    deferred: firstOf(DeferredOut),
  }),
)
/** A plan answer: the summary always; the lists only in the full view (docs/api.md (Reconcile) "Plan views"). */
export const PlanOut = component(
  'Plan',
  Type.Object({
    view: Type.Union(PLAN_VIEWS.map((v) => Type.Literal(v))),
    summary: PlanSummaryOut,
    operations: Type.Optional(Type.Array(PlanOpOut)),
    violations: Type.Optional(Type.Array(ViolationOut)),
    claimedApqns: Type.Optional(Type.Array(ClaimedApqnOut)),
    filteredAdapters: Type.Optional(Type.Array(FilteredAdapterOut)),
    drainedQueues: Type.Optional(Strings),
    drainPolicy: Type.Optional(PlanDrainPolicyOut),
    deferred: Type.Optional(Type.Array(DeferredOut)),
  }),
)
export const DryRunOut = component('DryRun', Type.Object({ dryRun: Type.Literal(true), plan: PlanOut }))
export const ApplyOut = component(
  'ApplyResult',
  Type.Object({
    plan: PlanOut,
    masks: Type.Object({ generation: Type.Integer(), resourceVersion: Type.String() }),
    mdevs: Type.Array(Type.Object({ uuid: Type.String(), generation: Type.Integer(), resourceVersion: Type.String(), action: Type.String() })),
  }),
)
export const FaultsOut = component(
  'Faults',
  Type.Object({
    rules: Type.Array(Type.Object({ ...FaultRuleFields, matched: Type.Integer(), injected: Type.Integer() })),
    seed: Type.Integer(),
    writes: Type.Integer(),
    failed: Type.Integer(),
    delayed: Type.Integer(),
  }),
)
export const GuestsOut = component('GuestList', Type.Object({ items: Type.Array(Type.Object({ uuid: Type.String(), guest: Type.String() })) }))
export const AcceptedOut = Type.Object({ accepted: Type.Integer() })
/** A page of the audit trail: `GET /v1/audit` (docs/security.md (Audit)). */
export const AuditPageOut = component(
  'AuditPage',
  Type.Object({
    items: Type.Array(
      Type.Object({
        id: Type.Integer(),
        time: Type.String(),
        actor: Type.String(),
        action: Type.String(),
        target: Type.String(),
        outcome: Type.String(),
        requestId: Type.Union([Type.String(), Type.Null()]),
        detail: Type.Record(Type.String(), Type.Unknown()),
      }),
    ),
    nextAfterId: Type.Union([Type.Integer(), Type.Null()]),
  }),
)
/** The caller as the service sees it (docs/security.md): `GET /v1/auth/whoami`. */
export const WhoAmIOut = component(
  'WhoAmI',
  Type.Object({
    subject: Type.String(),
    source: Type.String({ enum: ['mtls', 'jwt', 'token', 'local'] }),
    roles: Type.Array(Type.String()),
    groups: Type.Array(Type.String()),
    hosts: Type.Union([Type.Array(Type.String()), Type.Null()]),
    tenant: Type.Union([Type.String(), Type.Null()]),
  }),
)
export const StatusOut = Type.Object({ status: Type.String() })
/** An answer without a body (204). */
export const NoContent = Type.Null({ description: 'No Content' })

/** Every named component, for `app.addSchema` before any route that references one (app.ts). */
export const COMPONENT_SCHEMAS: readonly TSchema[] = components

/** A response map with the problem body for every error status (documentation; errors are sent pre-serialised). */
export function responses(ok: Record<number, TSchema>): Record<string, TSchema> {
  return { ...ok, '4xx': ProblemAnswer, '5xx': ProblemAnswer }
}

/** An error answer: the problem body under its own media type, as the error mapper sends it (the document says so too). */
const ProblemAnswer = {
  description: 'application/problem+json body of every error answer (docs/api.md (Errors))',
  content: { 'application/problem+json': { schema: ProblemOut } },
} as unknown as TSchema
