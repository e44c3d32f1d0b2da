/**
 * Admission rules of docs/api.md (Admission) as pure functions over desired state. Every function returns ALL
 * violations it finds (up to a cap, see {@link ValidationOptions}); an empty array means valid.
 */
import type { Violation } from './errors.js'
import { type Apqn, formatApqn, isId, qid } from './ids.js'
import type { Mask } from './mask.js'
import { crossProduct, type Matrix } from './matrix.js'
import { type HostLimits, isUuid, type MdevDesired } from './mdev.js'

/** Anything that holds a matrix under a uuid: a desired mdev, or an observed one mapped to this shape. */
export interface MatrixHolder {
  uuid: string
  spec: Matrix
}

/** Options shared by the validators. */
export interface ValidationOptions {
  /**
   * Stop after this many violations and append one summary violation saying the list was cut (default
   * 1000). A whole-host document can in theory conflict on millions of APQNs (256 mdevs x 65536); listing
   * them all would be a denial of service, while any real mistake is explained by the first thousand.
   */
  maxViolations?: number
}

const DEFAULT_MAX_VIOLATIONS = 1000

/** The APQNs an mdev claims: its adapters x usage domains, V-19 order; none with an empty dimension (V-12). */
export function claimedApqns(mdev: MatrixHolder | Matrix): Apqn[] {
  const m = 'spec' in mdev ? mdev.spec : mdev
  return crossProduct(m.adapters, m.domains)
}

/**
 * Who holds each APQN: a map qid (O-4) -> mdev uuid. Built in O(total APQNs), so a host with 256 mdevs
 * of 256 domains each is indexed in a few milliseconds. The first claimant of an APQN keeps it.
 */
export class ApqnOwnerIndex {
  private readonly owners = new Map<number, string>()

  /** Index of `mdevs` in order (earlier ones win an APQN claimed twice). */
  static of(mdevs: Iterable<MatrixHolder>): ApqnOwnerIndex {
    const index = new ApqnOwnerIndex()
    for (const m of mdevs) for (const a of m.spec.adapters) for (const d of m.spec.domains) index.claim(m.uuid, a, d)
    return index
  }

  /** The uuid holding (apid, apqi), if any. */
  owner(apid: number, apqi: number): string | undefined {
    return this.owners.get(qid(apid, apqi))
  }

  /**
   * Records `uuid` as the holder of (apid, apqi) unless another uuid already holds it. Returns that other
   * uuid on a conflict, else undefined (also when `uuid` already holds it: claiming is idempotent).
   */
  claim(uuid: string, apid: number, apqi: number): string | undefined {
    const key = qid(apid, apqi)
    const current = this.owners.get(key)
    if (current === undefined) this.owners.set(key, uuid)
    return current === undefined || current === uuid ? undefined : current
  }

  /** Number of APQNs held. */
  get size(): number {
    return this.owners.size
  }
}

/** Input of {@link validateDesiredState}: a host's whole desired state. */
export interface DesiredState {
  limits: HostLimits
  apmask: Mask
  aqmask: Mask
  mdevs: readonly MdevDesired[]
}

/**
 * Checks a host's whole desired state (docs/api.md (Admission)). Rules, all applied to every defined mdev whether
 * `started` or `stopped` (like ap-check, which checks a definition against the other definitions too: a
 * stopped device must stay startable without editing another one):
 * - INVALID_ARGUMENT: a uuid that is not canonical ({@link isUuid}), a uuid listed twice, control domains
 *   without any usage domain (rule 5: s390-tools rejects control-only devices);
 * - OUT_OF_RANGE (rule 1, E-3): an adapter above `maxAdapterId`, a usage or control domain above
 *   `maxDomainId`; such ids take no part in the APQN rules below;
 * - APQN_RESERVED (rule 3, V-10 EADDRNOTAVAIL): an APQN inside apmask x aqmask, owner `host`. The fix
 *   clears either the adapters' apmask bits or the domains' aqmask bits, whichever hands fewer other
 *   APQNs away from the host drivers (bits x the other mask's set bits within the limits); on a tie the
 *   aqmask, because giving guests domains while the host keeps using every adapter is the usual layout.
 *   When `limits.hostConfig` says the host lacks the domain (else the adapter), the message says so and
 *   the fix offers removing it or clearing its bit knowingly (V-13: assignable; V-20: never in the guest);
 * - APQN_IN_USE (rule 2, V-10 EADDRINUSE): an APQN of an mdev that an earlier mdev in `mdevs` already
 *   claims; one violation per APQN, owner = that earlier uuid. The fix removes from the later mdev either
 *   the shared domains or the shared adapters, whichever set is smaller (domains on a tie: mdevs sharing
 *   an adapter with different domains is the valid layout, T-22);
 * - INSTANCE_LIMIT (V-3, V-4 EUSERS): more `started` devices than the host can hold (`limits.maxMdevs`:
 *   `available_instances` plus the devices that exist); stopped devices are only definitions and do not count.
 * V-12 applies throughout: an mdev with an empty dimension claims no APQN. Violations name the mdev in
 * `field` (`mdevs[<uuid>].spec...`). To admit one new or changed mdev, pass the host's other mdevs first
 * and it last, so its conflicts are reported against it with the existing devices as owners.
 * Pure; O(total APQNs).
 */
