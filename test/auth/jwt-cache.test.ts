/**
 * A verified JWT is remembered (src/auth/jwt.ts): the same token verifies once, the cache never outlives
 * the token's `exp` (with the configured tolerance) nor JWT_CACHE_TTL_MS, and a token that failed is
 * never remembered. The clock is injected (jose checks exp against it too), so nothing here waits.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import t from 'tap'
import { JWT_CACHE_TTL_MS, JwtVerifier } from '../../src/auth/jwt.js'

t.test('verified tokens are remembered until exp or the TTL, failures never', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-jwt-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const jwks = path.join(dir, 'jwks.json')
  fs.writeFileSync(jwks, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] }))
  let now = Date.parse('2026-12-07T00:00:00Z')
  const v = new JwtVerifier({ jwks, issuer: 'iss', audience: 'apmatrix', algorithms: ['ES256'], clockToleranceSec: 30 }, () => now)
  const sign = (sub: string, expSec: number, aud = 'apmatrix') =>
    new SignJWT({ groups: ['ops'] })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setSubject(sub)
      .setIssuer('iss')
      .setAudience(aud)
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(expSec)
      .sign(privateKey)

  // A long-lived token: remembered for the TTL, then verified again.
  const long = await sign('alice', Math.floor(now / 1000) + 3600)
  t.same(await v.verify(long), { subject: 'alice', groups: ['ops'] })
  t.same(await v.verify(long), { subject: 'alice', groups: ['ops'] })
  t.same(v.counts, { hits: 1, misses: 1 }, 'the second call is a cache hit')
  now += JWT_CACHE_TTL_MS
  t.same(await v.verify(long), { subject: 'alice', groups: ['ops'] })
  t.same(v.counts, { hits: 1, misses: 2 }, 'after the TTL the signature is checked again')

  // A token that expires soon: never answered from the cache past exp + tolerance.
  const short = await sign('bob', Math.floor(now / 1000) + 10)
  await v.verify(short)
  now += 35_000
  t.same(await v.verify(short), { subject: 'bob', groups: ['ops'] }, 'within exp + 30 s tolerance: still valid')
  now += 10_000
  await t.rejects(v.verify(short), { code: 'ERR_JWT_EXPIRED' }, 'past exp + tolerance: refused, not served from the cache')

  // A refused token is not remembered: it is refused every time.
  const wrongAud = await sign('eve', Math.floor(now / 1000) + 3600, 'someone-else')
  const before = v.counts.misses
  await t.rejects(v.verify(wrongAud), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' })
  await t.rejects(v.verify(wrongAud), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' })
  t.equal(v.counts.misses - before, 2, 'each refusal checked the token again')
  // A tampered copy of a remembered token is a different string: checked, and refused.
  const [h, p] = long.split('.')
  await t.rejects(v.verify(`${h}.${p}.AAAA`), 'a tampered signature is refused')
})
