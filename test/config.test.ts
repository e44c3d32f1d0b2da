import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'

t.test('defaults are the embedded setup of product.md §7', async (t) => {
  const c = loadConfig({}, {})
  t.equal(c.databaseUrl, 'file:./data/apmatrix.db')
  t.same(c.http, { host: '127.0.0.1', port: 8080 })
  t.same(c.grpc, { host: '127.0.0.1', port: 50051 })
  t.same(c.hosts, [{ name: 'local', kind: 'emulator', profile: 'demo', kernel: 'current-6.x' }])
  t.equal(c.logLevel, 'info')
  t.equal(c.crashAt, undefined)
})

t.test('flags win over the environment', async (t) => {
  const c = loadConfig({ http: '127.0.0.1:9999' }, { APMATRIX_HTTP_ADDR: '127.0.0.1:7777', APMATRIX_PROFILE: 'full' })
  t.equal(c.http.port, 9999)
  t.equal(c.hosts[0]!.kind === 'emulator' && c.hosts[0]!.profile, 'full')
})

t.test('several hosts, remote emulators, and the crash hook', async (t) => {
  const c = loadConfig({}, { APMATRIX_HOSTS: 'a=spec-fixture,b@127.0.0.1:50151', APMATRIX_CRASH_AT: 'afterBusWrite:3' })
  t.same(c.hosts, [
    { name: 'a', kind: 'emulator', profile: 'spec-fixture', kernel: 'current-6.x' },
    { name: 'b', kind: 'remote-emulator', addr: '127.0.0.1:50151' },
  ])
  t.same(c.crashAt, { point: 'afterBusWrite', nth: 3 })
  t.same(loadConfig({}, { APMATRIX_EMULATOR_ADDR: '[::1]:5000' }).hosts, [{ name: 'local', kind: 'remote-emulator', addr: '[::1]:5000' }])
})

t.test('bad settings stop with a message naming the setting', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL/],
    [{ APMATRIX_HTTP_ADDR: 'localhost' }, /APMATRIX_HTTP_ADDR.*host:port/],
    [{ APMATRIX_GRPC_ADDR: '127.0.0.1:70000' }, /APMATRIX_GRPC_ADDR/],
    [{ APMATRIX_LOG_LEVEL: 'loud' }, /APMATRIX_LOG_LEVEL/],
    [{ APMATRIX_KERNEL: '4.19' }, /APMATRIX_KERNEL/],
    [{ APMATRIX_HOSTS: 'Bad_Name=demo' }, /APMATRIX_HOSTS/],
    [{ APMATRIX_HOSTS: 'a,a' }, /twice/],
    [{ APMATRIX_DRAIN_TIMEOUT_MS: '-1' }, /APMATRIX_DRAIN_TIMEOUT_MS/],
    [{ APMATRIX_LEASE_TTL_MS: '10' }, /APMATRIX_LEASE_TTL_MS/],
    [{ APMATRIX_CRASH_AT: 'somewhere:1' }, /APMATRIX_CRASH_AT/],
  ]
  for (const [env, re] of cases) t.throws(() => loadConfig({}, env), { name: 'ConfigError', message: re }, JSON.stringify(env))
  t.ok(new ConfigError('x') instanceof Error)
})
