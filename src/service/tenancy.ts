/**
 * Tenant rules of the service (docs/security.md (Tenants)), decided by the one authorization function
 * (src/auth/authorize.ts): a caller whose grant on matrix devices is limited to its own sees only
 * devices whose `owner` is its tenant name. Lists filter, a foreign device reads as NOT_FOUND (AIP-135:
 * the caller cannot tell it from a missing one), a tenant creates and keeps devices under its own name
 * only, and a refusal that involves another tenant's device says "in use" without naming it.
 * Calls without a principal (in-process callers, tests of the service) are not limited.
 */
import { authorize, ownOnly } from '../auth/authorize.js'
import type { Principal } from '../auth/identity.js'
import type { Verb } from '../auth/roles.js'
import { ApmatrixError, type Violation } from '../domain/errors.js'

/** The tenant name `p` is limited to for `verb` on matrix devices, or null when it is not limited. */
export function tenantLimit(p: Principal | undefined, verb: Verb): string | null {
  if (!p) return null
  // No grant at all (the transport refuses such calls first): nothing is visible (fail closed).
  if (authorize(p, verb, 'mdevs') !== 'allow') return '\u0000'
  if (!ownOnly(p, verb, 'mdevs')) return null
  // A tenant binding without a name cannot own anything: an impossible owner name.
  return p.tenant ?? '\u0000'
}

/** NOT_FOUND, worded like the store's own, when `p` may not see a device owned by `owner`. */
export function checkVisible(p: Principal | undefined, verb: Verb, host: string, uuid: string, owner: string | null): void {
  if (!p) return
  const d = authorize(p, verb, 'mdevs', { host, owner })
  if (d === 'allow') return
  if (d === 'hidden') throw new ApmatrixError('NOT_FOUND', `matrix device ${host}/${uuid} not found`)
  throw new ApmatrixError('PERMISSION_DENIED', `${p.subject} may not ${verb} matrix devices on host ${host}`)
}

/**
 * The owner a limited caller's write leaves on a device: absent → its tenant name on create (`fill`),
 * its own name → kept; any other value → PERMISSION_DENIED.
 */
export function ownedBy(p: Principal | undefined, verb: Verb, owner: string | null | undefined, fill: boolean): string | null | undefined {
  const tenant = tenantLimit(p, verb)
  if (tenant === null) return owner
  if ((owner === undefined || owner === null) && fill) return tenant
  if (owner !== tenant) throw new ApmatrixError('PERMISSION_DENIED', `a tenant manages only matrix devices whose owner is ${JSON.stringify(tenant)}`)
  return owner
}

/**
 * What the inventory says instead of the uuid of a matrix device the caller may not see (a queue's `owner`):
 * the APQN is held, by whom is not said. The same words a redacted admission violation uses ({@link redactForeign}).
 */
export const HIDDEN_OWNER = 'in use'

/**
 * Which matrix devices the inventory (queue owners, bus devices) shows `p` on `host`: null = every one (bus
 * devices are inventory: whoever may read the inventory sees them, unless limited as below); otherwise a test
 * of one device by its stored owner (`undefined`: not stored, a device apmatrix does not manage). A caller
 * whose grant on matrix devices is limited to its own (a tenant) sees its own stored devices only, decided by
 * the one authorization function; other tenants', unowned and unmanaged devices are hidden from it.
 */
export function inventoryVisibility(p: Principal | undefined, host: string): ((owner: string | null | undefined) => boolean) | null {
  if (!p || !ownOnly(p, 'read', 'mdevs')) return null
  return (owner) => owner !== undefined && authorize(p, 'read', 'mdevs', { host, owner }) === 'allow'
}

/** `err` with every uuid of `foreign` replaced by "another device" (messages, owners, fixes, fields). */
export function redactForeign(err: ApmatrixError, foreign: ReadonlySet<string>): ApmatrixError {
  if (!foreign.size) return err
  const scrub = (s: string | undefined) => {
    if (s === undefined) return s
    let out = s
    for (const u of foreign) out = out.split(u).join('another device')
    return out
  }
  const violations: Violation[] = err.violations.map((v) => {
    const w: Violation = { ...v, message: scrub(v.message)! }
    if (v.owner !== undefined) w.owner = foreign.has(v.owner) ? HIDDEN_OWNER : v.owner
    if (v.fix !== undefined) w.fix = scrub(v.fix)!
    if (v.field !== undefined) w.field = scrub(v.field)!
    return w
  })
  return new ApmatrixError(err.code, scrub(err.message)!, { ...(err.errno ? { errno: err.errno } : {}), violations })
}
