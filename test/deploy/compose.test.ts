/**
 * docker-compose.yml runs secured (docs/security.md). No Docker engine runs here, so the compose file is
 * read with `yaml` and played locally: the `certs` one-shot's entrypoint (deploy/compose/make-certs.sh)
 * runs with its environment into a temporary folder that stands for the secrets mount; the `apmatrix`
 * service then starts in this process from the compose file's environment, container paths mapped to
 * local ones through the service's volumes (the PostgreSQL URL replaced by a SQLite file, the ports by
 * free ones); its healthcheck command runs as written against it; curl with the generated CA and token
 * gets whoami, without the token 401. Also: the order of start (certs, then the service) and that the
 * script keeps what it made.
 */
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { loadConfig } from '../../src/config.js'
import { createLogger, startService } from '../../src/main.js'
import { projectRoot } from '../../src/paths.js'
import { tempDir } from '../bus/sysfs-tree.js'
import { requireOrSkip, which } from '../helpers/required-tools.js'

interface ComposeService {
  entrypoint?: string[]
  user?: string
  environment?: Record<string, string>
  volumes?: string[]
  depends_on?: Record<string, { condition: string }>
  healthcheck?: { test: string[] }
}

const compose = parse(fs.readFileSync(path.join(projectRoot, 'docker-compose.yml'), 'utf8')) as { services: Record<string, ComposeService> }
const certs = compose.services.certs!
const service = compose.services.apmatrix!

/** host:container[:mode] volumes as container path -> host path; `secrets` (the bind-mounted folder the one-shot writes) is replaced by `secretsDir`. */
function mounts(s: ComposeService, secretsDir: string): Array<[string, string]> {
  return (s.volumes ?? []).map((v) => {
    const [host, container] = v.split(':') as [string, string]
    return [container, host === './deploy/compose/secrets' ? secretsDir : path.resolve(projectRoot, host)]
  })
}

/** A container path as a local one (the longest mount that contains it); unchanged when no mount does. */
function local(p: string, m: Array<[string, string]>): string {
  const hit = m.filter(([c]) => p === c || p.startsWith(`${c}/`)).sort((a, b) => b[0].length - a[0].length)[0]
  return hit ? hit[1] + p.slice(hit[0].length) : p
}

function curl(args: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const pr = spawn('curl', ['-sS', '-o', '-', '-w', '\n%{http_code}', '--max-time', '20', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    pr.stdout.on('data', (d) => (out += d))
    pr.on('close', () => {
      const i = out.lastIndexOf('\n')
      resolve({ status: Number(out.slice(i + 1)), body: out.slice(0, i) })
    })
  })
}

