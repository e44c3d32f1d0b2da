/**
 * The one path of every mutating operation (docs/api.md (Admission)). In order: read the bus (foreign
 * devices, limits) outside the transaction; then in ONE store transaction: idempotency check, host lock,
 * whole-host admission (every violation reported), the change with its optimistic-concurrency
 * precondition, the audit record and the events; only after the commit, and once the read cache reflects
 * the write (read-your-writes, read-cache.ts), is the reconciler nudged (not for a change of labels or owner only).
 * `dryRun` runs the same admission and returns the plan instead.
 *
 * The plan view (src/service/plan-view.ts: the planner over the whole host plus the claimed, filtered
 * and drained lists) is computed only for an answer that returns it (a dry run, or an operation that
 * asks for it with `withPlan`), and outside the write transaction: on a large host it costs far more than
 * the write itself, and the transaction serialises writers.
 */
import { ApmatrixError } from '../domain/errors.js'
import type { ReconcileTrigger } from '../hosts/managed-host.js'
import type { EventInput, MdevRecord, Repos, Store } from '../store/index.js'
import { admit, type HostDesired } from './admission.js'
import type { HostAccess } from './host-access.js'
import type { ReadCache } from './read-cache.js'
import { desiredOf, loadStored, type StoredState } from './host-state.js'
import { planAnswer } from './plan-summary.js'
import { DEFAULT_DRAIN_POLICY, planView } from './plan-view.js'
import type { DrainPolicy } from '../domain/drain-policy.js'
import { namesVersions } from './preconditions.js'
import { requestHash } from './request-hash.js'
import type { CallContext, Mutation, PlanAnswer } from './types.js'
import { redactForeign, tenantLimit } from './tenancy.js'
import type { SubjectLimits } from '../auth/limits.js'

/** What an operation makes of the current state: the state after it, and how to store it. */
export interface Prepared<T> {
  /** The whole host's desired state after the change: admission judges it against the state before. */
  after: HostDesired
  /** Devices the request touches (the plan's focus). */
  focus: Set<string>
  /** Stores the change inside the transaction; returns the result and the events to append. */
  apply(tx: Repos): Promise<{
    result: T
    created?: boolean
    events: EventInput[]
    detail?: Record<string, unknown>
    /** False when the change cannot change the host's plan (labels or owner only): the reconciler is not nudged. Default true. */
    reconcile?: boolean
    /** Rows stored, exactly as a read returns them: the read cache takes them instead of reading them back (read-cache.ts `syncedTo`). */
    written?: MdevRecord[]
  }>
}

/** One mutating operation, as the runner takes it. */
export interface Operation<T> {
  host: string
  /** Audit action (`mdev.create`) and idempotency scope. */
  action: string
  /** Audit target (`hosts/<host>/mdevs/<uuid>`). */
  target: string
  /** The request, hashed for idempotency keys. */
  request?: unknown
  /** Judges the request against the current state (inside the transaction, under the host lock); throws to refuse. */
  prepare(state: HostDesired, stored: StoredState): Prepared<T>
  /**
   * For a caller that names versions (If-Match): refuses a stale one (CONFLICT, audited like any refusal) from one
   * small read of the committed row: once before the bus is read or the host lock taken, and again inside the
   * transaction just after the lock (a writer that queued behind the one that made its version stale). A
   * precondition that fails then fails at that read, so the answer is the one `prepare` would give at that
   * moment; `prepare` and the store's compare-and-set still decide every write that passes. Without it each
   * stale writer of a contended object queues for the host lock and reads the whole host only to be refused
   * (32 writers of one device: about 28 refusals per acknowledged write, each holding the lock for the whole
   * host's read). Not run for dry runs (they answer from the same check inside `prepare`) nor with an
   * Idempotency-Key (a replay answers the stored result, whatever the version is now).
   */
  precheck?(repos: Pick<Repos, 'mdevs'>): Promise<void>
  /** For an operation whose result carries the plan of `after`: puts it there. */
  withPlan?(result: T, plan: PlanAnswer): T
}

