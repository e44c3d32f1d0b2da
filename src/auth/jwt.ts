/**
 * Bearer JWTs (docs/security.md (JWT)), verified with `jose` against a JWKS file or an https URL:
 * signature, `iss`, `aud`, `exp`/`nbf` with a clock tolerance, and an algorithms allow-list (asymmetric
 * algorithms only; `none` and HMAC are refused at configuration time).
 */
import fs from 'node:fs'
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose'

/** Algorithms the allow-list may name: asymmetric signatures only (never `none`, never a shared secret). */
export { JWT_ALGORITHMS } from './jwt-algorithms.js'

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

/**
 * How long a verified token is remembered at most, whatever its `exp`: a key removed from a remote JWKS
 * stops tokens it signed within this time. Verifying a signature costs 100-200 CPU-µs a read (ES256, RS256;
 * `npm run bench -- security`), most of what authentication adds to a read; a client sends the same
 * token with every call until it renews it.
 */
export const JWT_CACHE_TTL_MS = 60_000
/** Verified tokens remembered at most (the oldest go first). */
export const JWT_CACHE_SIZE = 10_000

/** Verifies bearer JWTs; a token that verified is remembered until its `exp` (at most {@link JWT_CACHE_TTL_MS}). */
export class JwtVerifier {
  private readonly keys: JWTVerifyGetKey
  private readonly cache = new Map<string, { identity: JwtIdentity; untilMs: number }>()
  private readonly now: () => number
  /** Cache hits and misses (tests, metrics). */
  readonly counts = { hits: 0, misses: 0 }

  /**
   * Throws (with a message naming the JWKS source) when a JWKS file does not read or parse. `now` is the
   * clock (tests); jose checks `exp`/`nbf` against it too.
   */
  constructor(
    readonly opts: JwtOptions,
    now: () => number = Date.now,
  ) {
    this.now = now
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
    const now = this.now()
    const hit = this.cache.get(token)
    if (hit && now < hit.untilMs) {
      this.counts.hits++
      return hit.identity
    }
    if (hit) this.cache.delete(token)
    this.counts.misses++
    const { payload } = await jwtVerify(token, this.keys, {
      issuer: this.opts.issuer,
      audience: this.opts.audience,
      algorithms: this.opts.algorithms,
      clockTolerance: this.opts.clockToleranceSec,
      requiredClaims: ['sub', 'exp'],
      currentDate: new Date(now),
    })
    const groups = Array.isArray(payload.groups) ? payload.groups.filter((g): g is string => typeof g === 'string' && g.length <= 256).slice(0, 100) : []
    const sub = String(payload.sub)
    if (!sub || sub.length > 256) throw new Error('sub must be 1..256 characters')
    const identity = { subject: sub, groups }
    // Valid while jose would still accept it (exp with the same tolerance), and never longer than the TTL.
    const untilMs = Math.min(Number(payload.exp) * 1000 + this.opts.clockToleranceSec * 1000, now + JWT_CACHE_TTL_MS)
    if (this.cache.size >= JWT_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value as string)
    this.cache.set(token, { identity, untilMs })
    return identity
  }
}

/** True when `s` has the shape of a JWS compact serialisation (three base64url parts). */
export function looksLikeJwt(s: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(s)
}
