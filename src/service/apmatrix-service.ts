/**
 * The application service (docs/api.md "service layer"): the one object that REST and gRPC call. A thin
 * facade over one module per resource (hosts, inventory, masks, matrix devices, desired state, interop,
 * emulator controls, event watching); every write goes through the one mutation runner
 * (mutation-runner.ts). Inputs and outputs are plain objects (types.ts); every failure is an
 * ApmatrixError with a stable code.
 */
import type { DrainPolicy } from '../domain/drain-policy.js'
import type { EventHub } from '../events/hub.js'
import type { HostRegistry, ReconcileTrigger } from '../hosts/managed-host.js'
import type { FaultStatus } from '../emulator/faults.js'
import type { Store } from '../store/index.js'
import type { SubjectLimits } from '../auth/limits.js'
import { LOCAL_PRINCIPAL } from '../auth/identity.js'
import { invalidArgument } from '../domain/errors.js'
import { pageSize } from '../store/page-token.js'
import { DesiredState } from './desired-state.js'
import { EmulatorControls } from './emulator-controls.js'
import { type BookmarkListener, EventWatch, type Watch, type WatchEndListener, type WatchInput, type WatchListener } from './event-watch.js'
import { HostAccess } from './host-access.js'
import { Hosts } from './hosts.js'
import { Interop } from './interop.js'
import { Inventory } from './inventory.js'
import { Masks } from './masks.js'
import { MatrixDevices } from './matrix-devices.js'
import { MutationRunner } from './mutation-runner.js'
import { type Fresh, ReadCache } from './read-cache.js'
import type {
  AdapterView,
  ApplyResult,
  AuditListQuery,
  AuditPage,
  BusMdevView,
  CallContext,
  DesiredInput,
  DomainsView,
  ExportView,
  HardwareInput,
  HostView,
  ImportOptions,
  ImportView,
  MasksInput,
  MasksView,
  MdevCreateInput,
  MdevFieldsUpdate,
  MdevQuery,
  MdevReplaceInput,
  MdevView,
  Mutation,
  Page,
  PlanAnswer,
  PlanDetail,
  QueueQuery,
  QueueView,
  WhoAmIView,
} from './types.js'

/** Constructor arguments of {@link ApmatrixService}. */
export interface ApmatrixServiceOptions {
  store: Store
  hosts: HostRegistry
  reconciler: ReconcileTrigger
  /** The event fan-out that {@link ApmatrixService.watch} reads; without one, watching is UNAVAILABLE. */
  hub?: EventHub
  clock?: () => Date
  /** How long an idempotency key is remembered (default 24 h). */
  idempotencyTtlMs?: number
  /**
   * Reads of matrix devices and masks answer from the read cache (read-cache.ts); a read whose copy was last
   * synced with the store longer ago than this syncs first. Default 0: every read syncs (exactly what the
   * store holds, at the cost of one event-log query per read); the server passes APMATRIX_READ_MAX_STALENESS_MS.
   */
  readMaxStalenessMs?: number
  /** The reconciler's default drain policy, shown in the plans the service answers (default: 30 s, flush). */
  drainDefault?: DrainPolicy
  /**
   * Per-subject limits (src/auth/limits.ts): mutations (the mutation runner and the emulator controls) and
   * open event watches of each authenticated subject. Absent: no limits.
   */
  limits?: SubjectLimits
}

/** The application service. All methods may throw ApmatrixError; UNAVAILABLE when the store or a host's bus is down. */
export class ApmatrixService {
  private readonly store: Store
  private readonly hostOps: Hosts
  private readonly inventory: Inventory
  private readonly masks: Masks
  private readonly mdevs: MatrixDevices
  private readonly desired: DesiredState
  private readonly interop: Interop
  private readonly emulator: EmulatorControls
  private readonly events: EventWatch
  private readonly cache: ReadCache
  private readonly hub: EventHub | undefined
  private cacheWatch: (() => void) | null = null