export function validateDesiredState(state: DesiredState, opts: ValidationOptions = {}): Violation[] {
  const { limits, apmask, aqmask, mdevs } = state
  const out = new ViolationList(opts.maxViolations)
  const seen = new Set<string>()
  const inRange: MatrixHolder[] = []

  for (const m of mdevs) {
    const path = `mdevs[${m.uuid}].spec`
    if (!isUuid(m.uuid)) {
      out.push({ rule: 'INVALID_ARGUMENT', field: `mdevs[${m.uuid}]`, message: `'${m.uuid}' is not a canonical lowercase UUID` })
    }
    if (seen.has(m.uuid)) {
      out.push({ rule: 'INVALID_ARGUMENT', field: `mdevs[${m.uuid}]`, message: `matrix device ${m.uuid} is listed more than once` })
      continue
    }
    seen.add(m.uuid)
    const { adapters, domains, controlDomains } = m.spec
    if (controlDomains.length > 0 && domains.length === 0) {
      out.push({
        rule: 'INVALID_ARGUMENT',
        field: `${path}.controlDomains`,
        message: `${m.uuid} has control domains but no usage domain`,
        fix: `add a usage domain to ${m.uuid} or remove its control domains`,
      })
    }
    const keep = (list: readonly number[], key: string, max: number): number[] =>
      list.filter((id) => {
        if (isId(id) && id <= max) return true
        out.push({
          rule: 'OUT_OF_RANGE',
          field: `${path}.${key}`,
          id,
          message: `${key === 'adapters' ? 'adapter' : key === 'domains' ? 'domain' : 'control domain'} ${id} of ${m.uuid} is above the host maximum ${max}`,
          fix: `remove ${id} from ${key} of ${m.uuid}`,
        })
        return false
      })
    const a = keep(adapters, 'adapters', limits.maxAdapterId)
    const d = keep(domains, 'domains', limits.maxDomainId)
    keep(controlDomains, 'controlDomains', limits.maxDomainId)
    inRange.push({ uuid: m.uuid, spec: { adapters: a, domains: d } })
  }

  const hostAdapters = countUpTo(apmask, limits.maxAdapterId)
  const hostDomains = countUpTo(aqmask, limits.maxDomainId)
  // V-13: ids the host's configuration lacks are still reserved by the masks (the kernel refuses them with
  // EADDRNOTAVAIL), but clearing a mask bit for them only over-provisions: say so, and offer removing them.
  const configured = limits.hostConfig && { adapters: new Set(limits.hostConfig.adapters), domains: new Set(limits.hostConfig.domains) }
  reserved: for (const m of inRange) {
    const ra = m.spec.adapters.filter((a) => apmask.has(a))
    const rd = m.spec.domains.filter((d) => aqmask.has(d))
    if (ra.length === 0 || rd.length === 0) continue
    const viaAqmask = rd.length * hostAdapters <= ra.length * hostDomains
    for (const a of ra) {
      for (const d of rd) {
        const apqn = formatApqn(a, d)
        const noDomain = configured !== undefined && !configured.domains.has(d)
        const noAdapter = configured !== undefined && !configured.adapters.has(a)
        const lacks = [noAdapter ? `adapter ${a}` : '', noDomain ? `domain ${d}` : ''].filter(Boolean).join(' nor ')
        const more = out.push({
          rule: 'APQN_RESERVED',
          apqn,
          owner: 'host',
          field: `mdevs[${m.uuid}].spec`,
          message: `APQN ${apqn} of ${m.uuid} is reserved for the host's default drivers (inside apmask x aqmask)${lacks ? `; the host does not have ${lacks}` : ''}`,
          fix: noDomain
            ? notConfiguredFix('domain', d, 'aqmask', m.uuid)
            : noAdapter
              ? notConfiguredFix('adapter', a, 'apmask', m.uuid)
              : viaAqmask
                ? `clear bit ${d} in aqmask: -${d}`
                : `clear bit ${a} in apmask: -${a}`,
        })
        if (!more) break reserved
      }
    }
  }

  const started = mdevs.filter((m) => m.spec.state === 'started').length
  if (limits.maxMdevs !== undefined && started > limits.maxMdevs) {
    out.push({
      rule: 'INSTANCE_LIMIT',
      field: 'mdevs',
      id: limits.maxMdevs,
      message: `the host holds at most ${limits.maxMdevs} matrix devices (vfio_ap-passthrough available_instances plus the existing ones); this state starts ${started}`,
      fix: `stop or delete ${started - limits.maxMdevs} matrix device${started - limits.maxMdevs === 1 ? '' : 's'}, or define new ones with state stopped`,
    })
  }

  const index = new ApqnOwnerIndex()
  inUse: for (const m of inRange) {
    // Conflicts of this mdev grouped by the other owner, so the fix can pick the smaller dimension.
    const clashes = new Map<string, { apqns: Apqn[]; adapters: Set<number>; domains: Set<number> }>()
    for (const a of m.spec.adapters) {
      for (const d of m.spec.domains) {
        const other = index.claim(m.uuid, a, d)
        if (other === undefined) continue
        let c = clashes.get(other)
        if (!c) clashes.set(other, (c = { apqns: [], adapters: new Set(), domains: new Set() }))
        c.apqns.push({ apid: a, apqi: d })
        c.adapters.add(a)
        c.domains.add(d)
      }
    }
    for (const [other, c] of clashes) {
      const byDomain = c.domains.size <= c.adapters.size
      for (const { apid, apqi } of c.apqns) {
        const apqn = formatApqn(apid, apqi)
        const more = out.push({
          rule: 'APQN_IN_USE',
          apqn,
          owner: other,
          field: `mdevs[${m.uuid}].spec`,
          message: `APQN ${apqn} of ${m.uuid} is already assigned to ${other}`,
          fix: byDomain ? `remove domain ${apqi} from ${m.uuid}` : `remove adapter ${apid} from ${m.uuid}`,
        })
        if (!more) break inUse
      }
    }
  }
  return out.done()
}

