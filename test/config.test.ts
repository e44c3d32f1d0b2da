import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'

t.test('defaults are the embedded setup of README (Configuration)', async (t) => {
  const c = loadConfig({}, {})
  t.equal(c.databaseUrl, 'file:./data/apmatrix.db')
  t.same(c.http, { host: '127.0.0.1', port: 8080 })
  t.same(c.grpc, { host: '127.0.0.1', port: 50051 })
  t.same(c.hosts, [{ name: 'local', kind: 'emulator', profile: 'demo', kernel: 'current-6.x' }])
  t.equal(c.logLevel, 'info')
  t.equal(c.drainTimeoutMs, 30_000)
  t.equal(c.drainOnTimeout, 'flush')
  t.equal(c.crashAt, undefined)
})

t.test('the default drain policy: timeout and what happens at it', async (t) => {
  const c = loadConfig({}, { APMATRIX_DRAIN_TIMEOUT_MS: '5000', APMATRIX_DRAIN_ON_TIMEOUT: 'wait' })
  t.equal(c.drainTimeoutMs, 5_000)
  t.equal(c.drainOnTimeout, 'wait')
  t.equal(loadConfig({ drainOnTimeout: 'flush' }, { APMATRIX_DRAIN_ON_TIMEOUT: 'wait' }).drainOnTimeout, 'flush', 'the flag wins')
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
    { name: 'b', kind: 'remote', addr: '127.0.0.1:50151' },
  ])
  t.same(c.crashAt, { point: 'afterBusWrite', nth: 3 })
  t.same(loadConfig({}, { APMATRIX_EMULATOR_ADDR: '[::1]:5000' }).hosts, [{ name: 'local', kind: 'remote', addr: '[::1]:5000' }])
})

t.test('sysfs hosts: name=sysfs:/path beside name=PROFILE and name@host:port, with their settings', async (t) => {
  const c = loadConfig({}, { APMATRIX_HOSTS: 'lpar1=sysfs:/sys, lpar2@lpar2.example:50152,emu=demo,mnt=sysfs:/mnt/emu//sys/' })
  t.same(
    c.hosts,
    [
      { name: 'lpar1', kind: 'sysfs', root: '/sys' },
      { name: 'lpar2', kind: 'remote', addr: 'lpar2.example:50152' },
      { name: 'emu', kind: 'emulator', profile: 'demo', kernel: 'current-6.x' },
      { name: 'mnt', kind: 'sysfs', root: '/mnt/emu/sys' },
    ],
    'the root is normalised',
  )
  t.same(
    c.sysfs,
    { lockPath: '/run/lock/s390apconfig.lock', watch: 'auto', pollMs: 2000, bootIdFile: undefined },
    "defaults: the s390-tools lock, auto detection, the kernel's boot id",
  )
  t.equal(c.lockWaitMs, 5000)
  const f = loadConfig({ sysfsLockPath: '/tmp/x.lock', sysfsWatch: 'poll', sysfsPollMs: '100', lockWaitMs: '0' }, { APMATRIX_SYSFS_WATCH: 'udev' })
  t.same([f.sysfs, f.lockWaitMs], [{ lockPath: '/tmp/x.lock', watch: 'poll', pollMs: 100, bootIdFile: undefined }, 0], 'flags win')
  t.equal(loadConfig({}, { APMATRIX_SYSFS_BOOT_ID_FILE: '/run/emu/boot_id' }).sysfs.bootIdFile, '/run/emu/boot_id')
  t.same(loadConfig({}, { APMATRIX_SYSFS_WATCH: 'udev', APMATRIX_SYSFS_POLL_MS: '50' }).sysfs, {
    lockPath: '/run/lock/s390apconfig.lock',
    watch: 'udev',
    pollMs: 50,
    bootIdFile: undefined,
  })
})