  constructor(opts: ApmatrixServiceOptions) {
    if (!opts?.store || !opts.hosts || !opts.reconciler) throw new TypeError('ApmatrixService needs store, hosts and reconciler')
    const { store, reconciler } = opts
    const clock = opts.clock ?? (() => new Date())
    const access = new HostAccess(opts.hosts)
    this.cache = new ReadCache({ store, hosts: () => opts.hosts.list().map((h) => h.name), maxStalenessMs: opts.readMaxStalenessMs ?? 0 })
    const runner = new MutationRunner({
      store,
      access,
      reconciler,
      idempotencyTtlMs: opts.idempotencyTtlMs ?? 24 * 3600_000,
      cache: this.cache,
      ...(opts.drainDefault ? { drainDefault: opts.drainDefault } : {}),
      ...(opts.limits ? { limits: opts.limits } : {}),
    })
    this.store = store
    this.hub = opts.hub
    this.hostOps = new Hosts(store, access, clock)
    this.inventory = new Inventory(this.cache, access)
    this.masks = new Masks(this.cache, access, runner, clock)
    this.mdevs = new MatrixDevices(access, runner, this.cache)
    this.desired = new DesiredState(store, access, runner)
    this.interop = new Interop(this.mdevs, runner)
    this.emulator = new EmulatorControls(store, access, this.hostOps, reconciler, opts.limits)
    this.events = new EventWatch(
      opts.hub,
      (host, uuid) =>
        store.mdevs.get(host, uuid).then(
          (r) => r.owner,
          () => undefined,
        ),
      opts.limits,
    )
  }

  /**
   * Loads the read cache (every managed host's devices and masks) and, with a hub, lets each event batch about
   * devices or masks start a sync at once (so reads seldom wait for one). Call after {@link syncHosts} and
   * before serving; without it the first read loads the cache. UNAVAILABLE when the store does not answer.
   */
  async startReadCache(): Promise<void> {
    await this.cache.start()
    const hub = this.hub
    if (!hub || this.cacheWatch) return
    const watch = () => {
      this.cacheWatch = hub.subscribe(
        { kinds: ['mdev', 'masks'] },
        () => this.cache.kick(),
        (err) => {
          // Fell behind or a store read failed: watch again from now; the cache itself replays the log.
          if (err.name === 'HubClosedError' || !this.cacheWatch) return
          this.cache.kick()
          watch()
        },
      )
    }
    watch()
  }

  /** Stops the hub subscription of {@link startReadCache}. */
  stopReadCache(): void {
    const w = this.cacheWatch
    this.cacheWatch = null
    w?.()
  }

  /**
   * Read-your-writes for a writer of this process that is not the service (the reconciler's status write):
   * resolves once a sync that started now finished, so the cache reflects every write committed before the
   * call. Never rejects (a store failure leaves reads marked stale); does nothing before the cache is loaded.
   */
  async refreshReadCache(): Promise<void> {
    if (!this.cache.isLoaded) return
    await this.cache.sync().catch(() => undefined)
  }

  /** Counters of the read cache (read-cache.ts). */
  readCacheStats(): ReturnType<ReadCache['stats']> & { syncedSeq: number } {
    return { ...this.cache.stats(), syncedSeq: this.cache.syncedSeq }
  }

  /** Readiness: resolves when the store answers; UNAVAILABLE otherwise. */
  ping(): Promise<void> {
    return this.store.ping()
  }

  /**
   * Records a call refused before it reached the service (UNAUTHENTICATED, PERMISSION_DENIED) in the
   * audit trail. Never throws: a store failure is not the caller's answer.
   */
  async recordRefusal(r: {
    actor: string
    action: string
    target: string
    outcome: string
    requestId: string
    detail?: Record<string, unknown>
  }): Promise<void> {
    await this.store.audit.append(r).catch(() => undefined)
  }

  /**
   * A page of the audit trail in insertion order (docs/security.md (Audit)): records after `afterId`, optionally
   * of one target, actor and outcome (exact matches, all must hold); `limit` 1..500 (default 100).
   * INVALID_ARGUMENT for a bad limit or afterId. Read-only: nothing in the API changes a record.
   */
  async listAudit(q: AuditListQuery = {}): Promise<AuditPage> {
    const limit = pageSize(q.limit)
    if (q.afterId !== undefined && (!Number.isSafeInteger(q.afterId) || q.afterId < 0)) throw invalidArgument('afterId', 'must be a non-negative integer')
    const rows = await this.store.audit.list({ ...q, limit })
    return {
      items: rows.map((r) => ({ ...r, time: r.time.toISOString() })),
      nextAfterId: rows.length === limit && rows.length > 0 ? rows[rows.length - 1]!.id : null,
    }
  }

  /**
   * The caller as the service sees it (docs/security.md): subject, how it authenticated, roles, groups, host
   * limit and tenant name. Every authenticated caller may ask; without a principal (authentication off at an
   * in-process caller), the local subject.
   */
  whoAmI(ctx: CallContext = {}): WhoAmIView {
    const p = ctx.principal ?? LOCAL_PRINCIPAL
    return { subject: p.subject, source: p.source, roles: [...p.roles], groups: [...p.groups], hosts: p.hosts ? [...p.hosts] : null, tenant: p.tenant }
  }

