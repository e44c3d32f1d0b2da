/**
 * Bearer JWTs (docs/security.md (JWT)), verified with `jose` against a JWKS file or an https URL:
 * signature, `iss`, `aud`, `exp`/`nbf` with a clock tolerance, and an algorithms allow-list (asymmetric
 * algorithms only; `none` and HMAC are refused at configuration time).
 */
import fs from 'node:fs'
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose'

/** Algorithms the allow-list may name: asymmetric signatures only (never `none`, never a shared secret). */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const

/** JWT verification settings. */
export interface JwtOptions {
  /** A JWKS file path, or an https:// URL (fetched and cached by jose). */
  jwks: string
  issuer: string
  audience: string
  algorithms: string[]
  /** Seconds of clock skew accepted on exp/nbf/iat. */
  clockToleranceSec: number
}

/** What a valid token says about its caller. */
export interface JwtIdentity {
  subject: string
  groups: string[]
}

/** Verifies bearer JWTs. */
export class JwtVerifier {
  private readonly keys: JWTVerifyGetKey

  /** Throws (with a message naming the JWKS source) when a JWKS file does not read or parse. */
  constructor(readonly opts: JwtOptions) {
    if (/^https?:\/\//.test(opts.jwks)) {
      this.keys = createRemoteJWKSet(new URL(opts.jwks))
    } else {
      let jwks: unknown
      try {
        jwks = JSON.parse(fs.readFileSync(opts.jwks, 'utf8'))
      } catch (e) {
        throw new Error(`JWKS ${opts.jwks}: cannot be read as JSON (${(e as Error).message})`)
      }
      this.keys = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0])
    }
  }

  /** The identity of a valid token; throws (jose's error, with its code) for anything else. */
  async verify(token: string): Promise<JwtIdentity> {
    const { payload } = await jwtVerify(token, this.keys, {
      issuer: this.opts.issuer,
      audience: this.opts.audience,
      algorithms: this.opts.algorithms,
      clockTolerance: this.opts.clockToleranceSec,
      requiredClaims: ['sub', 'exp'],
    })
    const groups = Array.isArray(payload.groups) ? payload.groups.filter((g): g is string => typeof g === 'string' && g.length <= 256).slice(0, 100) : []
    const sub = String(payload.sub)
    if (!sub || sub.length > 256) throw new Error('sub must be 1..256 characters')
    return { subject: sub, groups }
  }
}

/** True when `s` has the shape of a JWS compact serialisation (three base64url parts). */
export function looksLikeJwt(s: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(s)
}
