import { ApmatrixError, type Violation } from '../domain/errors.js'
import { formatApid, formatApqi, kstrtoul, normalizeIds } from '../domain/ids.js'
import { parseAbsoluteMask, type Mask } from '../domain/mask.js'
import { FULL_LIMITS, type HostLimits, type MdevSpec, type MdevState } from '../domain/mdev.js'
import { clip } from '../domain/text.js'

/** The mdev type of every matrix device (V-3), as mdevctl and libvirt name it. */
export const VFIO_AP_MDEV_TYPE = 'vfio_ap-passthrough'

/** One sysfs attribute write of an mdev definition: mdevctl's `{"name": "value"}`, libvirt's `<attr name= value=>`. */
export interface MdevAttr {
  name: string
  value: string
}

/** An attribute plus where it was read (`line 7`, `$[0].matrix[0]...attrs[2]`), for error messages. */
export interface LocatedAttr extends MdevAttr {
  where: string
}

/** Most attribute writes one imported definition may carry (three full 256-id lists plus room for unassigns); callers enforce it. */
export const MAX_ATTRS = 4096

/**
 * The ordered attribute writes that build `spec` on a fresh mdev, in the order ap-check and libvirt write
 * them: every adapter, then every domain, then every control domain, each ascending. Values are `0x` hex in
 * the kernel's own widths (O-10: APID two digits, APQI four), so `0x05`/`0x0004` read like the `05.0004`
 * of the device's `matrix` file; kstrtoul base 0 (V-6) parses them.
 */
export function specToAttrs(spec: Pick<MdevSpec, 'adapters' | 'domains' | 'controlDomains'>): MdevAttr[] {
  return [
    ...spec.adapters.map((id) => ({ name: 'assign_adapter', value: `0x${formatApid(id)}` })),
    ...spec.domains.map((id) => ({ name: 'assign_domain', value: `0x${formatApqi(id)}` })),
    ...spec.controlDomains.map((id) => ({ name: 'assign_control_domain', value: `0x${formatApqi(id)}` })),
  ]
}

type Dimension = 'adapters' | 'domains' | 'controlDomains'

const WRITES: Record<string, { dim: Dimension; assign: boolean }> = {
  assign_adapter: { dim: 'adapters', assign: true },
  unassign_adapter: { dim: 'adapters', assign: false },
  assign_domain: { dim: 'domains', assign: true },
  unassign_domain: { dim: 'domains', assign: false },
  assign_control_domain: { dim: 'controlDomains', assign: true },
  unassign_control_domain: { dim: 'controlDomains', assign: false },
}

/** The attribute names an import understands: V-5's six writes and `ap_config` (V-23). */
export const KNOWN_ATTRS: readonly string[] = [...Object.keys(WRITES), 'ap_config']

/**
 * Replays attribute writes in order the way the kernel applies them when mdevctl starts the device (V-5):
 * assign adds an id (already assigned: no-op, V-10), unassign removes it (not assigned: no-op, V-15), and
 * `ap_config` replaces the whole matrix (V-23). Numbers are parsed like kstrtoul base 0 (V-6: decimal,
 * `0x` hex, leading-0 octal, one trailing newline). Admission rules (reservation, sharing) are not checked
 * here; they belong to validation.ts. Every problem is appended to `violations` (INVALID_ARGUMENT for
 * syntax and unknown attributes, OUT_OF_RANGE with the kernel's ENODEV for ids above `limits`) and the
 * offending write is skipped, so one pass reports them all.
 */