  // ---- hosts (hosts.ts) -------------------------------------------------------------------------

  /** {@inheritDoc Hosts.syncHosts} */
  syncHosts(): Promise<HostView[]> {
    return this.hostOps.syncHosts()
  }

  /** {@inheritDoc Hosts.listHosts} */
  listHosts(ctx: CallContext = {}): Promise<HostView[]> {
    return this.hostOps.listHosts(ctx)
  }

  /** {@inheritDoc Hosts.getHost} */
  getHost(name: string): Promise<HostView> {
    return this.hostOps.getHost(name)
  }

  // ---- inventory (inventory.ts) -----------------------------------------------------------------

  /** Adapters as the bus shows them (lszcrypt's cards). */
  listAdapters(host: string): Promise<{ items: AdapterView[] }> {
    return this.inventory.listAdapters(host)
  }

  /** {@inheritDoc Inventory.listQueues} */
  listQueues(host: string, q: QueueQuery = {}, ctx: CallContext = {}): Promise<Page<QueueView>> {
    return this.inventory.listQueues(host, q, ctx)
  }

  /** {@inheritDoc Inventory.listBusMdevs} */
  listBusMdevs(host: string, ctx: CallContext = {}): Promise<{ items: BusMdevView[] }> {
    return this.inventory.listBusMdevs(host, ctx)
  }

  /** Usage and control domains of the host configuration (QCI). */
  listDomains(host: string): Promise<DomainsView> {
    return this.inventory.listDomains(host)
  }

  // ---- masks (masks.ts) -------------------------------------------------------------------------

  /** Desired masks (spec) and the masks on the bus (status; null if the bus cannot be read). */
  async getMasks(host: string): Promise<MasksView> {
    return (await this.masks.getMasks(host)).value
  }

  /** {@link getMasks} with the age of the read cache's copy (`staleMs` non-null only when the store is unreachable). */
  readMasks(host: string): Promise<Fresh<MasksView>> {
    return this.masks.getMasks(host)
  }

  /** {@inheritDoc Masks.setMasks} */
  setMasks(host: string, input: MasksInput, ctx: CallContext = {}): Promise<Mutation<MasksView>> {
    return this.masks.setMasks(host, input, ctx)
  }

  // ---- matrix devices (matrix-devices.ts) -------------------------------------------------------

  /** {@inheritDoc MatrixDevices.createMdev} */
  createMdev(host: string, input: MdevCreateInput, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    return this.mdevs.createMdev(host, input, ctx)
  }

  /** One matrix device. NOT_FOUND (also a device a tenant-limited caller does not own). The object is frozen (shared by every read until the device changes). */
  async getMdev(host: string, uuid: string, ctx: CallContext = {}): Promise<MdevView> {
    return (await this.mdevs.getMdev(host, uuid, ctx)).value
  }

  /**
   * {@link getMdev} with the age of the read cache's copy: `staleMs` is null when the copy is within the
   * staleness bound, else (store unreachable) how many ms old it is; transports report it (Apmatrix-Stale).
   */
  readMdev(host: string, uuid: string, ctx: CallContext = {}): Promise<Fresh<MdevView>> {
    return this.mdevs.getMdev(host, uuid, ctx)
  }

  /** A page of a host's matrix devices, by uuid (a tenant-limited caller's own only). Items are frozen. */
  async listMdevs(host: string, q: MdevQuery = {}, ctx: CallContext = {}): Promise<Page<MdevView>> {
    return (await this.mdevs.listMdevs(host, q, ctx)).value
  }

  /** {@link listMdevs} with the age of the read cache's copy (see {@link readMdev}). */
  readMdevs(host: string, q: MdevQuery = {}, ctx: CallContext = {}): Promise<Fresh<Page<MdevView>>> {
    return this.mdevs.listMdevs(host, q, ctx)
  }

  /** {@inheritDoc MatrixDevices.replaceMdev} */
  replaceMdev(host: string, uuid: string, input: MdevReplaceInput, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    return this.mdevs.replaceMdev(host, uuid, input, ctx)
  }

  /** {@inheritDoc MatrixDevices.patchMdev} */
  patchMdev(host: string, uuid: string, patch: unknown, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    return this.mdevs.patchMdev(host, uuid, patch, ctx)
  }

  /** {@inheritDoc MatrixDevices.updateMdevFields} */
  updateMdevFields(host: string, uuid: string, update: MdevFieldsUpdate, ctx: CallContext = {}): Promise<Mutation<MdevView>> {
    return this.mdevs.updateMdevFields(host, uuid, update, ctx)
  }

