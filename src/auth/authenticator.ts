/**
 * Authentication (docs/security.md): turns what a call presents (an `authorization: Bearer` value, a
 * verified client certificate) into a {@link Principal}, or UNAUTHENTICATED. One object for both
 * transports. A bearer credential, when present, is what counts (a gateway may hold the client
 * certificate); otherwise the verified client certificate. A bearer value shaped like a JWT is verified
 * as one when JWTs are configured; anything else is looked up in the static tokens.
 */
import { ApmatrixError } from '../domain/errors.js'
import { LOCAL_PRINCIPAL, type Principal } from './identity.js'
import { type JwtVerifier, looksLikeJwt } from './jwt.js'
import { certificateNames, type PeerCertLike } from './mtls.js'
import type { Bindings } from './roles.js'
import type { StaticTokens } from './static-tokens.js'

/** What a call presents. */
export interface Credentials {
  /** The `authorization` header or metadata value, as sent. */
  authorization?: string | undefined
  /** The peer certificate when the TLS layer verified it against the client CA; null otherwise. */
  peerCert?: PeerCertLike | null
}

/** An authentication failure: UNAUTHENTICATED to the caller (a generic message), `reason` for the audit record and the log. */
export class AuthenticationError extends ApmatrixError {
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super('UNAUTHENTICATED', message)
  }
}

/** Configured authentication. `enabled` false: every caller is the local admin subject. */
export interface AuthenticatorOptions {
  bindings?: Bindings
  tokens?: StaticTokens
  jwt?: JwtVerifier
  /** Client certificates are verified by the TLS layer (a client CA is configured). */
  mtls?: boolean
}

const MAX_AUTHORIZATION = 8192

/** Authenticates calls. */
export class Authenticator {
  /** True when any method is configured; false = no authentication (loopback, or --insecure-no-auth). */
  readonly enabled: boolean

  constructor(private opts: AuthenticatorOptions = {}) {
    this.enabled = !!(opts.tokens || opts.jwt || opts.mtls)
  }

  /** The schemes a 401 names in `WWW-Authenticate`. */
  get challenge(): string {
    return 'Bearer realm="apmatrix"'
  }

  /** Swaps the static tokens and bindings (SIGHUP). */
  reload(next: Pick<AuthenticatorOptions, 'bindings' | 'tokens'>): void {
    this.opts = { ...this.opts, ...next }
  }

  /** The caller's principal. AuthenticationError (UNAUTHENTICATED) when credentials are missing or invalid. */
  async authenticate(c: Credentials): Promise<Principal> {
    if (!this.enabled) return LOCAL_PRINCIPAL
    const auth = c.authorization
    if (auth !== undefined && auth !== '') {
      if (auth.length > MAX_AUTHORIZATION) throw new AuthenticationError('invalid credentials', 'authorization value too long')
      const m = /^Bearer +([\x21-\x7e]+)$/i.exec(auth.trim())
      if (!m) throw new AuthenticationError('invalid credentials: use Authorization: Bearer <token>', 'not a bearer credential')
      const token = m[1]!
      if (this.opts.jwt && looksLikeJwt(token)) {
        try {
          const id = await this.opts.jwt.verify(token)
          return this.principal('jwt', [id.subject], id.groups)
        } catch (e) {
          const err = e as { code?: string; message?: string }
          throw new AuthenticationError('invalid bearer token', `jwt: ${err.code ?? 'invalid'}: ${String(err.message).slice(0, 200)}`)
        }
      }
      const name = this.opts.tokens?.lookup(token) ?? null
      if (name === null) throw new AuthenticationError('invalid bearer token', 'unknown or revoked static token')
      return this.principal('token', [name], [])
    }
    if (this.opts.mtls && c.peerCert) {
      const names = certificateNames(c.peerCert)
      if (names.length) return this.principal('mtls', names, [])
      throw new AuthenticationError('client certificate has no name', 'certificate without CN or SAN')
    }
    throw new AuthenticationError('authentication required', 'no credentials')
  }

  private principal(source: Principal['source'], names: string[], groups: string[]): Principal {
    const g = this.opts.bindings?.grant(names, groups) ?? { roles: [], hosts: null, tenant: null }
    return { subject: names[0]!, groups, roles: g.roles, source, hosts: g.hosts, tenant: g.tenant }
  }
}