export function specFromAttrs(attrs: readonly LocatedAttr[], state: MdevState, violations: Violation[], limits: HostLimits = FULL_LIMITS): MdevSpec {
  const sets: Record<Dimension, Set<number>> = { adapters: new Set(), domains: new Set(), controlDomains: new Set() }
  const max: Record<Dimension, number> = {
    adapters: limits.maxAdapterId,
    domains: limits.maxDomainId,
    controlDomains: limits.maxDomainId,
  }
  const bad = (a: LocatedAttr, message: string): void => {
    violations.push({ rule: 'INVALID_ARGUMENT', field: a.where, message: `${a.where}: ${a.name} ${quote(a.value)}: ${message}` })
  }
  const range = (a: LocatedAttr, id: bigint | number, message: string): void => {
    const v: Violation = { rule: 'OUT_OF_RANGE', field: a.where, message: `${a.where}: ${a.name} ${quote(a.value)}: ${message}` }
    if (id <= 0xffff) v.id = Number(id)
    violations.push(v)
  }
  for (const a of attrs) {
    // hasOwn: an attribute named `constructor` or `__proto__` must not find Object.prototype's members.
    const w = Object.hasOwn(WRITES, a.name) ? WRITES[a.name] : undefined
    if (w) {
      const n = kstrtoul(a.value)
      if (!n.ok) {
        const why =
          n.errno === 'ERANGE' ? 'overflows an unsigned long (ERANGE)' : 'is not a number kstrtoul accepts: decimal, 0x hex or 0-prefixed octal (EINVAL, V-6)'
        bad(a, why)
        continue
      }
      if (n.value > BigInt(max[w.dim])) {
        range(a, n.value, `${n.value} is above the maximum ${max[w.dim]} (ENODEV, V-10/V-15/V-16)`)
        continue
      }
      if (w.assign) sets[w.dim].add(Number(n.value))
      else sets[w.dim].delete(Number(n.value))
    } else if (a.name === 'ap_config') {
      const masks = parseApConfig(a.value)
      if (typeof masks === 'string') {
        bad(a, masks)
        continue
      }
      const next: Record<Dimension, number[]> = { adapters: masks[0].ids(), domains: masks[1].ids(), controlDomains: masks[2].ids() }
      let ok = true
      for (const dim of ['adapters', 'domains', 'controlDomains'] as const) {
        const over = next[dim].filter((id) => id > max[dim])
        if (over.length > 0) {
          ok = false
          range(a, over[0]!, `${dim} bit ${over[0]} is above the maximum ${max[dim]} (ENODEV, V-23)`)
        }
      }
      // V-23: all or nothing.
      if (ok) for (const dim of ['adapters', 'domains', 'controlDomains'] as const) sets[dim] = new Set(next[dim])
    } else {
      bad(a, `unknown attribute; a matrix device accepts ${KNOWN_ATTRS.join(', ')}`)
    }
  }
  return {
    adapters: normalizeIds(sets.adapters),
    domains: normalizeIds(sets.domains),
    controlDomains: normalizeIds(sets.controlDomains),
    state,
  }
}

/**
 * V-23: `{apm},{aqm},{adm}` with an optional newline, the input cut at 201 characters, each token an
 * absolute mask (B-21; an empty token is the zero mask). Returns the reason as a string on EINVAL.
 * [unverified] What the kernel does with tokens after the third is not in the spec: refused here.
 */
function parseApConfig(value: string): [Mask, Mask, Mask] | string {
  const tokens = value.slice(0, 201).split(/[,\n]/)
  if (tokens.length === 4 && tokens[3] === '' && value.slice(0, 201).endsWith('\n')) tokens.pop()
  if (tokens.length !== 3) return `expects three masks '{apm},{aqm},{adm}' (EINVAL, V-23), got ${tokens.length}`
  const masks: Mask[] = []
  for (const [i, tok] of tokens.entries()) {
    const p = parseAbsoluteMask(tok)
    if (!p.ok) return `${['apm', 'aqm', 'adm'][i]} mask: ${p.reason} (EINVAL, V-23)`
    masks.push(p.mask)
  }
  return masks as [Mask, Mask, Mask]
}

/**
 * Throws one ApmatrixError for the collected violations (if any): code INVALID_ARGUMENT when any is a
 * syntax problem, else OUT_OF_RANGE with errno ENODEV, as normalizeSpec does; the message names the
 * first violation and counts the rest.
 */
export function throwIfViolations(violations: readonly Violation[], what: string): void {
  if (violations.length === 0) return
  const code = violations.some((v) => v.rule !== 'OUT_OF_RANGE') ? 'INVALID_ARGUMENT' : 'OUT_OF_RANGE'
  const more = violations.length > 1 ? ` (and ${violations.length - 1} more)` : ''
  throw new ApmatrixError(code, `invalid ${what}: ${violations[0]!.message}${more}`, {
    violations: [...violations],
    ...(code === 'OUT_OF_RANGE' ? { errno: 'ENODEV' as const } : {}),
  })
}

/** A value quoted for a message, with control characters made visible and long values cut. */
export function quote(v: string): string {
  return JSON.stringify(clip(v, 64)).replace(/^"|"$/g, "'")
}