/** Input of {@link validateMaskChange}: the masks before and after, and the mdevs that hold APQNs now. */
export interface MaskChange {
  oldApmask: Mask
  oldAqmask: Mask
  newApmask: Mask
  newAqmask: Mask
  mdevs: readonly MatrixHolder[]
}

/**
 * Rule 4 (B-24 in_use veto): BUSY for every APQN an mdev holds that the change hands back to the host,
 * i.e. that lies in new apmask x new aqmask and not in old apmask x old aqmask. Cleared bits are never
 * refused. The check is on the end state: the kernel vetoes each write separately, with (newly set APIDs x
 * current aqmask) and (current apmask x newly set APQIs), so whoever executes the change must write all
 * cleared bits before any set bit (`-6` before `+5`), or a transiently overlapping product is refused even
 * though the end state is fine (T-13). Owner = the mdev uuid; field and id = the newly set mask bit that
 * brings the APQN back (the apmask one when both are new); fix = unassign that adapter or domain first.
 */
export function validateMaskChange(change: MaskChange, opts: ValidationOptions = {}): Violation[] {
  const { oldApmask, oldAqmask, newApmask, newAqmask, mdevs } = change
  const out = new ViolationList(opts.maxViolations)
  holders: for (const m of mdevs) {
    const as = m.spec.adapters.filter((a) => newApmask.has(a))
    const ds = m.spec.domains.filter((d) => newAqmask.has(d))
    for (const a of as) {
      const apNew = !oldApmask.has(a)
      for (const d of ds) {
        if (!apNew && oldAqmask.has(d)) continue
        const apqn = formatApqn(a, d)
        const [field, id, what] = apNew ? (['apmask', a, 'adapter'] as const) : (['aqmask', d, 'domain'] as const)
        const more = out.push({
          rule: 'BUSY',
          apqn,
          owner: m.uuid,
          field,
          id,
          message: `setting bit ${id} in ${field} would hand APQN ${apqn} back to the host, but it is assigned to ${m.uuid}`,
          fix: `unassign ${what} ${id} from ${m.uuid} first`,
        })
        if (!more) break holders
      }
    }
  }
  return out.done()
}

/** The fix for an id the host's configuration lacks (V-13, V-20): remove it, or over-provision it knowingly. */
function notConfiguredFix(what: 'adapter' | 'domain', id: number, mask: 'apmask' | 'aqmask', uuid: string): string {
  return (
    `remove ${what} ${id} from ${uuid}: the host does not have it; or, to assign it anyway, clear bit ${id} in ${mask}: -${id} ` +
    `(the kernel accepts it, V-13, and filters it out of the guest until the host has it, V-20)`
  )
}

/** Set bits of `mask` in 0..max. */
function countUpTo(mask: Mask, max: number): number {
  let n = 0
  for (const id of mask.ids()) if (id <= max) n++
  return n
}

/** A violation list with a cap: once full, further pushes are counted and summarised by one last entry. */
class ViolationList {
  private readonly items: Violation[] = []
  private dropped: Violation | undefined
  private readonly max: number

  constructor(max = DEFAULT_MAX_VIOLATIONS) {
    this.max = Math.max(1, max)
  }

  /** Adds `v`; false (and `v` is only remembered for the summary) once the cap is reached. */
  push(v: Violation): boolean {
    if (this.items.length < this.max) {
      this.items.push(v)
      return true
    }
    this.dropped ??= v
    return false
  }

  done(): Violation[] {
    if (this.dropped) {
      this.items.push({
        rule: this.dropped.rule,
        message: `more violations not listed: the first ${this.max} are shown`,
      })
    }
    return this.items
  }
}