t.test('the compose file: the certificates first, then a service configured with TLS, tokens and roles', async (t) => {
  t.same(service.depends_on?.certs, { condition: 'service_completed_successfully' }, 'the service waits for the one-shot')
  t.equal(certs.entrypoint?.[1], '/make-certs.sh')
  t.ok(certs.volumes?.includes('./deploy/compose/make-certs.sh:/make-certs.sh:ro'), 'the script is mounted from the repository')
  const env = service.environment ?? {}
  for (const k of ['APMATRIX_TLS_CERT', 'APMATRIX_TLS_KEY', 'APMATRIX_AUTH_TOKENS_FILE', 'APMATRIX_RBAC_FILE']) t.ok(env[k], `${k} is set`)
  t.equal(env.APMATRIX_INSECURE_NO_AUTH, undefined, 'no opt-out of authentication')
  t.match(service.healthcheck?.test.join(' '), /fetch\('https:\/\//, 'the healthcheck speaks TLS')
})

const missing = which('openssl') === undefined || which('curl') === undefined ? 'openssl and curl are needed: apt-get install -y openssl curl' : undefined

requireOrSkip(t, 'played locally: make-certs.sh, then apmatrix serve from the compose environment', missing, async (t) => {
  const secrets = path.join(tempDir(t, 'apmatrix-compose-'), 'secrets')
  const certMounts = mounts(certs, secrets)
  const [shell, ...args] = certs.entrypoint!
  // The one-shot's environment as written, but the files go to this user instead of the image's uid 1000.
  const owner = `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`
  const runCerts = () =>
    spawnSync(
      shell!,
      args.map((a) => local(a, certMounts)),
      { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...certs.environment, SECRETS_OWNER: owner } },
    )
  const made = runCerts()
  t.equal(made.status, 0, 'make-certs.sh exits 0', { stderr: made.stderr })
  const files = fs.readdirSync(secrets).sort()
  t.same(files, ['admin-bot.token', 'ca.crt', 'ca.key', 'server.crt', 'server.key', 'tokens'])
  const token = fs.readFileSync(path.join(secrets, 'admin-bot.token'), 'utf8')
  t.match(token, /^[A-Za-z0-9]{30,}$/, 'a token without a newline')
  t.equal((fs.statSync(path.join(secrets, 'server.key')).mode & 0o777).toString(8), '600', 'the key is private')
  const before = fs.readFileSync(path.join(secrets, 'server.crt'), 'utf8')
  t.equal(runCerts().status, 0)
  t.equal(fs.readFileSync(path.join(secrets, 'server.crt'), 'utf8'), before, 'a second run keeps the certificate')
  t.equal(fs.readFileSync(path.join(secrets, 'admin-bot.token'), 'utf8'), token, '... and the token')

  const m = mounts(service, secrets)
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(service.environment ?? {})) env[k] = local(String(v), m)
  t.equal(env.APMATRIX_RBAC_FILE, path.join(projectRoot, 'deploy/compose/roles.yaml'), 'the roles file of the repository')
  t.equal(env.APMATRIX_TLS_CERT, path.join(secrets, 'server.crt'))
  // Here: SQLite instead of the compose PostgreSQL, free ports on the compose listen host (0.0.0.0: allowed only because authentication is on).
  env.DATABASE_URL = `file:${path.join(path.dirname(secrets), 'apmatrix.db')}`
  env.APMATRIX_HTTP_ADDR = env.APMATRIX_HTTP_ADDR!.replace(/:\d+$/, ':0')
  env.APMATRIX_GRPC_ADDR = env.APMATRIX_GRPC_ADDR!.replace(/:\d+$/, ':0')
  env.APMATRIX_LOG_LEVEL = 'silent'
  const cfg = loadConfig({}, env)
  t.equal(cfg.http.host, '0.0.0.0')
  t.equal(cfg.security.authEnabled, true)
  const svc = await startService(cfg, createLogger(cfg.logLevel))
  t.teardown(() => svc.close())
  const port = new URL(svc.httpUrl).port

  // The healthcheck as written (the container port mapped), with the container's NODE_EXTRA_CA_CERTS; and
  // without it, when the same command must fail (it does verify the certificate).
  const [kind, cmd, ...cmdArgs] = service.healthcheck!.test
  t.equal(kind, 'CMD')
  t.equal(cmd, 'node')
  const healthcheck = (extra: Record<string, string>) =>
    new Promise<number | null>((resolve) => {
      const pr = spawn(
        process.execPath,
        cmdArgs.map((a) => a.replace(':8080/', `:${port}/`)),
        { stdio: 'ignore', env: { PATH: process.env.PATH ?? '', ...extra } },
      )
      pr.on('close', (code) => resolve(code))
    })
  t.equal(await healthcheck({ NODE_EXTRA_CA_CERTS: env.NODE_EXTRA_CA_CERTS! }), 0, 'the healthcheck passes')
  t.equal(await healthcheck({}), 1, 'the same check without the compose CA fails')
  const ca = path.join(secrets, 'ca.crt')
  const base = `https://127.0.0.1:${port}`
  const me = await curl(['--cacert', ca, '-H', `authorization: Bearer ${token}`, `${base}/v1/auth/whoami`])
  t.equal(me.status, 200, 'whoami with the generated CA and token', { body: me.body })
  t.match(JSON.parse(me.body), { subject: 'admin-bot', source: 'token', roles: ['admin'] })
  const anon = await curl(['--cacert', ca, `${base}/v1/auth/whoami`])
  t.equal(anon.status, 401, 'no token: 401')
  t.match(JSON.parse(anon.body), { code: 'UNAUTHENTICATED' })
})