  /** {@inheritDoc MatrixDevices.deleteMdev} */
  deleteMdev(host: string, uuid: string, ctx: CallContext & { force?: boolean } = {}): Promise<Mutation<MdevView>> {
    return this.mdevs.deleteMdev(host, uuid, ctx)
  }

  // ---- desired state and plans (desired-state.ts) -----------------------------------------------

  /** {@inheritDoc DesiredState.applyDesired} */
  applyDesired(host: string, doc: DesiredInput, ctx: CallContext = {}): Promise<Mutation<ApplyResult>> {
    return this.desired.applyDesired(host, doc, ctx)
  }

  /** {@inheritDoc DesiredState.plan} */
  plan(host: string, doc: DesiredInput | MdevCreateInput, view?: PlanDetail): Promise<PlanAnswer> {
    return this.desired.plan(host, doc, view)
  }

  // ---- interop (interop.ts) ---------------------------------------------------------------------

  /** {@inheritDoc Interop.exportMdev} */
  exportMdev(host: string, uuid: string, format: string, ctx: CallContext = {}): Promise<ExportView> {
    return this.interop.exportMdev(host, uuid, format, ctx)
  }

  /** {@inheritDoc Interop.importMdevs} */
  importMdevs(host: string, format: string, document: unknown, ctx: CallContext & ImportOptions = {}): Promise<Mutation<ImportView>> {
    return this.interop.importMdevs(host, format, document, ctx)
  }

  // ---- emulator controls (emulator-controls.ts) -------------------------------------------------

  /** Raw sysfs read as root would do it: the attribute text. Errno errors (ENOENT → NOT_FOUND, ...). */
  readSysfs(host: string, path: string): Promise<string> {
    return this.emulator.readSysfs(host, path)
  }

  /** Raw sysfs write as root would do it (a drift source for the reconciler). Errno errors. */
  writeSysfs(host: string, path: string, value: string, ctx: CallContext = {}): Promise<void> {
    return this.emulator.writeSysfs(host, path, value, ctx)
  }

  /** A hardware event (the emulator shell's actions). */
  hardware(host: string, input: HardwareInput, ctx: CallContext = {}): Promise<void> {
    return this.emulator.hardware(host, input, ctx)
  }

  /** A guest opens a matrix device (V-25). NOT_FOUND (ENODEV) when no such device is on the bus. */
  openGuest(host: string, uuid: string, guest: string, ctx: CallContext = {}): Promise<void> {
    return this.emulator.openGuest(host, uuid, guest, ctx)
  }

  /** The guest closes whatever device it has open; NOT_FOUND (ENOENT) when it has none. */
  closeGuest(host: string, guest: string, ctx: CallContext = {}): Promise<void> {
    return this.emulator.closeGuest(host, guest, ctx)
  }

  /** Which guest has which device open. */
  listGuests(host: string): Promise<{ items: Array<{ uuid: string; guest: string }> }> {
    return this.emulator.listGuests(host)
  }

  /** Puts `count` crypto requests on a queue; returns how many were accepted. */
  submitRequests(host: string, apqn: string, count: number): Promise<{ accepted: number }> {
    return this.emulator.submitRequests(host, apqn, count)
  }

  /** Emulator: a steady host workload on a queue (`perSecond` 0 stops it). NOT_FOUND (queue), INVALID_ARGUMENT. */
  setWorkload(host: string, apqn: string, perSecond: number): Promise<void> {
    return this.emulator.setWorkload(host, apqn, perSecond)
  }

  /** Reboots the emulated host (kernel state lost, new bootId); the host is re-registered and reconciled. */
  reboot(host: string, ctx: CallContext = {}): Promise<HostView> {
    return this.emulator.reboot(host, ctx)
  }
  /** Replaces the emulated host's injected write faults (INVALID_ARGUMENT for a bad rule). */
  setFaults(host: string, config: unknown, ctx: CallContext = {}): Promise<FaultStatus> {
    return this.emulator.setFaults(host, config, ctx)
  }

  /** Removes every injected write fault of the emulated host. */
  clearFaults(host: string, ctx: CallContext = {}): Promise<FaultStatus> {
    return this.emulator.clearFaults(host, ctx)
  }

  /** The emulated host's injected write faults, with their counts. */
  faults(host: string): Promise<FaultStatus> {
    return this.emulator.faults(host)
  }

  // ---- events (event-watch.ts) ------------------------------------------------------------------

  /** {@inheritDoc EventWatch.watch} */
  watch(input: WatchInput, onEvent: WatchListener, onEnd: WatchEndListener, onBookmark?: BookmarkListener): Promise<Watch> {
    return this.events.watch(input, onEvent, onEnd, onBookmark)
  }
}
