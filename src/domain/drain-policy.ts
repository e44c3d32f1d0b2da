/**
 * Drain policy of the safe hand-over (docs/api.md (Reconcile) step 4, "Drain policy"): how long queues that leave
 * the host's default drivers may drain, and what happens when that time is up. Pure.
 *
 * - `flush`: the mask changes anyway; requests still on the queues are flushed (B-16) and counted as lost.
 * - `wait`: the mask does not change; the pass yields and later passes keep waiting until the queues are
 *   idle. No request is ever lost.
 *
 * A matrix device may carry its own policy (`spec.drain`); a queue that no device claims (a masks-only change)
 * uses the service default (`APMATRIX_DRAIN_TIMEOUT_MS`, `APMATRIX_DRAIN_ON_TIMEOUT`). The hand-over of one pass
 * is one mask write, so all queues it drains share one effective policy: the strictest of those involved
 * (`wait` beats `flush`, the longest timeout wins).
 */
import type { Violation } from './errors.js'
import { clip } from './text.js'

/** What happens when a drain's timeout expires. */
export type DrainOnTimeout = 'flush' | 'wait'

/** The drain policy of a matrix device as given in its spec; an absent field takes the service default. */
export interface DrainPolicySpec {
  /** Seconds the queues may drain, 0..{@link MAX_DRAIN_TIMEOUT_SECONDS}. */
  timeoutSeconds?: number
  onTimeout?: DrainOnTimeout
}

/** A complete policy, as the executor applies it. */
export interface DrainPolicy {
  timeoutMs: number
  onTimeout: DrainOnTimeout
}

/** Largest `spec.drain.timeoutSeconds` (one hour, as `APMATRIX_DRAIN_TIMEOUT_MS`). */
export const MAX_DRAIN_TIMEOUT_SECONDS = 3600

const KEYS = new Set(['timeoutSeconds', 'onTimeout'])

/**
 * Parses `spec.drain` from API input: an object with an integer `timeoutSeconds` in 0..3600 and/or `onTimeout`
 * `flush` | `wait`; unknown fields refused. Violations go to `violations` (INVALID_ARGUMENT); returns undefined
 * for an absent or empty policy, so a spec without one stores none.
 */
export function normalizeDrainPolicy(input: unknown, path: string, violations: Violation[]): DrainPolicySpec | undefined {
  if (input === undefined || input === null) return undefined
  const bad = (field: string, message: string) => violations.push({ rule: 'INVALID_ARGUMENT', field, message: `${field}: ${message}` })
  if (typeof input !== 'object' || Array.isArray(input)) {
    bad(path, 'must be an object { timeoutSeconds?, onTimeout? }')
    return undefined
  }
  const obj = input as Record<string, unknown>
  for (const key of Object.keys(obj)) if (!KEYS.has(key)) bad(`${path}.${key}`, 'unknown field')
  const out: DrainPolicySpec = {}
  if (obj.timeoutSeconds !== undefined) {
    const v = obj.timeoutSeconds
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_DRAIN_TIMEOUT_SECONDS) out.timeoutSeconds = v
    else bad(`${path}.timeoutSeconds`, `'${clip(String(v), 32)}' is not an integer in 0..${MAX_DRAIN_TIMEOUT_SECONDS}`)
  }
  if (obj.onTimeout !== undefined) {
    if (obj.onTimeout === 'flush' || obj.onTimeout === 'wait') out.onTimeout = obj.onTimeout
    else bad(`${path}.onTimeout`, `'${clip(String(obj.onTimeout), 32)}' is not 'flush' or 'wait'`)
  }
  return out.timeoutSeconds === undefined && out.onTimeout === undefined ? undefined : out
}

/** True when two policies as given in specs are equal (absent and empty are the same). */
export function sameDrainPolicy(a: DrainPolicySpec | undefined, b: DrainPolicySpec | undefined): boolean {
  return a?.timeoutSeconds === b?.timeoutSeconds && a?.onTimeout === b?.onTimeout
}

/** A device's policy completed with the service default. */
export function effectiveDrainPolicy(spec: DrainPolicySpec | undefined, fallback: DrainPolicy): DrainPolicy {
  return {
    timeoutMs: spec?.timeoutSeconds !== undefined ? spec.timeoutSeconds * 1000 : fallback.timeoutMs,
    onTimeout: spec?.onTimeout ?? fallback.onTimeout,
  }
}

/** The stricter of two policies: `wait` beats `flush`, the longer timeout wins. */
export function stricterDrainPolicy(a: DrainPolicy, b: DrainPolicy): DrainPolicy {
  return { timeoutMs: Math.max(a.timeoutMs, b.timeoutMs), onTimeout: a.onTimeout === 'wait' || b.onTimeout === 'wait' ? 'wait' : 'flush' }
}

/** A device as policy resolution sees it. */
export interface DrainClaimant {
  uuid: string
  adapters: number[]
  domains: number[]
  deleting: boolean
  drain?: DrainPolicySpec
}

/** The policy of one hand-over and who it comes from. */
export interface ResolvedDrainPolicy extends DrainPolicy {
  /** For each drained queue, the devices that take it (empty: no device claims it, the default applies). */
  takers: Record<string, string[]>
}

/**
 * The effective policy of draining `apqns` (`aa.dddd`): each queue's policy is that of the devices whose spec
 * claims it (not being deleted), or `fallback` when none does; the hand-over's policy is the strictest of them.
 */
export function resolveDrainPolicy(apqns: readonly string[], mdevs: readonly DrainClaimant[], fallback: DrainPolicy): ResolvedDrainPolicy {
  const byQid = new Map<number, DrainClaimant[]>()
  for (const m of mdevs) {
    if (m.deleting) continue
    for (const a of m.adapters)
      for (const d of m.domains) {
        const id = (a << 8) | d
        const list = byQid.get(id)
        if (list) list.push(m)
        else byQid.set(id, [m])
      }
  }
  let policy: DrainPolicy | undefined
  const takers: Record<string, string[]> = {}
  for (const apqn of apqns) {
    const id = (Number.parseInt(apqn.slice(0, 2), 16) << 8) | Number.parseInt(apqn.slice(3), 16)
    const claim = byQid.get(id) ?? []
    takers[apqn] = claim.map((m) => m.uuid)
    const policies = claim.length ? claim.map((m) => effectiveDrainPolicy(m.drain, fallback)) : [fallback]
    for (const p of policies) policy = policy ? stricterDrainPolicy(policy, p) : p
  }
  return { ...(policy ?? fallback), takers }
}
