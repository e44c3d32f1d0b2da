/**
 * Who is calling (docs/security.md): the principal every transport builds once per call, before any
 * handler runs, and that the service and the event streams decide on. No transport concepts here.
 */

/** How a caller proved who it is. `local`: no authentication is configured (every caller is the local subject). */
export type AuthSource = 'mtls' | 'jwt' | 'token' | 'local'

/** An authenticated caller. */
export interface Principal {
  /** Stable name: the certificate's CN or SAN, the JWT `sub`, the static token's name, or {@link LOCAL_SUBJECT}. */
  readonly subject: string
  /** Groups (JWT `groups` claim); bindings may name them as `group:NAME`. */
  readonly groups: readonly string[]
  /** Roles granted by the bindings (docs/security.md (Roles)); empty = may do nothing but `whoami`. */
  readonly roles: readonly string[]
  readonly source: AuthSource
  /** Hosts the roles are limited to; null = every host. */
  readonly hosts: readonly string[] | null
  /** The owner name a `tenant` role manages (matrix devices whose `owner` equals it). */
  readonly tenant: string | null
}

/** The subject of every caller when no authentication is configured (loopback, or `--insecure-no-auth`). */
export const LOCAL_SUBJECT = 'local:anonymous-admin'

/** The principal of every caller when authentication is off: {@link LOCAL_SUBJECT} with the `admin` role. */
export const LOCAL_PRINCIPAL: Principal = Object.freeze({
  subject: LOCAL_SUBJECT,
  groups: [],
  roles: ['admin'],
  source: 'local',
  hosts: null,
  tenant: null,
})

/** The audit/event actor of a principal on a transport: `rest:jwt:alice`, `grpc:local:local:anonymous-admin`. */
export function actorOf(p: Principal, transport: 'rest' | 'grpc'): string {
  return `${transport}:${p.source}:${p.subject}`
}
