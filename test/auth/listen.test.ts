/**
 * Secure by default (docs/security.md): the service refuses a non-loopback listen address without
 * authentication (exit 2 and a message naming the settings), starts with --insecure-no-auth and says
 * so in its log, and every caller is then local:anonymous-admin. Also: the roles file's errors name the
 * line and the field, and the host limit of a binding.
 */
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { Authenticator } from '../../src/auth/authenticator.js'
import { authorize } from '../../src/auth/authorize.js'
import { parseBindings, RbacFileError } from '../../src/auth/roles.js'
import { parseStaticTokens, tokenDigest } from '../../src/auth/static-tokens.js'
import { loadConfig } from '../../src/config.js'
import { projectRoot } from '../../src/paths.js'

const BIN = path.join(projectRoot, 'bin/apmatrix.mjs')

t.test('loadConfig: a non-loopback address needs authentication or --insecure-no-auth', async (t) => {
  t.throws(() => loadConfig({ http: '0.0.0.0:8080' }, {}), { name: 'ConfigError', message: /refusing to listen on 0\.0\.0\.0 without authentication/ })
  t.throws(() => loadConfig({ grpc: '192.0.2.1:50051' }, {}), /refusing to listen on 192\.0\.2\.1 without authentication/)
  t.equal(loadConfig({ http: '0.0.0.0:8080', insecureNoAuth: 'true' }, {}).security.insecureNoAuth, true)
  t.equal(loadConfig({}, {}).security.authEnabled, false, 'loopback without authentication is fine')
  const dir = t.testdir({ tokens: `a:${tokenDigest('x'.repeat(20))}\n`, 'roles.yaml': 'bindings:\n  - subjects: [a]\n    roles: [viewer]\n' })
  t.throws(() => loadConfig({ authTokensFile: path.join(dir, 'tokens') }, {}), /APMATRIX_RBAC_FILE .*required when authentication is configured/)
  const cfg = loadConfig({ http: '0.0.0.0:8080', authTokensFile: path.join(dir, 'tokens'), rbacFile: path.join(dir, 'roles.yaml') }, {})
  t.equal(cfg.security.authEnabled, true, 'authentication on: any address')
  t.throws(() => loadConfig({ jwtJwks: path.join(dir, 'tokens'), jwtIssuer: 'i', jwtAudience: 'a', jwtAlgorithms: 'none' }, {}), /never none/)
  t.throws(() => loadConfig({ jwtJwks: path.join(dir, 'tokens'), jwtIssuer: 'i', jwtAudience: 'a', jwtAlgorithms: 'HS256' }, {}), /never HMAC/)
})

t.test('the roles file: errors name the line and the field', async (t) => {
  t.throws(
    () => parseBindings('bindings:\n  - subjects: [a]\n    roles: [superuser]\n', 'r.yaml'),
    /r\.yaml: line 3: bindings\.0\.roles\.0: .*\(roles: viewer, tenant/,
  )
  t.throws(() => parseBindings('bindings:\n  - subjects: [a]\n    roles: [viewer]\n    colour: blue\n', 'r.yaml'), /line 2: bindings\.0: .*colour/)
  t.throws(() => parseBindings('bindings: [\n', 'r.yaml'), RbacFileError)
  const b = parseBindings('{"bindings":[{"subjects":["lab"],"roles":["emulator-admin"],"hosts":["lab1"]}]}')
  const auth = new Authenticator({ tokens: parseStaticTokens(`lab:${tokenDigest('lab-token-0123456789')}`), bindings: b })
  const p = await auth.authenticate({ authorization: 'Bearer lab-token-0123456789' })
  t.same(p.hosts, ['lab1'])
  t.equal(authorize(p, 'update', 'emulator', { host: 'lab1' }), 'allow')
  t.equal(authorize(p, 'update', 'emulator', { host: 'lab2' }), 'deny', 'the host limit holds')
  t.equal(authorize(p, 'read', 'identity'), 'allow', 'whoami is always allowed')
})

t.test('the process: refused on 0.0.0.0 without authentication; --insecure-no-auth starts and says so', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-listen-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const env = { PATH: process.env.PATH ?? '', DATABASE_URL: `file:${dir}/db.sqlite`, APMATRIX_GRPC_ADDR: '127.0.0.1:0' }
  const refused = spawnSync(process.execPath, [BIN, 'serve', '--http-addr', '0.0.0.0:0'], { encoding: 'utf8', env, timeout: 120_000, cwd: dir })
  t.equal(refused.status, 2, 'exit 2')
  t.match(refused.stderr, /refusing to listen on 0\.0\.0\.0 without authentication: configure APMATRIX_TLS_CA .* or pass --insecure-no-auth/)

  const p = spawn(process.execPath, [BIN, 'serve', '--http-addr', '0.0.0.0:0', '--insecure-no-auth', '--log-level', 'info'], {
    env,
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  p.stdout.on('data', (d) => (stdout += d))
  p.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)))
  t.teardown(() => {
    if (p.exitCode === null) p.kill('SIGKILL')
  })
  const deadline = Date.now() + 120_000
  while (!/apmatrix serving REST on (\S+)/.test(stdout) && p.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  const url = /apmatrix serving REST on (\S+)/.exec(stdout)?.[1]
  t.ok(url, 'it starts', { stderr })
  t.match(stderr, /INSECURE: --insecure-no-auth/, 'and logs it loudly')
  if (url) {
    const me = (await (await fetch(`${url.replace('0.0.0.0', '127.0.0.1')}/v1/auth/whoami`)).json()) as { subject: string; roles: string[] }
    t.same([me.subject, me.roles], ['local:anonymous-admin', ['admin']], 'every caller is the local admin subject')
  }
  p.kill('SIGTERM')
  t.equal(await exited, 0, 'stops on SIGTERM')
})