t.test('bad sysfs settings name the setting and what is accepted', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ APMATRIX_HOSTS: 'lpar1=sysfs:' }, /APMATRIX_HOSTS \/ --hosts: host lpar1: 'sysfs:' needs an absolute path \(e\.g\. lpar1=sysfs:\/sys\)/],
    [{ APMATRIX_HOSTS: 'lpar1=sysfs:relative/sys' }, /APMATRIX_HOSTS.*host lpar1: 'sysfs:relative\/sys' needs an absolute path/],
    [{ APMATRIX_HOSTS: 'lpar1=sysfs:/' }, /APMATRIX_HOSTS.*cannot be '\/'/],
    [{ APMATRIX_HOSTS: 'lpar1=sysfs:/sys,lpar1=sysfs:/mnt' }, /APMATRIX_HOSTS.*twice/],
    [{ APMATRIX_HOSTS: 'LPAR1=sysfs:/sys' }, /APMATRIX_HOSTS.*name=sysfs:\/path/],
    [{ APMATRIX_SYSFS_LOCK_PATH: 'run/lock/x' }, /APMATRIX_SYSFS_LOCK_PATH \/ --sysfs-lock-path: 'run\/lock\/x' is not an absolute file path/],
    [{ APMATRIX_SYSFS_LOCK_PATH: '/run/lock/' }, /APMATRIX_SYSFS_LOCK_PATH/],
    [{ APMATRIX_SYSFS_BOOT_ID_FILE: 'boot_id' }, /APMATRIX_SYSFS_BOOT_ID_FILE \/ --sysfs-boot-id-file: 'boot_id' is not an absolute file path/],
    [{ APMATRIX_SYSFS_WATCH: 'inotify' }, /APMATRIX_SYSFS_WATCH \/ --sysfs-watch: 'inotify' is not one of auto, udev, poll/],
    [{ APMATRIX_SYSFS_POLL_MS: '10' }, /APMATRIX_SYSFS_POLL_MS \/ --sysfs-poll-ms: '10' must be an integer number of milliseconds in 50\.\.3600000/],
    [{ APMATRIX_LOCK_WAIT_MS: 'soon' }, /APMATRIX_LOCK_WAIT_MS/],
  ]
  for (const [env, re] of cases) t.throws(() => loadConfig({}, env), { name: 'ConfigError', message: re }, JSON.stringify(env))
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
    [{ APMATRIX_DRAIN_ON_TIMEOUT: 'drop' }, /APMATRIX_DRAIN_ON_TIMEOUT.*flush, wait/],
    [{ APMATRIX_LEASE_TTL_MS: '10' }, /APMATRIX_LEASE_TTL_MS/],
    [{ APMATRIX_STORE_TIMEOUT_MS: '50' }, /APMATRIX_STORE_TIMEOUT_MS/],
    [{ APMATRIX_CRASH_AT: 'somewhere:1' }, /APMATRIX_CRASH_AT/],
  ]
  for (const [env, re] of cases) t.throws(() => loadConfig({}, env), { name: 'ConfigError', message: re }, JSON.stringify(env))
  t.ok(new ConfigError('x') instanceof Error)
})

t.test('gRPC health interval: default 2 s, env, flag, bounds', async (t) => {
  t.equal(loadConfig({}, {}).healthIntervalMs, 2000)
  t.equal(loadConfig({}, { APMATRIX_HEALTH_INTERVAL_MS: '250' }).healthIntervalMs, 250)
  t.equal(loadConfig({ healthIntervalMs: '500' }, { APMATRIX_HEALTH_INTERVAL_MS: '250' }).healthIntervalMs, 500, 'the flag wins')
  t.throws(() => loadConfig({}, { APMATRIX_HEALTH_INTERVAL_MS: '50' }), { name: 'ConfigError', message: /APMATRIX_HEALTH_INTERVAL_MS/ })
})

t.test('reconcile concurrency and read staleness: defaults, env, flags, bounds', async (t) => {
  const d = loadConfig({}, {})
  t.same([d.reconcileConcurrency, d.readMaxStalenessMs], [4, 1000], 'defaults: 4 hosts at once, reads at most 1 s stale')
  const e = loadConfig({}, { APMATRIX_RECONCILE_CONCURRENCY: '16', APMATRIX_READ_MAX_STALENESS_MS: '0' })
  t.same([e.reconcileConcurrency, e.readMaxStalenessMs], [16, 0])
  const f = loadConfig({ reconcileConcurrency: '1', readMaxStalenessMs: '250' }, { APMATRIX_RECONCILE_CONCURRENCY: '16' })
  t.same([f.reconcileConcurrency, f.readMaxStalenessMs], [1, 250], 'flags win')
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ APMATRIX_RECONCILE_CONCURRENCY: '0' }, /APMATRIX_RECONCILE_CONCURRENCY \/ --reconcile-concurrency: '0' must be an integer in 1\.\.64/],
    [{ APMATRIX_RECONCILE_CONCURRENCY: '65' }, /APMATRIX_RECONCILE_CONCURRENCY.*1\.\.64/],
    [{ APMATRIX_RECONCILE_CONCURRENCY: '2.5' }, /APMATRIX_RECONCILE_CONCURRENCY/],
    [{ APMATRIX_RECONCILE_CONCURRENCY: 'many' }, /APMATRIX_RECONCILE_CONCURRENCY/],
    [{ APMATRIX_READ_MAX_STALENESS_MS: '-1' }, /APMATRIX_READ_MAX_STALENESS_MS \/ --read-max-staleness-ms/],
    [{ APMATRIX_READ_MAX_STALENESS_MS: '600001' }, /APMATRIX_READ_MAX_STALENESS_MS.*0\.\.600000/],
  ]
  for (const [env, re] of cases) t.throws(() => loadConfig({}, env), { name: 'ConfigError', message: re }, JSON.stringify(env))
})