/** Constructor arguments of {@link MutationRunner}. */
export interface MutationRunnerOptions {
  store: Store
  access: HostAccess
  reconciler: ReconcileTrigger
  /** How long an idempotency key is remembered. */
  idempotencyTtlMs: number
  /** The service's read cache: a write returns only after it reflects the write's events. */
  cache?: ReadCache
  /** The reconciler's default drain policy, shown in plans (default: 30 s, flush). */
  drainDefault?: DrainPolicy
  /** Per-subject limits: every run (dry runs too) takes one mutation of the caller's subject first. */
  limits?: SubjectLimits
}

/** Runs mutating operations; see the file comment. */
export class MutationRunner {
  constructor(private readonly opts: MutationRunnerOptions) {}

  /** The default drain policy plans are shown under. */
  get drainDefault(): DrainPolicy {
    return this.opts.drainDefault ?? DEFAULT_DRAIN_POLICY
  }

  /**
   * Runs `op` for the caller `ctx`. Throws the operation's refusal (audited), CONFLICT for an
   * idempotency key reused with another request, NOT_FOUND for an unknown host, UNAVAILABLE; RATE_LIMITED
   * (before anything is read or stored, not audited: a flood must not become a flood of audit writes) when
   * the caller's subject has used its mutations (auth/limits.ts).
   */
  async run<T>(ctx: CallContext, op: Operation<T>): Promise<Mutation<T>> {
    const { store, access, reconciler } = this.opts
    if (ctx.principal) this.opts.limits?.takeMutation(ctx.principal.subject)
    const h = access.managed(op.host)
    const actor = ctx.actor ?? 'anonymous'
    const precheck = op.precheck && !ctx.dryRun && !ctx.idempotencyKey && namesVersions(ctx) ? op.precheck.bind(op) : null
    if (precheck) {
      try {
        await precheck(store)
      } catch (e) {
        throw await this.refused(ctx, op, e)
      }
    }
    const [observed, guests] = await Promise.all([access.observe(h), h.guests()])
    const planOf = (p: Prepared<T>) => planAnswer(planView(p.after, observed, guests, [], p.focus, this.drainDefault), ctx.planView)
    if (ctx.dryRun) {
      const stored = await loadStored(store, op.host)
      const state = desiredOf(observed, stored)
      const p = op.prepare(state, stored)
      admit(state, p.after)
      return { dryRun: true, plan: planOf(p) }
    }
    const scope = `${op.action} ${op.host} ${actor}`
    const hash = ctx.idempotencyKey ? requestHash({ host: op.host, action: op.action, request: op.request ?? null }) : ''
    // The seq of the last event the committed transaction appended (0: none).
    let lastSeq = 0
    // Whether the committed change may change the host's plan (Prepared.apply `reconcile`).
    let nudge = true
    // The rows the committed transaction stored, for the read cache (Prepared.apply `written`).
    let written: MdevRecord[] = []
    // Set when the plan is still to be added after the commit.
    let pending: Prepared<T> | null = null
    try {
      let out = await store.transaction(async (tx): Promise<Mutation<T>> => {
        pending = null
        if (ctx.idempotencyKey) {
          const prior = await tx.idempotency.get(scope, ctx.idempotencyKey)
          if (prior) {
            if (prior.requestHash !== hash) throw new ApmatrixError('CONFLICT', `Idempotency-Key ${ctx.idempotencyKey} was used for a different request`)
            const body = prior.responseBody as { result: T; created?: boolean }
            return { dryRun: false, result: body.result, ...(body.created !== undefined ? { created: body.created } : {}), replayed: true }
          }
        }
        // Serialises admission per host: on PostgreSQL the host's masks row lock (SQLite has one writer
        // anyway), so two concurrent creates cannot both pass admission against the same old state.
        await tx.masks.lockForAdmission(op.host)
        if (precheck) await precheck(tx)
        const stored = await loadStored(tx, op.host)
        const state = desiredOf(observed, stored)
        const p = op.prepare(state, stored)
        admit(state, p.after)
        const r = await p.apply(tx)
        nudge = r.reconcile ?? true
        written = r.written ?? []
        let result = r.result
        // A replayed answer must be the stored one, plan included: only then is the plan computed in here.
        if (op.withPlan && ctx.idempotencyKey) result = op.withPlan(result, planOf(p))
        else if (op.withPlan) pending = p
        await tx.audit.append({
          actor,
          action: op.action,
          target: op.target,
          outcome: 'ok',
          requestId: ctx.requestId ?? null,
          detail: { ...principalDetail(ctx), ...(r.detail ?? {}), ...(r.created !== undefined ? { created: r.created } : {}), ...correlation(ctx) },
        })
        if (ctx.idempotencyKey) {
          await tx.idempotency.put({
            scope,
            key: ctx.idempotencyKey,
            requestHash: hash,
            responseStatus: r.created ? 201 : 200,
            responseBody: { result, created: r.created },
            ttlMs: this.opts.idempotencyTtlMs,
          })
        }
        // Events last: appending serialises writers until commit (event-repo.ts).
        lastSeq = 0
        for (const e of r.events) lastSeq = (await tx.events.append({ ...e, requestId: ctx.requestId ?? null, actor })).seq
        return { dryRun: false, result, ...(r.created !== undefined ? { created: r.created } : {}) }
      })
      // Read-your-writes: the answer goes out only once this replica's reads show the write (read-cache.ts).
      if (lastSeq) await this.opts.cache?.syncedTo(lastSeq, written)
      if (!out.dryRun && !out.replayed && nudge) reconciler.enqueue(op.host)
      const p = pending as Prepared<T> | null
      if (p && op.withPlan && !out.dryRun) out = { ...out, result: op.withPlan(out.result, planOf(p)) }
      return out
    } catch (caught) {
      throw await this.refused(ctx, op, caught)
    }
  }

