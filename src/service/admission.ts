/**
 * Admission (docs/api.md (Admission)): checks a proposed whole-host desired state against the current one and
 * throws one ApmatrixError listing every violation the change introduces. Pure.
 */
import { ApmatrixError, invalidArgument, type Errno, type ErrorCode, type Violation } from '../domain/errors.js'
import { parseId } from '../domain/ids.js'
import { Mask, parseMaskWrite } from '../domain/mask.js'
import type { HostLimits, MdevDesired } from '../domain/mdev.js'
import type { PlannedMdev } from '../domain/plan.js'
import { validateDesiredState, validateMaskChange, type MatrixHolder } from '../domain/validation.js'
import type { MaskInput } from './types.js'
import { clip } from '../domain/text.js'

/** A host's desired state as admission and the planner see it. Deleting devices are still listed. */
export interface HostDesired {
  limits: HostLimits
  apmask: Mask
  aqmask: Mask
  /** In admission order: a changed device comes last, so its conflicts name the others as owners. */
  mdevs: PlannedMdev[]
  /** Devices on the bus that the store does not know: they hold APQNs all the same. */
  foreign: MatrixHolder[]
}

// The error code of a rejection: the most basic rule broken wins (syntax before semantics).
const PRIORITY: ErrorCode[] = ['INVALID_ARGUMENT', 'OUT_OF_RANGE', 'BUSY', 'APQN_IN_USE', 'APQN_RESERVED', 'INSTANCE_LIMIT']

/** The ApmatrixError for a non-empty violation list. */
export function rejection(violations: Violation[], what = 'desired state', syntaxErrno?: Errno): ApmatrixError {
  const code = PRIORITY.find((c) => violations.some((v) => v.rule === c)) ?? violations[0]!.rule
  const first = violations.find((v) => v.rule === code)!.message
  const more = violations.length > 1 ? ` (${violations.length} violations in all)` : ''
  // The errno the kernel would give for the same refusal (V-10, B-24, B-21).
  const errno =
    (
      { APQN_IN_USE: 'EADDRINUSE', APQN_RESERVED: 'EADDRNOTAVAIL', BUSY: 'EBUSY', OUT_OF_RANGE: 'ENODEV', INSTANCE_LIMIT: 'EUSERS' } as Partial<
        Record<ErrorCode, Errno>
      >
    )[code] ?? syntaxErrno
  return new ApmatrixError(code, `${what} refused: ${first}${more}`, { violations, ...(errno ? { errno } : {}) })
}

// Devices that are being deleted are on their way off the bus (plan step 2 runs before any create or
// grow), so they hold nothing a new device cannot take; foreign devices count as started.
function holders(s: HostDesired): MdevDesired[] {
  const foreign = s.foreign.map((f) => ({
    uuid: f.uuid,
    spec: { adapters: f.spec.adapters, domains: f.spec.domains, controlDomains: [], state: 'started' as const },
  }))
  const own = s.mdevs
    .filter((m) => !m.deleting)
    .map((m) => ({ uuid: m.uuid, spec: { adapters: m.adapters, domains: m.domains, controlDomains: m.controlDomains, state: m.state } }))
  return [...foreign, ...own]
}

/** Every violation of state `after`, including rule 4 (BUSY) for the mask change from `before`. */
export function violationsOf(before: HostDesired, after: HostDesired): Violation[] {
  const mdevs = holders(after)
  const all = validateDesiredState({ limits: after.limits, apmask: after.apmask, aqmask: after.aqmask, mdevs })
  if (before.apmask.equals(after.apmask) && before.aqmask.equals(after.aqmask)) return all
  // B-24: the mask change hands held APQNs back to the host; report each once, as BUSY, not also as reserved.
  const busy = validateMaskChange({
    oldApmask: before.apmask,
    oldAqmask: before.aqmask,
    newApmask: after.apmask,
    newAqmask: after.aqmask,
    mdevs: mdevs.map((m) => ({ uuid: m.uuid, spec: m.spec })),
  })
  const busyApqns = new Set(busy.map((v) => v.apqn))
  return [...busy, ...all.filter((v) => !(v.rule === 'APQN_RESERVED' && busyApqns.has(v.apqn)))]
}

const key = (v: Violation) => `${v.rule}|${v.apqn ?? ''}|${v.id ?? ''}|${v.field ?? ''}|${v.owner ?? ''}`

/**
 * The violations a change from `before` to `after` introduces. Violations already present before
 * (a foreign device created on the bus by a root user after our state was admitted) do not block
 * unrelated changes: they are reported by the reconciler, and refusing every write would leave the
 * operator no way to repair them through the API.
 */
export function newViolations(before: HostDesired, after: HostDesired): Violation[] {
  const old = new Set(validateDesiredState({ limits: before.limits, apmask: before.apmask, aqmask: before.aqmask, mdevs: holders(before) }).map(key))
  return violationsOf(before, after).filter((v) => !old.has(key(v)))
}

/** Throws the rejection of {@link newViolations}, if any. */
export function admit(before: HostDesired, after: HostDesired, what?: string): void {
  const v = newViolations(before, after)
  if (v.length > 0) throw rejection(v, what)
}

/** Most ids a JSON-array mask may list (256 distinct, with room for duplicates). */
export const MAX_MASK_IDS = 1024

/**
 * Longest mask text, in characters, on every transport (REST's schema says the same): an absolute mask
 * is at most 66 (`0x` + 64 hex digits), and 1024 leaves room for long relative lists.
 */
export const MAX_MASK_TEXT = 1024

/**
 * Parses a mask input (docs/api.md (Resources)): any kernel write syntax (B-21: absolute hex, relative
 * `+n,-m,+a-b`, applied to `current`), or a JSON array of ids (integers or decimal / `0x` strings),
 * which is the absolute set. INVALID_ARGUMENT with one violation naming `field` on a syntax error.
 */
export function parseMaskInput(input: MaskInput, current: Mask, field: string): Mask {
  if (Array.isArray(input)) {
    if (input.length > MAX_MASK_IDS) throw invalid(field, `at most ${MAX_MASK_IDS} ids`)
    const ids: number[] = []
    const violations: Violation[] = []
    input.forEach((v, i) => {
      try {
        ids.push(parseId(v, `${field}[${i}]`, 255))
      } catch (e) {
        if (!(e instanceof ApmatrixError)) throw e
        violations.push(...e.violations.map((x) => ({ ...x, rule: 'INVALID_ARGUMENT' as const })))
      }
    })
    if (violations.length) throw rejection(violations, field)
    return Mask.of(ids)
  }
  if (typeof input !== 'string') throw invalid(field, 'must be a string in kernel mask syntax or an array of ids')
  if (input.length > MAX_MASK_TEXT) throw invalid(field, `at most ${MAX_MASK_TEXT} characters (got ${input.length})`)
  const p = parseMaskWrite(input, current)
  if (!p.ok) throw invalid(field, `'${clip(input, 80)}' is not a valid mask write (${p.reason})`, 'EINVAL')
  return p.mask
}

function invalid(field: string, message: string, errno?: 'EINVAL'): ApmatrixError {
  return invalidArgument(field, message, { ...(errno ? { errno } : {}), fix: 'use 0x + up to 64 hex digits, +n,-m,+a-b terms, or an array of ids' })
}
