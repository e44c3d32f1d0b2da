import { ApmatrixError, type Violation } from './errors.js'
import { MAX_ID, normalizeIds, parseId } from './ids.js'
import { clip } from './text.js'
import { normalizeDrainPolicy, sameDrainPolicy, type DrainPolicySpec } from './drain-policy.js'

/** Whether a matrix device must exist on the bus (`started`) or is only defined (`stopped`), docs/api.md (Resources). */
export type MdevState = 'started' | 'stopped'

/** The desired configuration of one matrix device: sorted, de-duplicated id lists (docs/api.md (Resources)). */
export interface MdevSpec {
  adapters: number[]
  domains: number[]
  controlDomains: number[]
  state: MdevState
  /**
   * The hand-over's drain policy for queues this device takes (domain/drain-policy.ts); absent: the service
   * default. It never changes the device on the bus: a spec that differs only here reconfigures nothing.
   */
  drain?: DrainPolicySpec
}

/** One matrix device of a host's desired state. `uuid` is canonical (lowercase, see {@link normalizeUuid}). */
export interface MdevDesired {
  uuid: string
  spec: MdevSpec
  owner?: string
  labels?: Record<string, string>
}

/** The host's id maxima (O-2: `ap_max_adapter_id`, `ap_max_domain_id`; V-4: also the mdev's apm/aqm/adm maxima). */
export interface HostLimits {
  maxAdapterId: number
  maxDomainId: number
  /**
   * Most matrix devices the host can have at once (V-3: `available_instances` plus the devices that
   * exist), or undefined when unknown (vfio_ap not loaded, or a caller that does not check it).
   */
  maxMdevs?: number
  /**
   * The host's configuration (QCI, O-1/O-3): the adapters and usage domains it has, or undefined when
   * unknown. Ids outside it may still be assigned (V-13) but never reach a guest (V-20); admission says
   * so in its violations and fixes.
   */
  hostConfig?: { adapters: readonly number[]; domains: readonly number[] }
}

/** The limits of an APXA machine with Na = Nd = 255 (the spec fixture, docs/kernel-model.md §7). */
export const FULL_LIMITS: HostLimits = { maxAdapterId: MAX_ID, maxDomainId: MAX_ID }

/**
 * Most entries an id list may carry before de-duplication. Every input array is bounded (style.md habit 5);
 * 256 distinct ids fit with room for harmless duplicates.
 */
export const MAX_ID_LIST = 1024

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const UUID_ANY_CASE_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

/**
 * True for a canonical UUID: 8-4-4-4-12 lowercase hex, as the mdev core names the device directory
 * (`%pUl`). The kernel's uuid_is_valid() accepts hex digits of either case on `create` (V-4) and the
 * device is still named in lowercase, so the product API accepts any case on input and stores and
 * returns lowercase ({@link normalizeUuid}); everything inside the service compares canonical uuids.
 */
export function isUuid(s: unknown): s is string {
  return typeof s === 'string' && UUID_RE.test(s)
}

/** Canonical (lowercase) form of a UUID given in any case. Throws INVALID_ARGUMENT for anything else. */
export function normalizeUuid(s: unknown, field = 'uuid'): string {
  if (typeof s !== 'string' || !UUID_ANY_CASE_RE.test(s)) {
    const message = `${field}: '${clip(String(s), 64)}' is not a UUID (8-4-4-4-12 hex digits)`
    throw new ApmatrixError('INVALID_ARGUMENT', message, { violations: [{ rule: 'INVALID_ARGUMENT', field, message }] })
  }
  return s.toLowerCase()
}

const SPEC_KEYS = new Set(['adapters', 'domains', 'controlDomains', 'state', 'drain'])

