/**
 * The ONE authorization decision (docs/security.md (Roles)), used by both transports, the service's
 * tenant rules and the event streams, so they cannot disagree.
 */
import type { Principal } from './identity.js'
import { ROLE_TABLE, type Resource, type Rule, type Verb } from './roles.js'

/** What the decision knows about the object: its host, and for a matrix device its owner (null = unowned). */
export interface AuthzTarget {
  host?: string
  /** Absent: the object is not known yet (a transport's check before existence); a grant limited to own objects then allows, and the service decides per object. */
  owner?: string | null
}

/** `allow`; `deny` (PERMISSION_DENIED); `hidden`: allowed on own objects only and this one is someone else's (NOT_FOUND, AIP-135). */
export type Decision = 'allow' | 'deny' | 'hidden'

const matches = (r: Rule, verb: Verb, resource: Resource) =>
  (r.verbs === '*' || r.verbs.includes(verb)) && (r.resources === '*' || r.resources.includes(resource))

/**
 * May `p` do `verb` on `resource` (at `target`)? Every principal may read its own identity. A binding's
 * host limit applies to targets with a host; a target without a host (lists across hosts, whoami) is
 * allowed and filtered by the caller. A grant marked `own` allows only objects whose owner is the
 * principal's tenant name: others are `hidden`.
 */
export function authorize(p: Principal, verb: Verb, resource: Resource, target: AuthzTarget = {}): Decision {
  if (resource === 'identity' && verb === 'read') return 'allow'
  if (target.host !== undefined && p.hosts && !p.hosts.includes(target.host)) return 'deny'
  let ownOnly = false
  for (const role of p.roles) {
    for (const rule of ROLE_TABLE[role] ?? []) {
      if (!matches(rule, verb, resource)) continue
      if (!rule.own) return 'allow'
      ownOnly = true
    }
  }
  if (!ownOnly) return 'deny'
  if (target.owner === undefined) return 'allow'
  return p.tenant !== null && target.owner === p.tenant ? 'allow' : 'hidden'
}

/** True when `p` sees only its own objects of `resource` (lists filter, foreign objects are NOT_FOUND). */
export function ownOnly(p: Principal, verb: Verb, resource: Resource): boolean {
  let own = false
  for (const role of p.roles) {
    for (const rule of ROLE_TABLE[role] ?? []) {
      if (!matches(rule, verb, resource)) continue
      if (!rule.own) return false
      own = true
    }
  }
  return own
}