t.test('the lag bound of event watchers: default, env, flag, bounds', async (t) => {
  t.equal(loadConfig({}, {}).watchMaxLag, 100_000, 'default 100000')
  t.equal(loadConfig({}, { APMATRIX_WATCH_MAX_LAG: '1000' }).watchMaxLag, 1000)
  t.equal(loadConfig({ watchMaxLag: '5' }, { APMATRIX_WATCH_MAX_LAG: '1000' }).watchMaxLag, 5, 'the flag wins')
  for (const v of ['0', '10000001', 'many'])
    t.throws(() => loadConfig({}, { APMATRIX_WATCH_MAX_LAG: v }), { name: 'ConfigError', message: /APMATRIX_WATCH_MAX_LAG \/ --watch-max-lag/ }, v)
})

t.test('retention: counts and ages of events, audit, journal and idempotency keys; the pass interval (docs/api.md (Events) Retention)', async (t) => {
  const day = 86_400_000
  t.same(
    loadConfig({}, {}).retention,
    {
      events: { maxCount: 100_000, maxAgeMs: 7 * day },
      audit: { maxCount: 1_000_000, maxAgeMs: 90 * day },
      journal: { maxCount: 10_000, maxAgeMs: 7 * day },
      idempotency: { maxCount: 100_000, maxAgeMs: day },
      intervalMs: 60_000,
    },
    'defaults',
  )
  const c = loadConfig(
    { eventRetentionAge: '0', retentionInterval: '1s' },
    {
      APMATRIX_EVENT_RETENTION_COUNT: '0',
      APMATRIX_EVENT_RETENTION_AGE: '12h',
      APMATRIX_AUDIT_RETENTION_COUNT: '50',
      APMATRIX_AUDIT_RETENTION_AGE: '30m',
      APMATRIX_JOURNAL_RETENTION_COUNT: '7',
      APMATRIX_JOURNAL_RETENTION_AGE: '90s',
      APMATRIX_IDEMPOTENCY_RETENTION_COUNT: '3',
      APMATRIX_IDEMPOTENCY_RETENTION_AGE: '1500ms',
    },
  )
  t.same(c.retention, {
    events: { maxCount: 0, maxAgeMs: 0 },
    audit: { maxCount: 50, maxAgeMs: 1_800_000 },
    journal: { maxCount: 7, maxAgeMs: 90_000 },
    idempotency: { maxCount: 3, maxAgeMs: 1_500 },
    intervalMs: 1_000,
  })
  for (const [env, value, fragment] of [
    ['APMATRIX_EVENT_RETENTION_AGE', '7', 'a duration with a unit'],
    ['APMATRIX_EVENT_RETENTION_AGE', '7w', 'APMATRIX_EVENT_RETENTION_AGE'],
    ['APMATRIX_AUDIT_RETENTION_AGE', '3651d', 'in 0..3650d'],
    ['APMATRIX_JOURNAL_RETENTION_COUNT', '-1', 'APMATRIX_JOURNAL_RETENTION_COUNT'],
    ['APMATRIX_EVENT_RETENTION_COUNT', '1e5', 'APMATRIX_EVENT_RETENTION_COUNT'],
    ['APMATRIX_IDEMPOTENCY_RETENTION_AGE', '0', 'in 1s..3650d'],
    ['APMATRIX_RETENTION_INTERVAL', '500ms', 'in 1s..1d'],
  ] as const) {
    let message = ''
    try {
      loadConfig({}, { [env]: value })
    } catch (e) {
      t.type(e, ConfigError)
      message = (e as Error).message
    }
    t.ok(message.startsWith(env) && message.includes(fragment), `${env}=${value}: ${message}`)
  }
})