/**
 * Parses an mdev spec from API input (docs/api.md (Resources)): ids are JSON integers or decimal / `0x` strings
 * ({@link parseId}); each list is sorted and de-duplicated; a missing list is empty; a missing `state` is
 * `started` (a defined device is meant to exist on the bus unless the caller says otherwise). With `limits`,
 * adapters are checked against `maxAdapterId` and usage and control domains against `maxDomainId` (E-3).
 * Unknown fields are refused. Throws one ApmatrixError listing ALL violations: code INVALID_ARGUMENT if any
 * syntax violation exists, else OUT_OF_RANGE. Semantic rules (control-only devices, overlaps) are
 * validation.ts's job.
 */
export function normalizeSpec(input: unknown, limits: HostLimits = FULL_LIMITS, path = 'spec'): MdevSpec {
  const violations: Violation[] = []
  const bad = (field: string, message: string): void => {
    violations.push({ rule: 'INVALID_ARGUMENT', field, message: `${field}: ${message}` })
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    bad(path, 'must be an object')
    throw specError(violations)
  }
  const obj = input as Record<string, unknown>
  for (const key of Object.keys(obj)) if (!SPEC_KEYS.has(key)) bad(`${path}.${key}`, 'unknown field')

  const list = (key: 'adapters' | 'domains' | 'controlDomains', max: number): number[] => {
    const field = `${path}.${key}`
    const raw = obj[key]
    if (raw === undefined) return []
    if (!Array.isArray(raw)) {
      bad(field, 'must be an array of ids')
      return []
    }
    if (raw.length > MAX_ID_LIST) {
      bad(field, `at most ${MAX_ID_LIST} entries`)
      return []
    }
    const ids: number[] = []
    raw.forEach((v, i) => {
      try {
        ids.push(parseId(v, `${field}[${i}]`, max))
      } catch (e) {
        if (!(e instanceof ApmatrixError)) throw e
        violations.push(...e.violations)
      }
    })
    return normalizeIds(ids)
  }
  const adapters = list('adapters', limits.maxAdapterId)
  const domains = list('domains', limits.maxDomainId)
  const controlDomains = list('controlDomains', limits.maxDomainId)

  let state: MdevState = 'started'
  if (obj.state !== undefined) {
    if (obj.state === 'started' || obj.state === 'stopped') state = obj.state
    else bad(`${path}.state`, `'${clip(String(obj.state), 32)}' is not 'started' or 'stopped'`)
  }
  const drain = normalizeDrainPolicy(obj.drain, `${path}.drain`, violations)
  if (violations.length > 0) throw specError(violations)
  return { adapters, domains, controlDomains, state, ...(drain ? { drain } : {}) }
}

function specError(violations: Violation[]): ApmatrixError {
  const code = violations.some((v) => v.rule === 'INVALID_ARGUMENT') ? 'INVALID_ARGUMENT' : 'OUT_OF_RANGE'
  const first = violations[0]!.message
  const more = violations.length > 1 ? ` (and ${violations.length - 1} more)` : ''
  return new ApmatrixError(code, `invalid mdev spec: ${first}${more}`, {
    violations,
    ...(code === 'OUT_OF_RANGE' ? { errno: 'ENODEV' as const } : {}),
  })
}

/**
 * True when two specs are equal: {@link sameBusSpec} and the same drain policy. A change of the drain policy
 * alone is a spec change (stored, generation bumped) that the planner does not turn into any bus operation.
 */
export function sameSpec(a: MdevSpec, b: MdevSpec): boolean {
  return sameBusSpec(a, b) && sameDrainPolicy(a.drain, b.drain)
}

/** True when two specs describe the same device on the bus: the same id sets (order and duplicates ignored) and state. Pure. */
export function sameBusSpec(a: MdevSpec, b: MdevSpec): boolean {
  const same = (x: number[], y: number[]) => {
    const nx = normalizeIds(x)
    const ny = normalizeIds(y)
    return nx.length === ny.length && nx.every((v, i) => v === ny[i])
  }
  return a.state === b.state && same(a.adapters, b.adapters) && same(a.domains, b.domains) && same(a.controlDomains, b.controlDomains)
}
