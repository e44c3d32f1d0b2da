/**
 * TLS, mutual TLS, JWTs and static tokens through real clients against the real service (startService
 * from a configuration as `apmatrix serve` builds it): curl with client certificates, grpc-js, Debian's
 * python3-grpcio with a client certificate, and the CLI. Bad credentials are refused: a wrong CA, an
 * expired certificate or none at all fail the TLS handshake (client certificates are required once a
 * client CA is configured); a wrong audience or issuer, an expired, tampered, foreign-key or `alg: none`
 * JWT and a revoked static token are 401 / UNAUTHENTICATED, store nothing, and are audited.
 */
import { spawn, spawnSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import tls from 'node:tls'
import * as grpc from '@grpc/grpc-js'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import t, { type Test } from 'tap'
import { tokenDigest } from '../../src/auth/static-tokens.js'
import { loadConfig } from '../../src/config.js'
import { startService, type RunningService } from '../../src/main.js'
import { loadApiProto } from '../../src/transport/grpc/proto.js'
import { cli } from '../cli/cli-fixture.js'
import { requireOrSkip, which } from '../helpers/required-tools.js'
import { type CertFiles, makeCa, makeLeaf } from './certs.js'

const ISS = 'https://issuer.test'
const AUD = 'apmatrix'
const BOT_TOKEN = 'ci-bot-token-0123456789abcdef'
const RBAC = `bindings:
  - subjects: [operator-cert]
    roles: [operator]
  - subjects: [alice]
    roles: [viewer]
  - groups: [platform-admins]
    roles: [admin]
  - subjects: [ci-bot]
    roles: [operator]
`

interface Pki {
  dir: string
  ca: CertFiles
  server: CertFiles
  client: CertFiles
  foreign: CertFiles
  expired: CertFiles
}

function pki(t: Test): Pki {
  const dir = t.testdir({})
  const ca = makeCa(dir, 'test-ca')
  const evil = makeCa(dir, 'evil-ca')
  return {
    dir,
    ca,
    server: makeLeaf(dir, ca, 'localhost', 'server'),
    client: makeLeaf(dir, ca, 'operator-cert', 'client'),
    foreign: makeLeaf(dir, evil, 'operator-cert-evil', 'client'),
    expired: makeLeaf(dir, ca, 'operator-cert-old', 'client', { start: '20200101000000Z', end: '20200102000000Z' }),
  }
}

async function serve(t: Test, dir: string, flags: Record<string, string>): Promise<RunningService> {
  const cfg = loadConfig(
    {
      databaseUrl: `file:${path.join(dir, `db-${Math.random().toString(36).slice(2)}.sqlite`)}`,
      http: '127.0.0.1:0',
      grpc: '127.0.0.1:0',
      logLevel: 'silent',
      ...flags,
    },
    {},
  )
  const svc = await startService(cfg)
  t.teardown(() => svc.close())
  return svc
}

/** Runs curl asynchronously (the server answers from this very process). */
function curl(args: string[]): Promise<{ code: number | null; status: number; body: string; headers: string }> {
  return new Promise((resolve) => {
    // -i: the headers come first on stdout (-D /dev/stderr is killed by a signal when stderr is a pipe here).
    const pr = spawn('curl', ['-sS', '-i', '-w', '\n%{http_code}', '--max-time', '20', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    pr.stdout.on('data', (d) => (stdout += d))
    pr.stderr.on('data', (d) => (stderr += d))
    pr.on('close', (code) => {
      const lines = stdout.split('\n')
      const status = Number(lines.pop())
      const text = lines.join('\n')
      const cut = text.lastIndexOf('\r\n\r\n')
      resolve({ code, status, body: cut >= 0 ? text.slice(cut + 4) : text, headers: cut >= 0 ? text.slice(0, cut) : stderr })
    })
  })
}

const missing = which('curl') === undefined || which('openssl') === undefined ? 'curl and openssl are needed: apt-get install -y curl openssl' : undefined

requireOrSkip(t, 'TLS with JWTs and static tokens (no client CA)', missing, async (t) => {
  const p = pki(t)
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const other = await generateKeyPair('ES256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }
  const jwks = path.join(p.dir, 'jwks.json')
  fs.writeFileSync(jwks, JSON.stringify({ keys: [jwk] }))
  const tokens = path.join(p.dir, 'tokens')
  fs.writeFileSync(tokens, `# name:sha256\nci-bot:${tokenDigest(BOT_TOKEN)}\n`)
  const rbac = path.join(p.dir, 'rbac.yaml')
  fs.writeFileSync(rbac, RBAC)
  const svc = await serve(t, p.dir, {
    tlsCert: p.server.cert,
    tlsKey: p.server.key,
    authTokensFile: tokens,
    jwtJwks: jwks,
    jwtIssuer: ISS,
    jwtAudience: AUD,
    jwtAlgorithms: 'ES256',
    jwtClockTolerance: '5',
    rbacFile: rbac,
  })
  t.match(svc.httpUrl, /^https:/)
  const url = svc.httpUrl
  const jwt = (claims: Record<string, unknown>, o: { iss?: string; aud?: string; exp?: number | string; key?: Parameters<SignJWT['sign']>[0] } = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setSubject('alice')
      .setIssuer(o.iss ?? ISS)
      .setAudience(o.aud ?? AUD)
      .setIssuedAt()
      .setExpirationTime(o.exp ?? '5m')
      .sign(o.key ?? privateKey)

  const good = await jwt({})
  const me = await curl(['--cacert', p.ca.cert, '-H', `authorization: Bearer ${good}`, `${url}/v1/auth/whoami`])
  t.equal(me.status, 200, 'curl over TLS with a JWT', { headers: me.headers })
  t.match(JSON.parse(me.body), { subject: 'alice', source: 'jwt', roles: ['viewer'] })
  const admin = JSON.parse(
    (await curl(['--cacert', p.ca.cert, '-H', `authorization: Bearer ${await jwt({ groups: ['platform-admins'] })}`, `${url}/v1/auth/whoami`])).body,
  )
  t.same(admin.roles, ['admin', 'viewer'], 'a JWT group binds a role (besides the subject binding of alice)')
  const bot = await curl(['--cacert', p.ca.cert, '-H', `authorization: Bearer ${BOT_TOKEN}`, `${url}/v1/auth/whoami`])
  t.match(JSON.parse(bot.body), { subject: 'ci-bot', source: 'token', roles: ['operator'] }, 'a static token')
  t.not((await curl([`${url}/v1/hosts`])).code, 0, 'curl without the CA does not trust the server')

  // Bad credentials: 401, WWW-Authenticate, nothing stored, audited.
  const [h, pl] = good.split('.') as [string, string, string]
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${pl}.`
  const payload = JSON.parse(Buffer.from(pl, 'base64url').toString()) as Record<string, unknown>
  const tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: 'admin' })).toString('base64url')}.${good.split('.')[2]}`
  const bad: Record<string, string> = {
    'wrong audience': await jwt({}, { aud: 'someone-else' }),
    'wrong issuer': await jwt({}, { iss: 'https://evil.test' }),
    expired: await jwt({}, { exp: Math.floor(Date.now() / 1000) - 3600 }),
    'signed by another key': await jwt({}, { key: other.privateKey }),
    tampered,
    'alg none': none,
    'unknown static token': 'not-a-token-0123456789',
  }
  const body = JSON.stringify({ uuid: 'abcdefab-1234-4321-8abc-0123456789ab', spec: { adapters: [5], domains: [4] } })
  for (const [what, token] of Object.entries(bad)) {
    const r = await curl([
      '--cacert',
      p.ca.cert,
      '-X',
      'POST',
      '-H',
      'content-type: application/json',
      '-H',
      `authorization: Bearer ${token}`,
      '--data',
      body,
      `${url}/v1/hosts/local/mdevs`,
    ])
    t.equal(r.status, 401, `${what}: 401`)
    t.match(JSON.parse(r.body), { code: 'UNAUTHENTICATED', status: 401 }, `${what}: problem body`)
    t.match(r.headers.toLowerCase(), /www-authenticate: bearer/, `${what}: WWW-Authenticate`)
  }
  // Revoking the static token: removed from the file, reloaded (what SIGHUP does).
  fs.writeFileSync(tokens, '# ci-bot revoked\n')
  await svc.reload()
  const revoked = await curl([
    '--cacert',
    p.ca.cert,
    '-X',
    'POST',
    '-H',
    'content-type: application/json',
    '-H',
    `authorization: Bearer ${BOT_TOKEN}`,
    '--data',
    body,
    `${url}/v1/hosts/local/mdevs`,
  ])
  t.equal(revoked.status, 401, 'a revoked static token: 401')

  // gRPC over TLS with bearer metadata.
  const { v1 } = loadApiProto()
  const hosts = new v1.HostService(svc.grpcAddr, grpc.credentials.createSsl(fs.readFileSync(p.ca.cert)))
  t.teardown(() => hosts.close())
  const call = (token: string) =>
    new Promise<grpc.status>((resolve) => {
      const md = new grpc.Metadata()
      md.set('authorization', `Bearer ${token}`)
      hosts.ListHosts({}, md, (err) => resolve(err ? err.code : grpc.status.OK))
    })
  t.equal(await call(good), grpc.status.OK, 'gRPC over TLS with a JWT')
  for (const [what, token] of Object.entries(bad)) t.equal(await call(token), grpc.status.UNAUTHENTICATED, `gRPC ${what}: UNAUTHENTICATED`)

  t.same((await svc.store.mdevs.list('local')).items, [], 'nothing was stored')
  const audit = await svc.store.audit.list({ limit: 500 })
  const unauth = audit.filter((a) => a.outcome === 'UNAUTHENTICATED')
  t.ok(unauth.length >= 2 * Object.keys(bad).length + 1, `refusals audited (${unauth.length})`)
  const reasons = unauth.map((a) => String(a.detail.reason))
  t.ok(
    reasons.some((r) => r.includes('aud')),
    'the audit record says why (audience)',
  )
  t.ok(unauth.some((a) => a.detail.transport === 'grpc') && unauth.some((a) => a.detail.transport === 'rest'), 'both transports audit')

  // The CLI with --cacert and --token / APMATRIX_TOKEN.
  const w = await cli(url, ['auth', 'whoami', '--cacert', p.ca.cert, '--token', good])
  t.equal(w.code, 0, w.stderr)
  t.match(w.stdout, /subject: alice\nauthenticated by: jwt\nroles: viewer/)
  const w2 = await cli(url, ['auth', 'whoami', '--json'], { env: { APMATRIX_TOKEN: good, APMATRIX_CACERT: p.ca.cert } })
  t.match(JSON.parse(w2.stdout), { subject: 'alice' }, 'APMATRIX_TOKEN and APMATRIX_CACERT')
  const w3 = await cli(url, ['auth', 'whoami', '--cacert', p.ca.cert, '--token', 'nope-nope-nope-nope'])
  t.not(w3.code, 0, 'the CLI with a bad token fails')
  t.match(w3.stderr, /invalid bearer token|UNAUTHENTICATED/)
})

requireOrSkip(t, 'mutual TLS: curl, grpc-js, python3-grpcio and the CLI with client certificates', missing, async (t) => {
  const p = pki(t)
  const rbac = path.join(p.dir, 'rbac.yaml')
  fs.writeFileSync(rbac, RBAC)
  const svc = await serve(t, p.dir, { tlsCert: p.server.cert, tlsKey: p.server.key, tlsCa: p.ca.cert, rbacFile: rbac })
  const url = svc.httpUrl
  const withCert = (c: CertFiles, more: string[]) => curl(['--cacert', p.ca.cert, '--cert', c.cert, '--key', c.key, ...more])
  const me = await withCert(p.client, [`${url}/v1/auth/whoami`])
  t.equal(me.status, 200, 'curl with a client certificate', { headers: me.headers })
  t.match(JSON.parse(me.body), { subject: 'operator-cert', source: 'mtls', roles: ['operator'] })
  const masks = await withCert(p.client, ['-X', 'PUT', '-H', 'content-type: application/json', '--data', '{"apmask":"-5"}', `${url}/v1/hosts/local/masks`])
  t.equal(masks.status, 403, 'an operator may not set masks')
  t.match(JSON.parse(masks.body), { code: 'PERMISSION_DENIED' })
  for (const [what, c] of [
    ['a certificate of another CA', p.foreign],
    ['an expired certificate', p.expired],
  ] as const) {
    const r = await withCert(c, [
      '-X',
      'POST',
      '-H',
      'content-type: application/json',
      '--data',
      '{"spec":{"adapters":[5],"domains":[4]}}',
      `${url}/v1/hosts/local/mdevs`,
    ])
    t.not(r.code, 0, `${what}: the TLS handshake is refused (curl exit ${r.code})`)
  }
  t.not((await curl(['--cacert', p.ca.cert, `${url}/v1/hosts`])).code, 0, 'no client certificate: refused')

  // grpc-js with and without the right certificate.
  const { v1 } = loadApiProto()
  const target = svc.grpcAddr
  const listHosts = (c: CertFiles) =>
    new Promise<grpc.status>((resolve) => {
      const client = new v1.HostService(target, grpc.credentials.createSsl(fs.readFileSync(p.ca.cert), fs.readFileSync(c.key), fs.readFileSync(c.cert)))
      client.ListHosts({}, new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (err) => {
        client.close()
        resolve(err ? err.code : grpc.status.OK)
      })
    })
  t.equal(await listHosts(p.client), grpc.status.OK, 'grpc-js with a client certificate')
  t.not(await listHosts(p.expired), grpc.status.OK, 'grpc-js with an expired certificate is refused')
  t.not(await listHosts(p.foreign), grpc.status.OK, 'grpc-js with a foreign certificate is refused')

  // The CLI.
  const w = await cli(url, ['auth', 'whoami', '--cacert', p.ca.cert, '--cert', p.client.cert, '--key', p.client.key])
  t.equal(w.code, 0, w.stderr)
  t.match(w.stdout, /subject: operator-cert\nauthenticated by: mtls\nroles: operator/)
  t.same((await svc.store.mdevs.list('local')).items, [], 'nothing was stored')

  // A new server certificate (same CA) and SIGHUP's reload: new handshakes on both ports show it, and
  // client certificates are still required and still authenticate (gRPC through the certificate provider).
  const renewed = makeLeaf(p.dir, p.ca, 'localhost-renewed', 'server')
  fs.copyFileSync(renewed.cert, p.server.cert)
  fs.copyFileSync(renewed.key, p.server.key)
  await svc.reload()
  const peer = (port: number, c: CertFiles, alpn: string[]) =>
    new Promise<string>((resolve) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port,
        ca: fs.readFileSync(p.ca.cert),
        ALPNProtocols: alpn,
        cert: fs.readFileSync(c.cert),
        key: fs.readFileSync(c.key),
      })
      s.once('secureConnect', () => {
        const fp = s.getPeerCertificate().fingerprint256
        s.destroy()
        resolve(fp)
      })
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
    })
  const renewedFp = new X509Certificate(fs.readFileSync(renewed.cert)).fingerprint256
  t.equal(await peer(Number(new URL(url).port), p.client, ['http/1.1']), renewedFp, 'REST: the renewed certificate after the reload')
  t.equal(await peer(Number(target.slice(target.lastIndexOf(':') + 1)), p.client, ['h2']), renewedFp, 'gRPC: the renewed certificate after the reload')
  t.equal(await listHosts(p.client), grpc.status.OK, 'gRPC with a client certificate after the reload')
  t.not(await listHosts(p.foreign), grpc.status.OK, 'gRPC with a foreign certificate is still refused')
  t.not((await curl(['--cacert', p.ca.cert, `${url}/v1/hosts`])).code, 0, 'REST without a client certificate is still refused')

  // Debian's python3-grpcio with the client certificate: raw messages (ListHostsRequest and WhoAmIRequest are empty;
  // SetMasksRequest host=local); the WhoAmI answer is decoded by hand (its fields are all strings).
  const python = ['/usr/bin/python3', 'python3'].find((py) => spawnSync(py, ['-c', 'import grpc'], { encoding: 'utf8' }).status === 0)
  requireOrSkip(
    t,
    'python3-grpcio with a client certificate',
    python ? undefined : 'python3-grpcio not installed: apt-get install -y python3-grpcio',
    async (t) => {
      const script = `
import sys, grpc
target, ca, cert, key = sys.argv[1:5]
r = lambda f: open(f, 'rb').read()
def call(c, k, method, req):
    creds = grpc.ssl_channel_credentials(root_certificates=r(ca), private_key=r(k), certificate_chain=r(c))
    with grpc.secure_channel(target, creds) as ch:
        try:
            ch.unary_unary(method)(req, timeout=15)
            return 'OK'
        except grpc.RpcError as e:
            return e.code().name
def varint(b, i):
    v = shift = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7f) << shift
        shift += 7
        if x < 0x80:
            return v, i
def strings(b):
    # The length-delimited fields of a message, by field number (WhoAmIResponse holds nothing else).
    out, i = {}, 0
    while i < len(b):
        tag, i = varint(b, i)
        n, i = varint(b, i)
        out.setdefault(tag >> 3, []).append(b[i:i + n].decode())
        i += n
    return out
print(call(cert, key, '/apmatrix.v1.HostService/ListHosts', b''))
print(call(cert, key, '/apmatrix.v1.HostService/SetMasks', b'\\x0a\\x05local\\x12\\x02-5'))
print(call(sys.argv[5], sys.argv[6], '/apmatrix.v1.HostService/ListHosts', b''))
creds = grpc.ssl_channel_credentials(root_certificates=r(ca), private_key=r(key), certificate_chain=r(cert))
with grpc.secure_channel(target, creds) as ch:
    me = strings(ch.unary_unary('/apmatrix.v1.AuthService/WhoAmI')(b'', timeout=15))
print('whoami', me[1][0], me[2][0], ','.join(me.get(3, [])))
`
      const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const pr = spawn(python!, ['-c', script, target, p.ca.cert, p.client.cert, p.client.key, p.expired.cert, p.expired.key], {
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        let stdout = ''
        let stderr = ''
        pr.stdout.on('data', (d) => (stdout += d))
        pr.stderr.on('data', (d) => (stderr += d))
        const kill = setTimeout(() => pr.kill('SIGKILL'), 60_000)
        pr.on('close', (code) => {
          clearTimeout(kill)
          resolve({ code, stdout, stderr })
        })
      })
      t.equal(out.code, 0, out.stderr)
      t.same(
        out.stdout.trim().split('\n'),
        ['OK', 'PERMISSION_DENIED', 'UNAVAILABLE', 'whoami operator-cert mtls operator'],
        'python: allowed, denied by role, expired certificate refused; WhoAmI names the certificate',
      )
    },
  )
})