  /** What `run` throws for `caught`: redacted for a tenant-limited caller, and audited when it is a refusal. */
  private async refused<T>(ctx: CallContext, op: Operation<T>, caught: unknown): Promise<unknown> {
    const { store } = this.opts
    let e = caught
    // A tenant-limited caller learns that an APQN is in use, never by which of another tenant's devices.
    const tenant = tenantLimit(ctx.principal, 'update')
    if (e instanceof ApmatrixError && tenant !== null && e.code !== 'UNAVAILABLE') {
      const stored = await loadStored(store, op.host).catch(() => null)
      if (stored) e = redactForeign(e, new Set(stored.mdevs.filter((m) => m.owner !== tenant).map((m) => m.uuid)))
    }
    if (e instanceof ApmatrixError && e.code !== 'UNAVAILABLE') {
      // A refusal is audited too; it cannot share the (rolled back) transaction.
      await store.audit
        .append({
          actor: ctx.actor ?? 'anonymous',
          action: op.action,
          target: op.target,
          outcome: e.code,
          requestId: ctx.requestId ?? null,
          detail: { ...principalDetail(ctx), violations: e.violations.length, ...correlation(ctx) },
        })
        .catch(() => undefined)
    }
    return e
  }
}

/** The caller's own request id for an audit record's detail (the record's requestId is the server's). */
export function correlation(ctx: CallContext): { correlationId?: string } {
  return ctx.correlationId ? { correlationId: ctx.correlationId } : {}
}

/** What an audit record says of the authenticated caller besides its actor: its roles and how it authenticated. */
export function principalDetail(ctx: CallContext): Record<string, unknown> {
  const p = ctx.principal
  return p ? { subject: p.subject, roles: [...p.roles], auth: p.source } : {}
}
